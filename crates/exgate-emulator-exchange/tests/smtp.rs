//! SMTP submission: a scripted raw-socket client through STARTTLS against `serve_smtp`, every
//! reply of the dialogue, and delivery seen through Graph.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use exgate_emulator_exchange::{SmtpOptions, serve_smtp};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SMTP_SCENARIO: &str = r#"
default_inbox_messages = 3
default_sent_messages = 1

[[organizations]]
tenant = "litware.com"
smtp_auth_enabled = false

[[mailboxes]]
address = "adele@contoso.com"
aliases = ["a.vance@contoso.com"]
display_name = "Adele Vance"
groups = ["sales"]

[[mailboxes]]
address = "bob@contoso.com"
display_name = "Bob Kelly"

[[mailboxes]]
address = "nosmtp@contoso.com"
smtp_auth_enabled = false

[[mailboxes]]
address = "mfa@contoso.com"

[[mailboxes]]
address = "fred@fabrikam.com"

[[mailboxes]]
address = "lena@litware.com"

[[app_access]]
tenant = "contoso.com"
app_id = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
group = "sales"
"#;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Server = LineServer;

async fn server_with(options: SmtpOptions) -> Server {
    line_server(SMTP_SCENARIO, |state, listener, config, stop| {
        serve_smtp(state, listener, config, options, stop)
    })
    .await
}

async fn server() -> Server {
    server_with(SmtpOptions::default()).await
}

struct Client {
    io: BufReader<Box<dyn Io>>,
}

impl Client {
    async fn connect(s: &Server) -> (Client, String) {
        let stream = TcpStream::connect(s.addr).await.expect("connect");
        let mut c = Client {
            io: BufReader::new(Box::new(stream)),
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    /// Connects, EHLO, STARTTLS, EHLO again.
    async fn secure(s: &Server) -> Client {
        let (mut c, _) = Client::connect(s).await;
        c.cmd("EHLO client.example").await;
        assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 SMTP server ready\r\n");
        c.starttls(s).await;
        let ehlo = c.cmd("EHLO client.example").await;
        assert!(ehlo.contains("250-AUTH LOGIN XOAUTH2\r\n"), "{ehlo}");
        c
    }

    async fn starttls(&mut self, s: &Server) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(s.ca.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let plain = std::mem::replace(
            &mut self.io,
            // A stand-in while the plain stream is handed to TLS.
            BufReader::new(Box::new(tokio::io::duplex(1).0)),
        );
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = connector
            .connect(name, plain.into_inner())
            .await
            .expect("TLS handshake");
        self.io = BufReader::new(Box::new(tls));
    }

    async fn send(&mut self, line: &str) {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        self.io.get_mut().flush().await.expect("flush");
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            let n = self.io.read_line(&mut l).await.expect("read");
            assert!(n > 0, "connection closed after {all:?}");
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.reply().await
    }

    async fn xoauth2(&mut self, user: &str, token: &str) -> String {
        let payload = B64.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
        self.cmd(&format!("AUTH XOAUTH2 {payload}")).await
    }

    async fn login(&mut self, user: &str, password: &str) -> String {
        assert_eq!(self.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
        assert_eq!(self.cmd(&B64.encode(user)).await, "334 UGFzc3dvcmQ6\r\n");
        self.cmd(&B64.encode(password)).await
    }
}

const FAILED: &str = "535 5.7.3 Authentication unsuccessful [localhost]\r\n";
const EXO_APP: &str = "https://outlook.office365.com";

#[tokio::test]
async fn greeting_and_ehlo_before_tls() {
    let s = server().await;
    let (mut c, greeting) = Client::connect(&s).await;
    assert!(
        greeting.starts_with("220 localhost Microsoft ESMTP MAIL Service ready at "),
        "{greeting}"
    );
    assert!(greeting.ends_with("\r\n"));
    let ehlo = c.cmd("EHLO client.example").await;
    assert_eq!(
        ehlo,
        "250-localhost Hello [127.0.0.1]\r\n250-SIZE 157286400\r\n250-PIPELINING\r\n250-DSN\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-8BITMIME\r\n250-BINARYMIME\r\n\
         250-CHUNKING\r\n250 SMTPUTF8\r\n"
    );
    assert_eq!(
        c.cmd("AUTH LOGIN").await,
        "504 5.7.4 Unrecognized authentication type\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<adele@contoso.com>").await,
        "530 5.7.57 Client not authenticated to send mail.\r\n"
    );
    assert_eq!(c.cmd("FOO").await, "500 5.3.3 Unrecognized command\r\n");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
    assert_eq!(
        c.cmd("QUIT").await,
        "221 2.0.0 Service closing transmission channel\r\n"
    );
}

#[tokio::test]
async fn ehlo_after_starttls_offers_auth_not_starttls() {
    let s = server().await;
    let mut c = Client::secure(&s).await;
    let ehlo = c.cmd("EHLO again").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.ends_with("250 SMTPUTF8\r\n"));
}

#[tokio::test]
async fn xoauth2_app_only_sends_and_delivers_into_the_inbox() {
    let s = server().await;
    let mut c = Client::secure(&s).await;
    let token = sign(&app_claims(TID, APP, EXO_APP, &["SMTP.SendAsApp"]));
    assert_eq!(
        c.xoauth2("adele@contoso.com", &token).await,
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<bob@contoso.com>").await,
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a.vance@contoso.com>").await,
        "250 2.1.0 Sender OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<bob@contoso.com>").await,
        "250 2.1.5 Recipient OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<someone@elsewhere.example>").await,
        "250 2.1.5 Recipient OK\r\n"
    );
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send("From: Adele <adele@contoso.com>").await;
    c.send("To: Bob <bob@contoso.com>").await;
    c.send("Subject: Scan report 42").await;
    c.send("").await;
    c.send("..leading dot").await;
    let done = c.cmd(".").await;
    assert!(done.starts_with("250 2.0.0 OK <"), "{done}");
    assert!(done.ends_with(" [Hostname=localhost]\r\n"), "{done}");

    // Bob sees it through Graph.
    let h = common::Harness {
        router: exgate_emulator_exchange::router(s.state.clone()),
        state: s.state.clone(),
    };
    let graph = bearer(&sign(&app_claims(TID, APP, GRAPH, &["Mail.Read"])));
    let r = h
        .get(
            "/v1.0/users/bob@contoso.com/mailFolders/inbox/messages?$top=50",
            Some(&graph),
        )
        .await;
    let v = r.json();
    let found = v["value"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["subject"] == "Scan report 42")
        .cloned()
        .unwrap_or_else(|| panic!("not delivered: {}", r.body));
    assert_eq!(
        found["from"]["emailAddress"]["address"],
        "adele@contoso.com"
    );
    let stats = s.state.stats();
    assert_eq!(stats.smtp_messages, 1);
    assert!(stats.smtp_sessions >= 1);

    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Resetting\r\n");
    assert_eq!(
        c.cmd("QUIT").await,
        "221 2.0.0 Service closing transmission channel\r\n"
    );
}

