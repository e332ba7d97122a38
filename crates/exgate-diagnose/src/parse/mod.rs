//! Parsers of external input. None of them panics or fails on malformed text: they return what
//! they could read (property-tested in `tests/parsers_never_panic.rs`).

pub mod diagnostics;
pub mod http;
pub mod json;
pub mod mail;
pub mod soap;
pub mod www_authenticate;
