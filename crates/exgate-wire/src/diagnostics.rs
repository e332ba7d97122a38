//! The `x-ms-diagnostics` header: `<code>;reason="<text>";error_category="<category>"`.
//!
//! Real samples also use single quotes with nested single quotes
//! (`reason='The token is missing the claim type 'roles'.'`) or omit the code; the parser is
//! lenient and returns `None` only when neither a code, a reason nor a category can be found.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One parsed `x-ms-diagnostics` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MsDiagnostic {
    /// The seven-digit code (`2000003`), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The reason text, unquoted.
    #[serde(default)]
    pub reason: String,
    /// The error category (`invalid_resource`).
    #[serde(
        default,
        rename = "error_category",
        alias = "category",
        skip_serializing_if = "Option::is_none"
    )]
    pub category: Option<String>,
}

static CODE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^\s*(\d{5,8})\b").ok());
static CATEGORY: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"(?i)error_category\s*=\s*["']?([A-Za-z_]+)"#).ok());
static REASON: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?i)reason\s*=\s*").ok());
static REASON_END: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"(?i)["']?\s*;?\s*error_category\s*="#).ok());

/// Parses one header value.
pub fn parse_ms_diagnostics(value: &str) -> Option<MsDiagnostic> {
    let code = CODE
        .as_ref()
        .and_then(|re| re.captures(value))
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_owned());
    let category = CATEGORY
        .as_ref()
        .and_then(|re| re.captures(value))
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_owned());
    let reason = REASON
        .as_ref()
        .and_then(|re| re.find(value))
        .map(|m| {
            let rest = value.get(m.end()..).unwrap_or("");
            let end = REASON_END
                .as_ref()
                .and_then(|re| re.find(rest))
                .map_or(rest.len(), |e| e.start());
            let raw = rest.get(..end).unwrap_or(rest).trim();
            raw.trim_start_matches(['"', '\''])
                .trim_end_matches(['"', '\'', ';'])
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    if code.is_none() && category.is_none() && reason.is_empty() {
        return None;
    }
    Some(MsDiagnostic {
        code,
        reason,
        category,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse_ms_diagnostics(&s);
        }
    }

    #[test]
    fn double_quoted() {
        let d = parse_ms_diagnostics(r#"2000003;reason="The hostname component of the audience claim value is invalid. Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.";error_category="invalid_resource""#).unwrap();
        assert_eq!(d.code.as_deref(), Some("2000003"));
        assert_eq!(d.category.as_deref(), Some("invalid_resource"));
        assert!(d.reason.starts_with("The hostname component"));
        assert!(d.reason.ends_with("'http://mail.contoso.com'."));
    }

    #[test]
    fn single_quoted_nested() {
        let d = parse_ms_diagnostics(
            "2000001;reason='The token is missing the claim type 'roles'.';error_category='invalid_token'",
        )
        .unwrap();
        assert_eq!(d.code.as_deref(), Some("2000001"));
        assert_eq!(d.reason, "The token is missing the claim type 'roles'.");
        assert_eq!(d.category.as_deref(), Some("invalid_token"));
    }

    #[test]
    fn without_code_and_garbage() {
        let d = parse_ms_diagnostics(
            r#"reason="The token contains no permissions, or permissions can not be understood.";error_category="invalid_grant""#,
        )
        .unwrap();
        assert_eq!(d.code, None);
        assert_eq!(d.category.as_deref(), Some("invalid_grant"));
        assert!(parse_ms_diagnostics("hello").is_none());
    }
}
