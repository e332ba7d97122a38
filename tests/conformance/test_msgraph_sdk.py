"""The Microsoft Graph Python SDK (msgraph-sdk) against the emulator's Graph, used as documented.

App-only, with azure-identity's ClientSecretCredential. The only deviations from production use
are the documented knobs:

- the credential's authority host is the emulator, with instance discovery off (as in
  test_azure_identity.py);
- the Graph service root is set on the request adapter, `adapter.base_url = "<root>/v1.0"`.
  Microsoft Learn's "Access national cloud deployments with the Microsoft Graph SDKs"
  (graph/sdks/national-clouds) points the SDKs at another service root this way ("The API
  version must be included in the URL"; Go: `adapter.SetBaseUrl`); in Python the property is
  kiota-http's `HttpxRequestAdapter.base_url` (its constructor's deprecation note: "Set base_url
  on the http_client or on the request adapter instead"), and msgraph's BaseGraphServiceClient
  fills in https://graph.microsoft.com/v1.0 only when the adapter has none;
- the emulator's CA is trusted by the httpx client the SDK is given, wrapped in the SDK's
  default middleware by `GraphClientFactory.create_with_default_middleware(client=...)` and
  handed to `GraphRequestAdapter(auth_provider, http_client)`, as "Customize the Microsoft Graph
  SDK service client" (graph/sdks/customize-client, the proxy example) hands over its own
  httpx.AsyncClient.

The SDK is asyncio-based: each test runs its coroutine with asyncio.run on a client of its own.
Mailboxes: graph-reader@contoso.com is only read here, so its Inbox keeps the scenario's
default_inbox_messages; graph-writer@contoso.com takes drafts, delta and attachments;
graph-recipient@contoso.com receives mail sent with sendMail. The app "Conformance Graph client"
holds Mail.ReadWrite and Mail.Send (scenario.toml).
"""

import asyncio
import ssl
import uuid
import warnings

import httpx
import pytest

# msgraph's generated request builders (and kiota's GetQueryParameters) still define the older
# per-operation configuration classes, which warn as deprecated when their modules load; these
# tests use the generic RequestConfiguration.
DEPRECATED_CLASSES = r"(This class|GetQueryParameters) is deprecated"
warnings.filterwarnings("ignore", DEPRECATED_CLASSES, DeprecationWarning)

from azure.identity import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.file_attachment import FileAttachment
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.item.mail_folders.item.messages.messages_request_builder import MessagesRequestBuilder
from msgraph.generated.users.item.messages.item.message_item_request_builder import MessageItemRequestBuilder
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph_core import GraphClientFactory
from msgraph_core.tasks.page_iterator import PageIterator

from conftest import GRAPH_DEFAULT, TENANT

pytestmark = pytest.mark.filterwarnings(f"ignore:{DEPRECATED_CLASSES}:DeprecationWarning")

GRAPH_APP = "eeeeeeee-0000-0000-0000-000000000008"
GRAPH_SECRET = "conformance-graph-secret~8"
READER = "graph-reader@contoso.com"
WRITER = "graph-writer@contoso.com"
RECIPIENT = "graph-recipient@contoso.com"
INBOX_MESSAGES = 7  # [exchange] default_inbox_messages in scenario.toml


def run(emulator, test):
    """Runs `test(client)` on a GraphServiceClient aimed at the emulator, then closes it."""

    async def main():
        credential = ClientSecretCredential(
            TENANT, GRAPH_APP, GRAPH_SECRET, authority=emulator.base_url, disable_instance_discovery=True
        )
        auth_provider = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_DEFAULT])
        http_client = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=emulator.ca_file))
        )
        adapter = GraphRequestAdapter(auth_provider, http_client)
        adapter.base_url = f"{emulator.base_url}/v1.0"
        try:
            return await test(GraphServiceClient(request_adapter=adapter))
        finally:
            await http_client.aclose()
            credential.close()

    return asyncio.run(main())


def messages_config(**query):
    return RequestConfiguration(
        query_parameters=MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(**query)
    )


def text_message(subject, to, content="Sent through the Microsoft Graph Python SDK."):
    return Message(
        subject=subject,
        body=ItemBody(content_type=BodyType.Text, content=content),
        to_recipients=[Recipient(email_address=EmailAddress(address=to))],
    )


