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

static AUDIENCE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)expected\s+'([^']*)'\.?\s*actual\s+'([^']*)'").ok());

/// The two names of a `2000003` audience refusal: `Expected '<the token's audience>'. Actual
/// '<the URL Exchange received>'`, the wording of on-premises Exchange quoted in Microsoft's
/// Hybrid Modern Authentication troubleshooting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceMismatch {
    /// The audience the token carries (`https://mail.contoso.com`).
    pub expected: String,
    /// The scheme and host Exchange saw the request arrive on (`http://mail.contoso.com`).
    pub actual: String,
}

impl AudienceMismatch {
    fn split(u: &str) -> (String, String) {
        let u = u.trim().trim_end_matches('/');
        match u.split_once("://") {
            Some((scheme, rest)) => (
                scheme.to_ascii_lowercase(),
                rest.split('/').next().unwrap_or("").to_ascii_lowercase(),
            ),
            None => (String::new(), u.to_ascii_lowercase()),
        }
    }

    /// Same host, `https` audience and `http` seen: TLS is terminated in front of Exchange.
    pub fn is_tls_offloading(&self) -> bool {
        let (es, eh) = Self::split(&self.expected);
        let (as_, ah) = Self::split(&self.actual);
        es == "https" && as_ == "http" && eh == ah
    }

    /// Same scheme, different host: something between the client and Exchange forwards one
    /// name to another.
    pub fn is_other_host(&self) -> bool {
        let (es, eh) = Self::split(&self.expected);
        let (as_, ah) = Self::split(&self.actual);
        es == as_ && !eh.is_empty() && !ah.is_empty() && eh != ah
    }

    /// The host of the audience and the host seen.
    pub fn hosts(&self) -> (String, String) {
        (Self::split(&self.expected).1, Self::split(&self.actual).1)
    }
}

impl MsDiagnostic {
    /// The audience and the URL of a `2000003` "Expected '…'. Actual '…'" reason.
    pub fn audience_mismatch(&self) -> Option<AudienceMismatch> {
        if self.code.as_deref().is_some_and(|c| c != "2000003") {
            return None;
        }
        let c = AUDIENCE.as_ref()?.captures(&self.reason)?;
        Some(AudienceMismatch {
            expected: c.get(1)?.as_str().to_owned(),
            actual: c.get(2)?.as_str().to_owned(),
        })
    }
}

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
    fn audience_mismatch_tells_offloading_from_another_host() {
        let d = parse_ms_diagnostics(r#"2000003;reason="The hostname component of the audience claim value is invalid. Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.";error_category="invalid_resource""#).unwrap();
        let m = d.audience_mismatch().unwrap();
        assert!(m.is_tls_offloading() && !m.is_other_host());
        let d = parse_ms_diagnostics(r#"2000003;reason="The hostname component of the audience claim value is invalid. Expected 'https://autodiscover.contoso.com'. Actual 'https://mail.contoso.com'.";error_category="invalid_resource""#).unwrap();
        let m = d.audience_mismatch().unwrap();
        assert!(m.is_other_host() && !m.is_tls_offloading());
        assert_eq!(m.hosts().0, "autodiscover.contoso.com");
        let d = parse_ms_diagnostics("2000005;reason=\"Expected 'a'. Actual 'b'\"").unwrap();
        assert!(d.audience_mismatch().is_none());
        let d = parse_ms_diagnostics("2000003;reason=\"The audience claim value is invalid 'x'.\"")
            .unwrap();
        assert!(d.audience_mismatch().is_none());
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
