//! The emulator as a server: connections that never finish a TLS handshake, never send their
//! headers, or sit idle after a response are closed; a cap bounds the connections served at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use exgate_emulator::{EmulatorOptions, ServerLimits};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(300);

fn options(tls: bool) -> EmulatorOptions {
    EmulatorOptions {
        tls,
        limits: ServerLimits {
            handshake_timeout: SHORT,
            header_read_timeout: SHORT,
            max_connections: 64,
            ..ServerLimits::default()
        },
        ..EmulatorOptions::default()
    }
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("port")
}

/// Reads until the server closes the connection; `true` when it did within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn handshake_less_and_header_less_connections_are_closed() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert = TestCert::new("limits");
    let emu = start_with(&scenario_toml(&cert, "", ""), options(true)).await;
    let port = port_of(emu.base_url());
    // Twenty connections that never start TLS.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "a handshake-less connection stayed open"
        );
    }
    emu.shutdown().await;

    let emu = start_with(&scenario_toml(&cert, "", ""), options(false)).await;
    let port = port_of(emu.base_url());
    // Headers that never end.
    let mut slow = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    slow.write_all(b"GET /_exgate/stats HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "half-sent headers kept the connection"
    );
    // A keep-alive connection idle after its response.
    let mut idle = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    idle.write_all(b"GET /_exgate/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)).await,
        "an idle keep-alive connection stayed open"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_connection_cap_holds_others_back_until_a_slot_frees() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert = TestCert::new("cap");
    let emu = start_with(
        &scenario_toml(&cert, "", ""),
        EmulatorOptions {
            limits: ServerLimits {
                handshake_timeout: SHORT,
                header_read_timeout: Duration::from_secs(2),
                max_connections: 2,
                ..ServerLimits::default()
            },
            ..EmulatorOptions::default()
        },
    )
    .await;
    let port = port_of(emu.base_url());
    // Two silent connections take both slots.
    let _a = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _b = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third is accepted by the kernel but not served until a slot frees (the header timeout
    // closes the silent two after 2 s).
    let started = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    c.write_all(b"GET /_exgate/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut answer))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    emu.shutdown().await;
}
