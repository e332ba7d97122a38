//! Validation of client assertions (`private_key_jwt`), tolerant of exactly the quirks real
//! clients have (fractional `exp`/`iat`, padded thumbprints, line-broken `x5c`, no `nbf`) and
//! strict about everything Entra checks.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::scenario::{RegisteredCertificate, hex_upper};

/// Why an assertion was refused. Each maps to the AADSTS code Entra gives.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a JWT (AADSTS50027).
    #[error("JWT token is invalid or malformed.")]
    Malformed,
    /// Algorithm not accepted (AADSTS50027).
    #[error("JWT token is invalid or malformed. Unsupported algorithm '{0}'.")]
    Algorithm(String),
    /// No registered certificate has this thumbprint (AADSTS700027).
    #[error(
        "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service endpoint and https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build a query request URL, such as 'https://graph.microsoft.com/beta/applications/{client_id}']"
    )]
    KeyNotFound {
        /// Upper-case hex of the presented thumbprint.
        thumbprint: String,
        /// The client id.
        client_id: String,
    },
    /// Signature does not verify (AADSTS700027).
    #[error(
        "Client assertion contains an invalid signature. [Reason - The key used is expired or the signature is invalid.]"
    )]
    Signature,
    /// `x5c` is not the registered certificate (AADSTS700027).
    #[error(
        "Client assertion contains an invalid signature. [Reason - The provided x5c certificate chain does not match a certificate registered on the application.]"
    )]
    ChainMismatch,
    /// `iss`/`sub` not the client id (AADSTS700021).
    #[error(
        "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
    )]
    Issuer,
    /// `aud` wrong (AADSTS700023).
    #[error(
        "Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
    )]
    Audience,
    /// `aud` an array of several values (AADSTS5002741, since 2026: "maximum allowed is 1").
    #[error(
        "Number of audience values in the provided client credential exceed maximum allowed. {0} audience values provided, maximum allowed is 1."
    )]
    TooManyAudiences(usize),
    /// Outside `nbf`..`exp` (AADSTS700024).
    #[error(
        "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
    )]
    TimeRange {
        /// Current time.
        now: String,
        /// `nbf` (1970 when absent).
        nbf: String,
        /// `exp`.
        exp: String,
    },
    /// `jti` reused while strict replay checking is on (AADSTS50013-like; reported as 700024's
    /// sibling in Entra, kept separate here).
    #[error("Assertion is invalid because of various reasons - The token replay was detected.")]
    Replay,
}

impl AssertionError {
    /// The AADSTS code Entra uses for this problem.
    pub fn code(&self) -> u32 {
        match self {
            AssertionError::Malformed | AssertionError::Algorithm(_) => 50027,
            AssertionError::KeyNotFound { .. }
            | AssertionError::Signature
            | AssertionError::ChainMismatch => 700027,
            AssertionError::Issuer => 700021,
            AssertionError::Audience => 700023,
            AssertionError::TooManyAudiences(_) => 5002741,
            AssertionError::TimeRange { .. } => 700024,
            AssertionError::Replay => 50013,
        }
    }
}

/// What the validator needs to know about the request.
pub struct AssertionCheck<'a> {
    /// The `client_id` parameter (or the assertion's `iss` when the parameter is absent).
    pub client_id: &'a str,
    /// Audiences accepted (lower-case).
    pub audiences: &'a [String],
    /// Registered certificates of the application.
    pub certificates: &'a [RegisteredCertificate],
    /// Current time, seconds since the epoch.
    pub now: f64,
    /// Allowed skew, seconds.
    pub skew: f64,
}

/// A validated assertion.
#[derive(Clone, Debug)]
pub struct ValidAssertion {
    /// `jti`, if any.
    pub jti: Option<String>,
    /// `exp`.
    pub exp: f64,
    /// Signed with PS256/384/512 (else RS*).
    pub pss: bool,
    /// The key was named by `x5t#S256` (else `x5t`, `kid` or `x5c`).
    pub sha256_thumbprint: bool,
    /// The header carried `x5c`.
    pub x5c: bool,
}

/// Decodes base64url with or without `=` padding.
pub fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')).ok()
}

/// Reads header and claims without checking anything (for `iss` lookup before the app is known).
pub fn peek(assertion: &str) -> Result<(Value, Value), AssertionError> {
    let mut parts = assertion.trim().split('.');
    let (Some(h), Some(c), Some(_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AssertionError::Malformed);
    };
    let header: Value = b64url(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AssertionError::Malformed)?;
    let claims: Value = b64url(c)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AssertionError::Malformed)?;
    if !header.is_object() || !claims.is_object() {
        return Err(AssertionError::Malformed);
    }
    Ok((header, claims))
}

fn iso(t: f64) -> String {
    let secs = t.floor() as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].0000000Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00.0000000Z".into())
}

