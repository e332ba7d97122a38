"""exchangelib against the emulator's Exchange plane, unchanged except for the service endpoint.

The token comes from the emulator's own token endpoint (msal, client credentials); exchangelib
hard-codes login.microsoftonline.com for its own token requests, so it is handed the access token
through OAuth2AuthorizationCodeCredentials. Mailboxes, the daemon's access scope and the
on-premises server come from the [exchange] section of scenario.toml; svc@contoso.com is the
on-premises service account.

It can also run against the Exchange crate's standalone server
(crates/exgate-emulator-exchange/examples/serve.rs): set EXGATE_EXCHANGE_STATE to the state file
that example writes.
"""

import json
import os

import pytest
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    FileAttachment,
    Folder,
    Identity,
    Mailbox,
    Message,
    OAuth2AuthorizationCodeCredentials,
)
from exchangelib.errors import ErrorImpersonateUserDenied, ErrorNonExistentMailbox, UnauthorizedError
from oauthlib.oauth2 import OAuth2Token

TENANT = "11111111-2222-3333-4444-555555555555"
DAEMON = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "conformance-secret~1"
EXO_DEFAULT = "https://outlook.office365.com/.default"
SVC_PASSWORD = os.environ.get("EXGATE_SVC_PASSWORD", "conformance-svc-pw")
INBOX_MESSAGES = 7  # default_inbox_messages in scenario_exchange.toml


class Exchange:
    def __init__(self, base_url, token, expires_on, password):
        self.base_url = base_url
        self.token = token
        self.expires_on = expires_on
        self.password = password
        if base_url.startswith("http://"):
            # requests-oauthlib refuses plain http unless told otherwise (standalone server only).
            os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

    def ews(self, prefix=""):
        return f"{self.base_url}{prefix}/EWS/Exchange.asmx"

    def oauth(self, identity=None):
        token = OAuth2Token(
            {"access_token": self.token, "token_type": "Bearer", "expires_in": 3600, "expires_at": self.expires_on}
        )
        return OAuth2AuthorizationCodeCredentials(
            client_id=DAEMON, client_secret=None, access_token=token, identity=identity
        )

    def account(self, address, with_identity=True):
        identity = Identity(primary_smtp_address=address) if with_identity else None
        config = Configuration(service_endpoint=self.ews(), credentials=self.oauth(identity), auth_type=OAUTH2)
        return Account(address, config=config, access_type=IMPERSONATION, autodiscover=False)

    def onprem_account(self, address, user, password, server="ex01", auth_type=BASIC):
        config = Configuration(
            service_endpoint=self.ews(f"/onprem/{server}"),
            credentials=Credentials(user, password),
            auth_type=auth_type,
        )
        return Account(address, config=config, access_type=IMPERSONATION, autodiscover=False)


@pytest.fixture(scope="module")
def exchange(request):
    state_file = os.environ.get("EXGATE_EXCHANGE_STATE")
    if state_file:
        with open(state_file) as f:
            st = json.load(f)
        return Exchange(st["base_url"], st["ews_token"], st["expires_on"], st["password"])
    import msal

    emulator = request.getfixturevalue("emulator")
    app = msal.ConfidentialClientApplication(
        DAEMON, client_credential=SECRET, authority=emulator.authority(), instance_discovery=False
    )
    result = app.acquire_token_for_client(scopes=[EXO_DEFAULT])
    assert "access_token" in result, result
    import time

    return Exchange(emulator.base_url, result["access_token"], int(time.time()) + result["expires_in"], SVC_PASSWORD)


def test_impersonation_lists_and_reads_the_inbox(exchange):
    acc = exchange.account("user@contoso.com")
    assert acc.version.build.major_version == 15
    assert acc.root.name == "Root"
    assert acc.inbox.name == "Inbox"
    assert acc.inbox.total_count == INBOX_MESSAGES
    items = list(acc.inbox.all().order_by("-datetime_received")[:2])
    assert len(items) == 2
    assert items[0].datetime_received >= items[1].datetime_received
    for item in items:
        assert item.subject
        assert item.sender.email_address
        assert b"Subject: " + item.subject.encode() in item.mime_content
    subjects = [i.subject for i in acc.inbox.all().only("subject")]
    assert len(subjects) == INBOX_MESSAGES
    assert subjects[:2] == [i.subject for i in items]


