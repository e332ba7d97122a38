//! TLS: the extra root CA option, and certificate failures classified as TLS transport errors.

use std::net::SocketAddr;
use std::sync::Arc;

use exgate_mail::ews::{CallOptions, EwsClient, FolderRef};
use exgate_mail::{ErrorKind, HttpClientBuilder, RetryPolicy, TransportKind};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::bearer;
use crate::fixture;

/// A private CA, and an https server on 127.0.0.1 with a certificate it issued.
async fn tls_server() -> (String, String, tokio::sync::oneshot::Sender<()>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        let c = fixture::ews_success("GetFolder", r#"<m:Folders><t:Folder><t:FolderId Id="AAMkInbox"/><t:DisplayName>Inbox</t:DisplayName></t:Folder></m:Folders>"#);
        ([("content-type", "text/xml; charset=utf-8")], c.body)
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
    (format!("https://{addr}"), ca.pem(), tx)
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
