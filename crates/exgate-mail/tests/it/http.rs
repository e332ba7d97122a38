//! The shared HTTP layer: connection reuse, per-host limit, extra roots, secret hygiene.

use std::sync::Arc;

use exgate_mail::ews::{CallOptions, EwsClient, FolderRef};
use exgate_mail::{Basic, Bearer, ErrorKind, HttpClientBuilder, TransportKind};
use secrecy::SecretString;

use crate::fixture::{self, Canned, Fixture};
use crate::{bearer, http};

#[tokio::test]
async fn connections_are_reused_across_requests() {
    let fx = Fixture::start(fixture::exchange()).await;
    let c = EwsClient::new(http(), fx.url("/EWS/Exchange.asmx"), bearer("user-token"));
    for _ in 0..5 {
        c.get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
            .await
            .unwrap();
    }
    let peers: std::collections::HashSet<_> = fx.requests().iter().map(|r| r.peer).collect();
    assert_eq!(
        peers.len(),
        1,
        "one pooled connection serves sequential requests"
    );
}

#[tokio::test]
async fn per_host_concurrency_is_limited() {
    let fx = Fixture::start(Arc::new(|_, _| {
        fixture::ews_success(
            "GetFolder",
            r#"<m:Folders><t:Folder><t:FolderId Id="F"/></t:Folder></m:Folders>"#,
        )
        .delayed(60)
    }))
    .await;
    let client = HttpClientBuilder::new().per_host_limit(2).build().unwrap();
    let c = EwsClient::new(client, fx.url("/EWS/Exchange.asmx"), bearer("t"));
    let calls = (0..6).map(|_| {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
                .await
        })
    });
    for h in calls.collect::<Vec<_>>() {
        h.await.unwrap().unwrap();
    }
    assert_eq!(fx.requests().len(), 6);
    assert_eq!(fx.max_in_flight(), 2);
}

#[test]
fn extra_root_ca_must_be_pem() {
    let e = HttpClientBuilder::new()
        .extra_root_pem(b"not a certificate".to_vec())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("holds no certificate") || e.to_string().contains("not valid PEM"),
        "{e}"
    );
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/test-root.pem"
    ))
    .unwrap();
    HttpClientBuilder::new()
        .extra_root_pem(pem)
        .build()
        .unwrap();
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_and_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = EwsClient::new(
        http(),
        url::Url::parse(&format!("http://{addr}/EWS/Exchange.asmx")).unwrap(),
        bearer("t"),
    );
    let e = c
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert_eq!(e.evidence().transport, Some(TransportKind::Connect));
    assert_eq!(e.evidence().attempts, 3);
}

const CANARY: &str = "canary-Pa55w0rd-91ce";

#[tokio::test]
async fn secrets_never_reach_errors_debug_or_evidence() {
    let fx = Fixture::start(Arc::new(|_, r| {
        // Echo nothing of the request: a 401 with Exchange's headers.
        let _ = r;
        fixture::ews_401("2000001;reason=\"bad\";error_category=\"invalid_token\"")
            .header("set-cookie", "X-BackEndOverrideCookie=secretcookie; path=/")
    }))
    .await;
    let basic = Arc::new(Basic::new("user@example.com", SecretString::from(CANARY)));
    let token = Arc::new(Bearer::fixed(SecretString::from(CANARY)));
    for creds in [basic as Arc<dyn exgate_mail::Credentials>, token] {
        let c = EwsClient::new(http(), fx.url("/EWS/Exchange.asmx"), creds.clone());
        let e = c
            .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
            .await
            .unwrap_err();
        let json = serde_json::to_string(e.evidence()).unwrap();
        for text in [
            e.to_string(),
            format!("{e:?}"),
            json,
            format!("{creds:?}"),
            format!("{c:?}"),
        ] {
            assert!(!text.contains(CANARY), "{text}");
            assert!(
                !text.contains("Y2FuYXJ5"),
                "no base64 of the canary either: {text}"
            );
            assert!(!text.contains("secretcookie"), "{text}");
        }
    }
    // The server did receive the credentials.
    assert!(
        fx.requests()[0]
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    assert_eq!(
        fx.requests()[1].header("authorization"),
        Some(format!("Bearer {CANARY}").as_str())
    );
}

#[tokio::test]
async fn oversized_status_pages_are_bounded_in_evidence() {
    let big = "x".repeat(10_000);
    let fx = Fixture::start(Arc::new(move |_, _| Canned::new(404, big.clone()))).await;
    let c = EwsClient::new(http(), fx.url("/EWS/Exchange.asmx"), bearer("t"));
    let e = c
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.evidence().status, Some(404));
    assert_eq!(
        e.evidence().body_excerpt.as_ref().unwrap().len(),
        exgate_mail::evidence::BODY_EXCERPT_CHARS
    );
}
