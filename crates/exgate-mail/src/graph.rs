//! The Microsoft Graph mail client (`/v1.0`).
//!
//! Covers `users/{id|upn}`, `mailFolders`, `mailFolders/{id}/messages` with `$top`/`$select`
//! and `@odata.nextLink` paging, `messages/delta` with `@odata.deltaLink`, message `$value`
//! (MIME), `sendMail`, and draft create/delete for a write probe. Paging links are treated as
//! opaque, but they must point at the configured Graph origin: the bearer token is never sent
//! to another host.

use std::sync::Arc;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::credentials::{Credentials, Protocol, Target};
use crate::error::MailError;
use crate::evidence::{ErrorEvidence, ErrorKind, GraphError};
use crate::http::{Answer, HttpClient, Prepared, kind_for_status};

/// The public Graph base URL.
pub const DEFAULT_GRAPH_BASE: &str = "https://graph.microsoft.com/v1.0";

/// Characters escaped in a path segment (a UPN keeps `@`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// Most pages followed by one listing call before giving up (a server that never ends paging).
const MAX_PAGES: usize = 1000;

/// A Graph user (`GET /users/{id|upn}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphUser {
    /// Object id.
    pub id: String,
    /// UPN.
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// Primary SMTP address.
    #[serde(default)]
    pub mail: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A mail folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphFolder {
    /// Folder id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Parent folder id.
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    /// Number of child folders.
    #[serde(default)]
    pub child_folder_count: Option<u64>,
    /// Unread items.
    #[serde(default)]
    pub unread_item_count: Option<u64>,
    /// All items.
    #[serde(default)]
    pub total_item_count: Option<u64>,
}

/// A message as listed (only the fields the mailbox interface needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphMessage {
    /// Message id.
    pub id: String,
    /// Subject, when selected.
    #[serde(default)]
    pub subject: Option<String>,
    /// Received time, when selected.
    #[serde(default)]
    pub received_date_time: Option<String>,
    /// Deletion marker in delta answers (`{"reason":"deleted"}`).
    #[serde(default, rename = "@removed")]
    pub removed: Option<serde_json::Value>,
}

/// One page of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphPage<T> {
    /// The items.
    pub value: Vec<T>,
    /// `@odata.nextLink`: the next page (opaque).
    pub next_link: Option<String>,
    /// `@odata.deltaLink`: the state for the next delta round (last page only).
    pub delta_link: Option<String>,
}

#[derive(Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

/// A Graph endpoint with credentials.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: HttpClient,
    base: Url,
    credentials: Arc<dyn Credentials>,
}

const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");

