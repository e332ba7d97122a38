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

/// Names of headers whose values are credentials (besides `Authorization`, whose scheme is kept).
static SECRET_HEADER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?i)^(?:proxy-authorization|cookie|set-cookie|x-ms-refreshtokencredential|x-api-key|api-key|apikey|ocp-apim-subscription-key|x-functions-key|x-auth-token|x-csrf-token|x-xsrf-token)$",
    )
});
/// A header line in any line ending, with curl's `> `/`< ` prefixes and Fiddler's `→`.
static HEADER_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(r"(?im)^([ \t]*(?:[<>*][ \t]+)?)([A-Za-z][A-Za-z0-9_-]*)([ \t]*(?::|→)[ \t]*)([^\r\n]*)")
});
static JWT: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"));
/// `name=value` in form bodies, query strings and free text (`AZURE_CLIENT_SECRET=…`).
static ASSIGNMENT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r#"(?i)(^|[?&;\s,({\[])([A-Za-z_][A-Za-z0-9_.-]*)([ \t]*=[ \t]*)(\[REDACTED\]|"[^"\r\n]*"|'[^'\r\n]*'|[^&\s"'<,;)}\]]*)"#,
    )
});
/// `name: value` in free text and YAML-like settings (`pwd: …`, `client_secret: …`).
static COLON_PAIR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r#"(?im)(^|[\s,({])([A-Za-z_][A-Za-z0-9_.-]*)([ \t]*:[ \t]+)(\[REDACTED\]|"[^"\r\n]*"|'[^'\r\n]*'|[^\s,;)}]+)"#,
    )
});
/// A JSON (or JSON-like) key with a string value: `"refreshToken": "…"`, `'client-secret': '…'`.
static JSON_KEY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(r#"(["'])([A-Za-z_][A-Za-z0-9_.-]*)(["']\s*:\s*)(["'])((?:[^"'\\]|\\.)*)(["'])"#)
});
static XML_SECRET: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?is)(<((?:[\w.-]+:)?(?:Password|SignatureValue|BinarySecurityToken|CipherValue|ClientSecret|RefreshToken|AccessToken))\b[^>]*>)(.*?)(</(?:[\w.-]+:)?(?:Password|SignatureValue|BinarySecurityToken|CipherValue|ClientSecret|RefreshToken|AccessToken)>)",
    )
});
static SAML_ASSERTION: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"(?is)(<(?:[\w.-]+:)?Assertion\b[^>]*>)(.*?)(</(?:[\w.-]+:)?Assertion>)"));
static PEM_PRIVATE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?s)(-----BEGIN (?:[A-Z0-9 ]+ )?PRIVATE KEY-----)(.*?)(-----END (?:[A-Z0-9 ]+ )?PRIVATE KEY-----)",
    )
});
/// SASL and mail-protocol sign-ins in transcripts: `AUTH XOAUTH2 <b64>`, `AUTH PLAIN <b64>`,
/// `AUTHENTICATE XOAUTH2 <b64>`, IMAP `LOGIN user password`, POP `PASS password`.
static SASL_COMMAND: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r#"(?im)(\b(?:AUTH|AUTHENTICATE)[ \t]+(?:XOAUTH2|PLAIN|LOGIN|OAUTHBEARER)[ \t]+)([A-Za-z0-9+/=._-]+)"#,
    )
});
static IMAP_LOGIN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(r#"(?im)(\bLOGIN[ \t]+(?:"[^"\r\n]*"|\S+)[ \t]+)("(?:[^"\\\r\n]|\\.)*"|[^\s"]+)"#)
});
static POP_PASS: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"(?im)^((?:[ \t]*(?:C:|>|\[?C\]?)?[ \t]*)PASS[ \t]+)(\S[^\r\n]*)"));
/// A client line of a SASL exchange that is only base64 (an `AUTH LOGIN` user name or password,
/// an `AUTHENTICATE` continuation), optionally after a transcript prefix.
static SASL_CONTINUATION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?m)^((?:[ \t]*(?:C:|>>|>|Tx|\[C\]|CLIENT:)[ \t]*'?)?)([A-Za-z0-9+/]{6,}={0,2})('?[ \t]*\r?)$",
    )
});
static SECURE_STRING: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r#"(?i)(ConvertTo-SecureString\s+(?:-String\s+)?)("[^"]*"|'[^']*'|\S+)"#));
static URL_USERINFO: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^/\s@]+)(@)"));

/// The words every marker below needs; a string without any of them holds no secret.
static PREFILTER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?i)(authorization|cookie|eyJ|secret|assertion|token|code|passw|pwd|verifier|credential|key|sig|saml|wresult|auth|login|pass|securestring|password|signaturevalue|ciphervalue)",
    )
});