async def draft(client, mailbox, subject):
    created = await client.users.by_user_id(mailbox).messages.post(text_message(subject, RECIPIENT))
    assert created is not None and created.id
    return created


def test_readme_construction_with_credentials_and_scopes(emulator):
    """GraphServiceClient(credentials, scopes) as the README builds it; the service root set on
    its request adapter, the CA trusted through SSL_CERT_FILE (set by conftest, read by httpx)."""

    async def main():
        credential = ClientSecretCredential(
            TENANT, GRAPH_APP, GRAPH_SECRET, authority=emulator.base_url, disable_instance_discovery=True
        )
        client = GraphServiceClient(credentials=credential, scopes=[GRAPH_DEFAULT])
        client.request_adapter.base_url = f"{emulator.base_url}/v1.0"
        try:
            return await client.users.by_user_id(READER).mail_folders.by_mail_folder_id("inbox").get()
        finally:
            credential.close()

    inbox = asyncio.run(main())
    assert inbox.display_name == "Inbox"
    assert inbox.total_item_count == INBOX_MESSAGES
    assert 0 < inbox.unread_item_count < INBOX_MESSAGES


def test_inbox_pages_with_page_iterator_and_with_url(emulator):
    async def main(client):
        inbox = client.users.by_user_id(READER).mail_folders.by_mail_folder_id("inbox")
        first = await inbox.messages.get(messages_config(top=3, count=True, select=["subject", "receivedDateTime"]))
        assert len(first.value) == 3
        assert first.odata_count == INBOX_MESSAGES
        assert first.odata_next_link

        # The SDK's PageIterator follows @odata.nextLink to the end.
        seen = []
        iterator = PageIterator(first, client.request_adapter)
        await iterator.iterate(lambda m: seen.append(m) or True)

        # The same pages by hand, with with_url(odata_next_link) as the paging docs do.
        sizes, page = [], first
        while True:
            sizes.append(len(page.value))
            if not page.odata_next_link:
                break
            page = await inbox.messages.with_url(page.odata_next_link).get()
        return seen, sizes

    seen, sizes = run(emulator, main)
    assert len(seen) == INBOX_MESSAGES
    assert len({m.id for m in seen}) == INBOX_MESSAGES
    assert all(m.subject and m.received_date_time for m in seen)
    assert all(m.body is None for m in seen)  # not selected
    assert sizes == [3, 3, 1]


def test_filter_and_orderby_query_parameters(emulator):
    async def main(client):
        messages = client.users.by_user_id(READER).mail_folders.by_mail_folder_id("inbox").messages
        select = ["subject", "isRead", "receivedDateTime"]
        everything = await messages.get(messages_config(top=50, select=select))
        # Graph's rule for $filter with $orderby on messages ("List messages"): the sort
        # property comes first in the filter, so the date goes into the filter.
        unread = "receivedDateTime ge 2000-01-01T00:00:00Z and isRead eq false"
        unread_desc = await messages.get(
            messages_config(top=50, select=select, filter=unread, orderby=["receivedDateTime desc"])
        )
        unread_asc = await messages.get(
            messages_config(top=50, select=select, filter=unread, orderby=["receivedDateTime asc"])
        )
        read = await messages.get(messages_config(top=50, select=["id"], filter="isRead eq true"))
        # The sort property missing from the filter: Graph's InefficientFilter.
        try:
            await messages.get(messages_config(filter="isRead eq false", orderby=["receivedDateTime desc"]))
            inefficient = None
        except ODataError as e:
            inefficient = (e.response_status_code, e.error.code)
        folder = await client.users.by_user_id(READER).mail_folders.by_mail_folder_id("inbox").get()
        return everything.value, unread_desc.value, unread_asc.value, read.value, folder, inefficient

    everything, desc, asc, read, folder, inefficient = run(emulator, main)
    assert inefficient == (400, "InefficientFilter")
    assert len(everything) == INBOX_MESSAGES
    expected_unread = {m.id for m in everything if m.is_read is False}
    assert 0 < len(expected_unread) < INBOX_MESSAGES  # the filter has something to leave out
    assert len(expected_unread) == folder.unread_item_count
    assert [m.id for m in desc if not m.is_read] == [m.id for m in desc]
    assert {m.id for m in desc} == expected_unread
    dates = [m.received_date_time for m in desc]
    assert dates == sorted(dates, reverse=True) and len(set(dates)) == len(dates)
    assert [m.id for m in asc] == [m.id for m in reversed(desc)]
    assert len(read) == INBOX_MESSAGES - len(expected_unread)
    assert not expected_unread & {m.id for m in read}


