//! Serves the Exchange plane alone on 127.0.0.1 with a fresh test signing key, for checking real
//! clients against it before it is mounted in the full emulator.
//!
//! ```sh
//! cargo run -p exgate-emulator-exchange --example serve -- conformance/scenario_exchange.toml state.json
//! ```
//! It writes `state.json` (mode 0600): the base URL and test tokens minted with the key, then
//! serves until stopped. The directory is fixed: tenant contoso.com
//! (11111111-2222-3333-4444-555555555555) with users `user@`, `onprem@`, `svc@contoso.com`
//! (password `Passw0rd-Conformance`).

use std::sync::Arc;

use exgate_emulator_exchange::{
    ConnectionId, ExchangeConfig, ExchangeState, InMemoryDirectory, PasswordCheck, TokenVerifier,
    router,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::json;

const TID: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const PASSWORD: &str = "Passw0rd-Conformance";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().ok_or("usage: serve SCENARIO.toml STATE.json")?;
    let out = args.next().ok_or("usage: serve SCENARIO.toml STATE.json")?;
    let text = std::fs::read_to_string(&scenario)?;
    let config = ExchangeConfig::from_toml_str(&text)?;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
    let enc = EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes())?;
    let dec = DecodingKey::from_rsa_pem(kp.public_key_pem().as_bytes())?;
    let directory = InMemoryDirectory::new()
        .with_tenant(TID, &["contoso.com"], true)
        .with_user("user@contoso.com", PASSWORD, PasswordCheck::Ok)
        .with_user("onprem@contoso.com", PASSWORD, PasswordCheck::Ok)
        .with_user("svc@contoso.com", PASSWORD, PasswordCheck::Ok);
    let state = ExchangeState::new(
        config,
        Arc::new(directory),
        TokenVerifier::new(vec![("kid-1".into(), dec)]),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("kid-1".into());
        h.x5t = Some("kid-1".into());
        let claims = |aud: &str, roles: &[&str]| {
            json!({"aud": aud, "iss": format!("https://sts.windows.net/{TID}/"), "iat": now, "nbf": now,
                   "exp": now + 3600, "appid": APP, "appidacr": "1", "idtyp": "app", "tid": TID,
                   "oid": "99999999-0000-0000-0000-000000000001", "roles": roles, "ver": "1.0"})
        };
        let ews = jsonwebtoken::encode(&h, &claims("https://outlook.office365.com", &["full_access_as_app"]), &enc)?;
        let graph = jsonwebtoken::encode(&h, &claims("https://graph.microsoft.com", &["Mail.Read"]), &enc)?;
        let state_json = json!({
            "base_url": format!("http://{addr}"),
            "ews_token": ews,
            "graph_token": graph,
            "password": PASSWORD,
            "expires_on": now + 3600,
        });
        write_private(&out, &state_json.to_string())?;
        // Each connection gets an id (NTLM authenticates connections).
        let app = router(state).layer(axum::middleware::from_fn(
            |axum::extract::ConnectInfo(Conn(id)): axum::extract::ConnectInfo<Conn>,
             mut req: axum::extract::Request,
             next: axum::middleware::Next| async move {
                req.extensions_mut().insert(ConnectionId(id));
                next.run(req).await
            },
        ));
        axum::serve(listener, app.into_make_service_with_connect_info::<Conn>()).await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// A connection's id, drawn when the connection is accepted.
#[derive(Clone, Copy)]
struct Conn(u64);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Conn
{
    fn connect_info(_: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Conn(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

fn write_private(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}
