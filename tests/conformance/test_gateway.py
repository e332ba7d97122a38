"""The Basic-to-OAuth gateway with real clients that only know a password: Python's smtplib,
imaplib and poplib (and curl when installed) sign in to `exgate gateway` with a local account; the gateway
signs in to the emulator with client-credentials tokens (XOAUTH2), which the emulator checks.
"""

import imaplib
import os
import poplib
import pathlib
import shutil
import smtplib
import ssl
import subprocess
import time
import uuid

import pytest

SCANNER_PW = "canary-scanner-password-1"
READER_PW = "canary-reader-password-2"
MAILBOX = "user@contoso.com"


def _exe():
    here = pathlib.Path(__file__).resolve().parent
    return os.environ.get("EXGATE_BIN") or str(here.parent.parent / "target" / "debug" / "exgate")


@pytest.fixture(scope="module")
def gateway(emulator, tmp_path_factory):
    d = tmp_path_factory.mktemp("gateway")
    exe = _exe()
    (d / "mailer-secret").write_text("conformance-mailer-secret~5\n")
    (d / "archiver-secret").write_text("conformance-archiver-secret~7\n")
    subprocess.run(
        [exe, "cert", "new", "--subject", "CN=exgate-gateway", "--out", str(d / "gw"),
         "--san", "localhost", "--san", "127.0.0.1"],
        check=True, capture_output=True,
    )
    smtp_up = emulator.smtp
    imap_up = emulator.imap
    pop_up = emulator.pop
    (d / "gateway.toml").write_text(f"""
[listen]
smtp = ["127.0.0.1:0"]
smtps = ["127.0.0.1:0"]
imaps = ["127.0.0.1:0"]
pop3s = ["127.0.0.1:0"]
metrics = "127.0.0.1:0"

[tls]
certificate = "gw.cert.pem"
key = "gw.key.pem"

[spool]
retry_initial_secs = 1

[upstream]
smtp_host = "localhost"
smtp_connect = "{smtp_up}"
imap_host = "localhost"
imap_connect = "{imap_up}"
pop_host = "localhost"
pop_connect = "{pop_up}"
ca_pem = "{emulator.ca_file}"

[profiles.mailer]
tenant = "contoso.com"
client_id = "eeeeeeee-0000-0000-0000-000000000005"
client_secret_file = "mailer-secret"
authority_host = "{emulator.base_url}"
ca_pem = "{emulator.ca_file}"

[profiles.archiver]
tenant = "contoso.com"
client_id = "eeeeeeee-0000-0000-0000-000000000007"
client_secret_file = "archiver-secret"
authority_host = "{emulator.base_url}"
ca_pem = "{emulator.ca_file}"

[[accounts]]
name = "scanner"
mailbox = "{MAILBOX}"
profile = "mailer"

[[accounts]]
name = "reader"
mailbox = "{MAILBOX}"
protocols = ["imap", "pop"]
profile = "archiver"
""")
    for name, pw in [("scanner", SCANNER_PW), ("reader", READER_PW)]:
        subprocess.run(
            [exe, "gateway", "passwd", name, "--config", str(d / "gateway.toml"), "--password-env", "PW"],
            check=True, capture_output=True, env={**os.environ, "PW": pw},
        )
    log = open(d / "gateway.log", "w+")
    proc = subprocess.Popen(
        [exe, "gateway", "run", "--config", str(d / "gateway.toml")],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    addresses = {}
    deadline = time.time() + 60
    while "metrics" not in addresses:
        line = proc.stdout.readline()
        if not line:
            log.seek(0)
            pytest.fail(f"the gateway exited: {log.read()}")
        kind, addr = line.split()[0], line.split()[-1]
        addresses.setdefault(kind, addr)
        assert time.time() < deadline
    try:
        yield {"dir": d, "addresses": addresses, "ca": str(d / "gw.cert.pem"), "log": d / "gateway.log"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def hostport(addr):
    host, port = addr.rsplit(":", 1)
    return "localhost", int(port)


def inbox_has(gw, marker):
    host, port = hostport(gw["addresses"]["imaps"])
    context = ssl.create_default_context(cafile=gw["ca"])
    with imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=30) as imap:
        imap.login("reader", READER_PW)
        typ, _ = imap.select("INBOX")
        assert typ == "OK"
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        return any(isinstance(part, tuple) and marker.encode() in part[1] for part in data)


def wait_delivered(gw, marker):
    deadline = time.time() + 30
    while not inbox_has(gw, marker):
        assert time.time() < deadline, f"{marker} never arrived"
        time.sleep(0.3)


def message(marker):
    return f"From: <{MAILBOX}>\r\nTo: <{MAILBOX}>\r\nSubject: {marker}\r\n\r\nScanned page.\r\n"


def test_smtplib_with_a_password_sends_through_oauth(gateway):
    host, port = hostport(gateway["addresses"]["smtp"])
    marker = f"gateway-smtplib-{uuid.uuid4().hex[:8]}"
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.starttls(context=ssl.create_default_context(cafile=gateway["ca"]))
        smtp.ehlo()
        smtp.login("scanner", SCANNER_PW)
        refused = smtp.sendmail(MAILBOX, [MAILBOX], message(marker))
        assert refused == {}
    wait_delivered(gateway, marker)


def test_smtplib_implicit_tls_and_the_refusals(gateway):
    host, port = hostport(gateway["addresses"]["smtps"])
    context = ssl.create_default_context(cafile=gateway["ca"])
    with smtplib.SMTP_SSL(host, port, context=context, timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            smtp.login("scanner", "canary-wrong-password")
        assert e.value.smtp_code == 535
    with smtplib.SMTP_SSL(host, port, context=context, timeout=30) as smtp:
        smtp.login("scanner", SCANNER_PW)
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            smtp.sendmail("ceo@contoso.com", [MAILBOX], message("not allowed"))
        assert e.value.smtp_code == 550
    # No AUTH before STARTTLS on the submission port.
    host, port = hostport(gateway["addresses"]["smtp"])
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")
    log = pathlib.Path(gateway["log"]).read_text()
    assert "canary" not in log.lower()


def test_imaplib_login_is_relayed_as_xoauth2(gateway):
    host, port = hostport(gateway["addresses"]["imaps"])
    context = ssl.create_default_context(cafile=gateway["ca"])
    with imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=30) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("reader", "canary-wrong")
    with imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=30) as imap:
        typ, _ = imap.login("reader", READER_PW)
        assert typ == "OK"
        typ, data = imap.list()
        assert typ == "OK" and any(b"INBOX" in line for line in data)
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK"


