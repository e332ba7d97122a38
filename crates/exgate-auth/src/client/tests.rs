use super::*;
use std::path::Path;

fn client(version: EndpointVersion, auth: ClientAuth) -> TokenClient {
    let authority = Authority::new("http://127.0.0.1:1", "tenant.example", version).expect("a");
    TokenClient::new(
        reqwest::Client::new(),
        authority,
        "app".into(),
        auth,
        RetryPolicy::default(),
    )
}

fn field<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn ews() -> Target {
    Target {
        scopes: vec!["https://outlook.office365.com/.default".into()],
    }
}

#[test]
fn client_credentials_secret_v2_form() {
    let c = client(
        EndpointVersion::V2,
        ClientAuth::Secret(SecretString::from("s3cr3t")),
    );
    let f = c.form(&Grant::ClientCredentials, &ews()).expect("form");
    assert_eq!(field(&f, "grant_type"), Some("client_credentials"));
    assert_eq!(field(&f, "client_id"), Some("app"));
    assert_eq!(field(&f, "client_secret"), Some("s3cr3t"));
    assert_eq!(
        field(&f, "scope"),
        Some("https://outlook.office365.com/.default")
    );
    assert_eq!(field(&f, "resource"), None);
}

#[test]
fn client_credentials_v1_uses_resource() {
    let c = client(
        EndpointVersion::V1,
        ClientAuth::Secret(SecretString::from("s")),
    );
    let f = c.form(&Grant::ClientCredentials, &ews()).expect("form");
    assert_eq!(field(&f, "resource"), Some("https://outlook.office365.com"));
    assert_eq!(field(&f, "scope"), None);
}

#[test]
fn certificate_form_carries_a_fresh_assertion_for_the_token_endpoint() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let cert = ClientCertificate::from_file(
        &dir.join("cert.pem"),
        Some(&dir.join("key-pkcs8.pem")),
        None,
    )
    .expect("cert");
    let c = client(
        EndpointVersion::V2,
        ClientAuth::Certificate {
            cert,
            options: AssertionOptions::default(),
        },
    );
    let f1 = c.form(&Grant::ClientCredentials, &ews()).expect("form");
    let f2 = c.form(&Grant::ClientCredentials, &ews()).expect("form");
    assert_eq!(field(&f1, "client_assertion_type"), Some(JWT_BEARER));
    assert_eq!(field(&f1, "client_secret"), None);
    let a1 = field(&f1, "client_assertion").expect("assertion");
    let a2 = field(&f2, "client_assertion").expect("assertion");
    assert_ne!(a1, a2);
    let aud = crate::consent::jwt_claim(a1, "aud").expect("aud");
    assert_eq!(aud, "http://127.0.0.1:1/tenant.example/oauth2/v2.0/token");
}

#[test]
fn user_grants_add_offline_access_and_sorted_scopes() {
    let c = client(EndpointVersion::V2, ClientAuth::Public);
    let t = Target {
        scopes: vec!["https://outlook.office365.com/EWS.AccessAsUser.All".into()],
    };
    let f = c
        .form(
            &Grant::Password {
                username: "u@x".into(),
                password: SecretString::from("pw"),
            },
            &t,
        )
        .expect("form");
    assert_eq!(
        field(&f, "scope"),
        Some("https://outlook.office365.com/EWS.AccessAsUser.All offline_access openid profile")
    );
    assert_eq!(field(&f, "client_info"), Some("1"));
    assert_eq!(field(&f, "password"), Some("pw"));
    let f = c
        .form(&Grant::DeviceCode(SecretString::from("dc")), &t)
        .expect("form");
    assert_eq!(field(&f, "device_code"), Some("dc"));
    assert_eq!(field(&f, "grant_type"), Some(DEVICE_CODE_GRANT));
}

#[test]
fn app_only_refuses_public_clients_and_common() {
    let c = client(EndpointVersion::V2, ClientAuth::Public);
    assert!(matches!(
        c.form(&Grant::ClientCredentials, &ews()),
        Err(AuthError::Config(_))
    ));
    let authority = Authority::public_cloud("common").expect("a");
    let c = TokenClient::new(
        reqwest::Client::new(),
        authority,
        "app".into(),
        ClientAuth::Secret(SecretString::from("s")),
        RetryPolicy::default(),
    );
    let err = c
        .form(&Grant::ClientCredentials, &ews())
        .expect_err("common");
    assert!(err.to_string().contains("AADSTS50059"));
}

#[test]
fn v1_resource_derivation() {
    let t = |s: &str| {
        Target {
            scopes: vec![s.into()],
        }
        .resource()
    };
    assert_eq!(
        t("https://outlook.office365.com/.default"),
        "https://outlook.office365.com"
    );
    assert_eq!(
        t("https://graph.microsoft.com/Mail.Read"),
        "https://graph.microsoft.com"
    );
    assert_eq!(
        t("https://outlook.office365.com"),
        "https://outlook.office365.com"
    );
    assert_eq!(
        t("00000002-0000-0ff1-ce00-000000000000"),
        "00000002-0000-0ff1-ce00-000000000000"
    );
}

