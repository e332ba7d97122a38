//! A loopback HTTP server that records every request and answers with canned but realistic
//! Exchange/Graph/Autodiscover responses (shapes from the protocol reference). Tests either
//! plug in their own responder or use [`exchange`], a small stateful Exchange double.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Response, Uri};
use base64::Engine as _;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub peer: SocketAddr,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The local name of the first element inside `s:Body`, for EWS requests.
    pub(crate) fn ews_operation(&self) -> Option<String> {
        let root = exgate_mail::xml::parse(&self.body).ok()?;
        Some(root.child("Body")?.children.first()?.name.clone())
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub(crate) struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Option<std::time::Duration>,
}

impl Canned {
    pub(crate) fn new(status: u16, body: impl Into<String>) -> Self {
        Canned {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
        }
    }

    pub(crate) fn delayed(mut self, ms: u64) -> Self {
        self.delay = Some(std::time::Duration::from_millis(ms));
        self
    }

    pub(crate) fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    pub(crate) fn xml(status: u16, body: impl Into<String>) -> Self {
        Canned::new(status, body).header("content-type", "text/xml; charset=utf-8")
    }

    pub(crate) fn json(status: u16, body: impl Into<String>) -> Self {
        Canned::new(status, body).header(
            "content-type",
            "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8",
        )
    }
}

pub(crate) type Responder = Arc<dyn Fn(&Ctx, &Recorded) -> Canned + Send + Sync>;

/// What a responder knows besides the request.
pub(crate) struct Ctx {
    pub base: String,
    pub call: usize,
}

#[derive(Clone)]
struct AppState {
    base: Arc<Mutex<String>>,
    log: Arc<Mutex<Vec<Recorded>>>,
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    responder: Responder,
}

