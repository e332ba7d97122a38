//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1), as Exchange and Graph send them.
//!
//! Exchange Online sends one header with several comma-joined challenges
//! (`Bearer client_id="…", …,Basic Realm=""`); Exchange Server sends one header per scheme. Both
//! shapes, token68 credentials (`Negotiate YII…==`) and unquoted values are accepted. The parser
//! never fails: malformed input yields whatever challenges could be read.

use serde::{Deserialize, Serialize};

/// One authentication challenge: a scheme and its parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Challenge {
    /// The scheme as sent (`Bearer`, `Basic`, `NTLM`, `Negotiate`, …).
    pub scheme: String,
    /// Parameters in order of appearance; names are lower-cased, values unquoted.
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// A token68 credential (`Negotiate <blob>`), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token68: Option<String>,
}

impl Challenge {
    /// Whether the scheme is `scheme`, ignoring case.
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The value of parameter `name` (case-insensitive), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in one header value.
pub fn parse_challenges(value: &str) -> Vec<Challenge> {
    let chars: Vec<char> = value.chars().collect();
    let mut out: Vec<Challenge> = Vec::new();
    let mut i = 0;
    let n = chars.len();
    let is_sep = |c: char| c.is_whitespace() || c == ',' || c == '=';
    while i < n {
        while i < n && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        while i < n && !is_sep(chars[i]) && chars[i] != '"' {
            i += 1;
        }
        if i == start {
            // A stray '=' or '"': skip it so the loop always advances.
            i += 1;
            continue;
        }
        let token: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < n && chars[j] == ' ' {
            j += 1;
        }
        // `name=value`, unless the '=' is the padding of a token68 value.
        let is_param = j < n && chars[j] == '=' && !(j + 1 < n && chars[j + 1] == '=');
        if is_param {
            i = j + 1;
            while i < n && chars[i] == ' ' {
                i += 1;
            }
            let value = if i < n && chars[i] == '"' {
                i += 1;
                let mut v = String::new();
                while i < n && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < n {
                        i += 1;
                    }
                    v.push(chars[i]);
                    i += 1;
                }
                i += 1; // closing quote (or past the end)
                v
            } else {
                let vs = i;
                while i < n && chars[i] != ',' && !chars[i].is_whitespace() {
                    i += 1;
                }
                chars[vs..i].iter().collect()
            };
            if let Some(last) = out.last_mut() {
                last.params.push((token.to_ascii_lowercase(), value));
            }
            continue;
        }
        // A new challenge: `scheme [token68]`.
        let mut challenge = Challenge {
            scheme: token,
            ..Challenge::default()
        };
        i = j;
        // token68: one run of token68 characters followed by optional '=' padding, then ',' or end.
        let t_start = i;
        let mut k = i;
        while k < n && (chars[k].is_ascii_alphanumeric() || "-._~+/".contains(chars[k])) {
            k += 1;
        }
        let mut pad = k;
        while pad < n && chars[pad] == '=' {
            pad += 1;
        }
        let mut after = pad;
        while after < n && chars[after] == ' ' {
            after += 1;
        }
        if k > t_start && (after == n || chars[after] == ',') {
            challenge.token68 = Some(chars[t_start..pad].iter().collect());
            i = after;
        }
        out.push(challenge);
    }
    out
}

/// Parses the challenges of several header values (one per `WWW-Authenticate` header line).
pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    values.into_iter().flat_map(parse_challenges).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse_challenges(&s);
        }
    }

    #[test]
    fn exchange_online_combined_header() {
        let v = r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize",Basic Realm="""#;
        let c = parse_challenges(v);
        assert_eq!(c.len(), 2);
        assert!(c[0].is("bearer"));
        assert_eq!(
            c[0].param("authorization_uri"),
            Some("https://login.microsoftonline.com/common/oauth2/authorize")
        );
        assert_eq!(
            c[0].param("token_types"),
            Some("app_asserted_user_v1 service_asserted_app_v1")
        );
        assert!(c[1].is("Basic"));
        assert_eq!(c[1].param("realm"), Some(""));
    }

    #[test]
    fn bare_schemes_and_token68() {
        let c = parse_challenges("Negotiate, NTLM");
        assert_eq!(c.len(), 2);
        assert!(c[1].is("ntlm"));
        let c = parse_challenges("Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEF==");
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].token68.as_deref(),
            Some("YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEF==")
        );
        let c = parse_challenges("Bearer");
        assert_eq!(c.len(), 1);
        assert!(c[0].params.is_empty());
    }

    #[test]
    fn error_param_and_unquoted_values() {
        let c = parse_challenges(
            r#"Bearer realm="", error=invalid_token, error_description="The token expired""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("error"), Some("invalid_token"));
        assert_eq!(c[0].param("error_description"), Some("The token expired"));
    }

    #[test]
    fn several_headers() {
        let c = parse_all([
            r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="x@y""#,
            r#"Basic realm="mail.contoso.com""#,
            "Negotiate",
            "NTLM",
        ]);
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Bearer", "Basic", "Negotiate", "NTLM"]);
        assert_eq!(c[0].param("authorization_uri"), None);
    }
}
