"""The per-mailbox check of the verify benchmark, written with exchangelib the way its users write
it for speed: one shared OAuth2Credentials, IMPERSONATION, a Configuration with a raised
max_connections, and a ThreadPoolExecutor opening each mailbox's inbox (Account(...), then
account.inbox, which is a GetFolder of the root and a GetFolder of the inbox, impersonated).

exchangelib requests its own tokens from login.microsoftonline.com (a hard-coded URL), so, as in
tests/conformance, the token is taken from the emulator's token endpoint with msal (client
credentials) and handed to OAuth2Credentials as its access token. TLS trust of the emulator's
private CA comes from REQUESTS_CA_BUNDLE, which requests (and so exchangelib and msal) honours.

Requests are counted by wrapping requests' HTTPAdapter.send with a counter (one locked
increment per request), so the benchmark can report per-request rates.

Prints one JSON object on stdout: mailboxes, ok, failed, seconds (the pool's wall time: token,
version probe and every mailbox), rate_per_s, ews_requests, token_requests, first errors.
"""

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import msal
import requests.adapters
from exchangelib import IMPERSONATION, OAUTH2, Account, Configuration, OAuth2Credentials
from oauthlib.oauth2 import OAuth2Token

EXO_DEFAULT = "https://outlook.office365.com/.default"

_counts = {"ews": 0, "token": 0, "other": 0}
_counts_lock = threading.Lock()
_send = requests.adapters.HTTPAdapter.send


def _counting_send(self, request, *args, **kwargs):
    url = request.url or ""
    kind = "ews" if "/EWS/Exchange.asmx" in url else "token" if "/oauth2/" in url else "other"
    with _counts_lock:
        _counts[kind] += 1
    return _send(self, request, *args, **kwargs)


requests.adapters.HTTPAdapter.send = _counting_send


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True, help="the emulator's base URL")
    p.add_argument("--tenant", default="contoso.com")
    p.add_argument("--client-id", default="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    p.add_argument("--secret-env", default="EXGATE_BENCH_SECRET", help="environment variable holding the secret")
    p.add_argument("--prefix", default="bench")
    p.add_argument("--domain", default="contoso.com")
    p.add_argument("--first", type=int, default=1)
    p.add_argument("--count", type=int, default=1000, help="mailboxes to check (a sample of the set)")
    p.add_argument("--threads", type=int, default=32, help="pool threads and max_connections")
    args = p.parse_args()

    secret = os.environ.get(args.secret_env)
    if not secret:
        print(f"error: set {args.secret_env} to the application's client secret", file=sys.stderr)
        return 2
    addresses = [f"{args.prefix}{n}@{args.domain}" for n in range(args.first, args.first + args.count)]

    started = time.perf_counter()
    app = msal.ConfidentialClientApplication(
        args.client_id,
        client_credential=secret,
        authority=f"{args.base_url}/{args.tenant}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[EXO_DEFAULT])
    if "access_token" not in result:
        print(f"error: no token: {result.get('error')}: {result.get('error_description')}", file=sys.stderr)
        return 2
    token = OAuth2Token(
        {
            "access_token": result["access_token"],
            "token_type": "Bearer",
            "expires_in": result["expires_in"],
            "expires_at": time.time() + result["expires_in"],
        }
    )
    credentials = OAuth2Credentials(
        client_id=args.client_id, client_secret=secret, tenant_id=args.tenant, access_token=token
    )
    config = Configuration(
        service_endpoint=f"{args.base_url}/EWS/Exchange.asmx",
        credentials=credentials,
        auth_type=OAUTH2,
        max_connections=args.threads,
    )

    def check(address):
        try:
            account = Account(address, config=config, access_type=IMPERSONATION, autodiscover=False)
            inbox = account.inbox
            if inbox.name != "Inbox":
                return address, f"unexpected inbox name {inbox.name!r}"
            return address, None
        except Exception as e:  # the check reports every failure, whatever its type
            return address, f"{type(e).__name__}: {e}"

    errors = []
    ok = 0
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for address, error in pool.map(check, addresses):
            if error is None:
                ok += 1
            else:
                errors.append(f"{address}: {error}")
    seconds = time.perf_counter() - started

    print(
        json.dumps(
            {
                "mailboxes": len(addresses),
                "ok": ok,
                "failed": len(errors),
                "threads": args.threads,
                "seconds": round(seconds, 3),
                "rate_per_s": round(len(addresses) / seconds, 1) if seconds > 0 else None,
                "ews_requests": _counts["ews"],
                "token_requests": _counts["token"],
                "other_requests": _counts["other"],
                "first_errors": errors[:5],
            }
        )
    )
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
