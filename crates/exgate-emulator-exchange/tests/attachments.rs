//! File attachments: one store behind Graph (`attachments`, `$value`, `$expand`, adding and
//! deleting), EWS (GetItem's `t:Attachments`, GetAttachment, CreateAttachment,
//! DeleteAttachment) and the MIME every protocol reads (a `multipart/mixed` message).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};

fn writer() -> String {
    bearer(&app_token(GRAPH, &["Mail.ReadWrite", "User.Read.All"]))
}

fn reader() -> String {
    bearer(&app_token(GRAPH, &["Mail.Read", "User.Read.All"]))
}

fn ews_app() -> String {
    bearer(&app_token(EXO, &["full_access_as_app"]))
}

fn enc(id: &str) -> String {
    id.replace('=', "%3D")
}

const USER: &str = "/v1.0/users/adele@contoso.com";

/// A request without a body, with this `Authorization`.
async fn bare(h: &Harness, method: &str, path: String, auth: &str) -> Resp {
    h.send(
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", auth)
            .body(Body::empty())
            .expect("request"),
    )
    .await
}

/// Bytes that are not text (a NUL and 0xFF), so a lossy text path would change them.
const BYTES: &[u8] = b"exgate attachment \x00\x01\xff";

fn file(name: &str, bytes: &[u8]) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": "application/octet-stream",
        "contentBytes": STANDARD.encode(bytes),
    })
}

