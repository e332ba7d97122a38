//! [`Mailbox`]: the one interface the rest of exgate uses, with Graph and EWS behind it.
//!
//! The trait is object-safe (boxed futures), so callers hold a `Box<dyn Mailbox>` chosen per
//! endpoint by [`open_mailbox`]. Cursors and sync states are opaque, serialisable values that
//! remember which protocol produced them; passing one to the other protocol is a
//! configuration error, never a silent restart.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::credentials::{BoxFuture, Credentials, Protocol};
use crate::error::MailError;
use crate::ews::{CallOptions, ConnectingSid, EwsClient, FolderRef, ItemId, Traversal};
use crate::graph::GraphClient;
use crate::http::HttpClient;

/// What opening a mailbox established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxInfo {
    /// The protocol used.
    pub protocol: Protocol,
    /// The address asked for.
    pub address: String,
    /// Graph user id, or the EWS root folder id.
    pub id: String,
    /// Display name (Graph) or root folder name (EWS), when known.
    pub display_name: Option<String>,
    /// EWS `ServerVersionInfo` `major.minor.build.build`, when known.
    pub server_version: Option<String>,
}

/// A folder, protocol-neutral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderInfo {
    /// Folder id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Items in the folder.
    pub total: Option<u64>,
    /// Unread items.
    pub unread: Option<u64>,
    /// Child folders.
    pub children: Option<u64>,
}

/// Where the next page starts. Opaque; store and pass back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protocol", content = "value", rename_all = "lowercase")]
pub enum PageCursor {
    /// EWS `IndexedPagingOffset`.
    Ews(u32),
    /// Graph `@odata.nextLink`.
    Graph(String),
}

/// One page of message ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessagePage {
    /// Message ids (EWS item ids or Graph message ids), newest first.
    pub ids: Vec<String>,
    /// The next page, or `None` on the last one.
    pub next: Option<PageCursor>,
}

/// Incremental sync state. Opaque; store and pass back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protocol", content = "value", rename_all = "lowercase")]
pub enum SyncState {
    /// EWS `SyncState`.
    Ews(String),
    /// Graph `@odata.nextLink` (more pages in this round) or `@odata.deltaLink` (next round).
    Graph(String),
}

/// Changes since the last sync state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncBatch {
    /// New or changed message ids.
    pub changed: Vec<String>,
    /// Removed message ids.
    pub deleted: Vec<String>,
    /// The state to pass next time.
    pub state: SyncState,
    /// True when more changes are waiting (call again with `state` right away).
    pub more: bool,
}

/// A mailbox reachable over one protocol.
pub trait Mailbox: Send + Sync + std::fmt::Debug {
    /// The protocol behind this mailbox.
    fn protocol(&self) -> Protocol;
    /// The mailbox address.
    fn address(&self) -> &str;
    /// Resolves the mailbox (Graph `GET /users/{upn}`; EWS `GetFolder msgfolderroot` with
    /// impersonation).
    fn open(&self) -> BoxFuture<'_, Result<MailboxInfo, MailError>>;
    /// Top-level mail folders (Graph `mailFolders`; EWS FindFolder under `msgfolderroot`).
    fn list_folders(&self) -> BoxFuture<'_, Result<Vec<FolderInfo>, MailError>>;
    /// Items in the inbox.
    fn inbox_count(&self) -> BoxFuture<'_, Result<u64, MailError>>;
    /// One page of message ids of `folder` (a well-known name like `inbox` or a folder id).
    fn page_message_ids<'a>(
        &'a self,
        folder: &'a str,
        cursor: Option<&'a PageCursor>,
        page_size: u32,
    ) -> BoxFuture<'a, Result<MessagePage, MailError>>;
    /// The RFC 5322 (MIME) content of a message.
    fn fetch_mime<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Vec<u8>, MailError>>;
    /// Changes in `folder` since `state` (none = start from scratch).
    fn sync<'a>(
        &'a self,
        folder: &'a str,
        state: Option<&'a SyncState>,
    ) -> BoxFuture<'a, Result<SyncBatch, MailError>>;
    /// Write check: creates a draft in Drafts and deletes it again.
    fn write_probe(&self) -> BoxFuture<'_, Result<(), MailError>>;
}

