//! JSON Web Tokens as Entra ID issues them: decoded, never verified.
//!
//! Signatures of Microsoft tokens are never verified here (Graph and Exchange tokens carry a
//! header `nonce` that makes them unverifiable by third parties anyway). The raw token is never
//! stored: [`DecodedJwt`] keeps the header and the claims, not the signature, and
//! [`TokenClaims`] keeps the claims that matter for diagnosis, typed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Why a value is not a decodable JWT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not `header.payload.signature`.
    #[error(
        "not a JWT: expected three dot-separated base64url parts, found {parts}; copy the whole value after `Bearer `"
    )]
    Shape {
        /// Number of parts found.
        parts: usize,
    },
    /// A JWE (encrypted token, five parts): its claims cannot be read without the key.
    #[error("the token is encrypted (JWE, five parts); its claims cannot be read")]
    Encrypted,
    /// A part is not base64url.
    #[error("the JWT {part} is not valid base64url")]
    Base64 {
        /// `header` or `payload`.
        part: &'static str,
    },
    /// A part is not a JSON object.
    #[error("the JWT {part} is not a JSON object")]
    Json {
        /// `header` or `payload`.
        part: &'static str,
    },
}

/// A decoded token: header and claims. The signature is dropped.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodedJwt {
    /// The JOSE header (`alg`, `typ`, `x5t`, `kid`, `nonce`).
    pub header: Map<String, Value>,
    /// Every claim as sent.
    pub claims: Map<String, Value>,
}

impl std::fmt::Debug for DecodedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedJwt")
            .field("claims", &TokenClaims::from_map(&self.claims))
            .finish_non_exhaustive()
    }
}

fn b64(part: &str) -> Option<Vec<u8>> {
    let trimmed = part.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).ok().or_else(|| {
        // Some tools emit standard base64; accept it too.
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .ok()
    })
}

/// Decodes a compact JWT (with or without a leading `Bearer `). Never verifies the signature.
pub fn decode(token: &str) -> Result<DecodedJwt, JwtError> {
    let t = token.trim();
    let t = t
        .strip_prefix("Bearer ")
        .or_else(|| t.strip_prefix("bearer "))
        .unwrap_or(t)
        .trim();
    let parts: Vec<&str> = t.split('.').collect();
    if parts.len() == 5 {
        return Err(JwtError::Encrypted);
    }
    let [h, p, _sig] = parts.as_slice() else {
        return Err(JwtError::Shape { parts: parts.len() });
    };
    let header_bytes = b64(h).ok_or(JwtError::Base64 { part: "header" })?;
    let payload_bytes = b64(p).ok_or(JwtError::Base64 { part: "payload" })?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| JwtError::Json { part: "header" })?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload_bytes).map_err(|_| JwtError::Json { part: "payload" })?;
    Ok(DecodedJwt { header, claims })
}

/// Whether `s` has the shape of a compact JWS (`eyJ….eyJ….sig`).
pub fn looks_like_jwt(s: &str) -> bool {
    let t = s.trim();
    let t = t.strip_prefix("Bearer ").unwrap_or(t);
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts[1].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// The claims that matter for diagnosis, typed. Holds no secret: a token cannot be rebuilt from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TokenClaims {
    /// `aud` (the first one if an array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `tid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// `appid` (v1) or `azp` (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// `appidacr` (v1) or `azpacr` (v2): `0` public client, `1` secret, `2` certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appidacr: Option<String>,
    /// `idtyp` (`app` or `user`), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idtyp: Option<String>,
    /// `ver` (`1.0` or `2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
    /// `roles`: application permissions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// `scp`, split on spaces: delegated permissions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scp: Vec<String>,
    /// `upn`, `unique_name` or `preferred_username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// `exp` (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// `nbf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

fn claim_str(m: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match m.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn claim_time(m: &Map<String, Value>, key: &str) -> Option<i64> {
    match m.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl TokenClaims {
    /// Reads the typed claims from a claim map.
    pub fn from_map(m: &Map<String, Value>) -> Self {
        let roles = match m.get("roles") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let scp = match m.get("scp") {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        TokenClaims {
            aud: claim_str(m, &["aud"]),
            iss: claim_str(m, &["iss"]),
            tid: claim_str(m, &["tid"]),
            appid: claim_str(m, &["appid", "azp"]),
            appidacr: claim_str(m, &["appidacr", "azpacr"]),
            idtyp: claim_str(m, &["idtyp"]),
            ver: claim_str(m, &["ver"]),
            roles,
            scp,
            upn: claim_str(m, &["upn", "unique_name", "preferred_username"]),
            exp: claim_time(m, "exp"),
            nbf: claim_time(m, "nbf"),
            iat: claim_time(m, "iat"),
        }
    }

    /// Decodes a token and returns its typed claims.
    pub fn from_token(token: &str) -> Result<Self, JwtError> {
        decode(token).map(|d| Self::from_map(&d.claims))
    }

    /// Whether this is an app-only token: `idtyp=app`, or neither `scp` nor a user name.
    pub fn is_app_only(&self) -> bool {
        match self.idtyp.as_deref() {
            Some(t) => t.eq_ignore_ascii_case("app"),
            None => self.scp.is_empty() && self.upn.is_none(),
        }
    }

    /// One-line summary (no secret): audience, kind, permissions, expiry.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "aud={} {}",
            self.aud.as_deref().unwrap_or("?"),
            if self.is_app_only() {
                "app-only"
            } else {
                "delegated"
            }
        );
        if !self.roles.is_empty() {
            s.push_str(&format!(" roles=[{}]", self.roles.join(",")));
        }
        if !self.scp.is_empty() {
            s.push_str(&format!(" scp=[{}]", self.scp.join(",")));
        }
        if let Some(a) = &self.appidacr {
            s.push_str(&format!(" appidacr={a}"));
        }
        if let Some(e) = self.exp {
            s.push_str(&format!(" exp={e}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}", p in "[A-Za-z0-9_-]{0,80}") {
            let _ = decode(&s);
            let _ = looks_like_jwt(&s);
            let _ = TokenClaims::from_token(&format!("eyJhbGciOiJub25lIn0.{p}.x"));
        }
    }
}
