//! The SMTP submission check against a loopback server speaking Exchange Online's dialogue:
//! STARTTLS with a private CA, XOAUTH2 and LOGIN, a message sent, refusals kept with their
//! enhanced codes, transport failures, and secrets never in the transcript.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use exgate_mail::smtp::{SmtpAuth, SmtpOptions, SmtpSecurity, TestMessage, check};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const TOKEN: &str = "CANARY-smtp-token";

#[derive(Default)]
struct Seen {
    data: Vec<String>,
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    tls: bool,
    refuse_auth: Option<&'static str>,
    seen: &Arc<Mutex<Seen>>,
) -> Option<bool> {
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            if tls {
                "250-smtp.test Hello\r\n250-SIZE 157286400\r\n250 AUTH LOGIN XOAUTH2\r\n".into()
            } else {
                "250-smtp.test Hello\r\n250-SIZE 157286400\r\n250 STARTTLS\r\n".into()
            }
        } else if upper == "STARTTLS" {
            io.get_mut()
                .write_all(b"220 2.0.0 SMTP server ready\r\n")
                .await
                .ok()?;
            return Some(true);
        } else if let Some(b64) = cmd.strip_prefix("AUTH XOAUTH2 ") {
            let payload = String::from_utf8(B64.decode(b64).ok()?).ok()?;
            match refuse_auth {
                Some(r) => format!("{r}\r\n"),
                None if payload
                    == format!("user=scanner@contoso.com\x01auth=Bearer {TOKEN}\x01\x01") =>
                {
                    "235 2.7.0 Authentication successful\r\n".into()
                }
                None => "535 5.7.3 Authentication unsuccessful [smtp.test]\r\n".into(),
            }
        } else if upper == "AUTH LOGIN" {
            io.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await.ok()?;
            line.clear();
            io.read_line(&mut line).await.ok()?;
            io.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await.ok()?;
            line.clear();
            io.read_line(&mut line).await.ok()?;
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [smtp.test]\r\n".into()
        } else if upper.starts_with("MAIL FROM") || upper.starts_with("RCPT TO") {
            "250 2.1.0 Sender OK\r\n".into()
        } else if upper == "DATA" {
            io.get_mut()
                .write_all(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n")
                .await
                .ok()?;
            let mut text = String::new();
            loop {
                line.clear();
                io.read_line(&mut line).await.ok()?;
                if line == ".\r\n" {
                    break;
                }
                text.push_str(&line);
            }
            seen.lock().unwrap().data.push(text);
            "250 2.0.0 OK <id@smtp.test> [Hostname=smtp.test]\r\n".into()
        } else if upper == "QUIT" {
            io.get_mut()
                .write_all(b"221 2.0.0 Service closing transmission channel\r\n")
                .await
                .ok()?;
            return Some(false);
        } else {
            "500 5.3.3 Unrecognized command\r\n".into()
        };
        io.get_mut().write_all(reply.as_bytes()).await.ok()?;
    }
}

/// A loopback SMTP server with STARTTLS; returns its address, the CA (PEM) and what it received.
async fn server(refuse_auth: Option<&'static str>) -> (SocketAddr, String, Arc<Mutex<Seen>>) {
    let pki = exgate_test::TestPki::new(&["localhost"]);
    let config = pki.server_config();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = shared.clone();
            tokio::spawn(async move {
                if tcp
                    .write_all(b"220 smtp.test Microsoft ESMTP MAIL Service ready\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut plain = BufReader::new(tcp);
                if converse(&mut plain, false, refuse_auth, &seen).await != Some(true) {
                    return;
                }
                let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
                    return;
                };
                let mut tls = BufReader::new(tls);
                let _ = converse(&mut tls, true, refuse_auth, &seen).await;
            });
        }
    });
    (addr, pki.ca_pem, seen)
}

fn options(addr: SocketAddr, ca: Option<&str>) -> SmtpOptions {
    SmtpOptions {
        host: "localhost".into(),
        port: addr.port(),
        connect_to: Some(addr),
        security: SmtpSecurity::StartTls,
        extra_root_pem: ca.map(|c| c.as_bytes().to_vec()),
        timeout: Duration::from_secs(5),
        ehlo_name: "test.localhost".into(),
    }
}

fn xoauth2() -> SmtpAuth {
    SmtpAuth::Xoauth2 {
        user: "scanner@contoso.com".into(),
        token: SecretString::from(TOKEN),
    }
}

fn names(t: &exgate_mail::smtp::SmtpTranscript) -> Vec<&str> {
    t.steps.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn xoauth2_over_starttls_sends_the_message() {
    let (addr, ca, seen) = server(None).await;
    let message = TestMessage {
        from: "scanner@contoso.com".into(),
        to: "alice@contoso.com".into(),
        subject: "exgate test".into(),
        body: "hello\n.a line starting with a dot".into(),
    };
    let t = check(&options(addr, Some(&ca)), &xoauth2(), Some(&message)).await;
    assert!(t.ok(), "{t:#?}");
    assert_eq!(
        names(&t),
        [
            "connect", "greeting", "ehlo", "starttls", "ehlo", "auth", "mail", "rcpt", "data",
            "quit"
        ]
    );
    assert!(t.extensions.iter().any(|e| e.contains("XOAUTH2")), "{t:?}");
    let data = seen.lock().unwrap().data.clone();
    assert_eq!(data.len(), 1);
    assert!(data[0].contains("Subject: exgate test"));
    assert!(
        data[0].contains("\r\n..a line starting with a dot\r\n"),
        "{:?}",
        data[0]
    );
    let json = serde_json::to_string(&t).unwrap();
    assert!(!json.contains("CANARY") && !format!("{t:?} {:?}", xoauth2()).contains("CANARY"));
}

#[tokio::test]
async fn a_refused_auth_keeps_the_reply_and_its_enhanced_code() {
    let (addr, ca, _) = server(Some(
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [smtp.test]",
    ))
    .await;
    let t = check(&options(addr, Some(&ca)), &xoauth2(), None).await;
    assert!(!t.ok());
    let failure = t.failure().unwrap();
    assert_eq!(failure.name, "auth");
    let reply = failure.reply.as_ref().unwrap();
    assert_eq!(reply.code, 535);
    assert_eq!(reply.enhanced.as_deref(), Some("5.7.139"));
    assert!(
        reply
            .text()
            .starts_with("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication")
    );
    assert_eq!(names(&t).last(), Some(&"quit"));

    let login = SmtpAuth::Login {
        user: "scanner@contoso.com".into(),
        password: SecretString::from("CANARY-smtp-password"),
    };
    let (addr, ca, _) = server(None).await;
    let t = check(&options(addr, Some(&ca)), &login, None).await;
    let reply = t.failure().and_then(|s| s.reply.clone()).unwrap();
    assert!(
        reply.text().contains("basic authentication is disabled"),
        "{t:?}"
    );
    assert!(!serde_json::to_string(&t).unwrap().contains("CANARY"));
}

#[tokio::test]
async fn transport_failures_are_named_steps() {
    // Untrusted certificate: STARTTLS fails, nothing is sent in the clear after it.
    let (addr, _ca, _) = server(None).await;
    let t = check(&options(addr, None), &xoauth2(), None).await;
    let failure = t.failure().unwrap();
    assert_eq!(failure.name, "starttls");
    assert!(
        failure.error.as_deref().unwrap_or("").contains("TLS"),
        "{t:?}"
    );
    assert!(!names(&t).contains(&"auth"));

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let t = check(&options(port, None), &xoauth2(), None).await;
    assert_eq!(names(&t), ["connect"]);
    assert!(t.steps[0].error.is_some());
}
