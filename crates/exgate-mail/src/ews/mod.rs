//! The EWS client (`POST /EWS/Exchange.asmx`).
//!
//! Requests mirror what real Exchange clients send: SOAP 1.1, `Content-Type: text/xml;
//! charset=utf-8`, no `SOAPAction`, `RequestServerVersion` in every header, and for
//! impersonation both the `ExchangeImpersonation` SOAP header and the `X-AnchorMailbox` HTTP
//! header naming the target mailbox. Faults (HTTP 500), per-item errors and HTTP failures
//! become [`MailError`]s with the parsed fault, response message and headers as evidence.

pub mod envelope;
pub mod ops;
pub mod response;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderName};
use url::Url;

use crate::credentials::{Credentials, Protocol, Target};
use crate::error::MailError;
use crate::evidence::{ErrorKind, ServerVersionInfo};
use crate::http::{Answer, HttpClient, Prepared, kind_for_status};
use crate::xml::Element;

pub use envelope::{ConnectingSid, DEFAULT_SERVER_VERSION};
pub use ops::{Folder, FolderRef, HierarchySync, ItemId, ItemSync, Paging, Resolution, Traversal};
pub use response::ResponseMessage;

/// Per-call mailbox context.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions<'a> {
    /// `ExchangeImpersonation/ConnectingSID` (app-only tokens must send it).
    pub impersonation: Option<&'a ConnectingSid>,
    /// `X-AnchorMailbox`; when absent, the impersonated SMTP address or UPN is used.
    pub anchor: Option<&'a str>,
}

impl<'a> CallOptions<'a> {
    fn anchor(&self) -> Option<&'a str> {
        self.anchor.or(match self.impersonation {
            Some(ConnectingSid::Sid(_)) | None => None,
            Some(other) => Some(other.value()),
        })
    }
}

/// A successful EWS answer.
#[derive(Debug, Clone)]
pub struct EwsReply {
    /// `ServerVersionInfo` from the SOAP header.
    pub server_version: Option<ServerVersionInfo>,
    /// The operation response element (`m:GetFolderResponse`, ...).
    pub response: Element,
    /// Its response messages, in request order.
    pub messages: Vec<ResponseMessage>,
}

/// An EWS endpoint with credentials.
#[derive(Debug, Clone)]
pub struct EwsClient {
    http: HttpClient,
    url: Url,
    credentials: Arc<dyn Credentials>,
    version: Arc<Mutex<String>>,
    negotiate: bool,
    time_zone: Option<String>,
}

/// Schema versions tried in turn when a server rejects a newer one (newest first).
pub const SERVER_VERSIONS: &[&str] = &[
    "Exchange2016",
    "Exchange2015",
    "Exchange2013_SP1",
    "Exchange2013",
    "Exchange2010_SP2",
    "Exchange2010_SP1",
    "Exchange2010",
    "Exchange2007_SP1",
];

fn older_version(current: &str) -> Option<&'static str> {
    let i = SERVER_VERSIONS.iter().position(|v| *v == current)?;
    SERVER_VERSIONS.get(i + 1).copied()
}

fn is_version_rejection(e: &MailError) -> bool {
    const CODES: &[&str] = &[
        "ErrorInvalidServerVersion",
        "ErrorInvalidSchemaVersionForMailboxVersion",
        "ErrorIncorrectSchemaVersion",
    ];
    let ev = e.evidence();
    ev.service_code().is_some_and(|c| CODES.contains(&c))
        || (ev.status == Some(500)
            && ev
                .body_excerpt
                .as_deref()
                .is_some_and(|b| b.contains("The specified server version is invalid")))
}

/// The body as text. Valid UTF-8 (every real answer) is borrowed after the fast check; only
/// invalid bytes pay for the lossy copy, with the same result as `String::from_utf8_lossy`.
fn body_text(body: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(body) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    }
}

const X_ANCHOR_MAILBOX: HeaderName = HeaderName::from_static("x-anchormailbox");

impl EwsClient {
    /// A client for `url` (e.g. `https://outlook.office365.com/EWS/Exchange.asmx`).
    pub fn new(http: HttpClient, url: Url, credentials: Arc<dyn Credentials>) -> Self {
        EwsClient {
            http,
            url,
            credentials,
            version: Arc::new(Mutex::new(DEFAULT_SERVER_VERSION.to_owned())),
            negotiate: true,
            time_zone: None,
        }
    }