fn request_id() -> String {
    let v = fastrand::u128(..);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

impl GraphClient {
    /// A client for `base` (default [`DEFAULT_GRAPH_BASE`]; the emulator's in tests).
    pub fn new(
        http: HttpClient,
        base: &str,
        credentials: Arc<dyn Credentials>,
    ) -> Result<Self, MailError> {
        let mut base = Url::parse(base).map_err(|e| {
            MailError::config(format!(
                "Graph base URL {base:?} is not a URL ({e}); use e.g. {DEFAULT_GRAPH_BASE}"
            ))
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(MailError::config(format!(
                "Graph base URL {base} must be an http(s) URL"
            )));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(GraphClient {
            http,
            base,
            credentials,
        })
    }

    /// The base URL (with a trailing slash).
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, MailError> {
        let path: Vec<String> = segments
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        let mut u = self
            .base
            .join(&path.join("/"))
            .map_err(|e| MailError::config(format!("cannot build a Graph URL: {e}")))?;
        if !query.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(u)
    }

    fn link(&self, link: &str) -> Result<Url, MailError> {
        let u = Url::parse(link)
            .map_err(|e| MailError::config(format!("paging link {link:?} is not a URL: {e}")))?;
        if u.origin() != self.base.origin() {
            return Err(MailError::config(format!(
                "paging link {u} points outside the Graph endpoint {}; refusing to send credentials there",
                self.base.origin().ascii_serialization()
            )));
        }
        Ok(u)
    }

    async fn send(
        &self,
        operation: &str,
        method: Method,
        url: Url,
        mailbox: &str,
        body: Option<Vec<u8>>,
        extra: &[(HeaderName, String)],
    ) -> Result<Answer, MailError> {
        let mut headers = vec![(ACCEPT, "application/json".to_owned())];
        if body.is_some() && !extra.iter().any(|(k, _)| k == CONTENT_TYPE) {
            headers.push((CONTENT_TYPE, "application/json".to_owned()));
        }
        headers.extend(extra.iter().cloned());
        let mut req = Prepared {
            method,
            url,
            headers,
            body,
            target: Target {
                protocol: Protocol::Graph,
                origin: self.base.origin().ascii_serialization(),
                mailbox: Some(mailbox.to_owned()),
            },
            operation: operation.to_owned(),
        };
        self.http
            .with_retry(|| {
                // A fresh client-request-id per attempt, as Graph's guidance suggests.
                req.headers.retain(|(k, _)| k != CLIENT_REQUEST_ID);
                req.headers.push((CLIENT_REQUEST_ID, request_id()));
                let req = req.clone();
                async move {
                    let a = self.http.send_once(&req, self.credentials.as_ref()).await?;
                    if a.status.is_success() {
                        return Ok(a);
                    }
                    let mut ev = HttpClient::answer_evidence(&req, self.credentials.as_ref(), &a);
                    ev.graph_error = GraphError::parse(&a.body);
                    let mut kind = kind_for_status(a.status.as_u16());
                    if kind == ErrorKind::Http && ev.graph_error.is_some() {
                        kind = ErrorKind::Graph;
                    }
                    Err(MailError::from_evidence(kind, ev))
                }
            })
            .await
    }

    fn decode<T: DeserializeOwned>(&self, operation: &str, a: &Answer) -> Result<T, MailError> {
        serde_json::from_slice(&a.body).map_err(|e| {
            let mut ev = ErrorEvidence {
                protocol: Some(Protocol::Graph),
                operation: Some(operation.to_owned()),
                status: Some(a.status.as_u16()),
                ..ErrorEvidence::default()
            };
            ev.set_headers(&a.headers);
            ev.set_body(&a.body);
            MailError::with_message(
                ErrorKind::InvalidResponse,
                format!(
                    "{operation}: the answer is not the expected JSON (line {}, column {}: {e})",
                    e.line(),
                    e.column()
                ),
                ev,
            )
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        operation: &str,
        url: Url,
        mailbox: &str,
    ) -> Result<T, MailError> {
        let a = self
            .send(operation, Method::GET, url, mailbox, None, &[])
            .await?;
        self.decode(operation, &a)
    }

    /// `GET /users/{id|upn}`: resolves the mailbox owner.
    pub async fn user(&self, user: &str) -> Result<GraphUser, MailError> {
        let url = self.url(
            &["users", user],
            &[("$select", "id,userPrincipalName,mail,displayName".into())],
        )?;
        self.get("GET /users/{id}", url, user).await
    }

    /// `GET /users/{id}/mailFolders/{id|wellKnownName}`.
    pub async fn mail_folder(&self, user: &str, folder: &str) -> Result<GraphFolder, MailError> {
        let url = self.url(&["users", user, "mailFolders", folder], &[])?;
        self.get("GET /users/{id}/mailFolders/{id}", url, user)
            .await
    }

    /// `GET /users/{id}/mailFolders` (top level), following every `@odata.nextLink`.
    pub async fn mail_folders(&self, user: &str) -> Result<Vec<GraphFolder>, MailError> {
        let mut url = self.url(&["users", user, "mailFolders"], &[("$top", "100".into())])?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: RawPage<GraphFolder> =
                self.get("GET /users/{id}/mailFolders", url, user).await?;
            out.extend(page.value);
            match page.next_link {
                Some(next) => url = self.link(&next)?,
                None => return Ok(out),
            }
        }
        Err(MailError::config(format!(
            "mailFolders of {user} did not end after {MAX_PAGES} pages; the server keeps sending @odata.nextLink"
        )))
    }

    /// One page of `GET /users/{id}/mailFolders/{folder}/messages`; pass the previous page's
    /// `next_link` to continue.
    pub async fn messages_page(
        &self,
        user: &str,
        folder: &str,
        top: u32,
        select: &[&str],
        next_link: Option<&str>,
    ) -> Result<GraphPage<GraphMessage>, MailError> {
        let url = match next_link {
            Some(l) => self.link(l)?,
            None => {
                let mut q = vec![("$top", top.clamp(1, 1000).to_string())];
                if !select.is_empty() {
                    q.push(("$select", select.join(",")));
                }
                self.url(&["users", user, "mailFolders", folder, "messages"], &q)?
            }
        };
        let p: RawPage<GraphMessage> = self
            .get("GET /users/{id}/mailFolders/{id}/messages", url, user)
            .await?;
        Ok(GraphPage {
            value: p.value,
            next_link: p.next_link,
            delta_link: p.delta_link,
        })
    }

    /// One page of `messages/delta`. Start with `link = None`, follow `next_link` until a page
    /// carries `delta_link`, store that, and pass it next round. An expired state answers 410
    /// (`syncStateNotFound` / `resyncRequired`).
    pub async fn delta_page(
        &self,
        user: &str,
        folder: &str,
        link: Option<&str>,
        page_size: u32,
    ) -> Result<GraphPage<GraphMessage>, MailError> {
        let url = match link {
            Some(l) => self.link(l)?,
            None => self.url(
                &["users", user, "mailFolders", folder, "messages", "delta"],
                &[("$select", "id,receivedDateTime".into())],
            )?,
        };
        let prefer = (
            HeaderName::from_static("prefer"),
            format!("odata.maxpagesize={}", page_size.clamp(1, 1000)),
        );
        let a = self
            .send(
                "GET /users/{id}/mailFolders/{id}/messages/delta",
                Method::GET,
                url,
                user,
                None,
                &[prefer],
            )
            .await?;
        let p: RawPage<GraphMessage> = self.decode("messages/delta", &a)?;
        Ok(GraphPage {
            value: p.value,
            next_link: p.next_link,
            delta_link: p.delta_link,
        })
    }

    /// `GET /users/{id}/messages/{id}/$value`: the MIME content.
    pub async fn message_mime(&self, user: &str, id: &str) -> Result<Vec<u8>, MailError> {
        let url = self.url(&["users", user, "messages", id, "$value"], &[])?;
        let a = self
            .send(
                "GET /users/{id}/messages/{id}/$value",
                Method::GET,
                url,
                user,
                None,
                &[],
            )
            .await?;
        Ok(a.body)
    }

    /// `POST /users/{id}/sendMail` with a Graph `message` object.
    pub async fn send_mail(
        &self,
        user: &str,
        message: serde_json::Value,
        save_to_sent_items: bool,
    ) -> Result<(), MailError> {
        let url = self.url(&["users", user, "sendMail"], &[])?;
        let body = serde_json::json!({"message": message, "saveToSentItems": save_to_sent_items});
        self.send(
            "POST /users/{id}/sendMail",
            Method::POST,
            url,
            user,
            Some(body.to_string().into_bytes()),
            &[],
        )
        .await
        .map(|_| ())
    }

    /// `POST /users/{id}/sendMail` with the message as MIME: its base64 in a `text/plain` body,
    /// as Graph documents for sending MIME (recipients are read from the message's `To`, `Cc`
    /// and `Bcc`; the app needs `Mail.Send`).
    pub async fn send_mime(&self, user: &str, mime: &[u8]) -> Result<(), MailError> {
        use base64::Engine as _;
        let url = self.url(&["users", user, "sendMail"], &[])?;
        let body = base64::engine::general_purpose::STANDARD
            .encode(mime)
            .into_bytes();
        self.send(
            "POST /users/{id}/sendMail (MIME)",
            Method::POST,
            url,
            user,
            Some(body),
            &[(CONTENT_TYPE, "text/plain".to_owned())],
        )
        .await
        .map(|_| ())
    }

    /// `POST /users/{id}/messages`: creates a draft; returns its id.
    pub async fn create_draft(
        &self,
        user: &str,
        subject: &str,
        text: &str,
    ) -> Result<String, MailError> {
        let url = self.url(&["users", user, "messages"], &[])?;
        let body = serde_json::json!({"subject": subject, "body": {"contentType": "text", "content": text}});
        let a = self
            .send(
                "POST /users/{id}/messages",
                Method::POST,
                url,
                user,
                Some(body.to_string().into_bytes()),
                &[],
            )
            .await?;
        let m: GraphMessage = self.decode("POST /users/{id}/messages", &a)?;
        Ok(m.id)
    }

    /// `POST /users/{id}/messages/{id}/permanentDelete`: removes the message at once (to the
    /// purges folder of the dumpster), where `DELETE` leaves it in Deleted Items. Served by the
    /// global cloud only.
    pub async fn permanent_delete_message(&self, user: &str, id: &str) -> Result<(), MailError> {
        let url = self.url(&["users", user, "messages", id, "permanentDelete"], &[])?;
        self.send(
            "POST /users/{id}/messages/{id}/permanentDelete",
            Method::POST,
            url,
            user,
            None,
            &[],
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /users/{id}/messages/{id}`: moves the message to Deleted Items (deleting it there
    /// removes it).
    pub async fn delete_message(&self, user: &str, id: &str) -> Result<(), MailError> {
        let url = self.url(&["users", user, "messages", id], &[])?;
        self.send(
            "DELETE /users/{id}/messages/{id}",
            Method::DELETE,
            url,
            user,
            None,
            &[],
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn client() -> GraphClient {
        GraphClient::new(
            HttpClient::new().unwrap(),
            DEFAULT_GRAPH_BASE,
            Arc::new(crate::credentials::Anonymous),
        )
        .unwrap()
    }

    #[test]
    fn builds_urls_with_encoded_segments() {
        let c = client();
        let u = c
            .url(
                &["users", "a b@x.com", "mailFolders", "in/box"],
                &[("$top", "5".into())],
            )
            .unwrap();
        assert_eq!(
            u.as_str(),
            "https://graph.microsoft.com/v1.0/users/a%20b@x.com/mailFolders/in%2Fbox?%24top=5"
        );
    }

    #[test]
    fn refuses_paging_links_to_other_hosts() {
        let c = client();
        assert!(
            c.link("https://graph.microsoft.com/v1.0/users/x/messages?$skip=10")
                .is_ok()
        );
        let e = c
            .link("https://evil.example/v1.0/users/x/messages")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(c.link("not a url").is_err());
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }

    proptest! {
        #[test]
        fn page_parser_never_panics(s in ".{0,200}") {
            let _ = serde_json::from_str::<RawPage<GraphMessage>>(&s);
        }

        #[test]
        fn page_round_trips(ids in proptest::collection::vec("[A-Za-z0-9=+/-]{1,30}", 0..10), next in proptest::option::of("[a-z]{1,10}")) {
            let value: Vec<_> = ids.iter().map(|i| serde_json::json!({"id": i})).collect();
            let mut doc = serde_json::json!({"value": value});
            if let Some(n) = &next {
                doc["@odata.nextLink"] = serde_json::json!(n);
            }
            let p: RawPage<GraphMessage> = serde_json::from_value(doc).unwrap();
            prop_assert_eq!(p.value.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
            prop_assert_eq!(p.next_link, next);
        }
    }
}
