"""Load for benches/gateway: many SMTP clients at once, each sending its share of messages in
sessions of its own (connect, EHLO, [STARTTLS], AUTH, MAIL, RCPT, DATA, QUIT), as devices do;
and a counter of delivered messages (IMAP XOAUTH2 straight to the emulator).

Prints one JSON object. A refused connection (421, too many connections) is retried after a
short pause and counted; any other failure counts the message as failed.
"""

import argparse
import base64
import imaplib
import json
import smtplib
import ssl
import statistics
import threading
import time


def xoauth2(user, token):
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


def session(args, n, context):
    s = smtplib.SMTP(args.host, args.port, timeout=60)
    try:
        s.ehlo("bench")
        if args.starttls:
            s.starttls(context=context)
            s.ehlo("bench")
        if args.token:
            code, resp = s.docmd("AUTH", "XOAUTH2 " + xoauth2(args.user, args.token))
            if code != 235:
                raise smtplib.SMTPAuthenticationError(code, resp)
        else:
            s.login(args.user, args.password)
        body = (
            f"From: <{args.sender}>\r\nTo: <{args.to}>\r\nSubject: bench {args.marker} {n}\r\n"
            f"Message-ID: <bench-{args.marker}-{n}@bench>\r\n\r\n" + ("x" * 70 + "\r\n") * 20
        )
        s.sendmail(args.sender, [args.to], body)
        s.quit()
    finally:
        s.close()


def smtp(args):
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    latencies, failures, retries = [], [], [0]
    lock = threading.Lock()
    counter = iter(range(args.messages))

    def worker():
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            for _ in range(100):
                start = time.perf_counter()
                try:
                    session(args, n, context)
                    with lock:
                        latencies.append((time.perf_counter() - start) * 1000)
                    break
                except (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, ConnectionError):
                    # Too many connections at the server: a device tries again.
                    with lock:
                        retries[0] += 1
                    time.sleep(0.05)
                except Exception as e:  # noqa: BLE001 - every other failure is reported
                    with lock:
                        failures.append(repr(e))
                    break

    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None  # noqa: E731
    print(json.dumps({
        "sent": len(lat), "failed": args.messages - len(lat), "retries": retries[0],
        "seconds": seconds, "p50_ms": p(0.50), "p99_ms": p(0.99),
        "mean_ms": statistics.mean(lat) if lat else None, "errors": failures[:3],
    }))


def count(args):
    context = ssl.create_default_context(cafile=args.cafile)
    with imaplib.IMAP4_SSL("localhost", args.port, ssl_context=context, timeout=60) as imap:
        imap.authenticate("XOAUTH2", lambda _: f"user={args.user}\x01auth=Bearer {args.token}\x01\x01".encode())
        typ, data = imap.select("INBOX", readonly=True)
        print(int(data[0]))


def fetch(args):
    """IMAP fetch throughput: each client logs in and fetches every message's full body."""
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    done, failures = [], []
    lock = threading.Lock()

    def worker():
        try:
            if args.tls:
                imap = imaplib.IMAP4_SSL(args.host, args.port, ssl_context=context, timeout=60)
            else:
                imap = imaplib.IMAP4(args.host, args.port, timeout=60)
            imap.login(args.user, args.password)
            imap.select("INBOX", readonly=True)
            typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
            n = sum(1 for part in data if isinstance(part, tuple))
            imap.logout()
            with lock:
                done.append(n)
        except Exception as e:  # noqa: BLE001
            with lock:
                failures.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    print(json.dumps({"messages": sum(done), "seconds": seconds, "failures": failures[:3]}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("smtp")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--starttls", action="store_true")
    s.add_argument("--cafile")
    s.add_argument("--user", required=True)
    s.add_argument("--password")
    s.add_argument("--token")
    s.add_argument("--sender", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--clients", type=int, required=True)
    s.add_argument("--messages", type=int, required=True)
    s.add_argument("--marker", required=True)
    c = sub.add_parser("count")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--cafile", required=True)
    c.add_argument("--user", required=True)
    c.add_argument("--token", required=True)
    f = sub.add_parser("fetch")
    f.add_argument("--host", default="127.0.0.1")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--tls", action="store_true")
    f.add_argument("--cafile")
    f.add_argument("--user", required=True)
    f.add_argument("--password", required=True)
    f.add_argument("--clients", type=int, required=True)
    args = ap.parse_args()
    {"smtp": smtp, "count": count, "fetch": fetch}[args.mode](args)


if __name__ == "__main__":
    main()
