//! Every flow of `exgate-auth` against the Entra ID emulator (identity plane), with the negative
//! paths mapped to typed errors carrying the AADSTS code.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exgate_auth::{
    AssertionAlgorithm, AssertionOptions, AuthCodeOptions, AuthError, Authority, CachePolicy,
    ClientAuth, ClientCertificate, Clock, Credential, DeviceCodeOptions, EndpointVersion,
    ProviderConfig, RetryPolicy, StoreKey, TokenProvider, TokenRequest, TokenStore,
    generate_self_signed, jwt_claim,
};
use exgate_emulator::{Emulator, EmulatorOptions};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

const CONTOSO: &str = "11111111-2222-3333-4444-555555555555";
const DAEMON: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const PUBLIC: &str = "cccccccc-0000-0000-0000-000000000001";
const DISABLED_APP: &str = "dddddddd-0000-0000-0000-000000000001";
const SECRET: &str = "CANARY-good-secret~value";
const EWS_USER: &str = "https://outlook.office365.com/EWS.AccessAsUser.All";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Setup {
    settings: String,
    device_flow: String,
    redirect_uri: String,
    extra_certs: Vec<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            settings: String::new(),
            device_flow: String::new(),
            redirect_uri: "http://localhost:8400/".into(),
            extra_certs: Vec::new(),
        }
    }
}

fn scenario_toml(s: &Setup) -> String {
    let mut certs = String::new();
    let fixture_pem = std::fs::read_to_string(fixture("cert.pem")).unwrap_or_default();
    for pem in std::iter::once(fixture_pem.trim().to_string()).chain(s.extra_certs.iter().cloned())
    {
        certs.push_str(&format!(
            "[[applications.certificates]]\npem = \"\"\"\n{}\n\"\"\"\n\n",
            pem.trim()
        ));
    }
    format!(
        r#"
[settings]
{settings}

{device_flow}

[[tenants]]
name = "contoso"
id = "{CONTOSO}"
domains = ["contoso.onmicrosoft.com", "contoso.com"]
hybrid_exchange_urls = ["https://mail.contoso.com"]

[[tenants.users]]
upn = "alice@contoso.com"
password = "CANARY-alice-pw"

[[tenants.users]]
upn = "admin@contoso.com"
password = "admin-pw"
admin = true

[[tenants.users]]
upn = "mfa@contoso.com"
password = "mfa-pw"
mfa_required = true

[[tenants.consent]]
app = "{DAEMON}"
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]

[[tenants.consent]]
app = "{PUBLIC}"
resource = "https://outlook.office365.com"
scopes = ["EWS.AccessAsUser.All"]

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

[[applications]]
client_id = "{DAEMON}"
name = "Daemon"
home_tenant = "contoso"

[[applications.secrets]]
value = "{SECRET}"

{certs}

[[applications]]
client_id = "{PUBLIC}"
name = "Public tool"
home_tenant = "contoso"
public_client = true
redirect_uris = ["{redirect}"]

[[applications]]
client_id = "{DISABLED_APP}"
name = "Retired"
home_tenant = "contoso"
enabled = false

[[applications.secrets]]
value = "{SECRET}"
"#,
        settings = s.settings,
        device_flow = s.device_flow,
        redirect = s.redirect_uri,
    )
}

async fn start(setup: &Setup, options: EmulatorOptions) -> Emulator {
    exgate_test::start_emulator(&scenario_toml(setup), options).await
}

