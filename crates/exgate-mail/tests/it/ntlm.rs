//! NTLM over HTTP: the handshake stays on one connection, an authenticated connection is reused
//! without another handshake, a refused AUTHENTICATE is a 401 with its challenges, and a server
//! without NTLM gets no handshake. The server here checks the protocol's shape per connection;
//! the cryptography is checked against [MS-NLMP]'s example in the crate's unit tests and against
//! the Exchange emulator's verifier.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use exgate_mail::ews::{CallOptions, EwsClient, FolderRef};
use exgate_mail::ntlm::NtlmCredentials;
use exgate_mail::{Credentials, ErrorKind};
use secrecy::SecretString;

use crate::fixture;

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    refused: AtomicUsize,
}

struct Conn {
    counts: Arc<Counts>,
    offer_ntlm: bool,
    user: &'static str,
    negotiated: AtomicBool,
    authenticated: AtomicBool,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A CHALLENGE_MESSAGE with a server timestamp in its TargetInfo.
fn challenge() -> Vec<u8> {
    let mut info = Vec::new();
    info.extend_from_slice(&7u16.to_le_bytes());
    info.extend_from_slice(&8u16.to_le_bytes());
    info.extend_from_slice(&133_000_000_000_000_000u64.to_le_bytes());
    info.extend_from_slice(&[0; 4]);
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&0xe28a_8235u32.to_le_bytes());
    m.extend_from_slice(&[7; 8]);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&48u32.to_le_bytes());
    m.extend_from_slice(&info);
    m
}

/// The user name of an AUTHENTICATE_MESSAGE (UTF-16LE at the user security buffer).
fn user_of(m: &[u8]) -> Option<String> {
    let len = usize::from(u16::from_le_bytes(m.get(36..38)?.try_into().ok()?));
    let off = usize::try_from(u32::from_le_bytes(m.get(40..44)?.try_into().ok()?)).ok()?;
    let units: Vec<u16> = m
        .get(off..off + len)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

fn unauthorized(c: &Conn, token: Option<&[u8]>) -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "").into_response();
    let h = r.headers_mut();
    match token {
        Some(t) => {
            h.append(
                "www-authenticate",
                format!("NTLM {}", B64.encode(t)).parse().unwrap(),
            );
        }
        None => {
            if c.offer_ntlm {
                h.append("www-authenticate", "Negotiate".parse().unwrap());
                h.append("www-authenticate", "NTLM".parse().unwrap());
            } else {
                h.append("www-authenticate", "Basic realm=\"x\"".parse().unwrap());
            }
        }
    }
    r
}

async fn handler(State(c): State<Arc<Conn>>, headers: HeaderMap) -> Response {
    let ok = || {
        let canned = fixture::ews_success(
            "GetFolder",
            r#"<m:Folders><t:Folder><t:FolderId Id="AAMkInbox"/><t:DisplayName>Inbox</t:DisplayName></t:Folder></m:Folders>"#,
        );
        ([("content-type", "text/xml; charset=utf-8")], canned.body).into_response()
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("NTLM "))
        .and_then(|t| B64.decode(t).ok());
    match token {
        None if c.authenticated.load(Ordering::SeqCst) => ok(),
        Some(m) if c.offer_ntlm && m.get(8..12) == Some(&1u32.to_le_bytes()[..]) => {
            c.negotiated.store(true, Ordering::SeqCst);
            c.authenticated.store(false, Ordering::SeqCst);
            unauthorized(&c, Some(&challenge()))
        }
        Some(m)
            if c.offer_ntlm
                && m.get(8..12) == Some(&3u32.to_le_bytes()[..])
                && c.negotiated.swap(false, Ordering::SeqCst) =>
        {
            if user_of(&m).as_deref() == Some(c.user) {
                c.counts.handshakes.fetch_add(1, Ordering::SeqCst);
                c.authenticated.store(true, Ordering::SeqCst);
                ok()
            } else {
                c.counts.refused.fetch_add(1, Ordering::SeqCst);
                unauthorized(&c, None)
            }
        }
        _ => unauthorized(&c, None),
    }
}

/// A loopback server keeping NTLM state per connection; `user` is the account it accepts.
async fn server(offer_ntlm: bool, user: &'static str) -> (String, Arc<Counts>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let conn = Arc::new(Conn {
                counts: shared.clone(),
                offer_ntlm,
                user,
                negotiated: AtomicBool::new(false),
                authenticated: AtomicBool::new(false),
            });
            let app = axum::Router::new().fallback(handler).with_state(conn);
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
            });
        }
    });
    (format!("http://{addr}/EWS/Exchange.asmx"), counts)
}

fn ntlm(account: &str) -> Arc<dyn Credentials> {
    Arc::new(NtlmCredentials::new(
        account,
        SecretString::from("CANARY-ntlm-password"),
    ))
}

async fn get_inbox(client: &EwsClient) -> Result<(), exgate_mail::MailError> {
    client
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .map(|f| assert_eq!(f.display_name.as_deref(), Some("Inbox")))
}

#[tokio::test]
async fn one_handshake_per_connection_and_the_connection_is_reused() {
    let (url, counts) = server(true, "svc").await;
    let client = EwsClient::new(
        crate::http(),
        url::Url::parse(&url).unwrap(),
        ntlm("CONTOSO\\svc"),
    );
    for _ in 0..10 {
        get_inbox(&client).await.unwrap();
    }
    assert_eq!(counts.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(counts.connections.load(Ordering::SeqCst), 1);

    // Concurrent requests take slots of their own, each authenticated once.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get_inbox(&client).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let connections = counts.connections.load(Ordering::SeqCst);
    assert!((1..=4).contains(&connections), "{connections} connections");
    assert_eq!(counts.handshakes.load(Ordering::SeqCst), connections);
}

#[tokio::test]
async fn a_refused_authenticate_is_unauthorized_with_the_servers_challenges() {
    let (url, counts) = server(true, "svc").await;
    let client = EwsClient::new(
        crate::http(),
        url::Url::parse(&url).unwrap(),
        ntlm("CONTOSO\\someone-else"),
    );
    let e = get_inbox(&client).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert_eq!(e.evidence().auth_mode.as_deref(), Some("ntlm"));
    assert!(
        e.evidence()
            .challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("ntlm")),
        "{:?}",
        e.evidence().challenges
    );
    assert!(counts.refused.load(Ordering::SeqCst) >= 1);
    let shown = format!("{e} {e:?} {:?}", e.evidence());
    assert!(!shown.contains("CANARY"), "{shown}");
}

#[tokio::test]
async fn a_server_without_ntlm_gets_no_handshake() {
    let (url, counts) = server(false, "svc").await;
    let client = EwsClient::new(
        crate::http(),
        url::Url::parse(&url).unwrap(),
        ntlm("CONTOSO\\svc"),
    );
    let e = get_inbox(&client).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert_eq!(counts.handshakes.load(Ordering::SeqCst), 0);
}
