//! Parsing of untrusted request input: form bodies, `Authorization: Basic`, scope strings.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// An `application/x-www-form-urlencoded` body (or query string). The first occurrence of a
/// repeated key wins.
#[derive(Clone, Default)]
pub struct Form {
    fields: HashMap<String, String>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets (client_secret, password, refresh_token): keys only.
        let mut keys: Vec<&String> = self.fields.keys().collect();
        keys.sort();
        f.debug_struct("Form").field("keys", &keys).finish()
    }
}

impl Form {
    /// Parses a form body; never fails (bad percent-escapes are kept as-is, invalid UTF-8 is
    /// replaced).
    pub fn parse(body: &[u8]) -> Form {
        let mut fields = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            fields
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
        Form { fields }
    }

    /// A field, trimmed; empty counts as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Inserts a field (used to merge the query string into forms).
    pub fn insert(&mut self, key: &str, value: &str) {
        self.fields.insert(key.to_string(), value.to_string());
    }

    /// All fields, for re-emitting as hidden form inputs.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.fields.iter()
    }
}

/// Client id and secret from `Authorization: Basic base64(urlencode(id):urlencode(secret))`
/// (RFC 6749 §2.3.1). `None` when the header is absent or not Basic or malformed.
pub fn parse_basic(header: Option<&str>) -> Option<(String, String)> {
    let value = header?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

/// OIDC scopes that name no resource.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A scope parameter split into OIDC scopes and resource scopes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    /// `openid`, `profile`, `email`, `offline_access` present.
    pub oidc: Vec<String>,
    /// `(resource, permission)` pairs, e.g. (`https://outlook.office365.com`, `EWS.AccessAsUser.All`).
    /// A bare permission (`Mail.Read`) is a Graph permission, as in Entra.
    pub resource: Vec<(String, String)>,
    /// The scope string exactly as sent, whitespace normalised.
    pub raw: String,
}

impl Scopes {
    /// Splits a space-separated scope string.
    pub fn parse(scope: &str) -> Scopes {
        let mut out = Scopes {
            raw: scope.split_whitespace().collect::<Vec<_>>().join(" "),
            ..Scopes::default()
        };
        for s in scope.split_whitespace() {
            let lower = s.to_ascii_lowercase();
            if OIDC_SCOPES.contains(&lower.as_str()) {
                out.oidc.push(lower);
                continue;
            }
            match s.rfind('/') {
                Some(i) if s.contains("://") || s.starts_with("api://") || i > 0 => {
                    let (res, perm) = s.split_at(i);
                    let perm = perm.trim_start_matches('/');
                    out.resource.push((res.to_string(), perm.to_string()));
                }
                _ => out
                    .resource
                    .push((crate::scenario::GRAPH_RESOURCE.to_string(), s.to_string())),
            }
        }
        out
    }

    /// Whether `name` (an OIDC scope) was requested.
    pub fn has(&self, name: &str) -> bool {
        self.oidc.iter().any(|s| s == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_keeps_first_value_and_decodes() {
        let f = Form::parse(b"a=1&a=2&scope=https%3A%2F%2Fx%2F.default+openid&empty=");
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("scope"), Some("https://x/.default openid"));
        assert_eq!(f.get("empty"), None);
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn form_debug_hides_values() {
        let f = Form::parse(b"client_secret=canary-value-42");
        assert!(!format!("{f:?}").contains("canary-value-42"));
    }

    #[test]
    fn basic_auth_is_url_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%20id:s3cr%2Bt"));
        assert_eq!(
            parse_basic(Some(&h)),
            Some(("my id".to_string(), "s3cr+t".to_string()))
        );
        assert_eq!(parse_basic(Some("Bearer abc")), None);
        assert_eq!(parse_basic(Some("Basic !!!")), None);
    }

    #[test]
    fn scopes_split_resource_and_permission() {
        let s = Scopes::parse(
            "https://outlook.office365.com/EWS.AccessAsUser.All offline_access openid profile",
        );
        assert!(s.has("offline_access"));
        assert_eq!(
            s.resource,
            vec![(
                "https://outlook.office365.com".to_string(),
                "EWS.AccessAsUser.All".to_string()
            )]
        );
        let d = Scopes::parse("https://outlook.office365.com//.default");
        assert_eq!(d.resource[0].0, "https://outlook.office365.com/");
        assert_eq!(d.resource[0].1, ".default");
        let g = Scopes::parse("Mail.Read");
        assert_eq!(g.resource[0].0, crate::scenario::GRAPH_RESOURCE);
    }

    proptest::proptest! {
        #[test]
        fn form_parse_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let f = Form::parse(&body);
            let _ = f.get("client_id");
        }

        #[test]
        fn form_round_trips(key in "[a-z_]{1,12}", value in "\\PC{1,40}") {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .append_pair(&key, &value)
                .finish();
            let f = Form::parse(body.as_bytes());
            let trimmed = value.trim();
            let expected = if trimmed.is_empty() { None } else { Some(trimmed) };
            proptest::prop_assert_eq!(f.get(&key), expected);
        }

        #[test]
        fn basic_and_scopes_never_panic(s in "\\PC{0,120}") {
            let _ = parse_basic(Some(&s));
            let _ = parse_basic(Some(&format!("Basic {s}")));
            let _ = Scopes::parse(&s);
        }
    }
}
