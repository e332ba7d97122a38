"""IMAP4 against the emulator with Python's imaplib, as archivers and sync daemons write it:
implicit TLS trusting the emulator's CA, AUTHENTICATE XOAUTH2 with an msal client-credentials
token for Exchange Online (or LOGIN), then SELECT/STATUS/LIST/FETCH.
"""

import imaplib
import ssl

import msal
import pytest
import requests

from conftest import DAEMON, EXO_DEFAULT, SECRET, TENANT

ARCHIVER = "eeeeeeee-0000-0000-0000-000000000007"
ARCHIVER_SECRET = "conformance-archiver-secret~7"
MAILBOX = "user@contoso.com"


def token(emulator, client_id, secret, tenant=TENANT):
    app = msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=emulator.authority(tenant),
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[EXO_DEFAULT])
    assert "access_token" in result, result
    return result["access_token"]


def connect(emulator):
    if not emulator.imap:
        pytest.fail("the emulator's state file has no imap address")
    host, port = emulator.imap.rsplit(":", 1)
    context = ssl.create_default_context(cafile=emulator.ca_file)
    # The certificate names localhost; the listener is on 127.0.0.1.
    return imaplib.IMAP4_SSL("localhost", int(port), ssl_context=context, timeout=30)


def inbox_counts_from_graph(emulator):
    app = msal.ConfidentialClientApplication(
        DAEMON, client_credential=SECRET, authority=emulator.authority(), instance_discovery=False
    )
    graph = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in graph, graph
    r = requests.get(
        f"{emulator.base_url}/v1.0/users/{MAILBOX}/mailFolders/inbox",
        headers={"Authorization": "Bearer " + graph["access_token"]},
        verify=emulator.ca_file,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["totalItemCount"], r.json()["unreadItemCount"]


def test_xoauth2_app_only_selects_the_inbox(emulator):
    access_token = token(emulator, ARCHIVER, ARCHIVER_SECRET)
    imap = connect(emulator)
    try:
        assert imap.welcome.startswith(b"* OK The Microsoft Exchange IMAP4 service is ready.")
        assert "AUTH=XOAUTH2" in imap.capabilities
        typ, data = imap.authenticate(
            "XOAUTH2",
            lambda _: f"user={MAILBOX}\x01auth=Bearer {access_token}\x01\x01".encode(),
        )
        assert typ == "OK", data
        assert data == [b"AUTHENTICATE completed."]

        # Counts agree with Graph (read after SMTP tests may have delivered more).
        total, unread = inbox_counts_from_graph(emulator)
        typ, data = imap.select("INBOX")
        assert typ == "OK"
        assert int(data[0]) == total
        typ, data = imap.status("INBOX", "(MESSAGES UNSEEN)")
        assert typ == "OK"
        assert data == [f"INBOX (MESSAGES {total} UNSEEN {unread})".encode()]

        typ, folders = imap.list('""', "*")
        assert typ == "OK"
        assert b'(\\HasChildren) "/" INBOX' in folders
        assert b'(\\HasNoChildren \\Sent) "/" "Sent Items"' in folders

        typ, data = imap.fetch("1:*", "(FLAGS)")
        assert typ == "OK"
        assert len(data) == total
        typ, data = imap.uid("SEARCH", None, "ALL")
        assert typ == "OK"
        assert len(data[0].split()) == total
        imap.close()
    finally:
        imap.logout()


def test_token_without_imap_accessasapp_is_refused(emulator):
    access_token = token(emulator, DAEMON, SECRET)  # full_access_as_app only
    imap = connect(emulator)
    try:
        with pytest.raises(imaplib.IMAP4.error) as e:
            imap.authenticate(
                "XOAUTH2",
                lambda _: f"user={MAILBOX}\x01auth=Bearer {access_token}\x01\x01".encode(),
            )
        assert "AUTHENTICATE failed." in str(e.value)
        assert imap.state == "NONAUTH"
    finally:
        imap.logout()


def test_login_with_basic_disabled_is_refused(emulator):
    imap = connect(emulator)
    try:
        with pytest.raises(imaplib.IMAP4.error) as e:
            imap.login("scanner@litware.com", "conformance-litware-pw")
        assert "LOGIN failed." in str(e.value)
    finally:
        imap.logout()


def test_login_with_a_wrong_password_looks_the_same(emulator):
    imap = connect(emulator)
    try:
        with pytest.raises(imaplib.IMAP4.error) as e:
            imap.login(MAILBOX, "not-the-password")
        assert "LOGIN failed." in str(e.value)
        typ, data = imap.login(MAILBOX, "conformance-user-pw")
        assert typ == "OK"
    finally:
        imap.logout()


def test_a_downloader_reads_messages_with_the_email_package(emulator):
    """What a mail downloader does: UID FETCH of BODY.PEEK[] and the email package's parser, with
    the Graph view of the same mailbox as the reference."""
    import email
    from email import policy

    access_token = token(emulator, ARCHIVER, ARCHIVER_SECRET)
    imap = connect(emulator)
    try:
        typ, _ = imap.authenticate(
            "XOAUTH2",
            lambda _: f"user={MAILBOX}\x01auth=Bearer {access_token}\x01\x01".encode(),
        )
        assert typ == "OK"
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, data = imap.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK", data
        messages = [part for part in data if isinstance(part, tuple)]
        assert messages, data
        subjects = set()
        for meta, raw in messages:
            size = int(meta.split(b"RFC822.SIZE ")[1].split()[0])
            assert len(raw) == size, (meta, len(raw))
            msg = email.message_from_bytes(raw, policy=policy.default)
            assert msg["Message-ID"], raw[:200]
            subjects.add(str(msg["Subject"]))
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        assert data[0][1].lower().startswith(b"subject: ")
    finally:
        imap.logout()

    # Graph lists the same subjects.
    app = msal.ConfidentialClientApplication(
        DAEMON, client_credential=SECRET, authority=emulator.authority(), instance_discovery=False
    )
    graph = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    r = requests.get(
        f"{emulator.base_url}/v1.0/users/{MAILBOX}/mailFolders/inbox/messages?$top=1000&$select=subject",
        headers={"Authorization": "Bearer " + graph["access_token"]},
        verify=emulator.ca_file,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert subjects == {m["subject"] for m in r.json()["value"]}


def test_imaplib_appends_a_message_graph_then_lists(emulator):
    """A sync tool's write: imaplib's APPEND with flags and a date, then the same message through
    UID FETCH and through Graph."""
    import email.utils
    import time as _time
    import uuid

    access_token = token(emulator, ARCHIVER, ARCHIVER_SECRET)
    subject = f"Appended {uuid.uuid4().hex[:8]}"
    raw = (
        f"From: Sync Tool <user@contoso.com>\r\nTo: {MAILBOX}\r\nSubject: {subject}\r\n"
        f"Message-ID: {email.utils.make_msgid()}\r\n\r\nwritten over IMAP\r\n"
    ).encode()
    imap = connect(emulator)
    try:
        typ, _ = imap.authenticate(
            "XOAUTH2",
            lambda _: f"user={MAILBOX}\x01auth=Bearer {access_token}\x01\x01".encode(),
        )
        assert typ == "OK"
        typ, data = imap.append("INBOX", r"(\Seen)", imaplib.Time2Internaldate(_time.time()), raw)
        assert typ == "OK", data
        assert data[0].startswith(b"[APPENDUID "), data
        uid = data[0].split()[2].rstrip(b"]").decode()
        imap.select("INBOX")
        typ, data = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        assert f"Subject: {subject}".encode() in data[0][1]
        assert b"\\Seen" in data[0][0]
    finally:
        imap.logout()

    app = msal.ConfidentialClientApplication(
        DAEMON, client_credential=SECRET, authority=emulator.authority(), instance_discovery=False
    )
    graph = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    r = requests.get(
        f"{emulator.base_url}/v1.0/users/{MAILBOX}/mailFolders/inbox/messages",
        params={"$filter": f"subject eq '{subject}'", "$select": "subject,isRead"},
        headers={"Authorization": "Bearer " + graph["access_token"]},
        verify=emulator.ca_file,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert [(m["subject"], m["isRead"]) for m in r.json()["value"]] == [(subject, True)]


def test_imaplib_search_criteria(emulator):
    """What sync tools and scripts send: SEARCH with CHARSET, SUBJECT, FROM, SINCE, UNSEEN, OR,
    NOT, UID ranges; the answers agree with each other and with what was appended."""
    import email.utils
    import time as _time
    import uuid

    access_token = token(emulator, ARCHIVER, ARCHIVER_SECRET)
    marker = uuid.uuid4().hex[:10]
    imap = connect(emulator)
    try:
        typ, _ = imap.authenticate(
            "XOAUTH2",
            lambda _: f"user={MAILBOX}\x01auth=Bearer {access_token}\x01\x01".encode(),
        )
        assert typ == "OK"
        for n, (sender, flags) in enumerate(
            [("Invoices <billing@fabrikam.com>", r"(\Seen)"), ("Alice <alice@contoso.com>", "()")]
        ):
            raw = (
                f"From: {sender}\r\nTo: {MAILBOX}\r\nSubject: Search {marker} number {n}\r\n"
                f"Message-ID: {email.utils.make_msgid()}\r\n\r\nbody text {marker}-{n}\r\n"
            ).encode()
            typ, data = imap.append("INBOX", flags, imaplib.Time2Internaldate(_time.time()), raw)
            assert typ == "OK", data
        imap.select("INBOX")

        def search(*criteria, charset=None):
            typ, data = imap.search(charset, *criteria)
            assert typ == "OK", data
            return [int(x) for x in data[0].split()]

        both = search("SUBJECT", f'"Search {marker}"')
        assert len(both) == 2, both
        assert search("CHARSET", "UTF-8", "SUBJECT", marker) == both
        billing = search("FROM", "billing@fabrikam.com", "SUBJECT", marker)
        alice = search("FROM", '"Alice"', "SUBJECT", marker)
        assert len(billing) == 1 and len(alice) == 1 and billing != alice
        assert search("UNSEEN", "SUBJECT", marker) == alice
        assert search("SEEN", "SUBJECT", marker) == billing
        assert search("NOT", "SEEN", "SUBJECT", marker) == alice
        assert sorted(search("OR", "FROM", "alice", "FROM", "billing", "SUBJECT", marker)) == both
        today = imaplib.Time2Internaldate(_time.time()).strip('"').split(" ")[0]
        assert search("SINCE", today, "SUBJECT", marker) == both
        assert search("BEFORE", "1-Jan-2000", "SUBJECT", marker) == []
        assert search("BODY", f"{marker}-1") == alice
        # UID SEARCH answers UIDs of the same messages.
        typ, data = imap.uid("SEARCH", None, "SUBJECT", marker)
        assert typ == "OK"
        uids = data[0].split()
        typ, data = imap.uid("SEARCH", None, "UID", b",".join(uids).decode(), "SUBJECT", marker)
        assert data[0].split() == uids
        # A malformed criterion is BAD, an unknown charset NO [BADCHARSET].
        with pytest.raises(imaplib.IMAP4.error):
            imap.search(None, "SINCE", "yesterday")
        typ, data = imap.search("KOI8-R", "ALL")
        assert typ == "NO" and b"BADCHARSET" in data[0], data
    finally:
        imap.logout()


def test_imaplib_folders_and_a_multipart_message(emulator):
    """A migration tool's set-up: CREATE a nested folder (its parent made too), APPEND a message
    with an attachment built by the email package, read its structure and its parts back,
    RENAME and DELETE the folder."""
    import email
    import email.message
    import uuid

    access_token = token(emulator, ARCHIVER, ARCHIVER_SECRET)
    top = f"Migrated {uuid.uuid4().hex[:6]}"
    msg = email.message.EmailMessage()
    msg["From"] = "Old Server <old@fabrikam.com>"
    msg["To"] = MAILBOX
    msg["Subject"] = "with a spreadsheet"
    msg.set_content("Totals attached.")
    msg.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="q3.csv")
    imap = connect(emulator)
    try:
        typ, _ = imap.authenticate(
            "XOAUTH2",
            lambda _: f"user={MAILBOX}\x01auth=Bearer {access_token}\x01\x01".encode(),
        )
        assert typ == "OK"
        typ, data = imap.create(f'"{top}/2019"')
        assert typ == "OK", data
        typ, data = imap.create(f'"{top}"')
        assert (typ, data) == ("NO", [b"Mailbox already exists."])
        typ, data = imap.list('""', f'"{top}*"')
        assert typ == "OK"
        assert any(f'"{top}/2019"'.encode() in line for line in data), data
        typ, data = imap.append(f'"{top}/2019"', None, None, msg.as_bytes(policy=email.policy.SMTP))
        assert typ == "OK", data
        typ, _ = imap.select(f'"{top}/2019"')
        assert typ == "OK"
        typ, data = imap.fetch("1", "(BODYSTRUCTURE BODY.PEEK[2])")
        assert typ == "OK", data
        head = data[0][0]
        assert b'"MIXED"' in head and b'"ATTACHMENT" ("FILENAME" "q3.csv"' in head, head
        assert data[0][1].strip() == b"YSxiCjEsMgo=", data
        parsed = email.message_from_bytes(imap.fetch("1", "(BODY.PEEK[])")[1][0][1])
        parts = [p for p in parsed.walk() if p.get_filename()]
        assert [(p.get_filename(), p.get_payload(decode=True)) for p in parts] == [("q3.csv", b"a,b\n1,2\n")]
        imap.close()
        typ, data = imap.rename(f'"{top}"', f'"{top} (done)"')
        assert typ == "OK", data
        typ, data = imap.status(f'"{top} (done)/2019"', "(MESSAGES)")
        assert typ == "OK" and b"(MESSAGES 1)" in data[0], data
        typ, data = imap.delete(f'"{top} (done)"')
        assert typ == "OK", data
        typ, data = imap.list('""', f'"{top}*"')
        assert data == [None], data
    finally:
        imap.logout()