def test_version_probe_without_identity_reads_the_server_version(exchange):
    # The ConvertId probe goes out without ExchangeImpersonation; Exchange answers with a fault
    # that still carries ServerVersionInfo, which is all exchangelib needs.
    acc = exchange.account("user@contoso.com", with_identity=False)
    assert acc.version.build.major_version == 15
    assert acc.inbox.total_count == INBOX_MESSAGES


def test_sync_items_and_send_and_save(exchange):
    acc = exchange.account("user@contoso.com")
    created = [change for change, _ in acc.inbox.sync_items(max_changes_returned=3) if change == "create"]
    assert len(created) == INBOX_MESSAGES
    before = acc.inbox.total_count
    Message(
        account=acc,
        subject="conformance note",
        body="sent by exchangelib",
        to_recipients=[Mailbox(email_address="user@contoso.com")],
    ).send_and_save()
    acc.inbox.refresh()
    assert acc.inbox.total_count == before + 1
    newest = list(acc.inbox.all().order_by("-datetime_received").only("subject")[:1])
    assert newest[0].subject == "conformance note"


def test_mailbox_outside_the_apps_scope_raises_impersonate_user_denied(exchange):
    acc = exchange.account("outside@contoso.com")
    with pytest.raises(ErrorImpersonateUserDenied):
        acc.inbox.total_count


def test_unknown_mailbox_raises_non_existent_mailbox(exchange):
    acc = exchange.account("nobody@contoso.com")
    with pytest.raises(ErrorNonExistentMailbox):
        acc.inbox.total_count


def test_basic_on_premises_service_account_impersonates(exchange):
    acc = exchange.onprem_account("onprem@contoso.com", "svc@contoso.com", exchange.password)
    assert acc.inbox.total_count == INBOX_MESSAGES
    assert len(list(acc.inbox.all()[:2])) == 2


def test_basic_on_premises_without_the_right_raises_impersonate_user_denied(exchange):
    acc = exchange.onprem_account("onprem-denied@contoso.com", "svc@contoso.com", exchange.password)
    with pytest.raises(ErrorImpersonateUserDenied):
        acc.inbox.total_count


def test_basic_with_a_wrong_password_is_unauthorized(exchange):
    config = Configuration(
        service_endpoint=exchange.ews("/onprem/ex01"),
        credentials=Credentials("onprem@contoso.com", "wrong-password"),
        auth_type=BASIC,
    )
    with pytest.raises(UnauthorizedError):
        Account("onprem@contoso.com", config=config, access_type=DELEGATE, autodiscover=False).inbox.total_count


def test_ntlm_on_premises_service_account_impersonates(exchange):
    # requests_ntlm (pyspnego) runs the NTLMv2 handshake, with a MIC and key exchange, on the
    # connection; the emulator verifies it against the account's password.
    acc = exchange.onprem_account("onprem@contoso.com", "CONTOSO\\svc", exchange.password, auth_type=NTLM)
    assert acc.inbox.total_count == INBOX_MESSAGES
    assert len(list(acc.inbox.all()[:2])) == 2


def test_ntlm_with_a_user_principal_name_impersonates(exchange):
    acc = exchange.onprem_account("onprem@contoso.com", "svc@contoso.com", exchange.password, auth_type=NTLM)
    assert acc.inbox.total_count == INBOX_MESSAGES


def test_ntlm_without_the_right_raises_impersonate_user_denied(exchange):
    acc = exchange.onprem_account("onprem-denied@contoso.com", "CONTOSO\\svc", exchange.password, auth_type=NTLM)
    with pytest.raises(ErrorImpersonateUserDenied):
        acc.inbox.total_count


def test_ntlm_with_a_wrong_password_is_unauthorized(exchange):
    config = Configuration(
        service_endpoint=exchange.ews("/onprem/ex01"),
        credentials=Credentials("CONTOSO\\svc", "wrong-password"),
        auth_type=NTLM,
    )
    with pytest.raises(UnauthorizedError):
        Account("onprem@contoso.com", config=config, access_type=IMPERSONATION, autodiscover=False).inbox.total_count


