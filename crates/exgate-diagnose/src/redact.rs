//! Removal of secrets from text, raw HTTP captures and HAR entries.
//!
//! What is removed: `Authorization`/`Proxy-Authorization` credentials (the scheme is kept, so an
//! empty `Bearer` probe still reads as one), `Cookie`/`Set-Cookie` values, passwords,
//! `client_secret`, `client_assertion`, `refresh_token`, `access_token`, `id_token`, `code`,
//! `device_code`, `code_verifier` in form bodies, URLs and JSON, `<Password>` elements, and every
//! JWT anywhere. Bearer tokens are either removed or replaced by an *unsigned claim summary*: a
//! `header.payload.` token with `alg: none` that keeps only the claims diagnosis needs (audience,
//! tenant, app id, authentication strength, roles, scopes, user name, times). It cannot be replayed
//! (no signature) and `exgate explain` reads it exactly as it read the original.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use regex::{Captures, Regex, RegexSet};
use serde_json::{Map, Value};

/// The replacement text for removed values.
pub const REDACTED: &str = "[REDACTED]";

/// What to do with bearer tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenMode {
    /// Replace each token with an unsigned token holding only the diagnostic claims.
    #[default]
    Summary,
    /// Replace each token with `[REDACTED]`.
    Remove,
}

/// Names of form fields, query parameters and JSON keys whose values are secret.
pub const SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "refresh_token",
    "access_token",
    "id_token",
    "code",
    "device_code",
    "code_verifier",
    "password",
    "passwd",
    "pwd",
    "assertion",
    "session_state",
    "sessionid",
];

/// Claims kept in a token summary.
const KEPT_CLAIMS: &[&str] = &[
    "aud",
    "iss",
    "tid",
    "appid",
    "azp",
    "appidacr",
    "azpacr",
    "idtyp",
    "ver",
    "roles",
    "scp",
    "upn",
    "unique_name",
    "preferred_username",
    "exp",
    "nbf",
    "iat",
];

/// The base64url header of every summary token: `{"alg":"none","typ":"JWT","exgate":"redacted"}`.
const SUMMARY_HEADER_B64: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwiZXhnYXRlIjoicmVkYWN0ZWQifQ";

fn summary_header() -> String {
    SUMMARY_HEADER_B64.to_owned()
}

/// Whether `is_secret_name` names a secret parameter.
pub fn is_secret_name(name: &str) -> bool {
    SECRET_PARAMS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name.trim()))
}

/// Replaces a JWT by its unsigned claim summary (or `[REDACTED]` when it cannot be decoded).
pub fn summarize_token(token: &str) -> String {
    let Ok(decoded) = crate::jwt::decode(token) else {
        return REDACTED.to_owned();
    };
    if decoded.header.get("exgate").and_then(Value::as_str) == Some("redacted") {
        // Already a summary: idempotent.
        let payload = serde_json::to_vec(&Value::Object(decoded.claims)).unwrap_or_default();
        return format!("{}.{}.", summary_header(), URL_SAFE_NO_PAD.encode(payload));
    }
    let kept: Map<String, Value> = decoded
        .claims
        .into_iter()
        .filter(|(k, _)| KEPT_CLAIMS.contains(&k.as_str()))
        .collect();
    let payload = serde_json::to_vec(&Value::Object(kept)).unwrap_or_default();
    format!("{}.{}.", summary_header(), URL_SAFE_NO_PAD.encode(payload))
}

fn token_replacement(token: &str, mode: TokenMode) -> String {
    match mode {
        // Already a summary (second pass over a HAR value): nothing secret left.
        TokenMode::Summary if token.starts_with(SUMMARY_HEADER_B64) => token.to_owned(),
        TokenMode::Summary => summarize_token(token),
        TokenMode::Remove => REDACTED.to_owned(),
    }
}

/// Redacts the value of an `Authorization` header, keeping the scheme.
pub fn redact_authorization(value: &str, mode: TokenMode) -> String {
    let v = value.trim();
    let (scheme, cred) = match v.split_once(char::is_whitespace) {
        Some((s, c)) => (s, c.trim()),
        None => (v, ""),
    };
    if cred.is_empty() {
        // `Bearer` probe, or a bare scheme: nothing secret.
        return if crate::jwt::looks_like_jwt(scheme) {
            token_replacement(scheme, mode)
        } else {
            v.to_owned()
        };
    }
    if scheme.eq_ignore_ascii_case("bearer") && crate::jwt::looks_like_jwt(cred) {
        return format!("{scheme} {}", token_replacement(cred, mode));
    }
    format!("{scheme} {REDACTED}")
}

fn re(p: &str) -> Option<Regex> {
    Regex::new(p).ok()
}

