//! Shared helpers of the integration tests: a scenario with every failure mode, test
//! certificates and client assertions.
#![allow(dead_code)]

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use exgate_emulator::{Emulator, EmulatorOptions, Scenario};
use serde_json::{Value, json};

pub(crate) const CONTOSO: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const FABRIKAM: &str = "22222222-3333-4444-5555-666666666666";
/// Confidential daemon: secret, expired secret, certificate; home Contoso; multi-tenant.
pub(crate) const DAEMON: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
/// Public client (device code, ROPC) with delegated consent.
pub(crate) const PUBLIC: &str = "cccccccc-0000-0000-0000-000000000001";
/// Disabled application.
pub(crate) const DISABLED_APP: &str = "dddddddd-0000-0000-0000-000000000001";
/// Public client without any consent.
pub(crate) const NOCONSENT_APP: &str = "eeeeeeee-0000-0000-0000-000000000001";
/// App blocked by a Conditional Access rule for client credentials.
pub(crate) const BLOCKED_APP: &str = "ffffffff-0000-0000-0000-000000000001";
pub(crate) const SECRET: &str = "good-secret~value";
pub(crate) const OLD_SECRET: &str = "old-secret~value";
pub(crate) const EXO_DEFAULT: &str = "https://outlook.office365.com/.default";
pub(crate) const EWS_DELEGATED: &str =
    "https://outlook.office365.com/EWS.AccessAsUser.All offline_access openid profile";
pub(crate) const REDIRECT: &str = "http://localhost:8400/cb";

/// An RSA key and self-signed certificate made for a test.
pub(crate) struct TestCert {
    pub key_pem: String,
    pub cert_pem: String,
    pub der: Vec<u8>,
}

impl TestCert {
    pub(crate) fn new(cn: &str) -> TestCert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("cert");
        TestCert {
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
        }
    }

    pub(crate) fn sha1(&self) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der)
            .as_ref()
            .to_vec()
    }

    pub(crate) fn sha256(&self) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.der)
            .as_ref()
            .to_vec()
    }
}

/// How to build a client assertion.
pub(crate) struct AssertionOpts<'a> {
    pub alg: jsonwebtoken::Algorithm,
    /// `x5t` with `=` padding as msal sends it (`false`: unpadded).
    pub padded: bool,
    /// Use `x5t#S256` instead of `x5t`.
    pub s256: bool,
    /// Include `x5c`, line-broken like msal's.
    pub x5c: bool,
    pub iss: &'a str,
    pub aud: String,
    /// A second audience value: `aud` becomes an array of both.
    pub extra_aud: Option<String>,
    pub exp_offset: f64,
    pub nbf: Option<f64>,
    pub jti: String,
}

impl AssertionOpts<'_> {
    pub(crate) fn msal(aud: String) -> AssertionOpts<'static> {
        AssertionOpts {
            alg: jsonwebtoken::Algorithm::RS256,
            padded: true,
            s256: false,
            x5c: false,
            iss: DAEMON,
            aud,
            extra_aud: None,
            exp_offset: 600.0,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
        }
    }
}

