//! Shared test harness: a test signing key, a test directory, token minting and request helpers.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use exgate_emulator_exchange::{
    ExchangeConfig, ExchangeState, InMemoryDirectory, PasswordCheck, TokenVerifier, router,
};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) const TID: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const FAB_TID: &str = "22222222-3333-4444-5555-666666666666";
pub(crate) const LIT_TID: &str = "33333333-4444-5555-6666-777777777777";
pub(crate) const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub(crate) const SCOPED_APP: &str = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff";
pub(crate) const ALLOWED_APP: &str = "cccccccc-dddd-eeee-ffff-000000000000";
pub(crate) const THROTTLED_APP: &str = "dddddddd-eeee-ffff-0000-111111111111";
pub(crate) const KID: &str = "test-kid-1";
pub(crate) const EXO: &str = "https://outlook.office365.com";
pub(crate) const GRAPH: &str = "https://graph.microsoft.com";
pub(crate) const PASSWORD: &str = "Correct-Horse-7";

pub(crate) const SCENARIO: &str = r#"
default_inbox_messages = 12
default_sent_messages = 3

[throttling]
window_seconds = 600
[[throttling.overrides]]
principal = "dddddddd-eeee-ffff-0000-111111111111"
ews_budget = 2
graph_budget = 2

[[organizations]]
tenant = "fabrikam.com"
ews_enabled = false

[[organizations]]
tenant = "litware.com"
ews_allowed_apps = ["cccccccc-dddd-eeee-ffff-000000000000"]

[[mailboxes]]
address = "adele@contoso.com"
aliases = ["a.vance@contoso.com"]
display_name = "Adele Vance"
groups = ["sales"]
routing_address = "adele@contoso.mail.onmicrosoft.com"

[[mailboxes]]
address = "bob@contoso.com"
display_name = "Bob Kelly"
groups = ["finance"]
inbox_messages = 250

[[mailboxes]]
address = "carol@contoso.com"
display_name = "Carol Projects"
extra_folders = 3
extra_folder_messages = 4

[[mailboxes]]
address = "unlicensed@contoso.com"
licensed = false

[[mailboxes]]
address = "kiosk@contoso.com"
license = "F1"

[[mailboxes]]
address = "noews@contoso.com"
ews_enabled = false

[[mailboxes]]
address = "pending@contoso.com"
provisioned = false

[[mailboxes]]
address = "onprem@contoso.com"
server = "ex01"
groups = ["sales"]

[[mailboxes]]
address = "onprem2@contoso.com"
server = "ex01"

[[mailboxes]]
address = "fred@fabrikam.com"

[[mailboxes]]
address = "lee@litware.com"

[[app_access]]
tenant = "contoso.com"
app_id = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
group = "sales"

[[impersonation]]
account = "svc@contoso.com"
group = "sales"

[[servers]]
name = "ex01"
tenant = "contoso.com"
public_url = "https://mail.contoso.com"
hma = true
spns = ["https://mail.contoso.com"]

[[servers]]
name = "ex02"
tenant = "contoso.com"
public_url = "https://mail2.contoso.com"
hma = true
tls_offload = true

[[servers]]
name = "nohma"
tenant = "contoso.com"
public_url = "https://nohma.contoso.com"
hma = false

[[servers]]
name = "oauthonly"
tenant = "contoso.com"
public_url = "https://oauth.contoso.com"
hma = true
[servers.ews]
auth = ["oauth"]

[[servers]]
name = "legacy"
tenant = "contoso.com"
public_url = "https://legacy.contoso.com"
[servers.ews]
auth = ["basic", "ntlm"]
"#;

struct Keys {
    enc: EncodingKey,
    dec_pem: Vec<u8>,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
        Keys {
            enc: EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).expect("encoding key"),
            dec_pem: kp.public_key_pem().into_bytes(),
        }
    })
}

/// A second key the verifier does not know.
pub(crate) fn foreign_key() -> &'static EncodingKey {
    static K: OnceLock<EncodingKey> = OnceLock::new();
    K.get_or_init(|| {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key");
        EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).expect("encoding key")
    })
}