/// A running fixture server; stops when dropped.
pub(crate) struct Fixture {
    pub base: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    max_in_flight: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Fixture {
    pub(crate) async fn start(responder: Responder) -> Fixture {
        let log = Arc::new(Mutex::new(Vec::new()));
        let base_cell = Arc::new(Mutex::new(String::new()));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let state = AppState {
            base: base_cell.clone(),
            log: log.clone(),
            calls: Arc::new(AtomicUsize::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: max_in_flight.clone(),
            responder,
        };
        let app = Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let base = format!("http://{addr}");
        *base_cell.lock().unwrap() = base.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        });
        Fixture {
            base,
            log,
            max_in_flight,
            stop: Some(tx),
        }
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// The most requests the server had in progress at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("{}{path}", self.base)).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn handle(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let rec = Recorded {
        peer,
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    st.log.lock().unwrap().push(rec.clone());
    let ctx = Ctx {
        base: st.base.lock().unwrap().clone(),
        call: st.calls.fetch_add(1, Ordering::SeqCst),
    };
    let canned = (st.responder)(&ctx, &rec);
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if let Some(d) = canned.delay {
        tokio::time::sleep(d).await;
    }
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut b = Response::builder().status(canned.status);
    for (k, v) in &canned.headers {
        b = b.header(k, v);
    }
    b.body(Body::from(canned.body)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Canned EWS shapes.

pub(crate) const SERVER_VERSION: &str = r#"<h:ServerVersionInfo MajorVersion="15" MinorVersion="20" MajorBuildNumber="8466" MinorBuildNumber="32" Version="V2018_01_08" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" xmlns="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>"#;

pub(crate) fn ews_envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>{SERVER_VERSION}</s:Header><s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">{body}</s:Body></s:Envelope>"#
    )
}

/// A 200 answer with one response message of class Success.
pub(crate) fn ews_success(op: &str, inner: &str) -> Canned {
    Canned::xml(
        200,
        ews_envelope(&format!(
            r#"<m:{op}Response xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:{op}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{op}ResponseMessage></m:ResponseMessages></m:{op}Response>"#
        )),
    )
}

/// A 200 answer with one failing response message.
pub(crate) fn ews_item_error(
    op: &str,
    class: &str,
    code: &str,
    text: &str,
    message_xml: &str,
    extra: &str,
) -> Canned {
    Canned::xml(
        200,
        ews_envelope(&format!(
            r#"<m:{op}Response xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:{op}ResponseMessage ResponseClass="{class}"><m:MessageText>{text}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{message_xml}{extra}</m:{op}ResponseMessage></m:ResponseMessages></m:{op}Response>"#
        )),
    )
}

/// An HTTP 500 SOAP fault in the shape real Exchange sends.
pub(crate) fn soap_fault(code: &str, text: &str, message_xml: &str) -> Canned {
    Canned::xml(
        500,
        ews_envelope(&format!(
            r#"<s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:{code}</faultcode><faultstring xml:lang="en-US">{text}</faultstring><detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">{code}</e:ResponseCode><e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">{text}</e:Message>{message_xml}</detail></s:Fault>"#
        )),
    )
}

pub(crate) fn back_off(ms: u64) -> String {
    format!(
        r#"<t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOffMilliseconds">{ms}</t:Value></t:MessageXml>"#
    )
}

pub(crate) const EXO_CHALLENGE: &str = r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="invalid_token",Basic Realm="""#;

/// Exchange Online's 401 for a rejected token.
pub(crate) fn ews_401(diag: &str) -> Canned {
    Canned::new(401, "")
        .header("www-authenticate", EXO_CHALLENGE)
        .header("x-ms-diagnostics", diag)
        .header("request-id", "5ca2c827-5147-474c-8457-63c4e5099c6e")
}

pub(crate) const MIME: &[u8] = b"From: Sender <sender@example.org>\r\nTo: user@example.com\r\nSubject: Hello\r\nMessage-ID: <abc@example.org>\r\n\r\nHi there\r\n";

fn attr_of(body: &str, element: &str, attr: &str) -> Option<String> {
    let root = exgate_mail::xml::parse(body).ok()?;
    let el = if root.name == element {
        Some(&root)
    } else {
        root.find(element)
    }?;
    el.attr(attr).map(str::to_owned)
}

fn text_of(body: &str, element: &str) -> Option<String> {
    let root = exgate_mail::xml::parse(body).ok()?;
    root.find(element).map(|e| e.text.clone())
}

const INBOX_IDS: [&str; 3] = ["AAMkItem1", "AAMkItem2", "AAMkItem3"];

/// A small Exchange double: EWS at `/EWS/Exchange.asmx`, Graph at `/v1.0/...`.
///
/// Tokens: `Bearer app-token` is app-only (needs impersonation), `Bearer user-token` is
/// delegated (must not impersonate); anything else, including an empty Bearer, gets a 401.
pub(crate) fn exchange() -> Responder {
    Arc::new(|ctx, r| {
        if r.path.eq_ignore_ascii_case("/EWS/Exchange.asmx") {
            ews(r)
        } else if let Some(rest) = r.path.strip_prefix("/v1.0/") {
            graph(ctx, r, rest)
        } else {
            Canned::new(404, "not found")
        }
    })
}

fn ews(r: &Recorded) -> Canned {
    let auth = r.header("authorization").unwrap_or("");
    let impersonating = r.body.contains("<t:ExchangeImpersonation>");
    match auth {
        "Bearer app-token" if !impersonating => {
            return soap_fault(
                "ErrorInvalidExchangeImpersonationHeaderData",
                "ExchangeImpersonation SOAP header must be present for this type of OAuth token.",
                "",
            );
        }
        "Bearer user-token" if impersonating => {
            return soap_fault(
                "ErrorInvalidExchangeImpersonationHeaderData",
                "ExchangeImpersonation SOAP header must not exist for this type of OAuth token.",
                "",
            );
        }
        "Bearer app-token" | "Bearer user-token" => {}
        "" | "Bearer" => {
            return ews_401(
                "2000001;reason=\"OAuth token submitted with the request cannot be parsed.\";error_category=\"invalid_token\"",
            );
        }
        _ => {
            return ews_401(
                "2000001;reason=\"The token has expired.\";error_category=\"invalid_token\"",
            );
        }
    }
    let Some(op) = r.ews_operation() else {
        return soap_fault(
            "ErrorSchemaValidation",
            "The request failed schema validation.",
            "",
        );
    };
    match op.as_str() {
        "GetFolder" => {
            let id = attr_of(&r.body, "DistinguishedFolderId", "Id").unwrap_or_default();
            let (fid, name, total) = match id.as_str() {
                "msgfolderroot" => ("AAMkRoot", "Top of Information Store", 0),
                "inbox" => ("AAMkInbox", "Inbox", INBOX_IDS.len()),
                "drafts" => ("AAMkDrafts", "Drafts", 0),
                _ => {
                    return ews_item_error(
                        "GetFolder",
                        "Error",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                        "",
                        "",
                    );
                }
            };
            ews_success(
                "GetFolder",
                &format!(
                    r#"<m:Folders><t:Folder><t:FolderId Id="{fid}" ChangeKey="AQAAABYAAAA="/><t:ParentFolderId Id="AAMkRoot" ChangeKey="AQAAAA=="/><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>{name}</t:DisplayName><t:TotalCount>{total}</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>1</t:UnreadCount></t:Folder></m:Folders>"#
                ),
            )
        }
        "FindFolder" => ews_success(
            "FindFolder",
            r#"<m:RootFolder TotalItemsInView="2" IncludesLastItemInRange="true" IndexedPagingOffset="2"><t:Folders><t:Folder><t:FolderId Id="AAMkInbox"/><t:DisplayName>Inbox</t:DisplayName><t:TotalCount>3</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>1</t:UnreadCount></t:Folder><t:Folder><t:FolderId Id="AAMkSent"/><t:DisplayName>Sent Items</t:DisplayName><t:TotalCount>0</t:TotalCount></t:Folder></t:Folders></m:RootFolder>"#,
        ),
        "FindItem" => {
            let offset: usize = attr_of(&r.body, "IndexedPageItemView", "Offset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let max: usize = attr_of(&r.body, "IndexedPageItemView", "MaxEntriesReturned")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            let page: Vec<&str> = INBOX_IDS.iter().skip(offset).take(max).copied().collect();
            let next = offset + page.len();
            let last = next >= INBOX_IDS.len();
            let items: String = page
                .iter()
                .map(|id| {
                    format!(r#"<t:Message><t:ItemId Id="{id}" ChangeKey="CQAAAB"/></t:Message>"#)
                })
                .collect();
            ews_success(
                "FindItem",
                &format!(
                    r#"<m:RootFolder IndexedPagingOffset="{next}" TotalItemsInView="{}" IncludesLastItemInRange="{last}"><t:Items>{items}</t:Items></m:RootFolder>"#,
                    INBOX_IDS.len()
                ),
            )
        }
        "GetItem" => {
            let id = attr_of(&r.body, "ItemId", "Id").unwrap_or_default();
            if !INBOX_IDS.contains(&id.as_str()) {
                return ews_item_error(
                    "GetItem",
                    "Error",
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                    "",
                    "<m:Items/>",
                );
            }
            let mime = base64::engine::general_purpose::STANDARD.encode(MIME);
            ews_success(
                "GetItem",
                &format!(
                    r#"<m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{mime}</t:MimeContent><t:ItemId Id="{id}" ChangeKey="CQAAAB"/></t:Message></m:Items>"#
                ),
            )
        }
        "SyncFolderItems" => match text_of(&r.body, "SyncState").as_deref() {
            None => ews_success(
                "SyncFolderItems",
                r#"<m:SyncState>S1</m:SyncState><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange><m:Changes><t:Create><t:Message><t:ItemId Id="AAMkItem1"/></t:Message></t:Create><t:Create><t:Message><t:ItemId Id="AAMkItem2"/></t:Message></t:Create></m:Changes>"#,
            ),
            Some("S1") => ews_success(
                "SyncFolderItems",
                r#"<m:SyncState>S2</m:SyncState><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange><m:Changes><t:Delete><t:ItemId Id="AAMkItem1"/></t:Delete><t:ReadFlagChange><t:ItemId Id="AAMkItem2"/><t:IsRead>true</t:IsRead></t:ReadFlagChange></m:Changes>"#,
            ),
            Some(_) => ews_item_error(
                "SyncFolderItems",
                "Error",
                "ErrorInvalidSyncStateData",
                "Synchronization state data is corrupt or otherwise invalid.",
                "",
                "<m:SyncState/>",
            ),
        },
        "SyncFolderHierarchy" => ews_success(
            "SyncFolderHierarchy",
            r#"<m:SyncState>H1</m:SyncState><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange><m:Changes><t:Create><t:Folder><t:FolderId Id="AAMkInbox"/><t:DisplayName>Inbox</t:DisplayName></t:Folder></t:Create></m:Changes>"#,
        ),
        "CreateItem" => ews_success(
            "CreateItem",
            r#"<m:Items><t:Message><t:ItemId Id="AAMkNew1" ChangeKey="CQAAAB"/></t:Message></m:Items>"#,
        ),
        "DeleteItem" => {
            let id = attr_of(&r.body, "ItemId", "Id").unwrap_or_default();
            if id == "AAMkNew1" {
                ews_success("DeleteItem", "")
            } else {
                ews_item_error(
                    "DeleteItem",
                    "Error",
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                    "",
                    "",
                )
            }
        }
        "ConvertId" => ews_item_error(
            "ConvertId",
            "Error",
            "ErrorInvalidIdMalformed",
            "Id is malformed.",
            "",
            "",
        ),
        "ResolveNames" => match text_of(&r.body, "UnresolvedEntry").as_deref() {
            Some("user") => ews_success(
                "ResolveNames",
                r#"<m:ResolutionSet TotalItemsInView="1" IncludesLastItemInRange="true"><t:Resolution><t:Mailbox><t:Name>User One</t:Name><t:EmailAddress>user@example.com</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox></t:Resolution></m:ResolutionSet>"#,
            ),
            Some("us") => ews_item_error(
                "ResolveNames",
                "Warning",
                "ErrorNameResolutionMultipleResults",
                "Multiple results were found.",
                "",
                r#"<m:ResolutionSet TotalItemsInView="2" IncludesLastItemInRange="true"><t:Resolution><t:Mailbox><t:Name>User One</t:Name><t:EmailAddress>user@example.com</t:EmailAddress></t:Mailbox></t:Resolution><t:Resolution><t:Mailbox><t:Name>User Two</t:Name><t:EmailAddress>user2@example.com</t:EmailAddress></t:Mailbox></t:Resolution></m:ResolutionSet>"#,
            ),
            _ => ews_item_error(
                "ResolveNames",
                "Error",
                "ErrorNameResolutionNoResults",
                "No results were found.",
                "",
                "",
            ),
        },
        _ => soap_fault("ErrorInvalidRequest", "The request is invalid.", ""),
    }
}

pub(crate) fn graph_error(status: u16, code: &str, message: &str) -> Canned {
    Canned::json(
        status,
        format!(
            r#"{{"error":{{"code":"{code}","message":"{message}","innerError":{{"date":"2024-01-01T10:00:00","request-id":"6c57aaaa-0000-0000-0000-000000000001","client-request-id":"6c57aaaa-0000-0000-0000-000000000002"}}}}}}"#
        ),
    )
    .header("request-id", "6c57aaaa-0000-0000-0000-000000000001")
}

fn graph(ctx: &Ctx, r: &Recorded, rest: &str) -> Canned {
    match r.header("authorization") {
        Some("Bearer app-token" | "Bearer user-token") => {}
        _ => {
            return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.").header(
                "www-authenticate",
                r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#,
            );
        }
    }
    // The docs' link form `mailFolders('inbox')` addresses the same folder.
    let rest = rest.replace("mailFolders('inbox')", "mailFolders/inbox");
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let user = segs.get(1).copied().unwrap_or("");
    if segs.first() != Some(&"users") {
        return graph_error(400, "BadRequest", "Unsupported segment.");
    }
    match user {
        "nobody@example.com" => {
            return graph_error(
                404,
                "ErrorInvalidUser",
                "The requested user 'nobody@example.com' is invalid.",
            );
        }
        "onprem@example.com" => {
            return graph_error(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            );
        }
        "denied@example.com" => {
            return graph_error(403, "ErrorAccessDenied", "Access to OData is disabled.");
        }
        "unlicensed@example.com" => {
            return graph_error(
                403,
                "ErrorInvalidLicense",
                "Tenant does not have a SPO license.",
            );
        }
        _ => {}
    }
    let b = &ctx.base;
    let ctx_url = format!("{b}/v1.0/$metadata#users('{user}')");
    match (r.method.as_str(), &segs[2..]) {
        ("GET", []) => Canned::json(
            200,
            format!(
                r#"{{"@odata.context":"{ctx_url}/$entity","id":"87d349ed-44d7-43e1-9a83-5f2406dee5bd","userPrincipalName":"{user}","mail":"{user}","displayName":"User One"}}"#
            ),
        ),
        ("GET", ["mailFolders"]) => {
            if r.query.contains("skiptoken=p2") {
                Canned::json(
                    200,
                    r#"{"value":[{"id":"AQMkSent","displayName":"Sent Items","parentFolderId":"AQMkRoot","childFolderCount":0,"unreadItemCount":0,"totalItemCount":0}]}"#,
                )
            } else {
                Canned::json(
                    200,
                    format!(
                        r#"{{"@odata.context":"{ctx_url}/mailFolders","value":[{{"id":"AQMkInbox","displayName":"Inbox","parentFolderId":"AQMkRoot","childFolderCount":0,"unreadItemCount":1,"totalItemCount":3}}],"@odata.nextLink":"{b}/v1.0/users/{user}/mailFolders?%24skiptoken=p2"}}"#
                    ),
                )
            }
        }
        ("GET", ["mailFolders", "inbox"]) => Canned::json(
            200,
            r#"{"id":"AQMkInbox","displayName":"Inbox","parentFolderId":"AQMkRoot","childFolderCount":0,"unreadItemCount":1,"totalItemCount":3}"#,
        ),
        ("GET", ["mailFolders", "inbox", "messages"]) => {
            if r.query.contains("skip=2") {
                Canned::json(
                    200,
                    format!(
                        r#"{{"@odata.context":"{ctx_url}/mailFolders('inbox')/messages","value":[{{"@odata.etag":"W/\"CQ\"","id":"AAMkItem3"}}]}}"#
                    ),
                )
            } else {
                Canned::json(
                    200,
                    format!(
                        r#"{{"@odata.context":"{ctx_url}/mailFolders('inbox')/messages(id)","value":[{{"@odata.etag":"W/\"CQ\"","id":"AAMkItem1"}},{{"@odata.etag":"W/\"CQ\"","id":"AAMkItem2"}}],"@odata.nextLink":"{b}/v1.0/users/{user}/mailFolders/inbox/messages?%24top=2&%24skip=2"}}"#
                    ),
                )
            }
        }
        ("GET", ["mailFolders", "inbox", "messages", "delta"]) => {
            if r.query.contains("deltatoken=expired") {
                graph_error(
                    410,
                    "syncStateNotFound",
                    "The delta token is expired and data must be synchronized again.",
                )
            } else if r.query.contains("deltatoken=d1") {
                Canned::json(
                    200,
                    format!(
                        r##"{{"value":[{{"@odata.type":"#microsoft.graph.message","id":"AAMkItem1","@removed":{{"reason":"deleted"}}}}],"@odata.deltaLink":"{b}/v1.0/users/{user}/mailFolders('inbox')/messages/delta?$deltatoken=d2"}}"##
                    ),
                )
            } else if r.query.contains("skiptoken=s1") {
                Canned::json(
                    200,
                    format!(
                        r##"{{"value":[{{"@odata.type":"#microsoft.graph.message","id":"AAMkItem3"}}],"@odata.deltaLink":"{b}/v1.0/users/{user}/mailFolders('inbox')/messages/delta?$deltatoken=d1"}}"##
                    ),
                )
            } else {
                Canned::json(
                    200,
                    format!(
                        r##"{{"value":[{{"@odata.type":"#microsoft.graph.message","id":"AAMkItem1"}},{{"@odata.type":"#microsoft.graph.message","id":"AAMkItem2"}}],"@odata.nextLink":"{b}/v1.0/users/{user}/mailFolders('inbox')/messages/delta?$skiptoken=s1"}}"##
                    ),
                )
            }
        }
        ("GET", ["messages", id, "$value"]) => {
            if INBOX_IDS.contains(id) {
                Canned::new(200, String::from_utf8_lossy(MIME).into_owned())
                    .header("content-type", "text/plain")
            } else {
                graph_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                )
            }
        }
        ("POST", ["messages"]) => Canned::json(
            201,
            r#"{"id":"AAMkDraft1","subject":"exgate write probe","isDraft":true}"#,
        ),
        ("DELETE", ["messages", "AAMkDraft1"]) => Canned::new(204, ""),
        ("POST", ["sendMail"]) => Canned::new(202, ""),
        _ => graph_error(400, "BadRequest", "Resource not found for the segment."),
    }
}
