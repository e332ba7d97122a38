//! Token-endpoint throughput, in-process (no sockets): client credentials with a certificate
//! assertion (the path daemons use), and with a client secret for comparison. Each request
//! parses the form, verifies the RS256 assertion against the registered certificate, checks the
//! claims, and mints and signs an RS256 access token.

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exgate_emulator::Scenario;
use tower::ServiceExt as _;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const AUTHORITY: &str = "http://127.0.0.1:1";

fn setup() -> (axum::Router, String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench");
    let cert = params.self_signed(&key).expect("cert");
    let toml = format!(
        "[[tenants]]\nname = \"t\"\nid = \"{TENANT}\"\n\n[[tenants.consent]]\napp = \"{CLIENT}\"\nresource = \"https://outlook.office365.com\"\nroles = [\"full_access_as_app\"]\n\n[[applications]]\nclient_id = \"{CLIENT}\"\nhome_tenant = \"t\"\n\n[[applications.secrets]]\nvalue = \"bench-secret\"\n\n[[applications.certificates]]\npem = \"\"\"\n{}\"\"\"\n",
        cert.pem()
    );
    let scenario = Scenario::from_toml_str(&toml, Path::new("bench.toml")).expect("scenario");
    let router = exgate_emulator::router(scenario, AUTHORITY, false).expect("router");

    use base64::Engine as _;
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.der());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5t = Some(base64::engine::general_purpose::URL_SAFE.encode(sha1.as_ref()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let claims = serde_json::json!({
        "aud": format!("{AUTHORITY}/{TENANT}/oauth2/v2.0/token"),
        "iss": CLIENT, "sub": CLIENT,
        "exp": now + 3600.5, "iat": now, "jti": "bench",
    });
    let enc = jsonwebtoken::EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()).expect("enc");
    let assertion = jsonwebtoken::encode(&header, &claims, &enc).expect("sign");
    let cert_body = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", CLIENT)
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_info", "1")
        .append_pair(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .append_pair("client_assertion", &assertion)
        .append_pair("scope", "https://outlook.office365.com/.default")
        .finish();
    let secret_body = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", CLIENT)
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_secret", "bench-secret")
        .append_pair("scope", "https://outlook.office365.com/.default")
        .finish();
    (router, cert_body, secret_body)
}

fn request(body: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(format!("/{TENANT}/oauth2/v2.0/token"))
        .header(header::HOST, "127.0.0.1:1")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .expect("request")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (router, cert_body, secret_body) = setup();
    for body in [&cert_body, &secret_body] {
        let status = rt
            .block_on(async { router.clone().oneshot(request(body)).await })
            .expect("infallible")
            .status();
        assert_eq!(status, StatusCode::OK, "bench request must succeed");
    }
    let mut group = c.benchmark_group("token_endpoint");
    group.throughput(Throughput::Elements(1));
    group.bench_function("client_credentials_certificate", |b| {
        b.to_async(&rt)
            .iter(|| async { router.clone().oneshot(request(&cert_body)).await });
    });
    group.bench_function("client_credentials_secret", |b| {
        b.to_async(&rt)
            .iter(|| async { router.clone().oneshot(request(&secret_body)).await });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
