//! The emulator's signing key, JWKS, and minting of access and id tokens.
//!
//! Tokens are RS256 JWTs with the claim sets Entra issues: v1 shape for Exchange Online
//! (`iss` `https://sts.windows.net/{tid}/`, `appid`/`appidacr`, `ver` `1.0`) and v2 shape for
//! Microsoft Graph and other resources (`iss` `{authority}/{tid}/v2.0`, `azp`/`azpacr`, `ver`
//! `2.0`). Other planes of the emulator (Exchange, Graph) validate tokens with
//! [`SigningKey::validate`].

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::scenario::{EXCHANGE_APP_ID, EXCHANGE_RESOURCE, GRAPH_APP_ID, GRAPH_RESOURCE};

/// Errors of key handling and token minting.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The signing key could not be generated or loaded.
    #[error("cannot create the emulator's signing key: {0}")]
    Key(String),
    /// Signing failed.
    #[error("cannot sign a token: {0}")]
    Sign(String),
    /// A token presented for validation is not valid.
    #[error("token is not valid: {0}")]
    Invalid(String),
}

/// The RSA key the emulator signs tokens with, and its published JWK.
pub struct SigningKey {
    kid: String,
    /// Parsed once: parsing an RSA key per signature would dominate the cost of a token.
    rsa: aws_lc_rs::signature::RsaKeyPair,
    decoding: jsonwebtoken::DecodingKey,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

static SHARED_KEY: OnceLock<Result<Arc<SigningKey>, String>> = OnceLock::new();

impl SigningKey {
    /// Generates a new RSA-2048 key and a self-signed certificate for it (published as `x5c`).
    pub fn generate() -> Result<SigningKey, TokenError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "accounts.exgate.emulator");
        let cert = params
            .self_signed(&key)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let der = cert.der().to_vec();
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        let kid = URL_SAFE_NO_PAD.encode(sha1.as_ref());
        let rsa = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&key.serialize_der())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let (n, e) = rsa_components(&rcgen::PublicKeyData::subject_public_key_info(&key))?;
        let n_b64 = URL_SAFE_NO_PAD.encode(&n);
        let e_b64 = URL_SAFE_NO_PAD.encode(&e);
        let decoding = jsonwebtoken::DecodingKey::from_rsa_components(&n_b64, &e_b64)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "kid": kid,
            "x5t": kid,
            "n": n_b64,
            "e": e_b64,
            "x5c": [STANDARD.encode(&der)],
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        });
        Ok(SigningKey {
            kid,
            rsa,
            decoding,
            jwk,
        })
    }

    /// A key shared by every emulator in this process (RSA key generation is the slowest part
    /// of starting an emulator; tests start many).
    pub fn shared() -> Result<Arc<SigningKey>, TokenError> {
        SHARED_KEY
            .get_or_init(|| {
                SigningKey::generate()
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(TokenError::Key)
    }

    /// The key id (`kid`, also `x5t`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key, for verifiers (e.g. the Exchange plane's).
    pub fn decoding_key(&self) -> &jsonwebtoken::DecodingKey {
        &self.decoding
    }

    /// The JWK Set document (`{"keys":[...]}`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    /// Signs `claims` as an RS256 JWT with `kid` (and `x5t` when `with_x5t`, as v1 tokens have).
    pub fn sign(&self, claims: &Value, with_x5t: bool) -> Result<String, TokenError> {
        let header = if with_x5t {
            json!({"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid})
        } else {
            json!({"typ": "JWT", "alg": "RS256", "kid": self.kid})
        };
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0u8; self.rsa.public_modulus_len()];
        self.rsa
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                out.as_bytes(),
                &mut signature,
            )
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(&signature));
        Ok(out)
    }

    /// Checks the signature and `exp`/`nbf` (5 minutes of skew) of a token this emulator
    /// issued, and returns its claims. Audience and issuer are the caller's to check.
    pub fn validate(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = 300;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(data.claims)
    }
}

