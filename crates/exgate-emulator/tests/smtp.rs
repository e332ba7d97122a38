//! The SMTP submission endpoint of the emulator: started with TLS and an `[exchange]` section,
//! on loopback, STARTTLS with the emulator's CA, stopped by `shutdown`.

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

async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> String {
    let mut all = String::new();
    loop {
        let mut l = String::new();
        assert!(r.read_line(&mut l).await.expect("read") > 0, "closed");
        all.push_str(&l);
        if l.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

#[tokio::test]
async fn smtp_listens_on_loopback_with_tls_and_exchange_only() {
    let cert = TestCert::new("c");
    let plain = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions::default(),
    )
    .await;
    assert_eq!(plain.smtp_addr(), None);
    let no_exchange = start_with(
        &scenario_toml(&cert, "", ""),
        EmulatorOptions {
            tls: true,
            ..EmulatorOptions::default()
        },
    )
    .await;
    assert_eq!(no_exchange.smtp_addr(), None);

    let emu = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions {
            tls: true,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let addr = emu.smtp_addr().expect("smtp address");
    assert!(addr.ip().is_loopback());
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut io = BufReader::new(stream);
    let greeting = reply(&mut io).await;
    assert!(
        greeting.starts_with("220 localhost Microsoft ESMTP MAIL Service ready at "),
        "{greeting}"
    );
    io.get_mut()
        .write_all(b"EHLO x\r\nSTARTTLS\r\n")
        .await
        .expect("write");
    assert!(reply(&mut io).await.contains("250-STARTTLS\r\n"));
    assert_eq!(reply(&mut io).await, "220 2.0.0 SMTP server ready\r\n");

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
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            io.into_inner(),
        )
        .await
        .expect("STARTTLS handshake with the emulator's CA");
    let mut io = BufReader::new(tls);
    io.get_mut().write_all(b"EHLO x\r\n").await.expect("write");
    assert!(reply(&mut io).await.contains("250-AUTH LOGIN XOAUTH2\r\n"));
    io.get_mut().write_all(b"QUIT\r\n").await.expect("write");
    assert_eq!(
        reply(&mut io).await,
        "221 2.0.0 Service closing transmission channel\r\n"
    );
    assert!(emu.exchange_stats().expect("stats").smtp_sessions >= 1);

    emu.shutdown().await;
    // Stopped: nothing accepts on the port any more.
    let again = tokio::net::TcpStream::connect(addr).await;
    assert!(again.is_err(), "SMTP still listening after shutdown");
}