def test_get_one_message_by_id_with_select(emulator):
    async def main(client):
        user = client.users.by_user_id(READER)
        listed = await user.mail_folders.by_mail_folder_id("inbox").messages.get(messages_config(top=1))
        wanted = listed.value[0]
        config = RequestConfiguration(
            query_parameters=MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
                select=["subject", "from", "receivedDateTime"]
            )
        )
        return wanted, await user.messages.by_message_id(wanted.id).get(config)

    wanted, got = run(emulator, main)
    assert got.id == wanted.id
    assert got.subject == wanted.subject
    assert got.received_date_time == wanted.received_date_time
    assert got.from_.email_address.address == wanted.from_.email_address.address
    assert got.body is None and got.to_recipients is None and got.is_read is None  # not selected


def test_draft_create_read_delete_then_item_not_found(emulator):
    subject = f"draft {uuid.uuid4()}"

    async def main(client):
        user = client.users.by_user_id(WRITER)
        created = await draft(client, WRITER, subject)
        drafts = await user.mail_folders.by_mail_folder_id("drafts").get()
        read_back = await user.messages.by_message_id(created.id).get()
        await user.messages.by_message_id(created.id).delete()
        with pytest.raises(ODataError) as info:
            await user.messages.by_message_id(created.id).get()
        return created, drafts, read_back, info.value

    created, drafts, read_back, error = run(emulator, main)
    assert created.is_draft is True
    assert created.subject == subject
    assert created.parent_folder_id == drafts.id
    assert read_back.id == created.id
    assert read_back.subject == subject
    assert read_back.body.content_type == BodyType.Html  # without Prefer: outlook.body-content-type
    assert read_back.to_recipients[0].email_address.address == RECIPIENT
    assert error.response_status_code == 404
    assert error.error.code == "ErrorItemNotFound"


def test_messages_delta_reports_a_new_message(emulator):
    subject = f"delta {uuid.uuid4()}"

    async def main(client):
        user = client.users.by_user_id(WRITER)
        inbox = user.mail_folders.by_mail_folder_id("inbox")
        folder = await inbox.get()
        # Initial round, two messages a page (Prefer: odata.maxpagesize, as Graph's delta docs).
        config = RequestConfiguration(
            query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=["subject"])
        )
        config.headers.add("Prefer", "odata.maxpagesize=2")
        initial, pages = [], 0
        page = await inbox.messages.delta.get(config)
        while True:
            pages += 1
            initial.extend(page.value)
            if page.odata_next_link:
                assert not page.odata_delta_link
                page = await inbox.messages.delta.with_url(page.odata_next_link).get(config)
                continue
            delta_link = page.odata_delta_link
            break
        assert delta_link

        await user.send_mail.post(
            SendMailPostRequestBody(message=text_message(subject, WRITER), save_to_sent_items=False)
        )
        changes = await inbox.messages.delta.with_url(delta_link).get()
        return folder, initial, pages, changes

    folder, initial, pages, changes = run(emulator, main)
    assert len(initial) == folder.total_item_count
    assert pages == (folder.total_item_count + 1) // 2
    assert [m.subject for m in changes.value] == [subject]
    assert changes.value[0].id not in {m.id for m in initial}
    assert changes.odata_delta_link and not changes.odata_next_link


def test_send_mail_reaches_the_recipients_inbox(emulator):
    subject = f"sendMail {uuid.uuid4()}"

    async def main(client):
        await client.users.by_user_id(WRITER).send_mail.post(
            SendMailPostRequestBody(
                message=text_message(subject, RECIPIENT, "Hello from msgraph-sdk."), save_to_sent_items=True
            )
        )
        filter_config = messages_config(filter=f"subject eq '{subject}'", select=["subject", "from", "body"])
        received = await client.users.by_user_id(RECIPIENT).mail_folders.by_mail_folder_id("inbox").messages.get(
            filter_config
        )
        sent = await client.users.by_user_id(WRITER).mail_folders.by_mail_folder_id("sentitems").messages.get(
            filter_config
        )
        return received.value, sent.value

    received, sent = run(emulator, main)
    assert [m.subject for m in received] == [subject]
    assert received[0].from_.email_address.address.lower() == WRITER
    assert "Hello from msgraph-sdk." in received[0].body.content
    assert [m.subject for m in sent] == [subject]