    /// Sends this `RequestServerVersion` instead of `Exchange2016`.
    pub fn with_server_version(mut self, version: impl Into<String>) -> Self {
        self.version = Arc::new(Mutex::new(version.into()));
        self
    }

    /// Whether to fall back to older `RequestServerVersion`s when the server rejects the
    /// current one (default on). The version that works is kept for later calls.
    pub fn with_version_negotiation(mut self, on: bool) -> Self {
        self.negotiate = on;
        self
    }

    /// Adds `TimeZoneContext` with this Windows time-zone id (e.g. `UTC`).
    pub fn with_time_zone(mut self, tz: impl Into<String>) -> Self {
        self.time_zone = Some(tz.into());
        self
    }

    /// The endpoint URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends one operation (retrying per policy) and returns the parsed answer. Per-item errors
    /// are left in [`EwsReply::messages`].
    pub async fn call(
        &self,
        operation: &str,
        body: &str,
        opts: &CallOptions<'_>,
    ) -> Result<EwsReply, MailError> {
        self.run(operation, body, opts, |_, _, server_version, el| {
            Ok(EwsReply {
                server_version,
                messages: response::response_messages(&el),
                response: el,
            })
        })
        .await
    }

    /// Sends one operation and requires its first response message to succeed. A failing
    /// message becomes an [`ErrorKind::EwsResponse`] error (retried when transient, e.g.
    /// `ErrorServerBusy` with `BackOffMilliseconds`).
    pub async fn call_one(
        &self,
        operation: &str,
        body: &str,
        opts: &CallOptions<'_>,
    ) -> Result<(ResponseMessage, EwsReply), MailError> {
        let (first, reply) = self
            .run(operation, body, opts, |req, a, server_version, el| {
                let reply = EwsReply {
                    server_version,
                    messages: response::response_messages(&el),
                    response: el,
                };
                let first = reply.messages.first().cloned();
                match first {
                    Some(m) if !m.is_success() => {
                        Err(self.failed_message(req, a, reply.server_version.clone(), &m))
                    }
                    first => Ok((first, reply)),
                }
            })
            .await?;
        match first {
            Some(first) => Ok((first, reply)),
            None => Err(self.invalid(operation, "the answer holds no ResponseMessage")),
        }
    }

    /// [`EwsClient::call_one`] for callers that need only the first response message and the
    /// `ServerVersionInfo`: the message is moved out of the parsed answer, nothing is copied.
    pub(crate) async fn call_first(
        &self,
        operation: &str,
        body: &str,
        opts: &CallOptions<'_>,
    ) -> Result<(ResponseMessage, Option<ServerVersionInfo>), MailError> {
        match self.first_message(operation, body, opts, true).await? {
            (Some(first), server_version) => Ok((first, server_version)),
            (None, _) => Err(self.invalid(operation, "the answer holds no ResponseMessage")),
        }
    }

    /// The first response message (when there is one) and the `ServerVersionInfo`; with
    /// `require_success`, a failing message is an error as in [`EwsClient::call_one`].
    async fn first_message(
        &self,
        operation: &str,
        body: &str,
        opts: &CallOptions<'_>,
        require_success: bool,
    ) -> Result<(Option<ResponseMessage>, Option<ServerVersionInfo>), MailError> {
        self.run(operation, body, opts, |req, a, server_version, el| {
            match response::first_response_message(el) {
                Some(m) if require_success && !m.is_success() => {
                    Err(self.failed_message(req, a, server_version, &m))
                }
                first => Ok((first, server_version)),
            }
        })
        .await
    }