/// Validates a client assertion.
pub fn validate(
    assertion: &str,
    check: &AssertionCheck<'_>,
) -> Result<ValidAssertion, AssertionError> {
    let assertion = assertion.trim();
    let (header, claims) = peek(assertion)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let verify_alg: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = match alg {
        "RS256" => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        "PS384" => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA384,
        "PS512" => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA512,
        other => return Err(AssertionError::Algorithm(other.to_string())),
    };

    // Key lookup: x5t#S256, x5t, kid (hex or base64url SHA-1), then x5c alone.
    let x5c_der: Option<Vec<u8>> = match header.get("x5c") {
        None => None,
        Some(Value::Array(items)) => {
            let first = items
                .first()
                .and_then(Value::as_str)
                .ok_or(AssertionError::Malformed)?;
            let cleaned: String = first.chars().filter(|c| !c.is_whitespace()).collect();
            Some(
                STANDARD
                    .decode(cleaned)
                    .map_err(|_| AssertionError::Malformed)?,
            )
        }
        Some(_) => return Err(AssertionError::Malformed),
    };
    let s256 = header.get("x5t#S256").and_then(Value::as_str);
    let s1 = header.get("x5t").and_then(Value::as_str);
    let kid = header.get("kid").and_then(Value::as_str);
    let (presented, cert) = if let Some(t) = s256 {
        let tp = b64url(t).ok_or(AssertionError::Malformed)?;
        let c = check.certificates.iter().find(|c| c.sha256 == tp);
        (tp, c)
    } else if let Some(t) = s1 {
        let tp = b64url(t).ok_or(AssertionError::Malformed)?;
        let c = check.certificates.iter().find(|c| c.sha1 == tp);
        (tp, c)
    } else if let Some(k) = kid {
        let tp = decode_hex(k).or_else(|| b64url(k)).unwrap_or_default();
        let c = check
            .certificates
            .iter()
            .find(|c| c.sha1 == tp || c.sha256 == tp);
        (tp, c)
    } else if let Some(der) = &x5c_der {
        let c = check.certificates.iter().find(|c| c.der == *der);
        let tp = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
            .as_ref()
            .to_vec();
        (tp, c)
    } else {
        return Err(AssertionError::KeyNotFound {
            thumbprint: String::new(),
            client_id: check.client_id.to_string(),
        });
    };
    let cert = cert.ok_or_else(|| AssertionError::KeyNotFound {
        thumbprint: hex_upper(&presented),
        client_id: check.client_id.to_string(),
    })?;
    if let Some(der) = &x5c_der
        && *der != cert.der
    {
        return Err(AssertionError::ChainMismatch);
    }

    // Signature over "header.claims".
    let dot = assertion.rfind('.').ok_or(AssertionError::Malformed)?;
    let (signed, sig_b64) = assertion.split_at(dot);
    let signature = b64url(sig_b64.trim_start_matches('.')).ok_or(AssertionError::Malformed)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(verify_alg, &cert.public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| AssertionError::Signature)?;

    // iss = sub = client id.
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if !iss.eq_ignore_ascii_case(check.client_id) || !sub.eq_ignore_ascii_case(check.client_id) {
        return Err(AssertionError::Issuer);
    }

    // aud: a string or an array containing an accepted audience.
    let aud_ok = |a: &str| {
        let a = a.trim().trim_end_matches('/').to_ascii_lowercase();
        check.audiences.contains(&a)
    };
    // Entra ID accepts one audience value: an array of several is refused with AADSTS5002741
    // (reported in zitadel/oidc#887, April 2026).
    let aud_match = match claims.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(items)) if items.len() > 1 => {
            return Err(AssertionError::TooManyAudiences(items.len()));
        }
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !aud_match {
        return Err(AssertionError::Audience);
    }

    // Time: exp required, nbf optional; both may be fractional.
    let exp = claims.get("exp").and_then(Value::as_f64);
    let nbf = claims.get("nbf").and_then(Value::as_f64);
    let Some(exp_v) = exp else {
        return Err(AssertionError::TimeRange {
            now: iso(check.now),
            nbf: iso(nbf.unwrap_or(0.0)),
            exp: iso(0.0),
        });
    };
    let too_late = check.now > exp_v + check.skew;
    let too_early = nbf.is_some_and(|n| check.now + check.skew < n);
    if too_late || too_early {
        return Err(AssertionError::TimeRange {
            now: iso(check.now),
            nbf: iso(nbf.unwrap_or(0.0)),
            exp: iso(exp_v),
        });
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(ValidAssertion {
        jti,
        exp: exp_v,
        pss: alg.starts_with("PS"),
        sha256_thumbprint: s256.is_some(),
        x5c: x5c_der.is_some(),
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_assertions_never_panic(s in "\\PC{0,200}") {
            let check = AssertionCheck {
                client_id: "x",
                audiences: &[],
                certificates: &[],
                now: 0.0,
                skew: 300.0,
            };
            let _ = validate(&s, &check);
        }

        #[test]
        fn arbitrary_json_segments_never_panic(h in "\\PC{0,80}", c in "\\PC{0,80}") {
            let token = format!(
                "{}.{}.AAAA",
                URL_SAFE_NO_PAD.encode(h.as_bytes()),
                URL_SAFE_NO_PAD.encode(c.as_bytes())
            );
            let check = AssertionCheck {
                client_id: "x",
                audiences: &[],
                certificates: &[],
                now: 0.0,
                skew: 300.0,
            };
            let _ = validate(&token, &check);
        }
    }

    #[test]
    fn hex_and_padding_tolerated() {
        assert_eq!(decode_hex("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0aF"), None);
        assert_eq!(
            b64url("6-097osig_UazAaB_pwitdFILzQ="),
            b64url("6-097osig_UazAaB_pwitdFILzQ")
        );
    }
}
