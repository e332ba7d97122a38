//! Client assertions (`private_key_jwt`): the signed JWT a certificate credential sends instead of a
//! secret. Signed with aws-lc-rs directly so the key is parsed once, not once per signature.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::certificate::ClientCertificate;
use crate::error::CredentialError;

/// Signature algorithm and thumbprint header of a client assertion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssertionAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 and an `x5t` (SHA-1) header. The default: what msal and
    /// azure-identity send.
    #[default]
    #[serde(rename = "RS256", alias = "rs256")]
    Rs256,
    /// RSASSA-PSS with SHA-256 and an `x5t#S256` (SHA-256) header, as the current Entra docs
    /// recommend.
    #[serde(rename = "PS256", alias = "ps256")]
    Ps256,
}

/// How client assertions are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct AssertionOptions {
    /// Algorithm and thumbprint header.
    pub algorithm: AssertionAlgorithm,
    /// Send the certificate chain in `x5c` (subject name + issuer authentication).
    pub send_x5c: bool,
    /// Lifetime in seconds (`exp - iat`); 600 by default, at most 600.
    pub lifetime_secs: u64,
}

impl Default for AssertionOptions {
    fn default() -> Self {
        AssertionOptions {
            algorithm: AssertionAlgorithm::Rs256,
            send_x5c: false,
            lifetime_secs: 600,
        }
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    x5t: Option<&'a str>,
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    x5t_s256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x5c: Option<Vec<String>>,
}

/// The claims of a client assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// The token endpoint the assertion is sent to.
    pub aud: String,
    /// The client id.
    pub iss: String,
    /// The client id.
    pub sub: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// A fresh GUID per assertion.
    pub jti: String,
}

/// Builds and signs a client assertion for `client_id` addressed to `audience` (the exact token
/// endpoint URL), at time `now` (seconds since the epoch). Every call uses a fresh `jti`.
pub fn build_assertion(
    cert: &ClientCertificate,
    client_id: &str,
    audience: &str,
    options: &AssertionOptions,
    now: u64,
) -> Result<String, CredentialError> {
    let info = cert.info();
    let header = Header {
        alg: match options.algorithm {
            AssertionAlgorithm::Rs256 => "RS256",
            AssertionAlgorithm::Ps256 => "PS256",
        },
        typ: "JWT",
        x5t: (options.algorithm == AssertionAlgorithm::Rs256).then_some(info.x5t.as_str()),
        x5t_s256: (options.algorithm == AssertionAlgorithm::Ps256)
            .then_some(info.x5t_s256.as_str()),
        x5c: options.send_x5c.then(|| {
            cert.chain_der()
                .iter()
                .map(|d| STANDARD.encode(d))
                .collect()
        }),
    };
    let lifetime = options.lifetime_secs.clamp(60, 600);
    let claims = AssertionClaims {
        aud: audience.to_string(),
        iss: client_id.to_string(),
        sub: client_id.to_string(),
        exp: now + lifetime,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let internal = |e: String| CredentialError::new("<assertion>", e, "");
    let header_json = serde_json::to_vec(&header).map_err(|e| internal(e.to_string()))?;
    let claims_json = serde_json::to_vec(&claims).map_err(|e| internal(e.to_string()))?;
    let mut jwt = String::with_capacity(1024);
    URL_SAFE_NO_PAD.encode_string(&header_json, &mut jwt);
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims_json, &mut jwt);
    let key = cert.key();
    let mut sig = vec![0u8; key.public_modulus_len()];
    let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = match options.algorithm {
        AssertionAlgorithm::Rs256 => &RSA_PKCS1_SHA256,
        AssertionAlgorithm::Ps256 => &RSA_PSS_SHA256,
    };
    key.sign(padding, &SystemRandom::new(), jwt.as_bytes(), &mut sig)
        .map_err(|e| internal(format!("signing failed: {e}")))?;
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(&sig, &mut jwt);
    Ok(jwt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cert() -> ClientCertificate {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        ClientCertificate::from_file(
            &dir.join("cert.pem"),
            Some(&dir.join("key-pkcs8.pem")),
            None,
        )
        .expect("fixture loads")
    }

    fn verify(
        jwt: &str,
        cert: &ClientCertificate,
        alg: jsonwebtoken::Algorithm,
    ) -> AssertionClaims {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).expect("cert");
        let key =
            jsonwebtoken::DecodingKey::from_rsa_der(&parsed.public_key().subject_public_key.data);
        let mut v = jsonwebtoken::Validation::new(alg);
        v.set_audience(&["https://login.example/t/oauth2/v2.0/token"]);
        v.set_required_spec_claims(&["exp", "aud"]);
        jsonwebtoken::decode::<AssertionClaims>(jwt, &key, &v)
            .expect("signature verifies")
            .claims
    }

    fn header(jwt: &str) -> serde_json::Value {
        let h = jwt.split('.').next().expect("segment");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json")
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    const AUD: &str = "https://login.example/t/oauth2/v2.0/token";

    #[test]
    fn rs256_with_x5t_verifies() {
        let c = cert();
        let jwt =
            build_assertion(&c, "app", AUD, &AssertionOptions::default(), now()).expect("signs");
        let h = header(&jwt);
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["x5t"], c.info().x5t.as_str());
        assert!(h.get("x5t#S256").is_none());
        assert!(h.get("x5c").is_none());
        let claims = verify(&jwt, &c, jsonwebtoken::Algorithm::RS256);
        assert_eq!(claims.iss, "app");
        assert_eq!(claims.sub, "app");
        assert_eq!(claims.exp - claims.iat, 600);
    }

    #[test]
    fn ps256_with_x5t_s256_and_x5c_verifies() {
        let c = cert();
        let opts = AssertionOptions {
            algorithm: AssertionAlgorithm::Ps256,
            send_x5c: true,
            lifetime_secs: 600,
        };
        let jwt = build_assertion(&c, "app", AUD, &opts, now()).expect("signs");
        let h = header(&jwt);
        assert_eq!(h["alg"], "PS256");
        assert_eq!(h["x5t#S256"], c.info().x5t_s256.as_str());
        assert!(h.get("x5t").is_none());
        assert_eq!(h["x5c"][0], STANDARD.encode(c.der()));
        verify(&jwt, &c, jsonwebtoken::Algorithm::PS256);
    }

    #[test]
    fn every_assertion_has_a_fresh_jti_and_at_most_ten_minutes() {
        let c = cert();
        let opts = AssertionOptions {
            lifetime_secs: 3600,
            ..Default::default()
        };
        let a = verify(
            &build_assertion(&c, "app", AUD, &opts, now()).expect("a"),
            &c,
            jsonwebtoken::Algorithm::RS256,
        );
        let b = verify(
            &build_assertion(&c, "app", AUD, &opts, now()).expect("b"),
            &c,
            jsonwebtoken::Algorithm::RS256,
        );
        assert_ne!(a.jti, b.jti);
        assert_eq!(a.exp - a.iat, 600);
    }
}
