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
//!
//! ```no_run
//! use std::sync::Arc;
//! use exgate_mail::ews::ConnectingSid;
//! use exgate_mail::{Bearer, HttpClientBuilder, MailEndpoint, open_mailbox};
//! use secrecy::SecretString;
//!
//! # async fn run() -> Result<(), exgate_mail::MailError> {
//! let http = HttpClientBuilder::new().per_host_limit(4).build()?;
//! let creds = Arc::new(Bearer::fixed(SecretString::from("eyJ...")));
//! let endpoint = MailEndpoint::Ews {
//!     url: "https://outlook.office365.com/EWS/Exchange.asmx".parse().expect("static URL"),
//!     impersonation: Some(ConnectingSid::PrimarySmtpAddress("user@contoso.com".into())),
//!     server_version: None,
//! };
//! let mailbox = open_mailbox(&endpoint, &http, creds, "user@contoso.com")?;
//! let report = match mailbox.open().await {
//!     Ok(info) => format!("{} is reachable ({:?})", info.address, info.server_version),
//!     // The evidence serialises to JSON for exgate-diagnose.
//!     Err(e) => format!("{e}\n{}", serde_json::to_string(e.evidence()).unwrap_or_default()),
//! };
//! # let _ = report;
//! # Ok(())
//! # }
//! ```

// Libraries never print: output belongs to the binary (see ARCHITECTURE.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod autodiscover;
pub mod credentials;
mod error;
pub mod evidence;
pub mod ews;
pub mod graph;
mod http;
pub mod imap;
mod mailbox;
pub mod ntlm;
pub mod pop;
pub mod retry;
pub mod sasl;
pub mod smtp;
mod tls;
pub mod xml;

pub use credentials::{
    Anonymous, AuthHeader, Basic, Bearer, BoxError, BoxFuture, Credentials, EmptyBearer,
    FnTokenSource, Protocol, StaticToken, Target, TokenSource,
};
pub use error::MailError;
pub use evidence::{ErrorEvidence, ErrorKind, TransportKind};
pub use http::{HttpClient, HttpClientBuilder, MAX_BODY_BYTES};
pub use mailbox::{
    EwsMailbox, FolderInfo, GraphMailbox, MailEndpoint, Mailbox, MailboxInfo, MessagePage,
    PageCursor, SyncBatch, SyncState, open_mailbox,
};
pub use retry::{RetryDecision, RetryPolicy};
pub use tls::{Io as ByteStream, LineIo as BufferedStream};