pub(crate) fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Signs a client assertion with `cert`'s key.
pub(crate) fn assertion(cert: &TestCert, o: &AssertionOpts<'_>) -> String {
    let mut header = jsonwebtoken::Header::new(o.alg);
    header.typ = Some("JWT".into());
    let enc = |b: &[u8]| {
        if o.padded {
            URL_SAFE.encode(b)
        } else {
            URL_SAFE_NO_PAD.encode(b)
        }
    };
    if o.s256 {
        header.x5t_s256 = Some(enc(&cert.sha256()));
    } else {
        header.x5t = Some(enc(&cert.sha1()));
    }
    if o.x5c {
        let b64 = STANDARD.encode(&cert.der);
        let lines: Vec<String> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        header.x5c = Some(vec![lines.join("\n")]);
    }
    let now = now_f64();
    let aud = match &o.extra_aud {
        Some(extra) => json!([o.aud, extra]),
        None => json!(o.aud),
    };
    let mut claims = json!({
        "aud": aud,
        "iss": o.iss,
        "sub": o.iss,
        "exp": now + o.exp_offset + 0.582861,
        "iat": now - 0.25,
        "jti": o.jti,
    });
    if let (Some(n), Some(obj)) = (o.nbf, claims.as_object_mut()) {
        obj.insert("nbf".into(), json!(n));
    }
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(cert.key_pem.as_bytes()).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// The test scenario: every failure mode reachable. `extra` is appended (more settings, etc.).
pub(crate) fn scenario_toml(cert: &TestCert, settings: &str, extra: &str) -> String {
    let pem = cert.cert_pem.trim();
    format!(
        r#"
[settings]
{settings}

[[tenants]]
name = "contoso"
id = "{CONTOSO}"
domains = ["contoso.onmicrosoft.com", "contoso.com"]
hybrid_exchange_urls = ["https://mail.contoso.com"]

[[tenants.users]]
upn = "alice@contoso.com"
password = "alice-pw"
display_name = "Alice Adams"

[[tenants.users]]
upn = "admin@contoso.com"
password = "admin-pw"
admin = true

[[tenants.users]]
upn = "mfa@contoso.com"
password = "mfa-pw"
mfa_required = true

[[tenants.users]]
upn = "mfareg@contoso.com"
password = "mfareg-pw"
mfa_registration_pending = true

[[tenants.users]]
upn = "disabled@contoso.com"
password = "disabled-pw"
disabled = true

[[tenants.users]]
upn = "locked@contoso.com"
password = "locked-pw"
locked = true

[[tenants.users]]
upn = "expired@contoso.com"
password = "expired-pw"
password_expired = true

[[tenants.users]]
upn = "ghost@contoso.com"
password = "ghost-pw"
exists = false

[[tenants.users]]
upn = "federated@contoso.com"
password = "federated-pw"
federated = true

[[tenants.users]]
upn = "blocked@contoso.com"
password = "blocked-pw"

[[tenants.consent]]
app = "{DAEMON}"
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]
scopes = ["EWS.AccessAsUser.All"]

[[tenants.consent]]
app = "{DAEMON}"
resource = "https://graph.microsoft.com"
roles = ["Mail.Read"]

[[tenants.consent]]
app = "{PUBLIC}"
resource = "https://outlook.office365.com"
scopes = ["EWS.AccessAsUser.All"]

[[tenants.conditional_access]]
name = "block one user"
users = ["blocked@contoso.com"]

[[tenants.conditional_access]]
name = "block one daemon"
applications = ["{BLOCKED_APP}"]
grants = ["client_credentials"]

[[tenants.refresh_tokens]]
value = "rt-seeded-valid"
user = "alice@contoso.com"
app = "{PUBLIC}"
scopes = ["https://outlook.office365.com/EWS.AccessAsUser.All", "offline_access"]

[[tenants.refresh_tokens]]
value = "rt-seeded-revoked"
user = "alice@contoso.com"
app = "{PUBLIC}"
state = "revoked"

[[tenants.refresh_tokens]]
value = "rt-seeded-inactive"
user = "alice@contoso.com"
app = "{PUBLIC}"
state = "inactive"

[[tenants.refresh_tokens]]
value = "rt-seeded-sif"
user = "alice@contoso.com"
app = "{PUBLIC}"
state = "sign_in_frequency"

[[tenants]]
name = "fabrikam"
id = "{FABRIKAM}"
domains = ["fabrikam.com"]
security_defaults = true

[[tenants.users]]
upn = "admin@fabrikam.com"
password = "fab-admin-pw"
admin = true

[[tenants.users]]
upn = "user@fabrikam.com"
password = "fab-user-pw"

[[applications]]
client_id = "{DAEMON}"
name = "Daemon"
home_tenant = "contoso"
multi_tenant = true
redirect_uris = ["{REDIRECT}"]

[[applications.secrets]]
value = "{SECRET}"
expires = "2099-01-01T00:00:00Z"

[[applications.secrets]]
value = "{OLD_SECRET}"
expires = "2020-01-01T00:00:00Z"

[[applications.certificates]]
pem = """
{pem}
"""

[[applications.permissions]]
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]

[[applications]]
client_id = "{PUBLIC}"
name = "Public tool"
home_tenant = "contoso"
public_client = true
redirect_uris = ["{REDIRECT}"]

[[applications]]
client_id = "{DISABLED_APP}"
name = "Retired app"
home_tenant = "contoso"
enabled = false

[[applications.secrets]]
value = "{SECRET}"

[[applications]]
client_id = "{NOCONSENT_APP}"
name = "Unconsented tool"
home_tenant = "contoso"
public_client = true

[[applications]]
client_id = "{BLOCKED_APP}"
name = "Blocked daemon"
home_tenant = "contoso"

[[applications.secrets]]
value = "{SECRET}"

{extra}
"#
    )
}

pub(crate) async fn start_with(toml: &str, options: EmulatorOptions) -> Emulator {
    let scenario = Scenario::from_toml_str(toml, Path::new("test.toml")).expect("scenario");
    Emulator::start(scenario, options).await.expect("start")
}

pub(crate) async fn start(cert: &TestCert) -> Emulator {
    start_with(&scenario_toml(cert, "", ""), EmulatorOptions::default()).await
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// POSTs a form and returns status and JSON body.
pub(crate) async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = client()
        .post(url)
        .header("client-request-id", "5e08d5c7-d3fc-48de-a1a1-9695d44763d1")
        .form(form)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

pub(crate) fn token_url(emu: &Emulator, tenant: &str) -> String {
    format!("{}/{tenant}/oauth2/v2.0/token", emu.base_url())
}

/// Decodes a JWT's claims after verifying it against the emulator's published JWKS.
pub(crate) async fn verified_claims(emu: &Emulator, token: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = client()
        .get(format!("{}/{CONTOSO}/discovery/v2.0/keys", emu.base_url()))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let header = jsonwebtoken::decode_header(token).expect("header");
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("kid published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("jwk");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .expect("token verifies against JWKS")
        .claims
}

/// The first AADSTS code of an error body.
pub(crate) fn code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or(0)
}

/// `base?k=v&...`, percent-encoded.
pub(crate) fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    format!("{base}?{q}")
}
