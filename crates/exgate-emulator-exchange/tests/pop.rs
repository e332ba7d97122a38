//! POP3 as a server: the connection limit, shared with SMTP and IMAP through one accept loop.

mod common;

use std::sync::Arc;

use common::*;
use exgate_emulator_exchange::{PopOptions, serve_pop};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

const SCENARIO: &str = r#"
[[mailboxes]]
address = "bob@contoso.com"
"#;

async fn connect(s: &LineServer) -> BufReader<tokio_rustls::client::TlsStream<TcpStream>> {
    let stream = TcpStream::connect(s.addr).await.expect("connect");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.ca.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    BufReader::new(
        connector
            .connect(name, stream)
            .await
            .expect("TLS handshake"),
    )
}

async fn line(io: &mut BufReader<tokio_rustls::client::TlsStream<TcpStream>>) -> String {
    let mut l = String::new();
    let _ = io.read_line(&mut l).await;
    l
}

#[tokio::test]
async fn connections_over_the_limit_are_turned_away_and_the_slot_comes_back() {
    let s = line_server(SCENARIO, |state, listener, config, stop| {
        serve_pop(
            state,
            listener,
            config,
            PopOptions {
                max_connections: 1,
                ..PopOptions::default()
            },
            stop,
        )
    })
    .await;
    let mut first = connect(&s).await;
    assert!(line(&mut first).await.starts_with("+OK"));
    // The only slot is taken: the second gets the refusal, then the connection closes.
    let mut second = connect(&s).await;
    assert_eq!(
        line(&mut second).await,
        "-ERR Too many concurrent connections.\r\n"
    );
    assert_eq!(line(&mut second).await, "");
    // Once the first leaves, a new connection is served.
    drop(first);
    let mut served = false;
    for _ in 0..50 {
        let mut next = connect(&s).await;
        if line(&mut next).await.starts_with("+OK") {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(served, "the slot was not given back");
}

#[tokio::test]
async fn an_injected_greeting_replaces_the_real_one_after_the_handshake() {
    use exgate_emulator_exchange::{ConnectAction, ConnectFault, OnConnect};
    let hook: exgate_emulator_exchange::ConnectHook = Arc::new(|| {
        Some(ConnectFault {
            action: ConnectAction::Reply("-ERR [SYS/TEMP] Server busy".into()),
            delay: std::time::Duration::ZERO,
        })
    });
    let s = line_server(SCENARIO, move |state, listener, config, stop| {
        serve_pop(
            state,
            listener,
            config,
            PopOptions {
                on_connect: OnConnect(Some(hook.clone())),
                ..PopOptions::default()
            },
            stop,
        )
    })
    .await;
    let mut c = connect(&s).await;
    assert_eq!(line(&mut c).await, "-ERR [SYS/TEMP] Server busy\r\n");
    assert_eq!(line(&mut c).await, "");
}