/// How to reach a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailEndpoint {
    /// Microsoft Graph at this base URL (e.g. `https://graph.microsoft.com/v1.0`).
    Graph {
        /// Base URL.
        base: String,
    },
    /// EWS at this URL.
    Ews {
        /// `.../EWS/Exchange.asmx`.
        url: Url,
        /// `Some` to impersonate (app-only tokens), `None` to act as the signed-in user.
        impersonation: Option<ConnectingSid>,
        /// `RequestServerVersion`, default `Exchange2016`.
        server_version: Option<String>,
    },
}

/// Builds the mailbox for `address` behind `endpoint`.
pub fn open_mailbox(
    endpoint: &MailEndpoint,
    http: &HttpClient,
    credentials: Arc<dyn Credentials>,
    address: &str,
) -> Result<Box<dyn Mailbox>, MailError> {
    match endpoint {
        MailEndpoint::Graph { base } => Ok(Box::new(GraphMailbox::new(
            GraphClient::new(http.clone(), base, credentials)?,
            address,
        ))),
        MailEndpoint::Ews {
            url,
            impersonation,
            server_version,
        } => {
            let mut c = EwsClient::new(http.clone(), url.clone(), credentials);
            if let Some(v) = server_version {
                c = c.with_server_version(v.clone());
            }
            Ok(Box::new(EwsMailbox::new(c, address, impersonation.clone())))
        }
    }
}

fn wrong_state(expected: Protocol) -> MailError {
    MailError::config(format!(
        "the cursor or sync state was made by another protocol; start again without one for {expected:?}"
    ))
}

/// A mailbox over Microsoft Graph.
#[derive(Debug, Clone)]
pub struct GraphMailbox {
    client: GraphClient,
    address: String,
}

impl GraphMailbox {
    /// The mailbox `address` (UPN or user id) through `client`.
    pub fn new(client: GraphClient, address: &str) -> Self {
        GraphMailbox {
            client,
            address: address.to_owned(),
        }
    }
}

impl Mailbox for GraphMailbox {
    fn protocol(&self) -> Protocol {
        Protocol::Graph
    }

    fn address(&self) -> &str {
        &self.address
    }