/// Markers that gate the patterns above, in the order they are checked.
static MARKERS: LazyLock<Option<RegexSet>> = LazyLock::new(|| {
    RegexSet::new([
        // 0: header lines
        r"(?i)(authorization|cookie|key|token|credential)[ \t]*(?::|→)",
        // 1: JWTs
        r"eyJ",
        // 2: assignments, pairs and JSON keys with a secret-looking name
        r#"(?i)(secret|assertion|token|code|password|passwd|pwd|verifier|credential|key|sig|saml|pass|wresult)[A-Za-z0-9_.-]{0,24}["']?[ \t]*[=:]"#,
        // 3: XML secrets and SAML assertions
        r"(?i)<(?:[\w.-]+:)?(Password|SignatureValue|BinarySecurityToken|CipherValue|ClientSecret|RefreshToken|AccessToken|Assertion)\b",
        // 4: PEM private keys
        r"PRIVATE KEY-----",
        // 5: SASL and mail-protocol sign-ins
        r"(?im)(\bauth(enticate)?[ \t]+(xoauth2|plain|login|oauthbearer)\b|\blogin[ \t]+\S+[ \t]+\S|^[ \t]*(c:[ \t]*|>[ \t]*)?pass[ \t]+\S)",
        // 6: PowerShell secure strings
        r"(?i)ConvertTo-SecureString",
        // 7: credentials in a URL
        r"://[^/\s:@]+:[^/\s@]+@",
    ])
    .ok()
});

/// Whether a parameter, key or setting name names a secret, whatever its case and separators
/// (`client_secret`, `clientSecret`, `client-secret`, `AZURE_CLIENT_SECRET`, `refreshToken`).
pub fn is_secret_key(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if n.is_empty() {
        return false;
    }
    const EXACT: &[&str] = &[
        "code",
        "pwd",
        "pass",
        "passwd",
        "sig",
        "signature",
        "assertion",
        "samlresponse",
        "samlrequest",
        "wresult",
        "sessionstate",
        "sessionid",
        "apikey",
        "xapikey",
        "subscriptionkey",
        "key",
        "token",
        "secret",
        "credential",
        "credentials",
    ];
    const SUFFIXES: &[&str] = &[
        "secret",
        "password",
        "passwd",
        "passphrase",
        "assertion",
        "credential",
        "clientcredential",
        "apikey",
        "accesskey",
        "privatekey",
        "storekey",
        "signingkey",
        "encryptionkey",
        "token",
        "refreshtoken",
        "accesstoken",
        "idtoken",
        "devicecode",
        "codeverifier",
        "authcode",
        "authorizationcode",
    ];
    // Names that end like a secret but only describe one.
    const NOT: &[&str] = &[
        "tokentype",
        "tokentypes",
        "nexttoken",
        "tokenendpoint",
        "secretid",
        "keyid",
        "passwordexpired",
        "tokenexpiry",
        "csrftokenname",
    ];
    if NOT.contains(&n.as_str()) {
        return false;
    }
    EXACT.contains(&n.as_str())
        || SUFFIXES.iter().any(|s| n.ends_with(s))
        || (n.ends_with("key") && n.starts_with("exgate"))
}

/// Single words that name a secret in `name=value` (a query string, a form) but are everyday
/// words in prose and in `Name: value` lines ("token: the audience is ...").
fn is_generic_word(name: &str) -> bool {
    [
        "token",
        "key",
        "secret",
        "credential",
        "credentials",
        "signature",
        "code",
        "sig",
        "assertion",
        "pass",
    ]
    .iter()
    .any(|w| w.eq_ignore_ascii_case(name.trim()))
}

fn keep_value(v: &str, summary_prefix: &str) -> bool {
    let bare = v.trim_matches(['"', '\'']);
    bare.is_empty() || bare == REDACTED || bare.starts_with(summary_prefix)
}

/// The value with its quotes kept and its content replaced.
fn replaced(v: &str) -> String {
    match (v.chars().next(), v.chars().last()) {
        (Some(q @ ('"' | '\'')), Some(e)) if v.len() >= 2 && e == q => format!("{q}{REDACTED}{q}"),
        _ => REDACTED.to_owned(),
    }
}

/// Group `i` of a match, or "".
fn g<'a>(c: &Captures<'a>, i: usize) -> &'a str {
    c.get(i).map_or("", |m| m.as_str())
}