fn authority(emu: &Emulator, tenant: &str) -> Authority {
    Authority::new(emu.base_url(), tenant, EndpointVersion::V2).expect("authority")
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

fn provider(
    emu: &Emulator,
    tenant: &str,
    client_id: &str,
    credential: Credential,
) -> TokenProvider {
    let mut cfg = ProviderConfig::new(authority(emu, tenant), client_id, credential);
    cfg.retry = fast_retry();
    TokenProvider::new(cfg).expect("provider")
}

fn secret() -> Credential {
    Credential::ClientSecret(SecretString::from(SECRET))
}

fn fixture_cert() -> ClientCertificate {
    ClientCertificate::from_file(&fixture("cert.pem"), Some(&fixture("key-pkcs8.pem")), None)
        .expect("fixture cert")
}

fn assert_aadsts(err: &AuthError, code: u32) {
    assert!(
        err.aadsts_codes().contains(&code),
        "expected AADSTS{code}, got {err:?}"
    );
}

#[tokio::test]
async fn client_secret_v2_with_domain_tenant_resolved() {
    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    let p = provider(&emu, "contoso.com", DAEMON, secret());
    let t = p
        .token(&TokenRequest::exchange_online())
        .await
        .expect("token");
    assert_eq!(jwt_claim(t.secret(), "tid").as_deref(), Some(CONTOSO));
    assert_eq!(jwt_claim(t.secret(), "appid").as_deref(), Some(DAEMON));
    assert_eq!(jwt_claim(t.secret(), "appidacr").as_deref(), Some("1"));
    assert!(t.expires_at() > OffsetDateTime::now_utc() + time::Duration::minutes(50));
    let stats = emu.stats();
    assert_eq!(stats.client_credentials, 1);
    assert!(
        stats.discovery_requests >= 1,
        "domain resolved through OpenID configuration"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn client_secret_v1_endpoint() {
    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    let mut cfg = ProviderConfig::new(
        authority(&emu, CONTOSO).with_version(EndpointVersion::V1),
        DAEMON,
        secret(),
    );
    cfg.retry = fast_retry();
    let p = TokenProvider::new(cfg).expect("provider");
    let t = p
        .token(&TokenRequest::exchange_online())
        .await
        .expect("token");
    assert_eq!(t.resource(), Some("https://outlook.office365.com"));
    assert_eq!(
        jwt_claim(t.secret(), "aud").as_deref(),
        Some("https://outlook.office365.com")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn certificate_assertions_rs256_ps256_x5c_pem_and_pfx() {
    let pw = SecretString::from("pfx-pw");
    let generated = generate_self_signed("CN=exgate-auth-test", 2048, 30, &pw).expect("cert");
    let setup = Setup {
        extra_certs: vec![generated.cert_pem.clone()],
        ..Setup::default()
    };
    let emu = start(&setup, EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pfx_path = dir.path().join("app.pfx");
    std::fs::write(&pfx_path, &generated.pfx).expect("write pfx");
    let from_pfx = ClientCertificate::from_file(&pfx_path, None, Some(&pw)).expect("pfx");
    let legacy = ClientCertificate::from_file(
        &fixture("legacy.pfx"),
        None,
        Some(&SecretString::from("fixture-pass")),
    )
    .expect("legacy pfx");
    let cases = [
        (fixture_cert(), AssertionAlgorithm::Rs256, false),
        (fixture_cert(), AssertionAlgorithm::Ps256, false),
        (fixture_cert(), AssertionAlgorithm::Ps256, true),
        (from_pfx, AssertionAlgorithm::Rs256, true),
        (legacy, AssertionAlgorithm::Ps256, false),
    ];
    for (cert, algorithm, send_x5c) in cases {
        let p = provider(
            &emu,
            CONTOSO,
            DAEMON,
            Credential::Certificate {
                cert,
                options: AssertionOptions {
                    algorithm,
                    send_x5c,
                    lifetime_secs: 600,
                },
            },
        );
        let t = p
            .token(&TokenRequest::exchange_online())
            .await
            .unwrap_or_else(|e| panic!("{algorithm:?} x5c={send_x5c}: {e}"));
        assert_eq!(jwt_claim(t.secret(), "appidacr").as_deref(), Some("2"));
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn negative_paths_carry_aadsts_codes() {
    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    let req = TokenRequest::exchange_online();

    let err = provider(
        &emu,
        CONTOSO,
        DAEMON,
        Credential::ClientSecret(SecretString::from("wrong")),
    )
    .token(&req)
    .await
    .expect_err("wrong secret");
    assert_aadsts(&err, 7000215);
    assert!(matches!(err, AuthError::Entra { status: 401, .. }));
    let body = err.entra().expect("body");
    assert_eq!(body.error, "invalid_client");
    assert!(!body.trace_id.is_empty() && !body.correlation_id.is_empty());

    let pw = SecretString::from("x");
    let unregistered = generate_self_signed("CN=not-registered", 2048, 5, &pw).expect("cert");
    let cert = ClientCertificate::from_pem(
        unregistered.cert_pem.as_bytes(),
        unregistered.key_pem.expose_secret().as_bytes(),
        None,
    )
    .expect("cert");
    let err = provider(
        &emu,
        CONTOSO,
        DAEMON,
        Credential::Certificate {
            cert,
            options: AssertionOptions::default(),
        },
    )
    .token(&req)
    .await
    .expect_err("unregistered cert");
    assert_aadsts(&err, 700027);

    let err = provider(&emu, "nosuch.example", DAEMON, secret())
        .token(&req)
        .await
        .expect_err("unknown tenant");
    assert_aadsts(&err, 90002);

    let err = provider(&emu, CONTOSO, DISABLED_APP, secret())
        .token(&req)
        .await
        .expect_err("disabled app");
    assert_aadsts(&err, 7000112);

    let err = provider(
        &emu,
        CONTOSO,
        "99999999-9999-9999-9999-999999999999",
        secret(),
    )
    .token(&req)
    .await
    .expect_err("unknown app");
    assert_aadsts(&err, 700016);

    let err = provider(&emu, CONTOSO, DAEMON, secret())
        .token(&TokenRequest::scopes([EWS_USER]))
        .await
        .expect_err("app-only without /.default");
    assert_aadsts(&err, 70011);

    // app-only on `common` is refused before any request.
    let before = emu.stats().token_requests;
    let mut cfg = ProviderConfig::new(authority(&emu, "common"), DAEMON, secret());
    cfg.retry = fast_retry();
    let err = TokenProvider::new(cfg).expect_err("common refused");
    assert!(
        matches!(err, AuthError::Config(ref c) if c.field == "tenant"),
        "{err:?}"
    );
    assert_eq!(emu.stats().token_requests, before);
    emu.shutdown().await;
}

#[tokio::test]
async fn refresh_token_rotation_is_stored_every_time() {
    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = StoreKey::generate().expect("key");
    let store = TokenStore::open(dir.path().join("tokens.bin"), &key).expect("store");
    let mut cfg = ProviderConfig::new(
        authority(&emu, CONTOSO),
        PUBLIC,
        Credential::RefreshToken {
            client: ClientAuth::Public,
            refresh_token: SecretString::from("rt-seeded-valid"),
        },
    );
    cfg.retry = fast_retry();
    cfg.store = Some(store.clone());
    let p = TokenProvider::new(cfg).expect("provider");
    let req = TokenRequest::scopes([EWS_USER]);
    let t1 = p.token(&req).await.expect("first refresh");
    assert_eq!(
        jwt_claim(t1.secret(), "upn").as_deref(),
        Some("alice@contoso.com")
    );
    let rt_key = format!(
        "rt|{}|{}|",
        authority(&emu, CONTOSO).cache_key(),
        PUBLIC.to_ascii_lowercase()
    );
    let rt1 = store
        .refresh_token(&rt_key)
        .expect("read")
        .expect("rotated token stored");
    assert_ne!(rt1.expose_secret(), "rt-seeded-valid");
    // The emulator retires redeemed refresh tokens: the second refresh only works with the
    // rotated one, which must have been kept.
    p.invalidate(&req);
    let t2 = p
        .token(&req)
        .await
        .expect("second refresh uses the rotated token");
    assert_ne!(t1.secret(), t2.secret());
    let rt2 = store.refresh_token(&rt_key).expect("read").expect("stored");
    assert_ne!(rt1.expose_secret(), rt2.expose_secret());
    assert_eq!(emu.stats().refresh_token, 2);

    // A new provider (a restarted daemon) continues from the store, not from the seed.
    let mut cfg = ProviderConfig::new(
        authority(&emu, CONTOSO),
        PUBLIC,
        Credential::RefreshToken {
            client: ClientAuth::Public,
            refresh_token: SecretString::from("rt-seeded-valid"),
        },
    );
    cfg.store = Some(TokenStore::open(dir.path().join("tokens.bin"), &key).expect("reopen"));
    TokenProvider::new(cfg)
        .expect("provider")
        .token(&req)
        .await
        .expect("restart refresh");
    emu.shutdown().await;
}

#[tokio::test]
async fn revoked_refresh_token_is_invalid_grant() {
    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    let p = provider(
        &emu,
        CONTOSO,
        PUBLIC,
        Credential::RefreshToken {
            client: ClientAuth::Public,
            refresh_token: SecretString::from("rt-seeded-revoked"),
        },
    );
    let err = p
        .token(&TokenRequest::scopes([EWS_USER]))
        .await
        .expect_err("revoked");
    assert_aadsts(&err, 50173);
    assert_eq!(err.entra().map(|b| b.error.as_str()), Some("invalid_grant"));
    assert_eq!(
        emu.stats().refresh_token,
        1,
        "invalid_grant is never retried"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn ropc_password_flow_and_its_errors() {
    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    let pw = |u: &str, p: &str| Credential::Password {
        client: ClientAuth::Public,
        username: u.into(),
        password: SecretString::from(p.to_string()),
    };
    let req = TokenRequest::scopes([EWS_USER]);
    let t = provider(
        &emu,
        CONTOSO,
        PUBLIC,
        pw("alice@contoso.com", "CANARY-alice-pw"),
    )
    .token(&req)
    .await
    .expect("ropc");
    assert_eq!(
        jwt_claim(t.secret(), "scp").as_deref(),
        Some("EWS.AccessAsUser.All")
    );
    let err = provider(&emu, CONTOSO, PUBLIC, pw("alice@contoso.com", "nope"))
        .token(&req)
        .await
        .expect_err("bad password");
    assert_aadsts(&err, 50126);
    let err = provider(&emu, CONTOSO, PUBLIC, pw("mfa@contoso.com", "mfa-pw"))
        .token(&req)
        .await
        .expect_err("mfa");
    assert_aadsts(&err, 50076);
    emu.shutdown().await;
}

fn device(poll: Duration, seen: Arc<Mutex<Vec<String>>>) -> Credential {
    let mut options = DeviceCodeOptions::new(Arc::new(move |info| {
        if let Ok(mut s) = seen.lock() {
            s.push(format!("{} {}", info.verification_uri, info.user_code));
        }
    }));
    options.poll_interval = Some(poll);
    options.slow_down_increment = Duration::from_millis(10);
    Credential::DeviceCode {
        client: ClientAuth::Public,
        options,
    }
}

#[tokio::test]
async fn device_code_polls_through_pending_and_slow_down() {
    let setup = Setup {
        device_flow:
            "[device_flow]\nuser = \"alice@contoso.com\"\npending_polls = 2\nslow_down = true\n"
                .into(),
        ..Setup::default()
    };
    let emu = start(&setup, EmulatorOptions::default()).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let p = provider(
        &emu,
        CONTOSO,
        PUBLIC,
        device(Duration::from_millis(10), Arc::clone(&seen)),
    );
    let t = p
        .token(&TokenRequest::scopes([EWS_USER]))
        .await
        .expect("device code");
    assert_eq!(
        jwt_claim(t.secret(), "upn").as_deref(),
        Some("alice@contoso.com")
    );
    let shown = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(shown.len(), 1);
    assert!(shown[0].contains("/devicelogin"), "{shown:?}");
    assert!(
        emu.stats().device_code >= 3,
        "polled through pending and slow_down"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn device_code_declined_is_a_typed_error() {
    let setup = Setup {
        device_flow: "[device_flow]\nuser = \"alice@contoso.com\"\noutcome = \"decline\"\n".into(),
        ..Setup::default()
    };
    let emu = start(&setup, EmulatorOptions::default()).await;
    let p = provider(
        &emu,
        CONTOSO,
        PUBLIC,
        device(Duration::from_millis(10), Arc::default()),
    );
    let err = p
        .token(&TokenRequest::scopes([EWS_USER]))
        .await
        .expect_err("declined");
    assert_eq!(
        err.entra().map(|b| b.error.as_str()),
        Some("authorization_declined"),
        "{err:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn authorization_code_with_pkce_and_loopback_listener() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let redirect = format!("http://localhost:{port}/");
    let setup = Setup {
        redirect_uri: redirect.clone(),
        ..Setup::default()
    };
    let emu = start(&setup, EmulatorOptions::default()).await;
    // The "browser": posts the sign-in form to the authorize URL and follows the redirect to
    // the loopback listener (on 127.0.0.1, as localhost would).
    let open_url = Arc::new(move |url: &url::Url| {
        let url = url.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client");
            let resp = http
                .post(url)
                .form(&[
                    ("username", "alice@contoso.com"),
                    ("password", "CANARY-alice-pw"),
                ])
                .send()
                .await
                .expect("sign in");
            assert_eq!(resp.status().as_u16(), 302);
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .expect("location")
                .replace("//localhost:", "//127.0.0.1:");
            http.get(location).send().await.expect("redirect delivered");
        });
    });
    let mut options = AuthCodeOptions::new(open_url);
    options.port = port;
    options.timeout = Duration::from_secs(20);
    let p = provider(
        &emu,
        CONTOSO,
        PUBLIC,
        Credential::AuthorizationCode {
            client: ClientAuth::Public,
            options,
        },
    );
    let t = p
        .token(&TokenRequest::scopes([EWS_USER]))
        .await
        .expect("auth code");
    assert_eq!(
        jwt_claim(t.secret(), "upn").as_deref(),
        Some("alice@contoso.com")
    );
    assert_eq!(emu.stats().authorization_code, 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_callers_cause_one_token_request() {
    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    let p = provider(&emu, CONTOSO, DAEMON, secret());
    let req = TokenRequest::exchange_online();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let p = p.clone();
        let req = req.clone();
        tasks.spawn(async move { p.token(&req).await.map(|t| t.secret().to_string()) });
    }
    let mut tokens = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        tokens.insert(r.expect("join").expect("token"));
    }
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    assert_eq!(emu.stats().token_requests, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn renews_ahead_of_expiry_with_a_short_lifetime() {
    let emu = start(
        &Setup::default(),
        EmulatorOptions {
            token_lifetime: Some(Duration::from_secs(400)),
            ..Default::default()
        },
    )
    .await;
    let offset = Arc::new(AtomicI64::new(0));
    let o2 = Arc::clone(&offset);
    let clock: Clock = Arc::new(move || {
        OffsetDateTime::now_utc() + time::Duration::seconds(o2.load(Ordering::SeqCst))
    });
    let mut cfg = ProviderConfig::new(authority(&emu, CONTOSO), DAEMON, secret());
    cfg.retry = fast_retry();
    cfg.cache = CachePolicy::default();
    let p = TokenProvider::with_clock(cfg, clock).expect("provider");
    let req = TokenRequest::exchange_online();
    let t1 = p.token(&req).await.expect("first");
    let t1b = p.token(&req).await.expect("cached");
    assert_eq!(t1.secret(), t1b.secret());
    assert_eq!(emu.stats().token_requests, 1);
    // 150 s later, 250 s are left: inside the 5-minute window, so the token is renewed.
    offset.store(150, Ordering::SeqCst);
    let t2 = p.token(&req).await.expect("renewed");
    assert_ne!(t1.secret(), t2.secret());
    assert_eq!(emu.stats().token_requests, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn tls_emulator_is_trusted_through_the_extra_root_ca() {
    let emu = start(
        &Setup::default(),
        EmulatorOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await;
    let ca = emu.ca_pem().expect("ca").as_bytes().to_vec();
    let mut cfg = ProviderConfig::new(authority(&emu, CONTOSO), DAEMON, secret());
    cfg.retry = fast_retry();
    cfg.http.extra_root_ca_pem = Some(ca);
    let t = TokenProvider::new(cfg)
        .expect("provider")
        .token(&TokenRequest::exchange_online())
        .await
        .expect("token over TLS");
    assert!(!t.secret().is_empty());
    // Without the CA the connection is refused.
    let mut cfg = ProviderConfig::new(authority(&emu, CONTOSO), DAEMON, secret());
    cfg.retry = fast_retry();
    let err = TokenProvider::new(cfg)
        .expect("provider")
        .token(&TokenRequest::exchange_online())
        .await
        .expect_err("untrusted");
    assert!(matches!(err, AuthError::Transport { .. }), "{err:?}");
    emu.shutdown().await;
}

/// Captures every log line (at TRACE) written while it is alive.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn canary_secret_key_and_token_never_appear_in_output_logs_or_errors() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    let mut texts: Vec<String> = Vec::new();
    // A working secret: token, provider and config debug output.
    let p = provider(&emu, CONTOSO, DAEMON, secret());
    let t = p
        .token(&TokenRequest::exchange_online())
        .await
        .expect("token");
    let token_text = t.secret().to_string();
    texts.push(format!("{t:?} {t} {p:?} {:?}", p.config()));
    // A certificate credential: the key never shows.
    let cert = fixture_cert();
    let pc = provider(
        &emu,
        CONTOSO,
        DAEMON,
        Credential::Certificate {
            cert: cert.clone(),
            options: AssertionOptions::default(),
        },
    );
    pc.token(&TokenRequest::exchange_online())
        .await
        .expect("cert token");
    texts.push(format!("{cert:?} {pc:?} {:?}", pc.config()));
    // Errors: wrong secret canary, bad password canary.
    let wrong = "CANARY-wrong-secret";
    let err = provider(
        &emu,
        CONTOSO,
        DAEMON,
        Credential::ClientSecret(SecretString::from(wrong)),
    )
    .token(&TokenRequest::exchange_online())
    .await
    .expect_err("wrong");
    texts.push(format!("{err} {err:?}"));
    let err = provider(
        &emu,
        CONTOSO,
        PUBLIC,
        Credential::Password {
            client: ClientAuth::Public,
            username: "alice@contoso.com".into(),
            password: SecretString::from("CANARY-bad-pw"),
        },
    )
    .token(&TokenRequest::scopes([EWS_USER]))
    .await
    .expect_err("bad pw");
    texts.push(format!("{err} {err:?}"));
    emu.shutdown().await;
    drop(_guard);
    texts.push(
        String::from_utf8_lossy(&logs.0.lock().map(|v| v.clone()).unwrap_or_default()).into_owned(),
    );

    let key_pem = std::fs::read_to_string(fixture("key-pkcs8.pem")).expect("key");
    let key_line = key_pem.lines().nth(1).expect("key body line").to_string();
    let all = texts.join("\n");
    for canary in [
        SECRET,
        wrong,
        "CANARY-bad-pw",
        token_text.as_str(),
        key_line.as_str(),
    ] {
        assert!(!all.contains(canary), "leaked {canary:.12}...");
    }
    assert!(all.contains("redacted"));
}

#[tokio::test]
async fn hma_probe_targets_the_on_prem_host() {
    let emu = start(&Setup::default(), EmulatorOptions::default()).await;
    // An on-premises EWS endpoint with Hybrid Modern Auth: 401 with the Bearer challenge.
    let auth_uri = format!("{}/common/oauth2/authorize", emu.base_url());
    let challenge = format!(
        r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@{CONTOSO}", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="{auth_uri}""#
    );
    let seen_auth = Arc::new(Mutex::new(None::<String>));
    let s2 = Arc::clone(&seen_auth);
    let app = axum::Router::new().route(
        "/EWS/Exchange.asmx",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let challenge = challenge.clone();
            let s2 = Arc::clone(&s2);
            async move {
                if let Ok(mut s) = s2.lock() {
                    *s = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                }
                let mut h = axum::http::HeaderMap::new();
                for v in [challenge.as_str(), "Basic realm=\"mail.contoso.com\""] {
                    if let Ok(v) = axum::http::HeaderValue::from_str(v) {
                        h.append("www-authenticate", v);
                    }
                }
                (axum::http::StatusCode::UNAUTHORIZED, h)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let ews = url::Url::parse(&format!("http://{addr}/EWS/Exchange.asmx")).expect("url");
    let hma = exgate_auth::probe(&reqwest::Client::new(), &ews)
        .await
        .expect("challenge");
    assert_eq!(
        seen_auth
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .as_deref()
            .map(str::trim),
        Some("Bearer")
    );
    assert!(hma.hma_enabled());
    assert_eq!(hma.other_schemes, vec!["Basic"]);
    let authority = hma.authority(EndpointVersion::V2).expect("authority");
    assert_eq!(authority.tenant(), CONTOSO);
    assert_eq!(
        authority.host().as_str().trim_end_matches('/'),
        emu.base_url()
    );
    let request = exgate_auth::on_prem_request(&ews, false);
    assert_eq!(request.scopes, vec![format!("http://{addr}/.default")]);
    // This stub's own URL is not a registered hybrid URL: Entra names it in AADSTS500011.
    let mut cfg = ProviderConfig::new(authority.clone(), DAEMON, secret());
    cfg.retry = fast_retry();
    let p = TokenProvider::new(cfg).expect("provider");
    let err = p.token(&request).await.expect_err("unregistered host");
    assert_aadsts(&err, 500011);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    // The registered on-premises host: app-only and delegated tokens whose audience is that host.
    let onprem = url::Url::parse("https://mail.contoso.com/EWS/Exchange.asmx").expect("url");
    let t = p
        .token(&exgate_auth::on_prem_request(&onprem, false))
        .await
        .expect("app-only on-prem token");
    assert_eq!(
        jwt_claim(t.secret(), "aud").as_deref(),
        Some("https://mail.contoso.com")
    );
    let mut cfg = ProviderConfig::new(
        authority,
        PUBLIC,
        Credential::Password {
            client: ClientAuth::Public,
            username: "alice@contoso.com".into(),
            password: SecretString::from("CANARY-alice-pw"),
        },
    );
    cfg.retry = fast_retry();
    let t = TokenProvider::new(cfg)
        .expect("provider")
        .token(&exgate_auth::on_prem_request(&onprem, true))
        .await
        .expect("delegated on-prem token");
    assert_eq!(
        jwt_claim(t.secret(), "aud").as_deref(),
        Some("https://mail.contoso.com")
    );
    assert_eq!(
        jwt_claim(t.secret(), "scp").as_deref(),
        Some("EWS.AccessAsUser.All")
    );
    server.abort();
    emu.shutdown().await;
}

#[tokio::test]
async fn cert_new_show_register_token_get_round_trip() {
    // What `exgate cert new`, `cert show` and `token get --profile` do, through the same calls.
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = exgate_auth::random_password().expect("password");
    let generated =
        generate_self_signed("CN=round-trip,O=Example", 3072, 90, &pw).expect("cert new");
    let cert_path = dir.path().join("app.cert.pem");
    let pfx_path = dir.path().join("app.pfx");
    std::fs::write(&cert_path, &generated.cert_pem).expect("write cert");
    exgate_auth::write_atomic_private(&pfx_path, &generated.pfx).expect("write pfx");
    let shown = exgate_auth::load_certificate_info(&cert_path, None).expect("cert show");
    assert_eq!(shown.sha1_hex, generated.info.sha1_hex);
    assert_eq!(shown.key_bits, Some(3072));
    // Register the certificate in a scenario, as an admin would upload it.
    let setup = Setup {
        extra_certs: vec![std::fs::read_to_string(&cert_path).expect("read")],
        ..Setup::default()
    };
    let emu = start(&setup, EmulatorOptions::default()).await;
    let profile = format!(
        "tenant = \"contoso.com\"\nclient_id = \"{DAEMON}\"\nauthority_host = \"{}\"\ncertificate_path = {:?}\ncertificate_password = \"{}\"\nassertion_algorithm = \"PS256\"\n",
        emu.base_url(),
        pfx_path.display().to_string(),
        pw.expose_secret(),
    );
    let settings = exgate_auth::AuthSettings::from_toml_str(&profile, Path::new("daemon.toml"))
        .expect("profile");
    let cfg = settings
        .into_provider_config(Arc::new(|_| {}), Arc::new(|_| {}))
        .expect("config");
    assert_eq!(cfg.credential.flow_name(), "certificate");
    let t = TokenProvider::new(cfg)
        .expect("provider")
        .token(&TokenRequest::exchange_online())
        .await
        .expect("token get");
    assert_eq!(jwt_claim(t.secret(), "appidacr").as_deref(), Some("2"));
    assert_eq!(
        jwt_claim(t.secret(), "roles").as_deref(),
        Some("[\"full_access_as_app\"]")
    );
    emu.shutdown().await;
}

/// The hidden inputs of an HTML form, as a browser would submit them.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')? + start;
        Some(
            tag[start..end]
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        )
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            if !tag.contains("type=\"hidden\"") {
                return None;
            }
            Some((attr(tag, "name")?, attr(tag, "value")?))
        })
        .collect()
}

#[tokio::test]
async fn admin_consent_url_and_listener_report_the_tenant() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let redirect = format!("http://localhost:{port}/");
    let setup = Setup {
        redirect_uri: redirect.clone(),
        ..Setup::default()
    };
    // The listener takes the port at once: anything started in between (the emulator, other
    // tests running in parallel) could otherwise get the port just released.
    let listener = exgate_auth::RedirectListener::bind(port)
        .await
        .expect("listen");
    let emu = start(&setup, EmulatorOptions::default()).await;
    let waiting = tokio::spawn(listener.receive(Duration::from_secs(20)));
    let url = exgate_auth::admin_consent_url(
        &authority(&emu, "contoso.com"),
        PUBLIC,
        &redirect,
        "st-42",
        None,
    );
    // The administrator's browser: load the page, submit the sign-in form, follow the redirect.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = http
        .get(url.clone())
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let mut form = hidden_inputs(&page);
    assert!(!form.is_empty(), "sign-in form: {page}");
    form.push(("username".into(), "admin@contoso.com".into()));
    form.push(("password".into(), "admin-pw".into()));
    let resp = http.post(url).form(&form).send().await.expect("sign in");
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("redirect")
        .replace("//localhost:", "//127.0.0.1:");
    http.get(location).send().await.expect("delivered");
    let params = waiting.await.expect("join").expect("redirect received");
    let outcome = exgate_auth::consent_outcome(&params, Some("st-42"));
    assert!(outcome.granted, "{outcome:?}");
    assert_eq!(outcome.tenant.as_deref(), Some(CONTOSO));
    assert_eq!(outcome.state_matches, Some(true));
    emu.shutdown().await;
}