pub(crate) fn directory() -> InMemoryDirectory {
    InMemoryDirectory::new()
        .with_tenant(TID, &["contoso.com", "contoso.onmicrosoft.com"], true)
        .with_tenant(FAB_TID, &["fabrikam.com"], false)
        .with_tenant(LIT_TID, &["litware.com"], true)
        .with_user("adele@contoso.com", PASSWORD, PasswordCheck::Ok)
        .with_user("bob@contoso.com", PASSWORD, PasswordCheck::Ok)
        .with_user("svc@contoso.com", PASSWORD, PasswordCheck::Ok)
        .with_user("onprem@contoso.com", PASSWORD, PasswordCheck::Ok)
        .with_user("mfa@contoso.com", PASSWORD, PasswordCheck::MfaRequired)
        .with_user("fred@fabrikam.com", PASSWORD, PasswordCheck::Ok)
}

pub(crate) fn verifier() -> TokenVerifier {
    TokenVerifier::new(vec![(
        KID.to_owned(),
        DecodingKey::from_rsa_pem(&keys().dec_pem).expect("decoding key"),
    )])
    .with_authority(EMULATOR_AUTHORITY)
}

/// The authority the emulator issues v2 tokens under in these tests.
pub(crate) const EMULATOR_AUTHORITY: &str = "https://127.0.0.1:9999";

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn sign(claims: &Value) -> String {
    sign_with(claims, &keys().enc)
}

pub(crate) fn sign_with(claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(KID.to_owned());
    h.x5t = Some(KID.to_owned());
    h.typ = Some("JWT".to_owned());
    jsonwebtoken::encode(&h, claims, key).expect("sign")
}

/// v1 app-only claims.
pub(crate) fn app_claims(tid: &str, app: &str, aud: &str, roles: &[&str]) -> Value {
    let t = now();
    let mut c = json!({
        "aud": aud, "iss": format!("https://sts.windows.net/{tid}/"), "iat": t, "nbf": t, "exp": t + 3600,
        "aio": "E2ZgYJi", "app_displayname": "Daemon", "appid": app, "appidacr": "1",
        "idp": format!("https://sts.windows.net/{tid}/"), "idtyp": "app",
        "oid": "99999999-0000-0000-0000-000000000001", "sub": "99999999-0000-0000-0000-000000000001",
        "tid": tid, "uti": "x", "ver": "1.0",
    });
    if !roles.is_empty() {
        c["roles"] = json!(roles);
    }
    c
}

pub(crate) fn app_token(aud: &str, roles: &[&str]) -> String {
    sign(&app_claims(TID, APP, aud, roles))
}

/// v1 delegated claims.
pub(crate) fn user_claims(tid: &str, upn: &str, aud: &str, scp: &str) -> Value {
    let t = now();
    json!({
        "aud": aud, "iss": format!("https://sts.windows.net/{tid}/"), "iat": t, "nbf": t, "exp": t + 3600,
        "appid": APP, "appidacr": "0", "idtyp": "user", "amr": ["pwd"], "acr": "1",
        "oid": "88888888-0000-0000-0000-000000000001", "sub": "pairwise", "upn": upn, "unique_name": upn,
        "name": "Test User", "scp": scp, "tid": tid, "ver": "1.0",
    })
}

pub(crate) fn user_token(upn: &str, aud: &str, scp: &str) -> String {
    sign(&user_claims(TID, upn, aud, scp))
}

pub(crate) fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub(crate) struct Harness {
    pub state: ExchangeState,
    pub router: Router,
}

pub(crate) struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(SCENARIO)
    }

    pub(crate) fn with(toml_text: &str) -> Self {
        let cfg = ExchangeConfig::from_toml_str(toml_text).expect("scenario parses");
        let state = ExchangeState::new(cfg, Arc::new(directory()), verifier()).expect("state");
        Self {
            router: router(state.clone()),
            state,
        }
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub(crate) async fn post(&self, path: &str, auth: Option<&str>, body: &str) -> Resp {
        let mut b = Request::post(path)
            .header("host", "127.0.0.1:8443")
            .header("content-type", "text/xml; charset=utf-8");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        self.send(b.body(Body::from(body.to_owned())).expect("request"))
            .await
    }

    pub(crate) async fn ews(&self, auth: &str, body: &str) -> Resp {
        self.post("/EWS/Exchange.asmx", Some(auth), body).await
    }

    pub(crate) async fn get(&self, path: &str, auth: Option<&str>) -> Resp {
        let mut b = Request::get(path).header("host", "127.0.0.1:8443");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        self.send(b.body(Body::empty()).expect("request")).await
    }

    pub(crate) async fn graph_post(&self, path: &str, auth: &str, json_body: &Value) -> Resp {
        let b = Request::post(path)
            .header("host", "127.0.0.1:8443")
            .header("content-type", "application/json")
            .header("authorization", auth);
        self.send(b.body(Body::from(json_body.to_string())).expect("request"))
            .await
    }
}

