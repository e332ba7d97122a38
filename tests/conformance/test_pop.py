"""POP3 against the emulator with Python's poplib, as ticketing systems and scanner-to-mail
gateways write it: implicit TLS trusting the emulator's CA, then AUTH XOAUTH2 with an msal
client-credentials token for Exchange Online (sent as poplib sends any command), STAT, LIST,
UIDL, RETR, TOP; and the refusals, which Exchange never details.
"""

import base64
import poplib
import ssl

import msal
import pytest

from conftest import TENANT
from test_imap import inbox_counts_from_graph

ARCHIVER = "eeeeeeee-0000-0000-0000-000000000007"
ARCHIVER_SECRET = "conformance-archiver-secret~7"
MAILER = "eeeeeeee-0000-0000-0000-000000000005"
MAILER_SECRET = "conformance-mailer-secret~5"
MAILBOX = "user@contoso.com"


def token(emulator, client_id, secret):
    app = msal.ConfidentialClientApplication(
        client_id, client_credential=secret, authority=emulator.authority(TENANT), instance_discovery=False
    )
    result = app.acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])
    assert "access_token" in result, result
    return result["access_token"]


def connect(emulator):
    if not emulator.pop:
        pytest.fail("the emulator's state file has no pop address")
    _, port = emulator.pop.rsplit(":", 1)
    context = ssl.create_default_context(cafile=emulator.ca_file)
    return poplib.POP3_SSL("localhost", int(port), context=context, timeout=30)


def xoauth2(user, access_token):
    return base64.b64encode(f"user={user}\x01auth=Bearer {access_token}\x01\x01".encode()).decode()


def test_xoauth2_app_only_reads_the_inbox(emulator):
    access_token = token(emulator, ARCHIVER, ARCHIVER_SECRET)
    pop = connect(emulator)
    try:
        assert pop.getwelcome().startswith(b"+OK The Microsoft Exchange POP3 service is ready.")
        caps = pop.capa()
        assert "USER" in caps and "SASL" in caps and "XOAUTH2" in caps["SASL"]
        resp = pop._shortcmd("AUTH XOAUTH2 " + xoauth2(MAILBOX, access_token))
        assert resp.startswith(b"+OK"), resp
        total, _ = inbox_counts_from_graph(emulator)
        count, size = pop.stat()
        assert count == total and size > 0
        resp, listing, _ = pop.list()
        assert len(listing) == count
        resp, uids, _ = pop.uidl()
        assert len({u.split()[1] for u in uids}) == count, "UIDs are unique"
        resp, lines, _ = pop.retr(1)
        assert resp.startswith(b"+OK") and any(line.lower().startswith(b"subject:") for line in lines)
        resp, head, _ = pop.top(1, 0)
        assert b"" in head and len(head) <= len(lines)
        pop.quit()
    finally:
        pop.close()


def test_a_token_without_pop_rights_and_a_wrong_password_get_the_same_refusal(emulator):
    # The mailer app has SMTP.SendAsApp only.
    access_token = token(emulator, MAILER, MAILER_SECRET)
    pop = connect(emulator)
    try:
        with pytest.raises(poplib.error_proto) as e:
            pop._shortcmd("AUTH XOAUTH2 " + xoauth2(MAILBOX, access_token))
        assert b"Logon failure" in e.value.args[0]
    finally:
        pop.close()
    pop = connect(emulator)
    try:
        pop.user(MAILBOX)
        with pytest.raises(poplib.error_proto) as e:
            pop.pass_("not-the-password")
        assert b"Logon failure" in e.value.args[0]
    finally:
        pop.close()