/// Redacts secrets anywhere in free text or a raw capture: HTTP headers (any line ending, curl
/// `-v` prefixes), form bodies and query strings, JSON keys in any case and separator style,
/// XML elements and SAML assertions, SASL and IMAP/POP sign-ins in transcripts, PEM private keys,
/// settings assignments (`AZURE_CLIENT_SECRET=…`, `pwd: …`), PowerShell secure strings, URL
/// credentials, and every JWT.
pub fn redact_text(text: &str, mode: TokenMode) -> String {
    // One scan for the markers first: most strings of a HAR hold none of them.
    let Some(markers) = MARKERS.as_ref() else {
        return REDACTED.to_owned();
    };
    // Most strings of a HAR hold no secret word at all: one literal scan decides that cheaply.
    let userinfo = text.contains("://") && text.contains('@');
    if !userinfo && !PREFILTER.as_ref().is_none_or(|r| r.is_match(text)) {
        return text.to_owned();
    }
    let found = markers.matches(text);
    if !found.matched_any() {
        return text.to_owned();
    }
    let summary_prefix = summary_header();
    let mut s = text.to_owned();
    let apply = |s: &mut String, r: &LazyLock<Option<Regex>>, f: &dyn Fn(&Captures) -> String| {
        if let Some(r) = r.as_ref()
            && let std::borrow::Cow::Owned(out) = r.replace_all(s, |c: &Captures| f(c))
        {
            *s = out;
        }
    };
    if found.matched(4) {
        apply(&mut s, &PEM_PRIVATE, &|c| {
            format!("{}\n{REDACTED}\n{}", g(c, 1), g(c, 3))
        });
    }
    if found.matched(0) {
        apply(&mut s, &HEADER_LINE, &|c| {
            let name = g(c, 2);
            let value = g(c, 4);
            let lname = name.to_ascii_lowercase();
            let new = if lname == "authorization" {
                redact_authorization(value, mode)
            } else if lname == "proxy-authorization" {
                redact_authorization(value, TokenMode::Remove)
            } else if SECRET_HEADER.as_ref().is_some_and(|r| r.is_match(name))
                || (is_secret_key(name) && !is_generic_word(name) && !value.trim().is_empty())
            {
                if value.trim().is_empty() || keep_value(value, &summary_prefix) {
                    value.to_owned()
                } else {
                    REDACTED.to_owned()
                }
            } else {
                value.to_owned()
            };
            format!("{}{}{}{}", g(c, 1), name, g(c, 3), new)
        });
    }
    if found.matched(5) {
        apply(&mut s, &SASL_COMMAND, &|c| format!("{}{REDACTED}", g(c, 1)));
        apply(&mut s, &IMAP_LOGIN, &|c| {
            format!("{}{}", g(c, 1), replaced(g(c, 2)))
        });
        apply(&mut s, &POP_PASS, &|c| format!("{}{REDACTED}", g(c, 1)));
        // Continuation lines only in a transcript that has a SASL exchange.
        let sasl = s.contains("334 ")
            || s.contains("\n+ ")
            || s.to_ascii_uppercase().contains("AUTH LOGIN")
            || s.to_ascii_uppercase().contains("AUTHENTICATE");
        if sasl {
            apply(&mut s, &SASL_CONTINUATION, &|c| {
                let v = g(c, 2);
                // Server prompts of AUTH LOGIN ("Username:", "Password:") are not secrets.
                if matches!(v, "VXNlcm5hbWU6" | "UGFzc3dvcmQ6") {
                    g(c, 0).to_owned()
                } else {
                    format!("{}{REDACTED}{}", g(c, 1), g(c, 3))
                }
            });
        }
    }
    if found.matched(1) {
        apply(&mut s, &JWT, &|c| token_replacement(g(c, 0), mode));
    }
    if found.matched(3) {
        apply(&mut s, &SAML_ASSERTION, &|c| {
            format!("{}{REDACTED}{}", g(c, 1), g(c, 3))
        });
        apply(&mut s, &XML_SECRET, &|c| {
            format!("{}{REDACTED}{}", g(c, 1), g(c, 4))
        });
    }
    if found.matched(2) {
        apply(&mut s, &ASSIGNMENT, &|c| {
            let (name, v) = (g(c, 2), g(c, 4));
            let secret = is_secret_key(name);
            if !secret || keep_value(v, &summary_prefix) {
                g(c, 0).to_owned()
            } else {
                format!("{}{}{}{}", g(c, 1), name, g(c, 3), replaced(v))
            }
        });
        apply(&mut s, &JSON_KEY, &|c| {
            let (name, v) = (g(c, 2), g(c, 5));
            // `code` in JSON is almost always an error code (Graph), not an authorization code.
            if !is_secret_key(name)
                || name.eq_ignore_ascii_case("code")
                || keep_value(v, &summary_prefix)
            {
                g(c, 0).to_owned()
            } else {
                format!(
                    "{}{}{}{}{REDACTED}{}",
                    g(c, 1),
                    name,
                    g(c, 3),
                    g(c, 4),
                    g(c, 6)
                )
            }
        });
        apply(&mut s, &COLON_PAIR, &|c| {
            let (name, v) = (g(c, 2), g(c, 4));
            if !is_secret_key(name) || is_generic_word(name) || keep_value(v, &summary_prefix) {
                g(c, 0).to_owned()
            } else {
                format!("{}{}{}{}", g(c, 1), name, g(c, 3), replaced(v))
            }
        });
    }
    if found.matched(6) {
        apply(&mut s, &SECURE_STRING, &|c| {
            format!("{}{}", g(c, 1), replaced(g(c, 2)))
        });
    }
    if found.matched(7) {
        apply(&mut s, &URL_USERINFO, &|c| {
            format!("{}{REDACTED}{}", g(c, 1), g(c, 3))
        });
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
