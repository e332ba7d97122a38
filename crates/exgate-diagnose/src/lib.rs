//! Turns an Exchange or Entra ID failure into ranked causes and fix steps.
//!
//! Pure: no files, no network, no clock. Callers pass evidence ([`Evidence`]: what was tried,
//! what came back, token claims, free text) and "now" where time matters; [`diagnose`] matches it
//! against the built-in failure catalog (`catalog/*.toml`, compiled in), applies combination rules
//! and returns a [`Diagnosis`] ranked most likely first.
//!
//! ```
//! use exgate_diagnose::{Evidence, diagnose};
//! let ev = Evidence::from_http_response(
//!     401,
//!     [("WWW-Authenticate", r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", error="invalid_token""#),
//!      ("x-ms-diagnostics", r#"2000003;reason="The hostname component of the audience claim value is invalid. Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.";error_category="invalid_resource""#)],
//!     "",
//! );
//! assert_eq!(diagnose(&ev).causes[0].id, "ssl_offloading");
//! ```

// Libraries never print: output belongs to the binary (see ARCHITECTURE.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod catalog;
mod evidence;
pub mod har;
pub mod jwt;
pub mod parse;
mod rank;
pub mod redact;

pub use catalog::{
    CAUSES_SOURCE, Catalog, CatalogError, CauseDef, CauseScope, Entry, SOURCES as CATALOG_SOURCES,
    builtin as builtin_catalog,
};
pub use evidence::{
    Attempt, AuthMode, Environment, Evidence, HttpHeader, HttpResponse, Parsed, Protocol, SignedIn,
    protocol_of_url,
};
pub use rank::{Diagnosis, RankedCause, diagnose, diagnose_with};

/// What kind of input a pasted text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A HAR file (JSON with `log.entries`).
    Har,
    /// A compact JWT.
    Jwt,
    /// Anything else: error text, raw HTTP, JSON or SOAP bodies.
    Text,
}

/// Guesses the kind of input from its first bytes.
pub fn detect_input(prefix: &[u8]) -> InputKind {
    let s = String::from_utf8_lossy(prefix);
    let t = s.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('{') && t.contains("\"log\"") {
        InputKind::Har
    } else if jwt::looks_like_jwt(t) {
        InputKind::Jwt
    } else {
        InputKind::Text
    }
}

/// Explains a pasted text (anything but a HAR): error text, raw HTTP, JSON, SOAP, or a JWT.
pub fn explain_text(text: &str, now: Option<i64>) -> Diagnosis {
    let mut ev = Evidence::from_text(text);
    ev.now = now;
    diagnose(&ev)
}

/// The longest prefix of `s` of at most `n` bytes that ends on a character boundary.
pub(crate) fn rank_head(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = n;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    s.get(..i).unwrap_or("")
}
