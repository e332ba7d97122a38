//! The IMAP endpoint of the emulator: started with TLS and an `[exchange]` section, on loopback,
//! TLS from the first byte with the emulator's CA, stopped by `shutdown`.

mod common;

use std::sync::Arc;

use common::*;
use exgate_emulator::EmulatorOptions;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EXCHANGE: &str = r#"
[exchange]
[[exchange.mailboxes]]
address = "alice@contoso.com"
"#;

async fn line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> String {
    let mut l = String::new();
    assert!(r.read_line(&mut l).await.expect("read") > 0, "closed");
    l
}

#[tokio::test]
async fn imap_listens_on_loopback_with_tls_and_exchange_only() {
    let cert = TestCert::new("c");
    let tls = EmulatorOptions {
        tls: true,
        ..EmulatorOptions::default()
    };
    let plain = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions::default(),
    )
    .await;
    assert_eq!(plain.imap_addr(), None);
    let no_exchange = start_with(&scenario_toml(&cert, "", ""), tls.clone()).await;
    assert_eq!(no_exchange.imap_addr(), None);

    let emu = start_with(&scenario_toml(&cert, "", EXCHANGE), tls).await;
    let addr = emu.imap_addr().expect("imap address");
    assert!(addr.ip().is_loopback());
    assert_ne!(Some(addr), emu.smtp_addr());

    let ca = CertificateDer::from_pem_slice(emu.ca_pem().expect("ca").as_bytes()).expect("pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("TLS handshake with the emulator's CA");
    let mut io = BufReader::new(stream);
    let greeting = line(&mut io).await;
    assert!(
        greeting.starts_with("* OK The Microsoft Exchange IMAP4 service is ready."),
        "{greeting}"
    );
    io.get_mut()
        .write_all(b"a1 CAPABILITY\r\n")
        .await
        .expect("write");
    let caps = line(&mut io).await;
    assert!(
        caps.starts_with("* CAPABILITY ") && caps.contains("AUTH=XOAUTH2"),
        "{caps}"
    );
    assert_eq!(line(&mut io).await, "a1 OK CAPABILITY completed.\r\n");
    io.get_mut()
        .write_all(b"a2 SELECT INBOX\r\n")
        .await
        .expect("write");
    assert_eq!(line(&mut io).await, "a2 BAD User is not authenticated.\r\n");
    io.get_mut()
        .write_all(b"a3 LOGOUT\r\n")
        .await
        .expect("write");
    assert!(line(&mut io).await.starts_with("* BYE "));
    assert_eq!(line(&mut io).await, "a3 OK LOGOUT completed.\r\n");

    emu.shutdown().await;
    let again = tokio::net::TcpStream::connect(addr).await;
    assert!(again.is_err(), "IMAP still listening after shutdown");
}
