//! TLS: the extra root CA option, and certificate failures classified as TLS transport errors.

use std::net::SocketAddr;
use std::sync::Arc;

use exgate_mail::ews::{CallOptions, EwsClient, FolderRef};
use exgate_mail::{ErrorKind, HttpClientBuilder, RetryPolicy, TransportKind};

use crate::bearer;
use crate::fixture;

/// HTTP versions of the requests a test server received, with their paths.
type Seen = Arc<std::sync::Mutex<Vec<(String, axum::http::Version)>>>;

/// A private CA, and an https server on 127.0.0.1 with a certificate it issued.
async fn tls_server() -> (String, String, tokio::sync::oneshot::Sender<()>) {
    let (base, ca, stop, _) = tls_server_seeing().await;
    (base, ca, stop)
}

/// [`tls_server`] offering HTTP/2 and HTTP/1.1 by ALPN, as Exchange Online does, and recording
/// the version of every request. EWS paths get a GetFolder answer, others a Graph user.
async fn tls_server_seeing() -> (String, String, tokio::sync::oneshot::Sender<()>, Seen) {
    let pki = exgate_test::TestPki::new(&["127.0.0.1", "localhost"]);
    let mut config = pki.server_config();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_owned();
            log.lock().unwrap().push((path.clone(), req.version()));
            if path.starts_with("/EWS/") {
                let c = fixture::ews_success("GetFolder", r#"<m:Folders><t:Folder><t:FolderId Id="AAMkInbox"/><t:DisplayName>Inbox</t:DisplayName></t:Folder></m:Folders>"#);
                ([("content-type", "text/xml; charset=utf-8")], c.body)
            } else {
                (
                    [("content-type", "application/json")],
                    r#"{"id":"1","userPrincipalName":"a@contoso.com","mail":"a@contoso.com"}"#
                        .to_owned(),
                )
            }
        }
    });
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = &mut rx => return,
                a = listener.accept() => a,
            };
            let Ok((tcp, _)) = accepted else { return };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (format!("https://{addr}"), pki.ca_pem, tx, seen)
}

#[tokio::test]
async fn extra_root_ca_is_trusted_and_unknown_issuers_are_tls_errors() {
    let (base, ca_pem, _stop) = tls_server().await;
    let url = url::Url::parse(&format!("{base}/EWS/Exchange.asmx")).unwrap();

    let trusting = HttpClientBuilder::new()
        .extra_root_pem(ca_pem.into_bytes())
        .build()
        .unwrap();
    let f = EwsClient::new(trusting, url.clone(), bearer("t"))
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap();
    assert_eq!(f.display_name.as_deref(), Some("Inbox"));

    let plain = HttpClientBuilder::new()
        .retry(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let e = EwsClient::new(plain, url, bearer("t"))
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert_eq!(e.evidence().transport, Some(TransportKind::Tls), "{e}");
    assert_eq!(
        e.evidence().attempts,
        1,
        "certificate failures are not retried"
    );
}

#[tokio::test]
async fn ews_goes_over_http1_and_graph_negotiates_http2() {
    use axum::http::Version;
    let (base, ca_pem, _stop, seen) = tls_server_seeing().await;
    let ews_url = url::Url::parse(&format!("{base}/EWS/Exchange.asmx")).unwrap();
    let versions =
        |seen: &Seen| -> Vec<(String, Version)> { seen.lock().unwrap().drain(..).collect() };

    let http = HttpClientBuilder::new()
        .extra_root_pem(ca_pem.clone().into_bytes())
        .build()
        .unwrap();
    EwsClient::new(http.clone(), ews_url.clone(), bearer("t"))
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap();
    exgate_mail::graph::GraphClient::new(http, &format!("{base}/v1.0"), bearer("t"))
        .unwrap()
        .user("a@contoso.com")
        .await
        .unwrap();
    assert_eq!(
        versions(&seen),
        [
            ("/EWS/Exchange.asmx".to_owned(), Version::HTTP_11),
            ("/v1.0/users/a@contoso.com".to_owned(), Version::HTTP_2),
        ]
    );

    // Turned off, EWS negotiates HTTP/2 like Graph.
    let http = HttpClientBuilder::new()
        .extra_root_pem(ca_pem.into_bytes())
        .ews_http1(false)
        .build()
        .unwrap();
    EwsClient::new(http, ews_url, bearer("t"))
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap();
    assert_eq!(
        versions(&seen),
        [("/EWS/Exchange.asmx".to_owned(), Version::HTTP_2)]
    );
}