/// Extracts the RSA modulus and exponent (no leading zero bytes) from an SPKI DER.
fn rsa_components(spki_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TokenError> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| TokenError::Key(e.to_string()))?;
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
            let strip = |b: &[u8]| {
                let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                b.get(first..).unwrap_or(&[]).to_vec()
            };
            Ok((strip(rsa.modulus), strip(rsa.exponent)))
        }
        _ => Err(TokenError::Key("generated key is not RSA".into())),
    }
}

/// The kinds of resource the emulator knows, deciding the token shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    /// Exchange Online.
    Exchange,
    /// Microsoft Graph.
    Graph,
}

impl ResourceKind {
    /// Recognises a normalised resource URI.
    pub fn from_resource(resource: &str) -> Option<ResourceKind> {
        match resource {
            EXCHANGE_RESOURCE => Some(ResourceKind::Exchange),
            GRAPH_RESOURCE => Some(ResourceKind::Graph),
            _ => None,
        }
    }

    /// The resource's application id.
    pub fn app_id(&self) -> &'static str {
        match self {
            ResourceKind::Exchange => EXCHANGE_APP_ID,
            ResourceKind::Graph => GRAPH_APP_ID,
        }
    }
}

/// Who the token is for.
#[derive(Clone, Debug)]
pub enum Subject {
    /// App-only: the service principal, with the granted application permissions.
    App {
        /// Service principal object id.
        service_principal: Uuid,
        /// Granted roles (the claim is omitted when empty).
        roles: Vec<String>,
    },
    /// Delegated: a user, with the granted delegated permissions.
    User {
        /// User object id.
        oid: Uuid,
        /// UPN.
        upn: String,
        /// Display name.
        name: String,
        /// Scopes (`scp`).
        scopes: Vec<String>,
        /// Authentication methods (`amr`).
        amr: Vec<&'static str>,
    },
}

/// Everything needed to mint an access token.
#[derive(Clone, Debug)]
pub struct AccessTokenSpec<'a> {
    /// Tenant id.
    pub tenant: Uuid,
    /// Audience exactly as requested (e.g. `https://outlook.office365.com`).
    pub audience: &'a str,
    /// Client id.
    pub client_id: Uuid,
    /// Application display name.
    pub app_name: &'a str,
    /// `appidacr`: "0" public, "1" secret, "2" certificate.
    pub client_auth: &'a str,
    /// Subject.
    pub subject: Subject,
    /// Lifetime (`expires_in`).
    pub lifetime_secs: u64,
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn opaque() -> String {
    URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes())
}

/// Builds the claims of an access token: the v1.0 shape Entra ID issues for Exchange Online and
/// for Microsoft Graph alike (`ver` 1.0, `iss` `https://sts.windows.net/{tid}/`, `appid` and
/// `appidacr`; `aud` the resource as requested, `https://graph.microsoft.com` or its application
/// id). Public source of the Graph shape: a decoded app-only Graph token in Microsoft Q&A question
/// 1603318 (docs/exchange-emulator.md, "Tokens").
pub fn access_token_claims(spec: &AccessTokenSpec<'_>) -> Value {
    let now = now_secs();
    let tid = spec.tenant.to_string();
    let lifetime = i64::try_from(spec.lifetime_secs).unwrap_or(3599);
    let mut c = Map::new();
    c.insert("aud".into(), json!(spec.audience));
    c.insert(
        "iss".into(),
        json!(format!("https://sts.windows.net/{tid}/")),
    );
    c.insert("iat".into(), json!(now - 300));
    c.insert("nbf".into(), json!(now - 300));
    c.insert("exp".into(), json!(now + lifetime + 1));
    c.insert("aio".into(), json!(opaque()));
    c.insert("app_displayname".into(), json!(spec.app_name));
    c.insert("appid".into(), json!(spec.client_id.to_string()));
    c.insert("appidacr".into(), json!(spec.client_auth));
    c.insert(
        "idp".into(),
        json!(format!("https://sts.windows.net/{tid}/")),
    );
    match &spec.subject {
        Subject::App {
            service_principal,
            roles,
        } => {
            c.insert("idtyp".into(), json!("app"));
            c.insert("oid".into(), json!(service_principal.to_string()));
            c.insert("sub".into(), json!(service_principal.to_string()));
            if !roles.is_empty() {
                c.insert("roles".into(), json!(roles));
            }
        }
        Subject::User {
            oid,
            upn,
            name,
            scopes,
            amr,
        } => {
            c.insert("idtyp".into(), json!("user"));
            c.insert("acr".into(), json!("1"));
            c.insert("amr".into(), json!(amr));
            c.insert("oid".into(), json!(oid.to_string()));
            c.insert("sub".into(), json!(pairwise_sub(oid, &spec.client_id)));
            c.insert("upn".into(), json!(upn));
            c.insert("unique_name".into(), json!(upn));
            c.insert("name".into(), json!(name));
            c.insert("scp".into(), json!(scopes.join(" ")));
        }
    }
    c.insert("tid".into(), json!(tid));
    c.insert("uti".into(), json!(opaque()));
    c.insert("ver".into(), json!("1.0"));
    Value::Object(c)
}