async fn draft(h: &Harness, attachments: Value) -> String {
    let r = h
        .graph_post(
            &format!("{USER}/messages"),
            &writer(),
            &json!({"subject": "with attachments", "body": {"contentType": "text", "content": "See attached."}, "attachments": attachments}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.json()["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn graph_attachments_are_added_listed_read_and_deleted() {
    let h = Harness::new();
    let id = draft(&h, json!([file("first.bin", BYTES)])).await;
    let msg = h
        .get(&format!("{USER}/messages/{}", enc(&id)), Some(&reader()))
        .await
        .json();
    assert_eq!(msg["hasAttachments"], true, "{msg}");

    // Add a second one.
    let r = h
        .graph_post(
            &format!("{USER}/messages/{}/attachments", enc(&id)),
            &writer(),
            &file("notes.txt", b"second"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let added = r.json();
    assert_eq!(added["@odata.type"], "#microsoft.graph.fileAttachment");
    assert_eq!(added["name"], "notes.txt");
    assert_eq!(added["size"], 6);
    assert_eq!(added["isInline"], false);
    let second = added["id"].as_str().expect("id").to_owned();

    // Listed, in order, with their bytes.
    let list = h
        .get(
            &format!("{USER}/messages/{}/attachments", enc(&id)),
            Some(&reader()),
        )
        .await
        .json();
    let names: Vec<&str> = list["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["first.bin", "notes.txt"], "{list}");
    let first = list["value"][0]["id"].as_str().expect("id").to_owned();
    let got = h
        .get(
            &format!("{USER}/messages/{}/attachments/{}", enc(&id), enc(&first)),
            Some(&reader()),
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let bytes = STANDARD
        .decode(got.json()["contentBytes"].as_str().expect("contentBytes"))
        .expect("base64");
    assert_eq!(bytes, BYTES);
    // `$value`: the raw bytes with the attachment's type.
    let raw = bare(
        &h,
        "GET",
        format!(
            "{USER}/messages/{}/attachments/{}/$value",
            enc(&id),
            enc(&first)
        ),
        &reader(),
    )
    .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.header("content-type"), "application/octet-stream");

    // `$expand=attachments`, on the message and on a listing.
    let one = h
        .get(
            &format!("{USER}/messages/{}?$expand=attachments", enc(&id)),
            Some(&reader()),
        )
        .await
        .json();
    assert_eq!(
        one["attachments"].as_array().map(Vec::len),
        Some(2),
        "{one}"
    );
    let page = h
        .get(
            &format!("{USER}/mailFolders/drafts/messages?$expand=attachments"),
            Some(&reader()),
        )
        .await
        .json();
    assert_eq!(
        page["value"][0]["attachments"].as_array().map(Vec::len),
        Some(2),
        "{page}"
    );

    // The message's MIME carries both as parts.
    let mime = h
        .get(
            &format!("{USER}/messages/{}/$value", enc(&id)),
            Some(&reader()),
        )
        .await
        .body;
    assert!(mime.contains("Content-Type: multipart/mixed;"), "{mime}");
    assert!(mime.contains("filename=\"notes.txt\""), "{mime}");
    assert!(mime.contains(&STANDARD.encode(BYTES)), "{mime}");

    // Deleted: gone from the list; its id is then not found.
    let r = bare(
        &h,
        "DELETE",
        format!("{USER}/messages/{}/attachments/{}", enc(&id), enc(&second)),
        &writer(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = h
        .get(
            &format!("{USER}/messages/{}/attachments/{}", enc(&id), enc(&second)),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "ErrorItemNotFound");
}

#[tokio::test]
async fn graph_attachment_refusals() {
    let h = Harness::new();
    let id = draft(&h, json!([])).await;
    let path = format!("{USER}/messages/{}/attachments", enc(&id));
    // Mail.Read cannot add.
    let r = h.graph_post(&path, &reader(), &file("a.txt", b"a")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // No type, no name, content not base64.
    let mut untyped = file("a.txt", b"a");
    untyped.as_object_mut().map(|o| o.remove("@odata.type"));
    let mut unnamed = file("a.txt", b"a");
    unnamed["name"] = json!("");
    let mut garbled = file("a.txt", b"a");
    garbled["contentBytes"] = json!("!!not base64!!");
    for body in [untyped, unnamed, garbled] {
        let r = h.graph_post(&path, &writer(), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    // An id that is not an attachment id; an attachment id of another message.
    let r = h.get(&format!("{path}/not-an-id"), Some(&reader())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "ErrorInvalidIdMalformed");
    let other = draft(&h, json!([file("x.txt", b"x")])).await;
    let list = h
        .get(
            &format!("{USER}/messages/{}/attachments", enc(&other)),
            Some(&reader()),
        )
        .await
        .json();
    let foreign = list["value"][0]["id"].as_str().expect("id").to_owned();
    let r = h
        .get(&format!("{path}/{}", enc(&foreign)), Some(&reader()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // A message without attachments says so.
    let msg = h
        .get(&format!("{USER}/messages/{}", enc(&id)), Some(&reader()))
        .await
        .json();
    assert_eq!(msg["hasAttachments"], false);
}

fn get_item(id: &str) -> String {
    format!(
        r#"<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#
    )
}

#[tokio::test]
async fn ews_create_get_and_delete_attachment() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let save = r#"<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId><t:DistinguishedFolderId Id="drafts"/></m:SavedItemFolderId><m:Items><t:Message><t:Subject>ews attachments</t:Subject><t:Body BodyType="Text">See attached.</t:Body></t:Message></m:Items></m:CreateItem>"#;
    let r = h.ews(&ews_app(), &soap(&who, save)).await;
    let item = attr(&r.body, "Id").expect("item id");
    let r = h.ews(&ews_app(), &soap(&who, &get_item(&item))).await;
    assert!(
        r.body
            .contains("<t:HasAttachments>false</t:HasAttachments>"),
        "{}",
        r.body
    );

    let create = format!(
        r#"<m:CreateAttachment><m:ParentItemId Id="{item}"/><m:Attachments><t:FileAttachment><t:Name>report.csv</t:Name><t:Content>{}</t:Content></t:FileAttachment></m:Attachments></m:CreateAttachment>"#,
        STANDARD.encode(BYTES)
    );
    let r = h.ews(&ews_app(), &soap(&who, &create)).await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    assert_eq!(attr(&r.body, "RootItemId").as_deref(), Some(item.as_str()));
    let att = attr(&r.body, "Id").expect("attachment id");

    // GetItem lists it (without content); GetAttachment gives the content.
    let r = h.ews(&ews_app(), &soap(&who, &get_item(&item))).await;
    assert!(
        r.body.contains("<t:HasAttachments>true</t:HasAttachments>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<t:Name>report.csv</t:Name>"), "{}", r.body);
    assert!(
        r.body.contains("<t:ContentType>text/csv</t:ContentType>"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<t:Content>"), "{}", r.body);
    let get = format!(
        r#"<m:GetAttachment><m:AttachmentIds><t:AttachmentId Id="{att}"/></m:AttachmentIds></m:GetAttachment>"#
    );
    let r = h.ews(&ews_app(), &soap(&who, &get)).await;
    assert!(
        r.body
            .contains("GetAttachmentResponseMessage ResponseClass=\"Success\""),
        "{}",
        r.body
    );
    let content = tag(&r.body, "Content").expect("content");
    assert_eq!(STANDARD.decode(content).expect("base64"), BYTES);
    // Graph sees the same attachment.
    let gid = item.replace('+', "-").replace('/', "_");
    let list = h
        .get(
            &format!("{USER}/messages/{}/attachments", enc(&gid)),
            Some(&reader()),
        )
        .await
        .json();
    assert_eq!(list["value"][0]["name"], "report.csv", "{list}");

    // Deleted, then unknown; a malformed id.
    let delete = get.replace("GetAttachment>", "DeleteAttachment>");
    let r = h.ews(&ews_app(), &soap(&who, &delete)).await;
    assert!(
        r.body
            .contains("DeleteAttachmentResponseMessage ResponseClass=\"Success\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("RootItemId="), "{}", r.body);
    let r = h.ews(&ews_app(), &soap(&who, &get)).await;
    assert!(r.body.contains("ErrorInvalidAttachmentId"), "{}", r.body);
    let r = h
        .ews(&ews_app(), &soap(&who, &get.replace(&att, "AAMkbroken")))
        .await;
    assert!(r.body.contains("ErrorInvalidAttachmentId"), "{}", r.body);
    // Another mailbox's attachment is refused.
    let r = h.ews(&ews_app(), &soap(&who, &create)).await;
    let att = attr(&r.body, "Id").expect("attachment id");
    let get = get.replace(&attr(&get, "Id").unwrap_or_default(), &att);
    let r = h
        .ews(&ews_app(), &soap(&imp("bob@contoso.com"), &get))
        .await;
    assert!(r.body.contains("ErrorAccessDenied"), "{}", r.body);
}

#[tokio::test]
async fn a_mime_message_with_attachments_is_one_message_in_every_view() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let mime = "From: Lee Gu <lee@fabrikam.com>\r\nTo: adele@contoso.com\r\nSubject: =?utf-8?B?UmVwb3J0IOKAkyBRMw==?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nTotals =E2=80=93 see the sheet.\r\n--b1\r\nContent-Type: text/csv; name=\"q3.csv\"\r\nContent-Disposition: attachment; filename=\"q3.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYSxiCjEsMgo=\r\n--b1--\r\n";
    let create = format!(
        r#"<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId><t:DistinguishedFolderId Id="inbox"/></m:SavedItemFolderId><m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{}</t:MimeContent></t:Message></m:Items></m:CreateItem>"#,
        STANDARD.encode(mime)
    );
    let r = h.ews(&ews_app(), &soap(&who, &create)).await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let item = attr(&r.body, "Id").expect("id");
    let gid = item.replace('+', "-").replace('/', "_");
    let msg = h
        .get(
            &format!("{USER}/messages/{}?$expand=attachments", enc(&gid)),
            Some(&reader()),
        )
        .await
        .json();
    // Decoded: the encoded-word subject, the quoted-printable body, the base64 part.
    assert_eq!(msg["subject"], "Report \u{2013} Q3", "{msg}");
    assert!(
        msg["body"]["content"]
            .as_str()
            .is_some_and(|b| b.contains("Totals \u{2013} see the sheet.")),
        "{msg}"
    );
    assert_eq!(msg["hasAttachments"], true);
    assert_eq!(msg["attachments"][0]["name"], "q3.csv");
    assert_eq!(msg["attachments"][0]["contentType"], "text/csv");
    assert_eq!(msg["attachments"][0]["contentBytes"], "YSxiCjEsMgo=");
}

/// `POST messages` with a MIME message in base64 (`Content-Type: text/plain`): a draft whose
/// fields and attachments come from the MIME.
#[tokio::test]
async fn graph_creates_a_draft_from_mime() {
    let h = Harness::new();
    let mime = "From: adele@contoso.com\r\nTo: bob@contoso.com\r\nSubject: from MIME\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody text\r\n--b\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
    let r = h
        .send(
            Request::post(format!("{USER}/messages"))
                .header("authorization", writer())
                .header("content-type", "text/plain")
                .body(Body::from(STANDARD.encode(mime)))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let v = r.json();
    assert_eq!(v["subject"], "from MIME");
    assert_eq!(v["isDraft"], true);
    assert_eq!(v["hasAttachments"], true);
    assert_eq!(
        v["toRecipients"][0]["emailAddress"]["address"],
        "bob@contoso.com"
    );
    let r = h
        .send(
            Request::post(format!("{USER}/messages"))
                .header("authorization", writer())
                .header("content-type", "text/plain")
                .body(Body::from("!!not base64!!"))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        r.json()["error"]["code"],
        "ErrorMimeContentInvalidBase64String"
    );
}

/// Values that would reach a MIME header are checked: a type with a line break, a multipart
/// type, a content id with a line break are refused (Graph and EWS alike).
#[tokio::test]
async fn attachment_values_that_would_break_the_mime_are_refused() {
    let h = Harness::new();
    let id = draft(&h, json!([])).await;
    let path = format!("{USER}/messages/{}/attachments", enc(&id));
    let mut injected = file("a.txt", b"a");
    injected["contentType"] = json!("text/plain\r\nX-Injected: 1");
    let mut multipart = file("a.txt", b"a");
    multipart["contentType"] = json!("multipart/mixed; boundary=x");
    let mut cid = file("a.txt", b"a");
    cid["contentId"] = json!("x\r\nBcc: someone@example.com");
    for body in [injected, multipart, cid] {
        let r = h.graph_post(&path, &writer(), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    let mime = h
        .get(
            &format!("{USER}/messages/{}/$value", enc(&id)),
            Some(&reader()),
        )
        .await
        .body;
    assert!(
        !mime.contains("X-Injected") && !mime.contains("Bcc:"),
        "{mime}"
    );
    let who = imp("adele@contoso.com");
    let item = id.replace('-', "+").replace('_', "/");
    let create = format!(
        r#"<m:CreateAttachment><m:ParentItemId Id="{item}"/><m:Attachments><t:FileAttachment><t:Name>x.bin</t:Name><t:ContentType>multipart/mixed</t:ContentType><t:Content>YQ==</t:Content></t:FileAttachment></m:Attachments></m:CreateAttachment>"#
    );
    let r = h.ews(&ews_app(), &soap(&who, &create)).await;
    assert!(r.body.contains("ErrorInvalidRequest"), "{}", r.body);
}

/// Attachment numbers only grow: the id of a removed attachment never names a later one.
#[tokio::test]
async fn a_removed_attachments_id_never_names_another() {
    let h = Harness::new();
    let id = draft(&h, json!([file("a.txt", b"a"), file("b.txt", b"b")])).await;
    let path = format!("{USER}/messages/{}/attachments", enc(&id));
    let list = h.get(&path, Some(&reader())).await.json();
    let b = list["value"][1]["id"].as_str().expect("id").to_owned();
    let r = bare(&h, "DELETE", format!("{path}/{}", enc(&b)), &writer()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let c = h
        .graph_post(&path, &writer(), &file("c.txt", b"c"))
        .await
        .json();
    assert_ne!(c["id"].as_str(), Some(b.as_str()));
    let r = h.get(&format!("{path}/{}", enc(&b)), Some(&reader())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

/// `$expand=attachments` with immutable ids: every listed message gets its attachments.
#[tokio::test]
async fn expand_with_immutable_ids() {
    let h = Harness::new();
    draft(&h, json!([file("one.txt", b"1")])).await;
    draft(&h, json!([file("two.txt", b"2"), file("three.txt", b"3")])).await;
    let r = h
        .send(
            Request::get(format!(
                "{USER}/mailFolders/drafts/messages?$expand=attachments"
            ))
            .header("authorization", reader())
            .header("prefer", "IdType=\"ImmutableId\"")
            .body(Body::empty())
            .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    let mut counts: Vec<usize> = v["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|m| m["attachments"].as_array().map_or(0, Vec::len))
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2], "{v}");
}

/// A large attachment through an upload session: parts in order with `Content-Range` and no
/// `Authorization`, `200` with the next offset, `201` with the attachment's `Location` at the end.
#[tokio::test]
async fn an_upload_session_attaches_a_large_file() {
    let h = Harness::new();
    let id = draft(&h, json!([])).await;
    let size: usize = 5_000_000;
    let data: Vec<u8> = (0..size).map(|k| (k % 251) as u8).collect();
    let r = h
        .graph_post(
            &format!(
                "{USER}/messages/{}/attachments/createUploadSession",
                enc(&id)
            ),
            &writer(),
            &json!({"AttachmentItem": {"attachmentType": "file", "name": "big.bin", "size": size}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let session = r.json();
    assert_eq!(session["nextExpectedRanges"], json!(["0"]));
    let url = session["uploadUrl"].as_str().expect("uploadUrl");
    let path = &url[url.find("/api/").expect("path")..];
    let put = |from: usize, to: usize| {
        Request::put(path)
            .header("content-range", format!("bytes {from}-{}/{size}", to - 1))
            .body(Body::from(data[from..to].to_vec()))
            .expect("request")
    };
    let part = 4 * 1024 * 1024;
    let r = h.send(put(0, part)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["nextExpectedRanges"], json!([part.to_string()]));
    // Out of order: refused, nothing kept.
    let r = h.send(put(part + 1, size)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = h.send(put(part, size)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let location = r.header("location");
    assert!(location.contains("/attachments('"), "{location}");
    // The session is over; the attachment is there with every byte.
    let r = h.send(put(part, size)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let list = h
        .get(
            &format!("{USER}/messages/{}/attachments", enc(&id)),
            Some(&reader()),
        )
        .await
        .json();
    assert_eq!(
        list["value"][0]["size"], size,
        "{}",
        list["value"][0]["name"]
    );
    let aid = list["value"][0]["id"].as_str().expect("id").to_owned();
    assert!(location.contains(&aid), "{location} names {aid}");
    let raw = bare(
        &h,
        "GET",
        format!(
            "{USER}/messages/{}/attachments/{}/$value",
            enc(&id),
            enc(&aid)
        ),
        &reader(),
    )
    .await;
    // (The harness keeps bodies as text: compare the same way.)
    assert!(
        raw.body == String::from_utf8_lossy(&data),
        "the bytes differ"
    );
    // Too large a file, or no size: refused before any upload.
    let r = h
        .graph_post(
            &format!("{USER}/messages/{}/attachments/createUploadSession", enc(&id)),
            &writer(),
            &json!({"AttachmentItem": {"attachmentType": "file", "name": "huge.bin", "size": 200_000_000u64}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}