static AUTH_LINE: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"(?im)^([ \t]*(?:proxy-)?authorization[ \t]*(?::|→)[ \t]*)([^\r\n]*)$"));
static COOKIE_LINE: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"(?im)^([ \t]*(?:set-)?cookie[ \t]*(?::|→)[ \t]*)([^\r\n]+)$"));
static JWT: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"));
static FORM_PARAM: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?i)(^|[?&;\s])(client_secret|client_assertion|refresh_token|access_token|id_token|code|device_code|code_verifier|password|passwd|pwd|assertion)=([^&\s\x22'<]*)",
    )
});
static JSON_KEY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    // `code` is left out on purpose: in JSON it is almost always an error code (Graph), while
    // authorization codes travel in URLs and form bodies (see FORM_PARAM).
    re(
        r#"(?i)("(?:client_secret|client_assertion|refresh_token|access_token|id_token|device_code|code_verifier|password|passwd|pwd|assertion)"\s*:\s*)"((?:[^"\\]|\\.)*)""#,
    )
});
/// Markers that gate the patterns above, in the order they are checked.
static MARKERS: LazyLock<Option<RegexSet>> = LazyLock::new(|| {
    RegexSet::new([
        r"(?i)authorization",
        r"(?i)cookie",
        r"eyJ",
        r"(?i)(secret|assertion|token|code|password|passwd|pwd|verifier)=",
        r#"(?i)"(secret|assertion|token|password|passwd|pwd|verifier|client_secret|client_assertion|refresh_token|access_token|id_token|device_code|code_verifier|assertion)""#,
        r"(?i)password",
    ])
    .ok()
});
static XML_PASSWORD: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"(?is)(<(?:[\w.-]+:)?Password\b[^>]*>)(.*?)(</(?:[\w.-]+:)?Password>)"));

/// Redacts secrets anywhere in free text or a raw HTTP capture.
pub fn redact_text(text: &str, mode: TokenMode) -> String {
    // One scan for the markers first: most strings of a HAR hold none of them.
    let Some(markers) = MARKERS.as_ref() else {
        return REDACTED.to_owned();
    };
    let found = markers.matches(text);
    if !found.matched_any() {
        return text.to_owned();
    }
    let mut s = text.to_owned();
    if found.matched(0)
        && let Some(r) = AUTH_LINE.as_ref()
    {
        s = r
            .replace_all(&s, |c: &Captures| {
                format!(
                    "{}{}",
                    c.get(1).map_or("", |m| m.as_str()),
                    redact_authorization(c.get(2).map_or("", |m| m.as_str()), mode)
                )
            })
            .into_owned();
    }
    if found.matched(1)
        && let Some(r) = COOKIE_LINE.as_ref()
    {
        s = r.replace_all(&s, format!("${{1}}{REDACTED}")).into_owned();
    }
    if found.matched(2)
        && let Some(r) = JWT.as_ref()
    {
        s = r
            .replace_all(&s, |c: &Captures| {
                let t = c.get(0).map_or("", |m| m.as_str());
                token_replacement(t, mode)
            })
            .into_owned();
    }
    let summary_prefix = summary_header();
    if found.matched(3)
        && let Some(r) = FORM_PARAM.as_ref()
    {
        s = r
            .replace_all(&s, |c: &Captures| {
                let v = c.get(3).map_or("", |m| m.as_str());
                let keep = v.is_empty() || v == REDACTED || v.starts_with(&summary_prefix);
                format!(
                    "{}{}={}",
                    c.get(1).map_or("", |m| m.as_str()),
                    c.get(2).map_or("", |m| m.as_str()),
                    if keep { v } else { REDACTED }
                )
            })
            .into_owned();
    }
    if found.matched(4)
        && let Some(r) = JSON_KEY.as_ref()
    {
        s = r
            .replace_all(&s, |c: &Captures| {
                let v = c.get(2).map_or("", |m| m.as_str());
                let keep = v.is_empty() || v == REDACTED || v.starts_with(&summary_prefix);
                format!(
                    "{}\"{}\"",
                    c.get(1).map_or("", |m| m.as_str()),
                    if keep { v } else { REDACTED }
                )
            })
            .into_owned();
    }
    if found.matched(5)
        && let Some(r) = XML_PASSWORD.as_ref()
    {
        s = r
            .replace_all(&s, format!("${{1}}{REDACTED}${{3}}"))
            .into_owned();
    }
    s
}

fn redact_name_values(list: Option<&mut Value>, mode: TokenMode, all_secret: bool) -> usize {
    let mut n = 0;
    let Some(Value::Array(items)) = list else {
        return 0;
    };
    for item in items {
        let Some(obj) = item.as_object_mut() else {
            continue;
        };
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(Value::String(v)) = obj.get_mut("value") else {
            continue;
        };
        let new = if all_secret || name == "cookie" || name == "set-cookie" || is_secret_name(&name)
        {
            REDACTED.to_owned()
        } else if name == "authorization" || name == "proxy-authorization" {
            redact_authorization(v, mode)
        } else {
            redact_text(v, mode)
        };
        if *v != new {
            n += 1;
            *v = new;
        }
    }
    n
}