fn pairwise_sub(oid: &Uuid, client: &Uuid) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(oid.as_bytes());
    ctx.update(client.as_bytes());
    URL_SAFE_NO_PAD.encode(ctx.finish().as_ref())
}

/// Everything needed to mint an id token.
#[derive(Clone, Debug)]
pub struct IdTokenSpec<'a> {
    /// `{scheme}://{host}` of the emulator as the client reached it.
    pub authority: &'a str,
    /// Tenant id.
    pub tenant: Uuid,
    /// Client id (the audience).
    pub client_id: Uuid,
    /// User object id.
    pub oid: Uuid,
    /// UPN.
    pub upn: &'a str,
    /// Display name.
    pub name: &'a str,
    /// The `nonce` of the authorize request, echoed.
    pub nonce: Option<&'a str>,
}

/// Builds the claims of a v2 id token.
pub fn id_token_claims(spec: &IdTokenSpec<'_>) -> Value {
    let now = now_secs();
    let mut c = json!({
        "aud": spec.client_id.to_string(),
        "iss": format!("{}/{}/v2.0", spec.authority, spec.tenant),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "name": spec.name,
        "oid": spec.oid.to_string(),
        "preferred_username": spec.upn,
        "sub": pairwise_sub(&spec.oid, &spec.client_id),
        "tid": spec.tenant.to_string(),
        "uti": opaque(),
        "ver": "2.0",
    });
    if let (Some(n), Some(obj)) = (spec.nonce, c.as_object_mut()) {
        obj.insert("nonce".into(), json!(n));
    }
    c
}

/// `client_info` for user-flow responses: base64url of `{"uid":oid,"utid":tid}`.
pub fn client_info(oid: &Uuid, tid: &Uuid) -> String {
    URL_SAFE_NO_PAD.encode(json!({"uid": oid.to_string(), "utid": tid.to_string()}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_token_validates_and_tampering_is_detected() {
        let key = SigningKey::shared().expect("key");
        let spec = AccessTokenSpec {
            tenant: Uuid::nil(),
            audience: EXCHANGE_RESOURCE,
            client_id: Uuid::nil(),
            app_name: "app",
            client_auth: "1",
            subject: Subject::App {
                service_principal: Uuid::nil(),
                roles: vec!["full_access_as_app".into()],
            },
            lifetime_secs: 3599,
        };
        let token = key.sign(&access_token_claims(&spec), true).expect("sign");
        let claims = key.validate(&token).expect("valid");
        assert_eq!(claims["aud"], EXCHANGE_RESOURCE);
        assert_eq!(claims["ver"], "1.0");
        let exp = claims["exp"].as_i64().unwrap_or(0);
        let iat = claims["iat"].as_i64().unwrap_or(0);
        assert_eq!(exp - iat, 3900);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(b"{\"aud\":\"x\",\"exp\":9999999999}");
        parts[1] = &forged;
        assert!(key.validate(&parts.join(".")).is_err());
    }

    #[test]
    fn jwks_publishes_the_signing_key() {
        let key = SigningKey::shared().expect("key");
        let jwks = key.jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
    }
}