def test_soap_autodiscover_user_settings_parse(exchange):
    # exchangelib's discovery resolves real DNS names first (dnspython, no /etc/hosts), so the
    # protocol object is pointed at the emulator's autodiscover.svc directly.
    from exchangelib.autodiscover.protocol import AutodiscoverProtocol

    protocol = AutodiscoverProtocol(
        config=Configuration(
            service_endpoint=f"{exchange.base_url}/autodiscover/autodiscover.svc",
            credentials=exchange.oauth(),
            auth_type=OAUTH2,
        )
    )
    settings = protocol.get_user_settings(user="user@contoso.com")
    assert settings.ews_url == exchange.ews()
    assert settings.autodiscover_smtp_address == "user@contoso.com"
    assert settings.version.api_version == "Exchange2016"
    redirect = protocol.get_user_settings(user="onprem@contoso.com")
    assert redirect.redirect_url == f"{exchange.base_url}/onprem/ex01/autodiscover/autodiscover.svc"
    with pytest.raises(ErrorNonExistentMailbox):
        protocol.get_user_settings(user="nobody@contoso.com").raise_errors()


def test_draft_save_then_delete_soft_delete_and_move_to_trash(exchange):
    acc = exchange.account("user@contoso.com")
    drafts = acc.drafts.total_count
    trash = acc.trash.total_count
    inbox = acc.inbox.total_count
    # save() is CreateItem SaveOnly into Drafts; delete() is DeleteItem HardDelete.
    for delete in ("delete", "soft_delete", "move_to_trash"):
        m = Message(account=acc, folder=acc.drafts, subject=f"probe {delete}", body="x")
        m.save()
        assert m.id
        acc.drafts.refresh()
        assert acc.drafts.total_count == drafts + 1
        assert [i.subject for i in acc.drafts.all().only("subject")] == [f"probe {delete}"]
        getattr(m, delete)()
        acc.drafts.refresh()
        assert acc.drafts.total_count == drafts
    acc.trash.refresh()
    assert acc.trash.total_count == trash + 1
    assert [i.subject for i in acc.trash.all().only("subject")] == ["probe move_to_trash"]
    acc.inbox.refresh()
    assert acc.inbox.total_count == inbox


def test_folder_tree_and_generated_folders(exchange):
    acc = exchange.account("user@contoso.com")
    names = [f.name for f in acc.root.walk()]
    for expected in ("Top of Information Store", "Inbox", "Sent Items", "Project 1", "Project 2"):
        assert expected in names
    assert sorted(f.name for f in acc.inbox.children) == ["Project 1", "Project 2"]
    project = acc.inbox / "Project 2"
    assert project.total_count == 3  # default_extra_folder_messages
    assert len(list(project.all())) == 3


def test_extended_mapi_properties_read_through_exchangelib(exchange):
    """exchangelib's documented way to read a MAPI property: register an ExtendedProperty."""
    from exchangelib.extended_properties import ExtendedProperty

    class MessageSize(ExtendedProperty):
        property_tag = 0x0E08
        property_type = "Integer"

    class InternetMessageId(ExtendedProperty):
        property_tag = 0x1035
        property_type = "String"

    Message.register("mapi_size", MessageSize)
    Message.register("mapi_message_id", InternetMessageId)
    try:
        acc = exchange.account("user@contoso.com")
        items = list(acc.inbox.all().only("size", "message_id", "mapi_size", "mapi_message_id")[:3])
        assert len(items) == 3
        for item in items:
            assert item.mapi_size == item.size, (item.mapi_size, item.size)
            assert item.mapi_message_id == item.message_id
    finally:
        Message.deregister("mapi_size")
        Message.deregister("mapi_message_id")


