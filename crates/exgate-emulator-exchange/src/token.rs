//! Bearer token verification against the emulator's signing keys (RS256, by `kid`).
//!
//! A daemon sends the same token with thousands of requests, and the RS256 signature check is
//! the largest single cost of serving one (about 15% of the CPU of an impersonated `GetFolder`).
//! Tokens whose signature verified are remembered (bounded, cleared when full); a remembered
//! token is still checked against the clock (`exp`, `nbf`) on every use, so it expires exactly
//! when an unremembered one would.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

/// How many verified tokens are remembered before the memory is cleared.
const VERIFIED_CAPACITY: usize = 4096;

/// Verifies bearer tokens signed by the emulator: RS256 public keys by `kid`.
pub struct TokenVerifier {
    keys: Vec<(String, DecodingKey)>,
    validation: Validation,
    authorities: Vec<String>,
    /// Tokens whose signature verified, with their claims.
    verified: Mutex<HashMap<Box<str>, Claims>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field(
                "kids",
                &self.keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Clock skew allowed on `exp` and `nbf`, in seconds (as Exchange: about five minutes).
pub const CLOCK_SKEW_SECONDS: u64 = 300;

/// Claims the Exchange plane reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Claims {
    /// Expiry (seconds since the epoch); required.
    #[serde(default)]
    pub exp: Option<f64>,
    /// Not before (seconds since the epoch).
    #[serde(default)]
    pub nbf: Option<f64>,
    #[serde(default)]
    pub aud: Option<serde_json::Value>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    /// How the app authenticated to Entra ID: "0" public, "1" secret, "2" certificate (v1).
    #[serde(default)]
    pub appidacr: Option<serde_json::Value>,
    /// The v2 form of `appidacr`.
    #[serde(default)]
    pub azpacr: Option<serde_json::Value>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub scp: Option<String>,
    #[serde(default)]
    pub upn: Option<String>,
    #[serde(default)]
    pub unique_name: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
}

impl Claims {
    /// The audience as a single string (first entry of an array).
    pub(crate) fn audience(&self) -> String {
        match &self.aud {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) => a
                .first()
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        }
    }

    /// The client application id (`appid` in v1 tokens, `azp` in v2).
    pub(crate) fn app_id(&self) -> String {
        self.appid
            .clone()
            .or_else(|| self.azp.clone())
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    /// The strength of the app's own authentication to Entra ID (`appidacr`/`azpacr`): 0 public
    /// client, 1 client secret, 2 certificate. `None` when the token does not say.
    pub(crate) fn app_auth_strength(&self) -> Option<u8> {
        let v = self.appidacr.as_ref().or(self.azpacr.as_ref())?;
        match v {
            serde_json::Value::String(s) => s.trim().parse().ok(),
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
            _ => None,
        }
    }

    /// Delegated scopes, if the token is a delegated one.
    pub(crate) fn scopes(&self) -> Option<Vec<String>> {
        self.scp
            .as_ref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
    }

    /// Application roles (empty when absent).
    pub(crate) fn roles(&self) -> Vec<String> {
        self.roles.clone().unwrap_or_default()
    }

    /// The signed-in user's name, for delegated tokens.
    pub(crate) fn user_name(&self) -> Option<String> {
        self.upn
            .clone()
            .or_else(|| self.unique_name.clone())
            .or_else(|| self.preferred_username.clone())
            .map(|u| u.to_ascii_lowercase())
    }
}

/// Why a token was not accepted by signature or time checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Not a JWT at all.
    Malformed,
    /// Signed with an unknown key or a bad signature, or not RS256.
    BadSignature,
    /// `exp` is past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
}

impl TokenVerifier {
    /// A verifier for RS256 tokens signed by any of these keys (`kid`, key).
    pub fn new(keys: Vec<(String, DecodingKey)>) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = CLOCK_SKEW_SECONDS;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            keys,
            validation,
            authorities: vec!["https://login.microsoftonline.com".to_owned()],
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Also accepts v2 tokens issued by `authority` (`{authority}/{tid}/v2.0`), e.g. the
    /// emulator's own base URL. v1 tokens (`https://sts.windows.net/{tid}/`) and
    /// `https://login.microsoftonline.com` are always accepted.
    pub fn with_authority(mut self, authority: &str) -> Self {
        self.authorities
            .push(authority.trim_end_matches('/').to_ascii_lowercase());
        self
    }

    /// Whether `iss` is a valid issuer for tenant `tid`.
    pub(crate) fn issuer_ok(&self, iss: &str, tid: &str) -> bool {
        let iss = iss.to_ascii_lowercase();
        !tid.is_empty()
            && (iss == format!("https://sts.windows.net/{tid}/")
                || self
                    .authorities
                    .iter()
                    .any(|a| iss == format!("{a}/{tid}/v2.0")))
    }

    pub(crate) fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(claims) = remembered {
            check_times(&claims, unix_now())?;
            return Ok(claims);
        }
        let claims = self.verify_signature(token)?;
        let mut map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= VERIFIED_CAPACITY {
            map.clear();
        }
        map.insert(token.into(), claims.clone());
        Ok(claims)
    }

    /// The full check: header, key, RS256 signature, `exp` and `nbf`.
    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::BadSignature);
        }
        let kid = header.kid.or(header.x5t).unwrap_or_default();
        let key = self
            .keys
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, key)| key)
            .ok_or(TokenError::BadSignature)?;
        match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidToken
                | ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_)
                | ErrorKind::MissingRequiredClaim(_)
                | ErrorKind::InvalidClaimFormat(_) => TokenError::Malformed,
                _ => TokenError::BadSignature,
            }),
        }
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs() as f64)
}

/// The clock checks `jsonwebtoken` makes, for a token already verified once: expired when `exp`
/// is more than the allowed skew in the past, not yet valid when `nbf` is more than the skew in
/// the future.
fn check_times(claims: &Claims, now: f64) -> Result<(), TokenError> {
    let skew = CLOCK_SKEW_SECONDS as f64;
    match claims.exp {
        Some(exp) if exp >= now - skew => {}
        _ => return Err(TokenError::Expired),
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + skew) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<f64>, nbf: Option<f64>) -> Claims {
        Claims {
            exp,
            nbf,
            ..Claims::default()
        }
    }

    #[test]
    fn clock_checks_match_the_full_verification() {
        let now = 1_800_000_000.0;
        let skew = CLOCK_SKEW_SECONDS as f64;
        assert_eq!(check_times(&claims(Some(now + 60.0), None), now), Ok(()));
        assert_eq!(check_times(&claims(Some(now - skew), None), now), Ok(()));
        assert_eq!(
            check_times(&claims(Some(now - skew - 1.0), None), now),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check_times(&claims(None, None), now),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check_times(&claims(Some(now + 3600.0), Some(now + skew)), now),
            Ok(())
        );
        assert_eq!(
            check_times(&claims(Some(now + 3600.0), Some(now + skew + 1.0)), now),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn a_remembered_token_is_still_checked_against_the_clock() {
        let v = TokenVerifier::new(Vec::new());
        // No keys: only a remembered token can pass.
        assert_eq!(v.verify("a.b.c").err(), Some(TokenError::Malformed));
        let now = unix_now();
        v.verified
            .lock()
            .unwrap()
            .insert("fresh".into(), claims(Some(now + 600.0), None));
        v.verified
            .lock()
            .unwrap()
            .insert("stale".into(), claims(Some(now - 3600.0), None));
        assert!(v.verify("fresh").is_ok());
        assert_eq!(v.verify("stale").err(), Some(TokenError::Expired));
    }
}