fn redact_strings(v: &mut Value, mode: TokenMode) -> usize {
    match v {
        Value::String(s) => {
            let new = redact_text(s, mode);
            if *s != new {
                *s = new;
                1
            } else {
                0
            }
        }
        Value::Array(a) => a.iter_mut().map(|x| redact_strings(x, mode)).sum(),
        Value::Object(o) => {
            let mut n = 0;
            for (k, x) in o.iter_mut() {
                if let Value::String(s) = x {
                    let key = k.trim().to_ascii_lowercase();
                    let new = if is_secret_name(&key) || key == "cookie" || key == "set-cookie" {
                        Some(REDACTED.to_owned())
                    } else if key == "authorization" || key == "proxy-authorization" {
                        Some(redact_authorization(s, mode))
                    } else {
                        None
                    };
                    if let Some(new) = new {
                        if !s.is_empty() && *s != new {
                            *s = new;
                            n += 1;
                        }
                        continue;
                    }
                }
                n += redact_strings(x, mode);
            }
            n
        }
        _ => 0,
    }
}

/// Redacts one HAR entry (or any HAR JSON value) in place; returns how many values changed.
pub fn redact_har_value(entry: &mut Value, mode: TokenMode) -> usize {
    let mut n = 0;
    for side in ["request", "response"] {
        let Some(part) = entry.get_mut(side) else {
            continue;
        };
        n += redact_name_values(part.get_mut("headers"), mode, false);
        n += redact_name_values(part.get_mut("cookies"), mode, true);
        n += redact_name_values(part.get_mut("queryString"), mode, false);
        if let Some(pd) = part.get_mut("postData") {
            n += redact_name_values(pd.get_mut("params"), mode, false);
        }
        // Base64 content: decode, redact, re-encode.
        if let Some(content) = part.get_mut("content")
            && content.get("encoding").and_then(Value::as_str) == Some("base64")
            && let Some(Value::String(text)) = content.get_mut("text")
            && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text.trim())
            && let Ok(plain) = String::from_utf8(bytes)
        {
            let red = redact_text(&plain, mode);
            if red != plain {
                *text = base64::engine::general_purpose::STANDARD.encode(red);
                n += 1;
            }
        }
    }
    // Everything else, skipping the arrays handled above.
    let Value::Object(o) = entry else {
        return n + redact_strings(entry, mode);
    };
    for (k, x) in o.iter_mut() {
        let (true, Value::Object(part)) = (k == "request" || k == "response", &mut *x) else {
            n += redact_strings(x, mode);
            continue;
        };
        for (pk, px) in part.iter_mut() {
            match pk.as_str() {
                // Handled above when they are arrays; anything else is walked generically.
                "headers" | "cookies" | "queryString" if px.is_array() => {}
                "postData" => match px {
                    Value::Object(pd) => {
                        for (dk, dx) in pd.iter_mut() {
                            if dk != "params" || !dx.is_array() {
                                n += redact_strings(dx, mode);
                            }
                        }
                    }
                    other => n += redact_strings(other, mode),
                },
                _ => n += redact_strings(px, mode),
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_header_constant_matches_its_json() {
        assert_eq!(
            SUMMARY_HEADER_B64,
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","exgate":"redacted"}"#)
        );
    }

    #[test]
    fn text_secrets() {
        let t = "POST /t HTTP/1.1\nAuthorization: Basic dXNlcjpDQU5BUlk=\nCookie: a=CANARY1\n\ngrant_type=client_credentials&client_secret=CANARY2&scope=x\n{\"refresh_token\":\"CANARY3\",\"x\":1}<t:Password>CANARY4</t:Password>";
        let r = redact_text(t, TokenMode::Remove);
        for c in [
            "dXNlcjpDQU5BUlk",
            "CANARY1",
            "CANARY2",
            "CANARY3",
            "CANARY4",
        ] {
            assert!(!r.contains(c), "{c} leaked: {r}");
        }
        assert!(r.contains("Authorization: Basic [REDACTED]"));
        assert!(r.contains("grant_type=client_credentials"));
    }

    #[test]
    fn bearer_probe_kept_and_token_summarised() {
        assert_eq!(redact_authorization("Bearer", TokenMode::Summary), "Bearer");
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let p = URL_SAFE_NO_PAD
            .encode(br#"{"aud":"https://mail.contoso.com","aio":"CANARY","name":"X"}"#);
        let t = format!("{h}.{p}.U0lHTkFUVVJFQ0FOQVJZ");
        let out = redact_authorization(&format!("Bearer {t}"), TokenMode::Summary);
        assert!(!out.contains("U0lHTkFUVVJFQ0FOQVJZ"));
        let claims = crate::jwt::decode(out.trim_start_matches("Bearer "))
            .unwrap()
            .claims;
        assert_eq!(
            claims.get("aud").and_then(Value::as_str),
            Some("https://mail.contoso.com")
        );
        assert!(claims.get("aio").is_none());
        // Idempotent.
        let again = redact_text(&out, TokenMode::Summary);
        assert_eq!(again, out);
    }
}