def test_mark_read_move_and_copy(exchange):
    """What sync tools do after reading: UpdateItem of IsRead, MoveItem, CopyItem."""
    acc = exchange.account("user@contoso.com")
    drafts = acc.drafts.total_count
    trash = acc.trash.total_count
    m = Message(account=acc, folder=acc.drafts, subject="probe move", body="x")
    m.save()
    m.is_read = False
    m.save(update_fields=["is_read"])
    acc.drafts.refresh()
    assert acc.drafts.unread_count >= 1
    fetched = acc.drafts.get(id=m.id)
    assert fetched.is_read is False
    fetched.is_read = True
    fetched.save(update_fields=["is_read"])
    assert acc.drafts.get(id=m.id).is_read is True
    # Move: the item leaves Drafts for Deleted Items and gets a new id there.
    old_id = m.id
    m.move(acc.trash)
    assert m.id and m.id != old_id
    acc.drafts.refresh()
    acc.trash.refresh()
    assert acc.drafts.total_count == drafts
    assert acc.trash.total_count == trash + 1
    moved = acc.trash.get(id=m.id)
    assert moved.subject == "probe move" and moved.is_read is True
    # Copy back: both folders hold it.
    copy_id = m.copy(acc.drafts)
    acc.drafts.refresh()
    acc.trash.refresh()
    assert acc.drafts.total_count == drafts + 1
    assert acc.trash.total_count == trash + 1
    assert copy_id
    copies = [i for i in acc.drafts.all().only("subject") if i.subject == "probe move"]
    assert len(copies) == 1
    for item in (copies[0], acc.trash.get(id=m.id)):
        item.delete()
    acc.drafts.refresh()
    assert acc.drafts.total_count == drafts


def test_a_message_imported_as_mime(exchange):
    # exchangelib's import: a Message with mime_content, saved (CreateItem SaveOnly with
    # t:MimeContent); its fields come back from the MIME.
    acc = exchange.account("user@contoso.com")
    drafts = acc.drafts.total_count
    raw = (
        b"From: Lee Gu <lee@fabrikam.com>\r\n"
        b"To: User <user@contoso.com>\r\n"
        b"Subject: imported by exchangelib\r\n"
        b"Message-ID: <exchangelib-import@fabrikam.com>\r\n"
        b"\r\n"
        b"From the old server.\r\n"
    )
    m = Message(account=acc, folder=acc.drafts, mime_content=raw)
    m.save()
    assert m.id
    got = acc.drafts.get(id=m.id)
    assert got.subject == "imported by exchangelib"
    assert got.sender.email_address == "lee@fabrikam.com"
    assert got.message_id == "<exchangelib-import@fabrikam.com>"
    assert b"From the old server." in got.mime_content
    got.delete()
    acc.drafts.refresh()
    assert acc.drafts.total_count == drafts


def test_file_attachments_attach_read_and_detach(exchange):
    # exchangelib's attachments: attach() on a saved item (CreateAttachment), the item's
    # attachments read back (GetItem lists them, GetAttachment gives the content), detach()
    # (DeleteAttachment).
    acc = exchange.account("user@contoso.com")
    m = Message(account=acc, folder=acc.drafts, subject="attachments by exchangelib", body="See attached.")
    m.save()
    content = b"exgate attachment \x00\x01\xff"
    att = FileAttachment(name="notes.bin", content=content)
    m.attach(att)
    assert att.attachment_id is not None
    got = acc.drafts.get(id=m.id)
    assert got.has_attachments
    assert [a.name for a in got.attachments] == ["notes.bin"]
    assert got.attachments[0].content == content
    assert b"notes.bin" in got.mime_content
    got.detach(got.attachments[0])
    again = acc.drafts.get(id=m.id)
    assert not again.has_attachments
    again.delete()


def test_folders_created_renamed_and_deleted(exchange):
    # exchangelib's folder management: Folder(...).save() (CreateFolder), a new name saved
    # (UpdateFolder), delete() (DeleteFolder); the tree is re-read each time.
    acc = exchange.account("user@contoso.com")
    f = Folder(parent=acc.inbox, name="Made by exchangelib")
    f.save()
    assert f.id
    acc.root.refresh()
    assert "Made by exchangelib" in [c.name for c in acc.inbox.children]
    f.name = "Renamed by exchangelib"
    f.save()
    acc.root.refresh()
    names = [c.name for c in acc.inbox.children]
    assert "Renamed by exchangelib" in names and "Made by exchangelib" not in names
    f.delete()
    acc.root.refresh()
    assert "Renamed by exchangelib" not in [c.name for c in acc.inbox.children]