    /// The `RequestServerVersion` in use (after any negotiation).
    pub fn server_version(&self) -> String {
        match self.version.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sends with the current version; when the server rejects the schema version
    /// (`ErrorInvalidServerVersion`, `ErrorInvalidSchemaVersionForMailboxVersion`, as Exchange
    /// 2013 does for `Exchange2016`) and negotiation is on, retries with the next older version
    /// and remembers the one that worked, as exchangelib does.
    ///
    /// `finish` turns a successful SOAP answer (its `ServerVersionInfo` and operation response
    /// element) into the result; it may still fail (a failing response message), with the answer
    /// at hand for evidence. Its errors are retried like any other.
    async fn run<T, F>(
        &self,
        operation: &str,
        body: &str,
        opts: &CallOptions<'_>,
        finish: F,
    ) -> Result<T, MailError>
    where
        F: Fn(&Prepared, &Answer, Option<ServerVersionInfo>, Element) -> Result<T, MailError>,
    {
        let mut version = self.server_version();
        loop {
            let req = self.prepare(operation, body, opts, &version);
            let result = self.http.with_retry(|| self.attempt(&req, &finish)).await;
            match result {
                Err(e) if self.negotiate && is_version_rejection(&e) => {
                    let Some(older) = older_version(&version) else {
                        return Err(e);
                    };
                    tracing::debug!(from = %version, to = older, "server rejected the schema version");
                    version = older.to_owned();
                }
                Err(e) => return Err(e),
                Ok(ok) => {
                    if let Ok(mut v) = self.version.lock() {
                        v.clone_from(&version);
                    }
                    return Ok(ok);
                }
            }
        }
    }

    async fn attempt<T, F>(&self, req: &Prepared, finish: &F) -> Result<T, MailError>
    where
        F: Fn(&Prepared, &Answer, Option<ServerVersionInfo>, Element) -> Result<T, MailError>,
    {
        let a = self.http.send_once(req, self.credentials.as_ref()).await?;
        let (server_version, el) = self.interpret(req, &a)?;
        finish(req, &a, server_version, el)
    }

    /// The error for a response message that is not a success. Evidence is only built here,
    /// on the failure path.
    fn failed_message(
        &self,
        req: &Prepared,
        a: &Answer,
        server_version: Option<ServerVersionInfo>,
        message: &ResponseMessage,
    ) -> MailError {
        let mut ev = HttpClient::answer_evidence(req, self.credentials.as_ref(), a);
        ev.server_version = server_version;
        ev.ews_response = Some(message.to_error());
        let kind = match message.code.as_str() {
            "ErrorServerBusy" => ErrorKind::Throttled,
            "ErrorAccessDenied" => ErrorKind::Forbidden,
            _ => ErrorKind::EwsResponse,
        };
        MailError::from_evidence(kind, ev)
    }

    fn prepare(
        &self,
        operation: &str,
        body: &str,
        opts: &CallOptions<'_>,
        version: &str,
    ) -> Prepared {
        let header = envelope::Header {
            version,
            impersonation: opts.impersonation,
            time_zone: self.time_zone.as_deref(),
        };
        let xml = envelope::envelope(&header, body);
        let anchor = opts.anchor();
        let mut headers = vec![(CONTENT_TYPE, "text/xml; charset=utf-8".to_owned())];
        if let Some(a) = anchor {
            headers.push((X_ANCHOR_MAILBOX, a.to_owned()));
        }
        Prepared {
            method: Method::POST,
            url: self.url.clone(),
            headers,
            body: Some(xml.into_bytes()),
            target: Target {
                protocol: Protocol::Ews,
                origin: self.url.origin().ascii_serialization(),
                mailbox: anchor.map(str::to_owned),
            },
            operation: operation.to_owned(),
        }
    }

    /// Reads an answer: a 200 with a SOAP response gives the `ServerVersionInfo` and the
    /// operation response element; anything else is an error with the answer as evidence.
    fn interpret(
        &self,
        req: &Prepared,
        a: &Answer,
    ) -> Result<(Option<ServerVersionInfo>, Element), MailError> {
        use response::{SoapBody, SoapResponse};
        let status = a.status.as_u16();
        let text = body_text(&a.body);
        // Evidence is built on failure only: a successful answer never needs it.
        let evidence = |server_version: Option<ServerVersionInfo>| {
            let mut ev = HttpClient::answer_evidence(req, self.credentials.as_ref(), a);
            ev.server_version = server_version;
            ev
        };
        match response::parse_response(&text) {
            Ok(SoapResponse {
                body: SoapBody::Fault(f),
                server_version,
            }) => {
                let kind = match (status, f.response_code.as_deref()) {
                    (401, _) => ErrorKind::Unauthorized,
                    (403, _) => ErrorKind::Forbidden,
                    (_, Some("ErrorServerBusy")) => ErrorKind::Throttled,
                    _ => ErrorKind::SoapFault,
                };
                let mut ev = evidence(server_version);
                ev.soap_fault = Some(f);
                Err(MailError::from_evidence(kind, ev))
            }
            Ok(SoapResponse {
                body: SoapBody::Response(el),
                server_version,
            }) if status == 200 => Ok((server_version, el)),
            Ok(SoapResponse { server_version, .. }) => Err(MailError::from_evidence(
                kind_for_status(status),
                evidence(server_version),
            )),
            Err(e) if status == 200 => Err(MailError::with_message(
                ErrorKind::InvalidResponse,
                format!("{}: the answer is not a SOAP envelope ({e})", req.operation),
                evidence(None),
            )),
            Err(_) => Err(MailError::from_evidence(
                kind_for_status(status),
                evidence(None),
            )),
        }
    }

    /// GetFolder for one folder.
    pub async fn get_folder(
        &self,
        folder: &FolderRef,
        opts: &CallOptions<'_>,
    ) -> Result<Folder, MailError> {
        let (m, _) = self
            .call_first(
                "GetFolder",
                &ops::get_folder(std::slice::from_ref(folder)),
                opts,
            )
            .await?;
        ops::read_get_folder(&m.element)
            .into_iter()
            .next()
            .ok_or_else(|| self.invalid("GetFolder", "the answer holds no folder"))
    }

    /// FindFolder: one page of subfolders.
    pub async fn find_folder(
        &self,
        parent: &FolderRef,
        traversal: Traversal,
        offset: u32,
        max: u32,
        opts: &CallOptions<'_>,
    ) -> Result<(Vec<Folder>, Paging), MailError> {
        let (m, _) = self
            .call_first(
                "FindFolder",
                &ops::find_folder(parent, traversal, offset, max),
                opts,
            )
            .await?;
        Ok(ops::read_find_folder(&m.element))
    }

    /// FindItem: one page of item ids, newest first.
    pub async fn find_item(
        &self,
        parent: &FolderRef,
        offset: u32,
        max: u32,
        opts: &CallOptions<'_>,
    ) -> Result<(Vec<ItemId>, Paging), MailError> {
        let (m, _) = self
            .call_first("FindItem", &ops::find_item(parent, offset, max), opts)
            .await?;
        Ok(ops::read_find_item(&m.element))
    }

    /// GetItem with MIME content; returns the decoded RFC 5322 bytes.
    pub async fn get_item_mime(
        &self,
        id: &ItemId,
        opts: &CallOptions<'_>,
    ) -> Result<Vec<u8>, MailError> {
        let (m, _) = self
            .call_first(
                "GetItem",
                &ops::get_item_mime(std::slice::from_ref(id)),
                opts,
            )
            .await?;
        ops::read_get_item_mime(&m.element).map_err(|why| self.invalid("GetItem", why))
    }

    /// SyncFolderHierarchy from `state` (none = initial sync).
    pub async fn sync_folder_hierarchy(
        &self,
        state: Option<&str>,
        opts: &CallOptions<'_>,
    ) -> Result<HierarchySync, MailError> {
        let (m, _) = self
            .call_first(
                "SyncFolderHierarchy",
                &ops::sync_folder_hierarchy(state),
                opts,
            )
            .await?;
        Ok(ops::read_sync_folder_hierarchy(&m.element))
    }

    /// SyncFolderItems from `state` (none = initial sync). An invalid state gives an
    /// `ErrorInvalidSyncStateData` error.
    pub async fn sync_folder_items(
        &self,
        folder: &FolderRef,
        state: Option<&str>,
        max: u32,
        opts: &CallOptions<'_>,
    ) -> Result<ItemSync, MailError> {
        let (m, _) = self
            .call_first(
                "SyncFolderItems",
                &ops::sync_folder_items(folder, state, max),
                opts,
            )
            .await?;
        Ok(ops::read_sync_folder_items(&m.element))
    }

    /// CreateItem: saves a plain-text message in `folder` and returns its id.
    pub async fn create_item(
        &self,
        folder: &FolderRef,
        subject: &str,
        body: &str,
        opts: &CallOptions<'_>,
    ) -> Result<ItemId, MailError> {
        let (m, _) = self
            .call_first("CreateItem", &ops::create_item(folder, subject, body), opts)
            .await?;
        ops::read_create_item(&m.element)
            .into_iter()
            .next()
            .ok_or_else(|| self.invalid("CreateItem", "the answer holds no item id"))
    }

    /// DeleteItem (hard delete).
    pub async fn delete_item(&self, id: &ItemId, opts: &CallOptions<'_>) -> Result<(), MailError> {
        self.call_first(
            "DeleteItem",
            &ops::delete_item(std::slice::from_ref(id)),
            opts,
        )
        .await
        .map(|_| ())
    }

    /// ConvertId; returns the converted id.
    pub async fn convert_id(
        &self,
        id: &str,
        format: &str,
        mailbox: &str,
        destination: &str,
        opts: &CallOptions<'_>,
    ) -> Result<String, MailError> {
        let (m, _) = self
            .call_first(
                "ConvertId",
                &ops::convert_id(id, format, mailbox, destination),
                opts,
            )
            .await?;
        ops::read_convert_id(&m.element)
            .ok_or_else(|| self.invalid("ConvertId", "the answer holds no AlternateId"))
    }

    /// exchangelib's version probe: ConvertId of a dummy id. A per-item error is expected;
    /// what matters is the `ServerVersionInfo` header, which is returned.
    pub async fn probe_version(
        &self,
        opts: &CallOptions<'_>,
    ) -> Result<Option<ServerVersionInfo>, MailError> {
        let (_, server_version) = self
            .first_message(
                "ConvertId",
                &ops::convert_id("DUMMY", "EwsId", "DUMMY", "EntryId"),
                opts,
                false,
            )
            .await?;
        Ok(server_version)
    }

    /// ResolveNames; several matches (`ErrorNameResolutionMultipleResults`, class `Warning`)
    /// are returned, no match gives an `ErrorNameResolutionNoResults` error.
    pub async fn resolve_names(
        &self,
        entry: &str,
        opts: &CallOptions<'_>,
    ) -> Result<Vec<Resolution>, MailError> {
        let (first, server_version) = self
            .first_message("ResolveNames", &ops::resolve_names(entry), opts, false)
            .await?;
        let Some(first) = first else {
            return Err(self.invalid("ResolveNames", "the answer holds no ResponseMessage"));
        };
        if first.class == "Error" {
            let mut ev = crate::evidence::ErrorEvidence {
                protocol: Some(Protocol::Ews),
                operation: Some("ResolveNames".into()),
                method: Some("POST".into()),
                url: Some(self.url.to_string()),
                status: Some(200),
                auth_mode: Some(self.credentials.mode().into()),
                server_version,
                ..Default::default()
            };
            ev.ews_response = Some(first.to_error());
            return Err(MailError::from_evidence(ErrorKind::EwsResponse, ev));
        }
        Ok(ops::read_resolve_names(&first.element))
    }

    fn invalid(&self, operation: &str, why: &str) -> MailError {
        let ev = crate::evidence::ErrorEvidence {
            protocol: Some(Protocol::Ews),
            operation: Some(operation.into()),
            method: Some("POST".into()),
            url: Some(self.url.to_string()),
            ..Default::default()
        };
        MailError::with_message(
            ErrorKind::InvalidResponse,
            format!("{operation}: {why}"),
            ev,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn body_text_borrows_valid_utf8_and_replaces_invalid_bytes() {
        assert!(matches!(
            body_text("<a>é</a>".as_bytes()),
            Cow::Borrowed("<a>é</a>")
        ));
        assert_eq!(body_text(b"<a>\xff</a>"), "<a>\u{fffd}</a>");
    }

    proptest! {
        #[test]
        fn body_text_is_from_utf8_lossy(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(body_text(&bytes), String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn body_text_is_from_utf8_lossy_on_text(s in ".{0,200}", cut in 0usize..200) {
            let mut bytes = s.into_bytes();
            bytes.truncate(cut);
            prop_assert_eq!(body_text(&bytes), String::from_utf8_lossy(&bytes));
        }
    }
}