#[tokio::test]
async fn xoauth2_in_two_steps_and_delegated_tokens() {
    let s = server().await;
    let mut c = Client::secure(&s).await;
    assert_eq!(c.cmd("AUTH XOAUTH2").await, "334 \r\n");
    let token = user_token("bob@contoso.com", EXO_APP, "SMTP.Send");
    let payload = B64.encode(format!(
        "user=bob@contoso.com\x01auth=Bearer {token}\x01\x01"
    ));
    assert_eq!(
        c.cmd(&payload).await,
        "235 2.7.0 Authentication successful\r\n"
    );

    // A delegated token of Bob cannot sign in as Adele.
    let mut c = Client::secure(&s).await;
    assert_eq!(c.xoauth2("adele@contoso.com", &token).await, FAILED);
}

#[tokio::test]
async fn xoauth2_refusals() {
    let s = server().await;
    let cases: Vec<(&str, String, &str)> = vec![
        // Graph audience, no role, foreign key, garbage.
        (
            "adele@contoso.com",
            sign(&app_claims(TID, APP, GRAPH, &["SMTP.SendAsApp"])),
            FAILED,
        ),
        (
            "adele@contoso.com",
            sign(&app_claims(TID, APP, EXO_APP, &["full_access_as_app"])),
            FAILED,
        ),
        (
            "adele@contoso.com",
            sign_with(
                &app_claims(TID, APP, EXO_APP, &["SMTP.SendAsApp"]),
                foreign_key(),
            ),
            FAILED,
        ),
        ("adele@contoso.com", "not-a-jwt".to_owned(), FAILED),
        // Delegated without SMTP.Send.
        (
            "bob@contoso.com",
            user_token("bob@contoso.com", EXO_APP, "EWS.AccessAsUser.All"),
            FAILED,
        ),
        // Outside the app's access scope.
        (
            "bob@contoso.com",
            sign(&app_claims(TID, SCOPED_APP, EXO_APP, &["SMTP.SendAsApp"])),
            FAILED,
        ),
        // Token of another tenant.
        (
            "adele@contoso.com",
            sign(&app_claims(FAB_TID, APP, EXO_APP, &["SMTP.SendAsApp"])),
            FAILED,
        ),
        // SMTP AUTH off for the mailbox, and for the tenant.
        (
            "nosmtp@contoso.com",
            sign(&app_claims(TID, APP, EXO_APP, &["SMTP.SendAsApp"])),
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [localhost]\r\n",
        ),
        (
            "lena@litware.com",
            sign(&app_claims(LIT_TID, APP, EXO_APP, &["SMTP.SendAsApp"])),
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [localhost]\r\n",
        ),
    ];
    for (user, token, want) in cases {
        let mut c = Client::secure(&s).await;
        assert_eq!(c.xoauth2(user, &token).await, want, "{user}");
        // Still not authenticated.
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<{user}>")).await,
            "530 5.7.57 Client not authenticated to send mail.\r\n"
        );
    }
    let mut c = Client::secure(&s).await;
    assert_eq!(
        c.cmd("AUTH XOAUTH2 !!!notbase64").await,
        "501 5.5.2 Cannot Decode response\r\n"
    );
    assert_eq!(
        c.cmd(&format!("AUTH XOAUTH2 {}", B64.encode("no separators")))
            .await,
        "501 5.5.2 Cannot Decode response\r\n"
    );
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "504 5.7.4 Unrecognized authentication type\r\n"
    );
    assert!(s.state.stats().auth_failures >= 9);
}

