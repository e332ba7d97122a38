"""curl against the emulator's mail protocols, with an app-only token as its manual shows
(`--oauth2-bearer` with `--login-options AUTH=XOAUTH2`): IMAP fetch of a whole message, SMTP
submission, POP3 retrieval. The only knob: the emulator's CA (`--cacert`); the host is
`localhost`, a name on the emulator's certificate."""

import email
import shutil
import subprocess
import uuid

import pytest

from test_imap import ARCHIVER, ARCHIVER_SECRET, MAILBOX
from test_imap import token as exo_token
from test_smtp import MAILER, MAILER_SECRET

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def port(addr):
    return addr.rsplit(":", 1)[1]


READER = "curl@contoso.com"  # receives and reads curl's message (scenario.toml)


def curl(emulator, url, access_token, *extra, user=MAILBOX):
    """Runs curl with XOAUTH2 as `user` and the emulator's CA; returns stdout (bytes), failing the
    test with curl's verbose log when it exits non-zero."""
    cmd = [
        "curl",
        "--silent",
        "--show-error",
        "--verbose",
        "--max-time",
        "30",
        "--cacert",
        emulator.ca_file,
        "--login-options",
        "AUTH=XOAUTH2",
        "--user",
        f"{user}:",
        "--oauth2-bearer",
        access_token,
        url,
        *extra,
    ]
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    log = r.stderr.decode(errors="replace").replace(access_token, "<token>")
    assert r.returncode == 0, log
    return r.stdout, log


def test_curl_fetches_a_whole_message_over_imap(emulator):
    access_token = exo_token(emulator, ARCHIVER, ARCHIVER_SECRET)
    out, log = curl(
        emulator, f"imaps://localhost:{port(emulator.imap)}/INBOX;UID=1", access_token, user=READER
    )
    assert "AUTHENTICATE XOAUTH2" in log, log
    msg = email.message_from_bytes(out)
    assert msg["Subject"] and msg["From"] and msg["Message-ID"], out[:400]
    assert msg.get_payload(), out[:400]


def test_curl_sends_over_smtp_and_reads_it_back_over_pop3(emulator, tmp_path):
    subject = f"sent by curl {uuid.uuid4().hex[:8]}"
    message = tmp_path / "message.eml"
    message.write_bytes(
        (
            f"From: {MAILBOX}\r\nTo: {READER}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@contoso.com>\r\n\r\nHello from curl.\r\n"
        ).encode()
    )
    sender = exo_token(emulator, MAILER, MAILER_SECRET)
    _, log = curl(
        emulator,
        f"smtp://localhost:{port(emulator.smtp)}",
        sender,
        "--ssl-reqd",
        "--mail-from",
        MAILBOX,
        "--mail-rcpt",
        READER,
        "--upload-file",
        str(message),
    )
    assert "AUTH XOAUTH2" in log, log
    reader = exo_token(emulator, ARCHIVER, ARCHIVER_SECRET)
    listing, log = curl(emulator, f"pop3s://localhost:{port(emulator.pop)}/", reader, user=READER)
    assert "AUTH XOAUTH2" in log, log
    last = listing.split()[-2].decode()  # "<n> <size>" lines: the newest is listed last
    out, _ = curl(emulator, f"pop3s://localhost:{port(emulator.pop)}/{last}", reader, user=READER)
    assert email.message_from_bytes(out)["Subject"] == subject, out[:400]