def test_attachments_of_a_message_without_any(emulator):
    async def main(client):
        user = client.users.by_user_id(READER)
        listed = await user.mail_folders.by_mail_folder_id("inbox").messages.get(messages_config(top=1))
        message_id = listed.value[0].id
        attachments = await user.messages.by_message_id(message_id).attachments.get()
        expanded = await user.messages.by_message_id(message_id).get(
            RequestConfiguration(
                query_parameters=MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
                    expand=["attachments"]
                )
            )
        )
        return listed.value[0], attachments, expanded

    message, attachments, expanded = run(emulator, main)
    assert message.has_attachments is False
    assert attachments.value == []
    assert expanded.attachments == []


def test_file_attachment_added_to_a_draft(emulator):
    """POST messages/{id}/attachments with a #microsoft.graph.fileAttachment, then list it, get
    it by id and see it through $expand=attachments (Graph: "Add attachment", "Get attachment")."""
    subject = f"attachment {uuid.uuid4()}"
    content = b"exgate attachment \x00\x01\xff"

    async def main(client):
        user = client.users.by_user_id(WRITER)
        created = await draft(client, WRITER, subject)
        message = user.messages.by_message_id(created.id)
        added = await message.attachments.post(
            FileAttachment(name="notes.bin", content_type="application/octet-stream", content_bytes=content)
        )
        listed = await message.attachments.get()
        got = await message.attachments.by_attachment_id(added.id).get()
        expanded = await message.get(
            RequestConfiguration(
                query_parameters=MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
                    expand=["attachments"]
                )
            )
        )
        return added, listed.value, got, expanded

    added, listed, got, expanded = run(emulator, main)
    assert isinstance(added, FileAttachment)
    assert added.id and added.name == "notes.bin"
    assert added.size and added.size >= len(content)
    assert [a.id for a in listed] == [added.id]
    assert isinstance(listed[0], FileAttachment) and listed[0].name == "notes.bin"
    assert isinstance(got, FileAttachment)
    assert got.content_type == "application/octet-stream"
    assert got.content_bytes == content  # contentBytes is base64 on the wire; the SDK decodes it
    assert expanded.has_attachments is True
    assert [a.id for a in expanded.attachments] == [added.id]


def test_large_attachment_through_an_upload_session(emulator):
    """The SDK's createUploadSession, then the parts PUT in order as "Attach large files to
    Outlook messages or events" shows (4 MB each, Content-Range, no Authorization header).
    msgraph-core's LargeFileUploadTask is not used: it fails on the single "{start}" value Outlook
    gives in nextExpectedRanges (msgraph-sdk-python-core issue 691, open)."""
    from msgraph.generated.models.attachment_item import AttachmentItem
    from msgraph.generated.models.attachment_type import AttachmentType
    from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (
        CreateUploadSessionPostRequestBody,
    )

    subject = f"large attachment {uuid.uuid4()}"
    content = bytes(k % 251 for k in range(5_000_000))
    part = 4 * 1024 * 1024

    async def main(client):
        created = await draft(client, WRITER, subject)
        message = client.users.by_user_id(WRITER).messages.by_message_id(created.id)
        body = CreateUploadSessionPostRequestBody(
            attachment_item=AttachmentItem(
                attachment_type=AttachmentType.File, name="big.bin", size=len(content)
            )
        )
        session = await message.attachments.create_upload_session.post(body)
        answers = []
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=emulator.ca_file)) as http:
            start = 0
            while start < len(content):
                chunk = content[start : start + part]
                r = await http.put(
                    session.upload_url,
                    content=chunk,
                    headers={"Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(content)}"},
                )
                answers.append((r.status_code, r.headers.get("location"), r.text))
                start += len(chunk)
        listed = await message.attachments.get()
        got = await message.attachments.by_attachment_id(listed.value[0].id).get()
        return session, answers, listed.value, got

    session, answers, listed, got = run(emulator, main)
    assert session.upload_url and session.next_expected_ranges == ["0"]
    assert answers[0][0] == 200 and f'"{part}"' in answers[0][2], answers[0]
    assert answers[-1][0] == 201 and "/attachments('" in (answers[-1][1] or ""), answers[-1]
    assert [a.name for a in listed] == ["big.bin"]
    assert got.size == len(content)
    assert got.content_bytes == content