#[tokio::test]
async fn basic_login_and_plain() {
    let s = server().await;
    let mut c = Client::secure(&s).await;
    assert_eq!(
        c.login("adele@contoso.com", PASSWORD).await,
        "235 2.7.0 Authentication successful\r\n"
    );
    let mut c = Client::secure(&s).await;
    let plain = B64.encode(format!("\0bob@contoso.com\0{PASSWORD}"));
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {plain}")).await,
        "235 2.7.0 Authentication successful\r\n"
    );
    let mut c = Client::secure(&s).await;
    assert_eq!(c.login("adele@contoso.com", "wrong").await, FAILED);
    let mut c = Client::secure(&s).await;
    assert_eq!(
        c.login("fred@fabrikam.com", PASSWORD).await,
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [localhost]\r\n"
    );
    let mut c = Client::secure(&s).await;
    assert_eq!(
        c.login("mfa@contoso.com", PASSWORD).await,
        "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator. [localhost]\r\n"
    );
    let mut c = Client::secure(&s).await;
    assert_eq!(
        c.login("lena@litware.com", PASSWORD).await,
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [localhost]\r\n"
    );
}

#[tokio::test]
async fn bdat_chunks_are_delivered() {
    let s = server().await;
    let mut c = Client::secure(&s).await;
    let token = sign(&app_claims(TID, APP, EXO_APP, &["SMTP.SendAsApp"]));
    c.xoauth2("adele@contoso.com", &token).await;
    c.cmd("MAIL FROM:<adele@contoso.com>").await;
    c.cmd("RCPT TO:<bob@contoso.com>").await;
    let part1 = "Subject: chunked\r\n";
    let part2 = "\r\nbody\r\n";
    c.io.get_mut()
        .write_all(format!("BDAT {}\r\n{part1}", part1.len()).as_bytes())
        .await
        .expect("write");
    assert!(c.reply().await.starts_with("250 "));
    c.io.get_mut()
        .write_all(format!("BDAT {} LAST\r\n{part2}", part2.len()).as_bytes())
        .await
        .expect("write");
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 OK <"), "{r}");
    assert_eq!(s.state.stats().smtp_messages, 1);
}

#[tokio::test]
async fn long_lines_and_sequence_errors_do_not_break_the_session() {
    let s = server().await;
    let (mut c, _) = Client::connect(&s).await;
    let long = "X".repeat(100_000);
    assert_eq!(c.cmd(&long).await, "500 5.5.6 Line too long\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<a@b.cd>").await,
        "503 5.5.1 Need mail command\r\n"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Need mail command\r\n");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let s = server_with(SmtpOptions {
        max_connections: 1,
        ..SmtpOptions::default()
    })
    .await;
    let (_first, g) = Client::connect(&s).await;
    assert!(g.starts_with("220 "));
    let (_second, g) = Client::connect(&s).await;
    assert!(g.starts_with("421 4.3.2 "), "{g}");
}

#[tokio::test]
async fn idle_connections_time_out() {
    let s = server_with(SmtpOptions {
        read_timeout: std::time::Duration::from_millis(200),
        ..SmtpOptions::default()
    })
    .await;
    let (mut c, _) = Client::connect(&s).await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2 "), "{r}");
}