    fn open(&self) -> BoxFuture<'_, Result<MailboxInfo, MailError>> {
        Box::pin(async move {
            let u = self.client.user(&self.address).await?;
            Ok(MailboxInfo {
                protocol: Protocol::Graph,
                address: self.address.clone(),
                id: u.id,
                display_name: u.display_name,
                server_version: None,
            })
        })
    }

    fn list_folders(&self) -> BoxFuture<'_, Result<Vec<FolderInfo>, MailError>> {
        Box::pin(async move {
            let folders = self.client.mail_folders(&self.address).await?;
            Ok(folders
                .into_iter()
                .map(|f| FolderInfo {
                    id: f.id,
                    name: f.display_name,
                    total: f.total_item_count,
                    unread: f.unread_item_count,
                    children: f.child_folder_count,
                })
                .collect())
        })
    }

    fn inbox_count(&self) -> BoxFuture<'_, Result<u64, MailError>> {
        Box::pin(async move {
            let f = self.client.mail_folder(&self.address, "inbox").await?;
            Ok(f.total_item_count.unwrap_or(0))
        })
    }

    fn page_message_ids<'a>(
        &'a self,
        folder: &'a str,
        cursor: Option<&'a PageCursor>,
        page_size: u32,
    ) -> BoxFuture<'a, Result<MessagePage, MailError>> {
        Box::pin(async move {
            let link = match cursor {
                None => None,
                Some(PageCursor::Graph(l)) => Some(l.as_str()),
                Some(PageCursor::Ews(_)) => return Err(wrong_state(Protocol::Graph)),
            };
            let p = self
                .client
                .messages_page(&self.address, folder, page_size, &["id"], link)
                .await?;
            Ok(MessagePage {
                ids: p.value.into_iter().map(|m| m.id).collect(),
                next: p.next_link.map(PageCursor::Graph),
            })
        })
    }

    fn fetch_mime<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Vec<u8>, MailError>> {
        Box::pin(self.client.message_mime(&self.address, id))
    }

    fn sync<'a>(
        &'a self,
        folder: &'a str,
        state: Option<&'a SyncState>,
    ) -> BoxFuture<'a, Result<SyncBatch, MailError>> {
        Box::pin(async move {
            let link = match state {
                None => None,
                Some(SyncState::Graph(l)) => Some(l.as_str()),
                Some(SyncState::Ews(_)) => return Err(wrong_state(Protocol::Graph)),
            };
            let p = self
                .client
                .delta_page(&self.address, folder, link, 100)
                .await?;
            let (mut changed, mut deleted) = (Vec::new(), Vec::new());
            for m in p.value {
                if m.removed.is_some() {
                    deleted.push(m.id);
                } else {
                    changed.push(m.id);
                }
            }
            let (state, more) = match (p.next_link, p.delta_link) {
                (Some(next), _) => (next, true),
                (None, Some(delta)) => (delta, false),
                (None, None) => {
                    return Err(MailError::with_message(
                        crate::evidence::ErrorKind::InvalidResponse,
                        "messages/delta answer has neither @odata.nextLink nor @odata.deltaLink",
                        crate::evidence::ErrorEvidence::default(),
                    ));
                }
            };
            Ok(SyncBatch {
                changed,
                deleted,
                state: SyncState::Graph(state),
                more,
            })
        })
    }

    fn write_probe(&self) -> BoxFuture<'_, Result<(), MailError>> {
        Box::pin(async move {
            let id = self
                .client
                .create_draft(
                    &self.address,
                    "exgate write probe",
                    "Created and deleted by exgate.",
                )
                .await?;
            // The probe must leave no trace: permanentDelete, or where a cloud does not serve
            // that action (400/405, or 404 for the route rather than the item), DELETE.
            match self
                .client
                .permanent_delete_message(&self.address, &id)
                .await
            {
                Err(e) if action_not_served(&e) => {
                    self.client.delete_message(&self.address, &id).await
                }
                other => other,
            }
        })
    }
}

/// Whether a Graph error says the action itself is unknown, not that the item or the right to it
/// is missing.
fn action_not_served(e: &MailError) -> bool {
    let ev = e.evidence();
    match ev.status {
        Some(400 | 405) => true,
        Some(404) => ev.service_code() != Some("ErrorItemNotFound"),
        _ => false,
    }
}

/// A mailbox over EWS. Every request carries `X-AnchorMailbox` with the mailbox address and,
/// when impersonating, the `ExchangeImpersonation` header.
#[derive(Debug, Clone)]
pub struct EwsMailbox {
    client: EwsClient,
    address: String,
    impersonation: Option<ConnectingSid>,
}

impl EwsMailbox {
    /// The mailbox `address` (SMTP) through `client`.
    pub fn new(client: EwsClient, address: &str, impersonation: Option<ConnectingSid>) -> Self {
        EwsMailbox {
            client,
            address: address.to_owned(),
            impersonation,
        }
    }

    fn opts(&self) -> CallOptions<'_> {
        CallOptions {
            impersonation: self.impersonation.as_ref(),
            anchor: Some(&self.address),
        }
    }

    fn folder(&self, name: &str) -> FolderRef {
        FolderRef::named(name, Some(&self.address))
    }
}

impl Mailbox for EwsMailbox {
    fn protocol(&self) -> Protocol {
        Protocol::Ews
    }

    fn address(&self) -> &str {
        &self.address
    }

