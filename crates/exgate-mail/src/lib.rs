//! Graph, EWS and Autodiscover clients for reaching Exchange mailboxes unattended.
//!
//! The public interface is:
//! - [`HttpClient`] / [`HttpClientBuilder`]: one shared connection pool, a per-host
//!   concurrency limit, an extra root CA option and the [`RetryPolicy`].
//! - [`Credentials`]: injected authentication ([`Bearer`], [`Basic`], [`EmptyBearer`],
//!   [`Anonymous`]).
//! - [`ews::EwsClient`], [`graph::GraphClient`], [`autodiscover::AutodiscoverClient`].
//! - [`Mailbox`]: one interface over Graph and EWS, built by [`open_mailbox`].
//! - [`MailError`] with [`ErrorEvidence`] for the diagnosis engine.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod autodiscover;
pub mod credentials;
mod error;
pub mod evidence;
pub mod ews;
pub mod graph;
mod http;
mod mailbox;
pub mod retry;
pub mod xml;

pub use credentials::{
    Anonymous, AuthHeader, Basic, Bearer, BoxError, BoxFuture, Credentials, EmptyBearer, Protocol,
    StaticToken, Target, TokenSource,
};
pub use error::MailError;
pub use evidence::{ErrorEvidence, ErrorKind, TransportKind};
pub use http::{HttpClient, HttpClientBuilder, MAX_BODY_BYTES};
pub use mailbox::{
    EwsMailbox, FolderInfo, GraphMailbox, MailEndpoint, Mailbox, MailboxInfo, MessagePage,
    PageCursor, SyncBatch, SyncState, open_mailbox,
};
pub use retry::{RetryDecision, RetryPolicy};