pub(crate) fn soap(header: &str, body: &str) -> String {
    format!(
        r#"<?xml version='1.0' encoding='utf-8'?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header><t:RequestServerVersion Version="Exchange2016"/>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

pub(crate) fn imp(addr: &str) -> String {
    format!(
        "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{addr}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
    )
}

pub(crate) fn get_folder(id: &str, mailbox: Option<&str>) -> String {
    let mbx = mailbox
        .map(|m| format!("<t:Mailbox><t:EmailAddress>{m}</t:EmailAddress></t:Mailbox>"))
        .unwrap_or_default();
    format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="folder:TotalCount"/></t:AdditionalProperties></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="{id}">{mbx}</t:DistinguishedFolderId></m:FolderIds></m:GetFolder>"#
    )
}

pub(crate) const CONVERT_ID_PROBE: &str = r#"<m:ConvertId DestinationFormat="EntryId"><m:SourceIds><t:AlternateId Id="DUMMY" Format="EwsId" Mailbox="DUMMY"/></m:SourceIds></m:ConvertId>"#;

/// Text of the first element with this local name (any prefix).
pub(crate) fn tag(xml: &str, local: &str) -> Option<String> {
    for prefix in ["m:", "t:", "e:", ""] {
        let open = format!("<{prefix}{local}>");
        if let Some(a) = xml.find(&open) {
            let rest = &xml[a + open.len()..];
            let close = format!("</{prefix}{local}>");
            if let Some(b) = rest.find(&close) {
                return Some(rest[..b].to_owned());
            }
        }
    }
    None
}

/// Value of an attribute on the first element that has it.
pub(crate) fn attr(xml: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let a = xml.find(&key)? + key.len();
    let rest = &xml[a..];
    Some(rest[..rest.find('"')?].to_owned())
}

pub(crate) fn all_attrs(xml: &str, name: &str) -> Vec<String> {
    let key = format!(" {name}=\"");
    let mut out = Vec::new();
    let mut s = xml;
    while let Some(a) = s.find(&key) {
        let rest = &s[a + key.len()..];
        if let Some(e) = rest.find('"') {
            out.push(rest[..e].to_owned());
            s = &rest[e..];
        } else {
            break;
        }
    }
    out
}

/// A line-protocol server (SMTP, IMAP) of the Exchange plane on a loopback port, with a fresh
/// self-signed certificate for `localhost` (`ca`); it stops when dropped.
pub(crate) struct LineServer {
    pub state: ExchangeState,
    pub addr: std::net::SocketAddr,
    pub ca: rustls::pki_types::CertificateDer<'static>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A self-signed `localhost` certificate: the server configuration and the certificate.
pub(crate) fn tls_material() -> (
    Arc<rustls::ServerConfig>,
    rustls::pki_types::CertificateDer<'static>,
) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("certificate params");
    let cert = params.self_signed(&key).expect("certificate");
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let pk = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], pk)
        .expect("server config");
    (Arc::new(config), der)
}

/// Starts `serve` (e.g. `serve_smtp` with its options) for the Exchange plane of `scenario`.
pub(crate) async fn line_server<F, Fut>(scenario: &str, serve: F) -> LineServer
where
    F: FnOnce(
        ExchangeState,
        tokio::net::TcpListener,
        Arc<rustls::ServerConfig>,
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let cfg = ExchangeConfig::from_toml_str(scenario).expect("scenario parses");
    let state = ExchangeState::new(cfg, Arc::new(directory()), verifier()).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (config, ca) = tls_material();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        state.clone(),
        listener,
        config,
        Box::pin(async move {
            let _ = rx.await;
        }),
    ));
    LineServer {
        state,
        addr,
        ca,
        _stop: tx,
    }
}