    fn open(&self) -> BoxFuture<'_, Result<MailboxInfo, MailError>> {
        Box::pin(async move {
            let (m, server_version) = self
                .client
                .call_first(
                    "GetFolder",
                    &crate::ews::ops::get_folder(&[self.folder("msgfolderroot")]),
                    &self.opts(),
                )
                .await?;
            let f = crate::ews::ops::read_get_folder(&m.element)
                .into_iter()
                .next()
                .unwrap_or_default();
            let server_version = server_version.and_then(|v| {
                Some(format!(
                    "{}.{}.{}.{}",
                    v.major?, v.minor?, v.major_build?, v.minor_build?
                ))
            });
            Ok(MailboxInfo {
                protocol: Protocol::Ews,
                address: self.address.clone(),
                id: f.id,
                display_name: f.display_name,
                server_version,
            })
        })
    }

    fn list_folders(&self) -> BoxFuture<'_, Result<Vec<FolderInfo>, MailError>> {
        Box::pin(async move {
            let parent = self.folder("msgfolderroot");
            let mut out = Vec::new();
            let mut offset = 0u32;
            for _ in 0..1000 {
                let (folders, paging) = self
                    .client
                    .find_folder(&parent, Traversal::Shallow, offset, 100, &self.opts())
                    .await?;
                let got = folders.len();
                out.extend(folders.into_iter().map(|f| FolderInfo {
                    id: f.id,
                    name: f.display_name,
                    total: f.total_count,
                    unread: f.unread_count,
                    children: f.child_folder_count,
                }));
                match paging.next_offset {
                    Some(n) if !paging.last && got > 0 && n > offset => offset = n,
                    _ => break,
                }
            }
            Ok(out)
        })
    }

    fn inbox_count(&self) -> BoxFuture<'_, Result<u64, MailError>> {
        Box::pin(async move {
            let f = self
                .client
                .get_folder(&self.folder("inbox"), &self.opts())
                .await?;
            Ok(f.total_count.unwrap_or(0))
        })
    }

    fn page_message_ids<'a>(
        &'a self,
        folder: &'a str,
        cursor: Option<&'a PageCursor>,
        page_size: u32,
    ) -> BoxFuture<'a, Result<MessagePage, MailError>> {
        Box::pin(async move {
            let offset = match cursor {
                None => 0,
                Some(PageCursor::Ews(o)) => *o,
                Some(PageCursor::Graph(_)) => return Err(wrong_state(Protocol::Ews)),
            };
            let (ids, paging) = self
                .client
                .find_item(
                    &self.folder(folder),
                    offset,
                    page_size.clamp(1, 1000),
                    &self.opts(),
                )
                .await?;
            let next = match paging.next_offset {
                Some(n) if !paging.last && !ids.is_empty() && n > offset => {
                    Some(PageCursor::Ews(n))
                }
                _ => None,
            };
            Ok(MessagePage {
                ids: ids.into_iter().map(|i| i.id).collect(),
                next,
            })
        })
    }

    fn fetch_mime<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Vec<u8>, MailError>> {
        Box::pin(async move {
            let id = ItemId {
                id: id.to_owned(),
                change_key: None,
            };
            self.client.get_item_mime(&id, &self.opts()).await
        })
    }

    fn sync<'a>(
        &'a self,
        folder: &'a str,
        state: Option<&'a SyncState>,
    ) -> BoxFuture<'a, Result<SyncBatch, MailError>> {
        Box::pin(async move {
            let state = match state {
                None => None,
                Some(SyncState::Ews(s)) => Some(s.as_str()),
                Some(SyncState::Graph(_)) => return Err(wrong_state(Protocol::Ews)),
            };
            let s = self
                .client
                .sync_folder_items(&self.folder(folder), state, 512, &self.opts())
                .await?;
            let changed = s
                .created
                .into_iter()
                .chain(s.updated)
                .chain(s.read_flag.into_iter().map(|(id, _)| id))
                .map(|i| i.id)
                .collect();
            Ok(SyncBatch {
                changed,
                deleted: s.deleted.into_iter().map(|i| i.id).collect(),
                state: SyncState::Ews(s.sync_state),
                more: !s.last,
            })
        })
    }

    fn write_probe(&self) -> BoxFuture<'_, Result<(), MailError>> {
        Box::pin(async move {
            let id = self
                .client
                .create_item(
                    &self.folder("drafts"),
                    "exgate write probe",
                    "Created and deleted by exgate.",
                    &self.opts(),
                )
                .await?;
            self.client.delete_item(&id, &self.opts()).await
        })
    }
}
