//! The token and device-code endpoints never fail on arbitrary input: every answer is an Entra
//! error (400/401) with the JSON shape, never a panic or a 5xx.

mod common;

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, header};
use common::*;
use proptest::prelude::*;
use tower::ServiceExt as _;

fn router() -> axum::Router {
    static ROUTER: std::sync::OnceLock<axum::Router> = std::sync::OnceLock::new();
    ROUTER.get_or_init(build_router).clone()
}

fn build_router() -> axum::Router {
    let cert = TestCert::new("fuzz");
    let scenario = exgate_emulator::Scenario::from_toml_str(
        &scenario_toml(&cert, "", ""),
        Path::new("fuzz.toml"),
    )
    .expect("scenario");
    exgate_emulator::router(scenario, "http://127.0.0.1:1", false).expect("router")
}

fn interesting_body() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("grant_type".to_string()),
        Just("client_id".to_string()),
        Just("client_secret".to_string()),
        Just("client_assertion".to_string()),
        Just("client_assertion_type".to_string()),
        Just("scope".to_string()),
        Just("resource".to_string()),
        Just("username".to_string()),
        Just("password".to_string()),
        Just("refresh_token".to_string()),
        Just("device_code".to_string()),
        Just("code".to_string()),
        "[a-z_]{1,10}",
    ];
    let value = prop_oneof![
        Just("client_credentials".to_string()),
        Just("password".to_string()),
        Just("refresh_token".to_string()),
        Just("authorization_code".to_string()),
        Just("urn:ietf:params:oauth:grant-type:device_code".to_string()),
        Just(DAEMON.to_string()),
        Just(PUBLIC.to_string()),
        Just(EXO_DEFAULT.to_string()),
        Just("urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()),
        Just("eyJhbGciOiJSUzI1NiJ9.e30.AAAA".to_string()),
        "\\PC{0,40}",
    ];
    prop_oneof![
        proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
                .into_bytes()
        }),
        proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn token_endpoint_answers_every_body_with_an_entra_error_or_a_token(
        body in interesting_body(),
        tenant in prop_oneof![Just(CONTOSO.to_string()), Just("common".to_string()), Just("contoso.com".to_string()), "[a-z0-9.{}-]{1,20}"],
        path in prop_oneof![Just("oauth2/v2.0/token"), Just("oauth2/token"), Just("oauth2/v2.0/devicecode")],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let status = rt.block_on(async {
            let req = Request::builder()
                .method("POST")
                .uri(format!("/{}/{path}", form_urlencoded::byte_serialize(tenant.as_bytes()).collect::<String>()))
                .header(header::HOST, "127.0.0.1:1")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("request");
            let resp = router().oneshot(req).await.expect("infallible");
            resp.status().as_u16()
        });
        prop_assert!(matches!(status, 200 | 400 | 401), "status {status}");
    }
}
