//! The IMAP check against a loopback TLS server speaking Exchange Online's answers: XOAUTH2
//! with SASL-IR, SELECT counts, a refusal kept as sent, a literal in an untagged line, and
//! secrets never in the transcript.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use exgate_mail::imap::{ImapAuth, ImapOptions, check};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const TOKEN: &str = "CANARY-imap-token";

async fn server() -> (SocketAddr, String) {
    let pki = exgate_test::TestPki::new(&["localhost"]);
    let config = pki.server_config();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut io = BufReader::new(tls);
                let _ = io
                    .get_mut()
                    .write_all(b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n")
                    .await;
                let mut authed = false;
                loop {
                    let mut line = String::new();
                    if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
                    let upper = rest.to_ascii_uppercase();
                    let reply = if upper == "CAPABILITY" {
                        format!(
                            "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS\r\n{tag} OK CAPABILITY completed.\r\n"
                        )
                    } else if let Some(b64) = rest.strip_prefix("AUTHENTICATE XOAUTH2 ") {
                        let payload = B64.decode(b64).ok().and_then(|p| String::from_utf8(p).ok());
                        if payload.as_deref()
                            == Some(&format!(
                                "user=archive@contoso.com\x01auth=Bearer {TOKEN}\x01\x01"
                            ))
                        {
                            authed = true;
                            format!("{tag} OK AUTHENTICATE completed.\r\n")
                        } else {
                            format!("{tag} NO AUTHENTICATE failed.\r\n")
                        }
                    } else if upper.starts_with("LOGIN ") {
                        format!("{tag} NO LOGIN failed.\r\n")
                    } else if upper.starts_with("SELECT ") && authed {
                        format!(
                            "* 7 EXISTS\r\n* 0 RECENT\r\n* LIST () \"/\" {{5}}\r\nInbox\r\n* OK [UIDVALIDITY 14] UIDVALIDITY value\r\n{tag} OK [READ-WRITE] SELECT completed.\r\n"
                        )
                    } else if upper == "LOGOUT" {
                        let _ = io
                            .get_mut()
                            .write_all(format!("* BYE Microsoft Exchange Server IMAP4 server signing off.\r\n{tag} OK LOGOUT completed.\r\n").as_bytes())
                            .await;
                        return;
                    } else {
                        format!("{tag} BAD User is not authenticated.\r\n")
                    };
                    if io.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, pki.ca_pem)
}

fn options(addr: SocketAddr, ca: &str) -> ImapOptions {
    ImapOptions {
        host: "localhost".into(),
        port: addr.port(),
        connect_to: Some(addr),
        extra_root_pem: Some(ca.as_bytes().to_vec()),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn xoauth2_selects_the_inbox_and_counts_it() {
    let (addr, ca) = server().await;
    let auth = ImapAuth::Xoauth2 {
        user: "archive@contoso.com".into(),
        token: SecretString::from(TOKEN),
    };
    let t = check(&options(addr, &ca), &auth, "INBOX").await;
    assert!(t.ok(), "{t:#?}");
    let names: Vec<&str> = t.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "connect",
            "greeting",
            "capability",
            "authenticate",
            "select",
            "logout"
        ]
    );
    assert_eq!(t.exists, Some(7));
    assert!(t.capabilities.iter().any(|c| c == "AUTH=XOAUTH2"));
    let shown = format!("{t:?} {} {auth:?}", serde_json::to_string(&t).unwrap());
    assert!(!shown.contains("CANARY"), "{shown}");
}

#[tokio::test]
async fn refusals_are_kept_as_the_server_sent_them() {
    let (addr, ca) = server().await;
    let wrong = ImapAuth::Xoauth2 {
        user: "someone@contoso.com".into(),
        token: SecretString::from(TOKEN),
    };
    let t = check(&options(addr, &ca), &wrong, "INBOX").await;
    let f = t.failure().unwrap();
    assert_eq!(f.name, "authenticate");
    assert_eq!(f.response.as_deref(), Some("a2 NO AUTHENTICATE failed."));
    assert_eq!(t.steps.last().map(|s| s.name.as_str()), Some("logout"));

    let login = ImapAuth::Login {
        user: "archive@contoso.com".into(),
        password: SecretString::from("CANARY-imap-password"),
    };
    let t = check(&options(addr, &ca), &login, "INBOX").await;
    assert_eq!(
        t.failure().and_then(|f| f.response.clone()).as_deref(),
        Some("a2 NO LOGIN failed.")
    );
    assert!(!serde_json::to_string(&t).unwrap().contains("CANARY"));

    // Untrusted certificate: the connect step fails, nothing else is sent.
    let mut o = options(addr, &ca);
    o.extra_root_pem = None;
    let t = check(&o, &login, "INBOX").await;
    assert_eq!(t.steps.len(), 1);
    assert!(
        t.steps[0].error.as_deref().unwrap_or("").contains("TLS"),
        "{t:?}"
    );
}