#[test]
fn parses_v1_and_v2_responses() {
    let r = parse_token_response(
        br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"at"}"#,
        &ews(),
        1_700_000_000,
    )
    .expect("v2");
    assert_eq!(r.access_token.expires_at().unix_timestamp(), 1_700_003_599);
    assert!(r.refresh_token.is_none());
    let r = parse_token_response(
        br#"{"token_type":"Bearer","expires_in":"3599","expires_on":"1700003899","resource":"https://outlook.office365.com","access_token":"at","refresh_token":"rt"}"#,
        &ews(),
        1_700_000_000,
    )
    .expect("v1");
    assert_eq!(
        r.access_token.resource(),
        Some("https://outlook.office365.com")
    );
    assert!(r.refresh_token.is_some());
    assert!(parse_token_response(br#"{"access_token":""}"#, &ews(), 0).is_err());
    assert!(parse_token_response(br#"{"access_token":"x"}"#, &ews(), 0).is_err());
}

#[test]
fn retry_delays_grow_are_capped_and_honour_retry_after() {
    let p = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
    };
    for _ in 0..20 {
        let d1 = p.delay(1, None);
        assert!(d1 <= Duration::from_millis(100) && d1 >= Duration::from_millis(50));
        let d3 = p.delay(3, None);
        assert!(d3 <= Duration::from_millis(400) && d3 >= Duration::from_millis(200));
        assert!(p.delay(10, None) <= Duration::from_millis(1000));
    }
    assert_eq!(
        p.delay(1, Some(Duration::from_secs(60))),
        Duration::from_millis(1000)
    );
}

/// A tiny token endpoint: answers each request with the next canned response.
async fn canned_server(
    responses: Vec<(u16, &'static str)>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = Arc::clone(&count);
    let responses = Arc::new(responses);
    let app = axum::Router::new().fallback(move || {
        let c2 = Arc::clone(&c2);
        let responses = Arc::clone(&responses);
        async move {
            let n = c2.fetch_add(1, Ordering::SeqCst);
            let (status, body) = responses
                .get(n)
                .or_else(|| responses.last())
                .copied()
                .unwrap_or((500, "{}"));
            (
                axum::http::StatusCode::from_u16(status)
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                [("content-type", "application/json")],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), count)
}

fn fast_client(base: &str, auth: ClientAuth) -> TokenClient {
    let authority = Authority::new(
        base,
        "11111111-2222-3333-4444-555555555555",
        EndpointVersion::V2,
    )
    .expect("a");
    TokenClient::new(
        reqwest::Client::new(),
        authority,
        "app".into(),
        auth,
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
    )
}

const OK: &str = r#"{"token_type":"Bearer","expires_in":3599,"access_token":"at-ok"}"#;

#[tokio::test]
async fn transient_failures_are_retried() {
    let (base, count) = canned_server(vec![
        (503, "<html>busy</html>"),
        (
            500,
            r#"{"error":"server_error","error_description":"AADSTS90033: transient"}"#,
        ),
        (200, OK),
    ])
    .await;
    let c = fast_client(&base, ClientAuth::Secret(SecretString::from("s")));
    let r = c
        .request(&Grant::ClientCredentials, &ews())
        .await
        .expect("token after retries");
    assert_eq!(r.access_token.secret(), "at-ok");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_give_up_after_max_attempts() {
    let (base, count) = canned_server(vec![(503, "busy")]).await;
    let c = fast_client(&base, ClientAuth::Secret(SecretString::from("s")));
    let err = c
        .request(&Grant::ClientCredentials, &ews())
        .await
        .expect_err("fails");
    assert!(
        matches!(err, AuthError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn invalid_client_and_invalid_grant_never_retry_and_keep_evidence() {
    let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: tr\r\nCorrelation ID: co\r\nTimestamp: 2024-05-01 10:11:12Z","error_codes":[7000215],"timestamp":"2024-05-01 10:11:12Z","trace_id":"tr","correlation_id":"co","error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#;
    let (base, count) = canned_server(vec![(401, body)]).await;
    let c = fast_client(
        &base,
        ClientAuth::Secret(SecretString::from("CANARY-secret")),
    );
    let err = c
        .request(&Grant::ClientCredentials, &ews())
        .await
        .expect_err("fails");
    assert_eq!(err.aadsts_codes(), &[7000215]);
    let e = err.entra().expect("entra body");
    assert_eq!(e.trace_id, "tr");
    assert_eq!(e.correlation_id, "co");
    assert!(matches!(err, AuthError::Entra { status: 401, .. }));
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(!format!("{err:?} {err}").contains("CANARY"));

    let (base, count) = canned_server(vec![(
        500,
        r#"{"error":"invalid_grant","error_codes":[70008]}"#,
    )])
    .await;
    let c = fast_client(&base, ClientAuth::Public);
    let err = c
        .request(&Grant::RefreshToken(SecretString::from("rt")), &ews())
        .await
        .expect_err("fails");
    assert_eq!(err.aadsts_codes(), &[70008]);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind and drop to get a port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let c = fast_client(
        &format!("http://127.0.0.1:{port}"),
        ClientAuth::Secret(SecretString::from("s")),
    );
    let err = c
        .request(&Grant::ClientCredentials, &ews())
        .await
        .expect_err("fails");
    assert!(
        matches!(
            err,
            AuthError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
}

proptest::proptest! {
    #[test]
    fn token_response_parser_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = parse_token_response(&body, &ews(), 0);
    }

    #[test]
    fn token_response_parser_never_panics_on_jsonish(s in r#"\{"(access_token|expires_in|expires_on|scope)":("[a-z0-9]{0,5}"|[0-9.e-]{1,8}|null),?\}"#) {
        let _ = parse_token_response(s.as_bytes(), &ews(), u64::MAX - 5);
    }
}
