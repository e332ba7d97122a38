"""Node clients against the emulator: @azure/msal-node (client secret, certificate with a SHA-256
thumbprint, a wrong secret) and nodemailer (SMTP submission with STARTTLS and OAuth2), each used as
its documentation shows. The only knobs: the authority (the emulator, in `knownAuthorities`), the
SMTP host and port, and the emulator's CA (NODE_EXTRA_CA_CERTS, nodemailer's `tls.ca`).

The packages are installed by scripts/test into target/conformance-node (`npm ci` of
tests/conformance/node/package-lock.json); without Node the tests fail, saying so.
"""

import json
import os
import pathlib
import shutil
import subprocess

import msal
import pytest
import requests

from conftest import DAEMON, EXO_DEFAULT, GRAPH_DEFAULT, REPO, SECRET, TENANT, claims

NODE_DIR = REPO / "target" / "conformance-node"
MAILER = "eeeeeeee-0000-0000-0000-000000000005"
MAILER_SECRET = "conformance-mailer-secret~5"


def run_node(emulator, script, **env):
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.fail(
            "Node.js or the conformance packages are missing: run scripts/test (it installs "
            "them into target/conformance-node), or apt-get install nodejs npm"
        )
    full = dict(os.environ)
    full.update(
        {
            "EMULATOR_BASE_URL": emulator.base_url,
            "TENANT": TENANT,
            "NODE_EXTRA_CA_CERTS": emulator.ca_file,
            "CA_FILE": emulator.ca_file,
        }
    )
    full.update({k: v for k, v in env.items() if v is not None})
    out = subprocess.run(
        [node, str(NODE_DIR / script)], capture_output=True, text=True, timeout=120, env=full
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_msal_node_client_secret(emulator):
    r = run_node(emulator, "msal_node.mjs", CLIENT_ID=DAEMON, CLIENT_SECRET=SECRET, SCOPE=EXO_DEFAULT)
    assert r["ok"], r
    c = claims(emulator, r["token"])
    assert c["aud"] == "https://outlook.office365.com"
    assert c["appid"] == DAEMON
    assert "full_access_as_app" in c["roles"]


def test_msal_node_certificate_with_sha256_thumbprint(emulator, cert_files, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(cert_files["cert_pem"].encode())
    key = tmp_path / "key.pem"
    key.write_text(cert_files["key_pem"])
    before = emulator.stats()
    r = run_node(
        emulator,
        "msal_node.mjs",
        CLIENT_ID=DAEMON,
        CERT_SHA256=cert.fingerprint(hashes.SHA256()).hex().upper(),
        KEY_FILE=str(key),
        SCOPE=GRAPH_DEFAULT,
    )
    assert r["ok"], r
    # Microsoft Graph, in either of its audience forms.
    assert claims(emulator, r["token"])["aud"] in (
        "https://graph.microsoft.com",
        "00000003-0000-0000-c000-000000000000",
    )
    after = emulator.stats()
    # msal-node signs the assertion PS256 and names the key by x5t#S256.
    assert after["assertions_x5t_s256"] > before["assertions_x5t_s256"], (before, after)


def test_msal_node_wrong_secret_gets_aadsts7000215(emulator):
    r = run_node(emulator, "msal_node.mjs", CLIENT_ID=DAEMON, CLIENT_SECRET="not-the-secret", SCOPE=EXO_DEFAULT)
    assert not r["ok"], r
    assert r["errorCode"] == "invalid_client", r
    assert "AADSTS7000215" in r["message"], r


def test_nodemailer_sends_with_oauth2_and_it_is_delivered(emulator):
    if not emulator.smtp:
        pytest.fail("the emulator's state file has no smtp address")
    r = run_node(
        emulator,
        "nodemailer_send.mjs",
        CLIENT_ID=MAILER,
        CLIENT_SECRET=MAILER_SECRET,
        SMTP_ADDR=emulator.smtp,
        SENDER="user@contoso.com",
        RECIPIENT="user@contoso.com",
        SUBJECT="nodemailer conformance ok",
    )
    assert r["ok"], r
    assert r["accepted"] == ["user@contoso.com"], r
    assert r["response"].startswith("250 2.0.0 OK"), r
    app = msal.ConfidentialClientApplication(
        DAEMON, client_credential=SECRET, authority=emulator.authority(), instance_discovery=False
    )
    graph = app.acquire_token_for_client(scopes=[GRAPH_DEFAULT])
    resp = requests.get(
        f"{emulator.base_url}/v1.0/users/user@contoso.com/mailFolders/inbox/messages?$top=100",
        headers={"Authorization": "Bearer " + graph["access_token"]},
        verify=emulator.ca_file,
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert "nodemailer conformance ok" in [m["subject"] for m in resp.json()["value"]]
