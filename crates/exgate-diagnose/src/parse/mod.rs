//! Parsers of external input. The wire artefacts of Entra ID and Exchange are parsed in
//! `exgate-wire` and re-exported here; this module adds what only diagnosis reads (raw HTTP
//! pasted as text, SOAP faults quoted in text). None of them panics or fails on malformed text:
//! they return what they could read (property-tested in `tests/parsers_never_panic.rs`).

pub use exgate_wire::diagnostics;
pub use exgate_wire::mail_reply as mail;
pub use exgate_wire::www_authenticate;
pub mod http;
pub mod json;
pub mod soap;
