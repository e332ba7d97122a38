//! The wire vocabulary of Entra ID and Exchange: each artefact the services send, parsed once,
//! here, into a typed value that keeps its raw text where the raw text matters.
//!
//! | artefact | module |
//! |---|---|
//! | `WWW-Authenticate` challenges (several per header, several headers) | [`www_authenticate`] |
//! | `x-ms-diagnostics` | [`diagnostics`] |
//! | Entra ID error bodies (every AADSTS code, trace and correlation ids) | [`entra`] |
//! | Microsoft Graph error bodies (inner errors, `odata.error`) | [`graph`] |
//! | SMTP, IMAP and POP replies (code, enhanced status, text) | [`mail_reply`] |
//! | JWT header and claims (decoded for display, never verified) | [`jwt`] |
//! | `Retry-After` and EWS `BackOffMilliseconds` | [`retry_after`] |
//! | well-known application ids, resources, GUIDs | [`ids`] |
//! | text inside XML and HTML | [`markup`] |
//!
//! Pure: no I/O, no clock (callers pass "now"), no async runtime. No parser fails or panics on
//! malformed input; each returns what it could read, and each is property-tested for that.

// Libraries never print: output belongs to the binary (see ARCHITECTURE.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod diagnostics;
pub mod entra;
pub mod graph;
pub mod ids;
pub mod jwt;
pub mod mail_reply;
pub mod markup;
pub mod retry_after;
pub mod www_authenticate;