def test_poplib_user_pass_is_relayed_as_xoauth2(gateway):
    host, port = hostport(gateway["addresses"]["pop3s"])
    context = ssl.create_default_context(cafile=gateway["ca"])
    pop = poplib.POP3_SSL(host, port, context=context, timeout=30)
    try:
        pop.user("reader")
        with pytest.raises(poplib.error_proto):
            pop.pass_("canary-wrong")
    finally:
        pop.close()
    pop = poplib.POP3_SSL(host, port, context=context, timeout=30)
    try:
        pop.user("reader")
        assert pop.pass_(READER_PW).startswith(b"+OK")
        count, size = pop.stat()
        assert count >= 0 and size >= 0
        resp, listing, _ = pop.list()
        assert resp.startswith(b"+OK") and len(listing) == count
        if count:
            resp, lines, _ = pop.retr(1)
            assert resp.startswith(b"+OK") and lines
        pop.quit()
    finally:
        pop.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_sends_with_a_password(gateway, tmp_path):
    host, port = hostport(gateway["addresses"]["smtp"])
    marker = f"gateway-curl-{uuid.uuid4().hex[:8]}"
    mail = tmp_path / "mail.txt"
    mail.write_text(message(marker))
    out = subprocess.run(
        ["curl", "--silent", "--show-error", f"smtp://{host}:{port}", "--ssl-reqd",
         "--cacert", gateway["ca"], "--user", f"scanner:{SCANNER_PW}",
         "--mail-from", MAILBOX, "--mail-rcpt", MAILBOX, "--upload-file", str(mail)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    wait_delivered(gateway, marker)
