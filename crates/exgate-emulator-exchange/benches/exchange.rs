//! Throughput of the Exchange plane: loading 10,000 mailboxes, EWS GetFolder and Graph
//! users/{id} through the router (`tower::ServiceExt::oneshot`, no network).

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exgate_emulator_exchange::{
    ExchangeConfig, ExchangeState, InMemoryDirectory, TokenVerifier, router,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::json;
use tower::ServiceExt;

const TID: &str = "11111111-2222-3333-4444-555555555555";
const SCENARIO: &str = r#"
[throttling]
ews_budget = 1000000000
graph_budget = 1000000000

[[mailbox_sets]]
domain = "contoso.com"
count = 10000
"#;

fn setup() -> (
    ExchangeConfig,
    Arc<InMemoryDirectory>,
    EncodingKey,
    DecodingKey,
) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("key");
    let enc = EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).expect("enc");
    let dec = DecodingKey::from_rsa_pem(kp.public_key_pem().as_bytes()).expect("dec");
    let dir = Arc::new(InMemoryDirectory::new().with_tenant(TID, &["contoso.com"], true));
    let cfg = ExchangeConfig::from_toml_str(SCENARIO).expect("config");
    (cfg, dir, enc, dec)
}

fn token(enc: &EncodingKey, aud: &str, roles: &[&str]) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k".into());
    let c = json!({"aud": aud, "iss": format!("https://sts.windows.net/{TID}/"), "iat": now, "nbf": now,
                   "exp": now + 36000, "appid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "appidacr": "1",
                   "idtyp": "app", "roles": roles, "tid": TID, "ver": "1.0"});
    jsonwebtoken::encode(&h, &c, enc).expect("sign")
}

fn bench(c: &mut Criterion) {
    let (cfg, dir, enc, dec) = setup();
    let mut g = c.benchmark_group("exchange");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("load_10k_mailboxes", |b| {
        b.iter(|| {
            let v = TokenVerifier::new(vec![("k".into(), dec.clone())]);
            black_box(ExchangeState::new(cfg.clone(), dir.clone(), v).expect("state"))
        })
    });
    let state =
        ExchangeState::new(cfg, dir, TokenVerifier::new(vec![("k".into(), dec)])).expect("state");
    let app = router(state);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ews = format!(
        "Bearer {}",
        token(
            &enc,
            "https://outlook.office365.com",
            &["full_access_as_app"]
        )
    );
    let graph = format!(
        "Bearer {}",
        token(
            &enc,
            "https://graph.microsoft.com",
            &["User.Read.All", "Mail.Read"]
        )
    );
    g.throughput(Throughput::Elements(1));
    let mut n = 0u32;
    g.bench_function("ews_get_folder_inbox", |b| {
        b.to_async(&rt).iter(|| {
            n = n % 10_000 + 1;
            let body = format!(
                r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header><t:RequestServerVersion Version="Exchange2016"/><t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>user{n}@contoso.com</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation></s:Header><s:Body><m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder></s:Body></s:Envelope>"#
            );
            let req = Request::post("/EWS/Exchange.asmx")
                .header("authorization", ews.as_str())
                .body(Body::from(body))
                .expect("request");
            let app = app.clone();
            async move {
                let r = app.oneshot(req).await.expect("infallible");
                assert!(r.status().is_success());
                black_box(r)
            }
        })
    });
    g.bench_function("graph_user_by_upn", |b| {
        b.to_async(&rt).iter(|| {
            n = n % 10_000 + 1;
            let req = Request::get(format!("/v1.0/users/user{n}@contoso.com"))
                .header("authorization", graph.as_str())
                .body(Body::empty())
                .expect("request");
            let app = app.clone();
            async move {
                let r = app.oneshot(req).await.expect("infallible");
                assert!(r.status().is_success());
                black_box(r)
            }
        })
    });
    let writer = format!(
        "Bearer {}",
        token(
            &enc,
            "https://graph.microsoft.com",
            &["User.Read.All", "Mail.ReadWrite"]
        )
    );
    // The write check's round trip: a draft created, then deleted.
    g.bench_function("graph_write_probe_create_and_delete", |b| {
        b.to_async(&rt).iter(|| {
            n = n % 10_000 + 1;
            let user = format!("/v1.0/users/user{n}@contoso.com/messages");
            let create = Request::post(user.as_str())
                .header("authorization", writer.as_str())
                .body(Body::from(
                    r#"{"subject":"exgate write probe","body":{"contentType":"text","content":"x"}}"#,
                ))
                .expect("request");
            let app = app.clone();
            let writer = writer.clone();
            async move {
                let r = app.clone().oneshot(create).await.expect("infallible");
                assert_eq!(r.status().as_u16(), 201);
                let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
                    .await
                    .expect("body");
                let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                let id = v["id"].as_str().unwrap_or_default().replace('=', "%3D");
                let delete = Request::delete(format!("{user}/{id}"))
                    .header("authorization", writer.as_str())
                    .body(Body::empty())
                    .expect("request");
                let r = app.oneshot(delete).await.expect("infallible");
                assert_eq!(r.status().as_u16(), 204);
                black_box(r)
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
