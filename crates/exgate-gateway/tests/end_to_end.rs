//! The gateway between clients speaking Basic (SMTP AUTH LOGIN/PLAIN, IMAP LOGIN) and the
//! emulator checking OAuth: delivery, refusals, the spool across restarts, canaries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use exgate_emulator::{Emulator, EmulatorOptions};
use exgate_gateway::config::GatewayConfig;
use exgate_gateway::{Gateway, accounts};
use exgate_mail::imap::{ImapAuth, ImapOptions};
use exgate_mail::smtp::{Outgoing, SmtpAuth, SmtpOptions, SmtpSecurity, submit};
use secrecy::SecretString;

const SCENARIO: &str = r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]

[[tenants.consent]]
app = "Scanner"
resource = "https://outlook.office365.com"
roles = ["SMTP.SendAsApp", "IMAP.AccessAsApp", "POP.AccessAsApp"]

[[tenants]]
name = "fabrikam"
id = "22222222-3333-4444-5555-666666666666"
domains = ["fabrikam.com"]

[[tenants.consent]]
app = "Scanner"
resource = "https://outlook.office365.com"
roles = ["SMTP.SendAsApp"]

[[tenants.consent]]
app = "Scanner"
resource = "https://graph.microsoft.com"
roles = ["Mail.Send"]

[[tenants]]
name = "litware"
id = "33333333-4444-5555-6666-777777777777"
domains = ["litware.com"]
basic_auth = true

[[tenants.users]]
upn = "copier@litware.com"
password = "CANARY-copier-upstream-pw"

[[applications]]
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
name = "Scanner"
home_tenant = "contoso"
multi_tenant = true

[[applications.secrets]]
value = "CANARY-app-secret~1"
expires = "2099-01-01"

[exchange]

[[exchange.mailboxes]]
address = "scanner@contoso.com"

[[exchange.mailboxes]]
address = "alice@contoso.com"

[[exchange.mailboxes]]
address = "scanner@fabrikam.com"

[[exchange.mailboxes]]
address = "other@contoso.com"

[[exchange.mailboxes]]
address = "copier@litware.com"

[[exchange.organizations]]
tenant = "fabrikam.com"
smtp_auth_enabled = false
"#;

const SCANNER_PW: &str = "CANARY-scanner-password";
const READER_PW: &str = "CANARY-reader-password";

struct Bed {
    emulator: Option<Emulator>,
    dir: tempfile::TempDir,
    ca: Vec<u8>,
}

async fn bed() -> Bed {
    bed_with(None).await
}

async fn bed_with(token_lifetime: Option<Duration>) -> Bed {
    bed_from(token_lifetime, "").await
}

/// A bed whose scenario has `extra` appended (`[[faults]]`).
async fn bed_from(token_lifetime: Option<Duration>, extra: &str) -> Bed {
    bed_with_options(
        EmulatorOptions {
            token_lifetime,
            ..EmulatorOptions::default()
        },
        extra,
    )
    .await
}

async fn bed_with_options(options: EmulatorOptions, extra: &str) -> Bed {
    let emulator = exgate_test::start_emulator_tls(&format!("{SCENARIO}\n{extra}"), options).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("emulator-ca.pem"),
        emulator.ca_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("app-secret"), "CANARY-app-secret~1\n").unwrap();
    std::fs::write(dir.path().join("copier-pw"), "CANARY-copier-upstream-pw\n").unwrap();
    // The gateway's own certificate, signed by a test CA the clients trust.
    let pki = exgate_test::TestPki::new(&["localhost"]);
    pki.write(dir.path(), "gateway");
    let mut passwords = accounts::PasswordFile::default();
    for (n, p) in [
        ("scanner", SCANNER_PW),
        ("reader", READER_PW),
        ("fab", SCANNER_PW),
        ("fabgraph", SCANNER_PW),
        ("copier", SCANNER_PW),
    ] {
        passwords.set(
            n,
            accounts::hash_password(&SecretString::from(p.to_owned())).unwrap(),
        );
    }
    std::fs::write(dir.path().join("gateway.passwd"), passwords.to_text()).unwrap();
    let smtp = emulator.smtp_addr().unwrap();
    let imap = emulator.imap_addr().unwrap();
    let pop = emulator.pop_addr().unwrap();
    let config = format!(
        r#"
[gateway]
hostname = "gateway.test"

[listen]
smtp = ["127.0.0.1:0"]
smtps = ["127.0.0.1:0"]
imaps = ["127.0.0.1:0"]
pop3s = ["127.0.0.1:0"]
metrics = "127.0.0.1:0"

[tls]
certificate = "gateway.pem"
key = "gateway.key"

[spool]
retry_initial_secs = 1
retry_max_secs = 2

[upstream]
smtp_host = "localhost"
smtp_connect = "{smtp}"
imap_host = "localhost"
imap_connect = "{imap}"
pop_host = "localhost"
pop_connect = "{pop}"
ca_pem = "emulator-ca.pem"
graph_url = "{base}/v1.0"

[profiles.contoso]
tenant = "contoso.com"
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_secret_file = "app-secret"
authority_host = "{base}"
ca_pem = "emulator-ca.pem"

[profiles.fabrikam]
tenant = "fabrikam.com"
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_secret_file = "app-secret"
authority_host = "{base}"
ca_pem = "emulator-ca.pem"

[[accounts]]
name = "scanner"
mailbox = "scanner@contoso.com"
profile = "contoso"
send_as = ["scanner@contoso.com", "other@contoso.com"]

[[accounts]]
name = "reader"
mailbox = "alice@contoso.com"
protocols = ["imap", "pop"]
profile = "contoso"

[[accounts]]
name = "fab"
mailbox = "scanner@fabrikam.com"
profile = "fabrikam"

[[accounts]]
name = "copier"
mailbox = "copier@litware.com"
upstream_basic = {{ username = "copier@litware.com", password_file = "copier-pw" }}

[[accounts]]
name = "fabgraph"
mailbox = "scanner@fabrikam.com"
profile = "fabrikam"
submit = "smtp_then_graph"
"#,
        base = emulator.base_url()
    );
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    Bed {
        emulator: Some(emulator),
        dir,
        ca: pki.ca_pem.into_bytes(),
    }
}

impl Bed {
    fn config(&self) -> GatewayConfig {
        GatewayConfig::load(&self.dir.path().join("gateway.toml")).unwrap()
    }

    fn smtp(&self, addr: std::net::SocketAddr, tls: bool) -> SmtpOptions {
        SmtpOptions {
            host: "localhost".into(),
            port: addr.port(),
            connect_to: Some(addr),
            security: if tls {
                SmtpSecurity::Tls
            } else {
                SmtpSecurity::StartTls
            },
            extra_root_pem: Some(self.ca.clone()),
            timeout: Duration::from_secs(10),
            ehlo_name: "printer".into(),
        }
    }

    /// Messages in alice's Inbox, read through the gateway's IMAP with a local password.
    async fn inbox(&self, gw: &Gateway) -> Option<u64> {
        let addr = gw.addresses().imaps[0];
        let t = exgate_mail::imap::check(
            &ImapOptions {
                host: "localhost".into(),
                port: addr.port(),
                connect_to: Some(addr),
                extra_root_pem: Some(self.ca.clone()),
                timeout: Duration::from_secs(10),
            },
            &ImapAuth::Login {
                user: "reader".into(),
                password: SecretString::from(READER_PW.to_owned()),
            },
            "INBOX",
        )
        .await;
        assert!(t.ok(), "{t:?}");
        t.exists
    }
}

fn login(user: &str, pw: &str) -> SmtpAuth {
    SmtpAuth::Login {
        user: user.into(),
        password: SecretString::from(pw.to_owned()),
    }
}

fn message(n: u32, from: &str) -> Outgoing {
    Outgoing {
        from: from.into(),
        to: vec!["alice@contoso.com".into()],
        data: format!(
            "From: <{from}>\r\nTo: <alice@contoso.com>\r\nSubject: Scan {n}\r\nMessage-ID: <scan-{n}@printer>\r\n\r\n.leading dot\r\npage {n}\r\n"
        )
        .into_bytes(),
    }
}

fn none(_: exgate_mail::smtp::Stage) -> Result<(), String> {
    Ok(())
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_password_becomes_oauth_and_mail_is_delivered() {
    let bed = bed().await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    assert!(gw.warnings().is_empty(), "{:?}", gw.warnings());
    let before = bed.inbox(&gw).await.unwrap_or(0);

    // STARTTLS on the submission port, then implicit TLS.
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("scanner", SCANNER_PW),
        &message(1, "scanner@contoso.com"),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    let queued = t.steps.iter().find(|s| s.name == "data").unwrap();
    assert!(
        queued.reply.as_ref().unwrap().text().contains("queued as"),
        "{t:?}"
    );
    let t = submit(
        &bed.smtp(gw.addresses().smtps[0], true),
        &login("scanner", SCANNER_PW),
        &message(2, "scanner@contoso.com"),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    wait_for("two deliveries", async || {
        bed.inbox(&gw).await == Some(before + 2)
    })
    .await;
    // The gateway records the delivery once Exchange's session has ended.
    let m = gw.metrics();
    wait_for("the deliveries counted", async || {
        m.get("messages", "scanner", "delivered") == 2 && gw.queue_depth() == 0
    })
    .await;

    // Refusals with the standard replies: a wrong password, a sender outside the allowed set,
    // an account without SMTP.
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("scanner", "CANARY-wrong-password"),
        &message(3, "scanner@contoso.com"),
        &none,
    )
    .await;
    let f = t.failure().unwrap();
    assert_eq!(
        (f.name.as_str(), f.reply.as_ref().unwrap().code),
        ("auth", 535)
    );
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("scanner", SCANNER_PW),
        &message(4, "ceo@contoso.com"),
        &none,
    )
    .await;
    let f = t.failure().unwrap();
    assert_eq!(f.name, "mail");
    assert_eq!(f.reply.as_ref().unwrap().enhanced.as_deref(), Some("5.7.1"));
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("reader", READER_PW),
        &message(5, "alice@contoso.com"),
        &none,
    )
    .await;
    assert_eq!(t.failure().unwrap().name, "auth");

    // Metrics over HTTP: counters by account, never a password.
    let url = format!("http://{}/metrics", gw.addresses().metrics.unwrap());
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(
        text.contains("exgate_gateway_messages_total{account=\"scanner\",outcome=\"delivered\"} 2"),
        "{text}"
    );
    assert!(!text.contains("CANARY"));
    let health = reqwest::get(format!("http://{}/health", gw.addresses().metrics.unwrap()))
        .await
        .unwrap();
    assert!(health.status().is_success());
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_upstream_is_diagnosed_and_the_message_waits_in_the_spool() {
    let bed = bed().await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    // fabrikam has SMTP AUTH off: Exchange refuses with 5.7.139 and the message is deferred
    // (an administrator's setting, not the message's fault) with the cause recorded.
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("fab", SCANNER_PW),
        &message(1, "scanner@fabrikam.com"),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    let spool = exgate_gateway::spool::Spool::open(&bed.config().spool.path).unwrap();
    wait_for("a diagnosed deferral", async || {
        spool
            .list()
            .unwrap()
            .first()
            .is_some_and(|e| e.last_cause.is_some())
    })
    .await;
    let env = spool.list().unwrap().remove(0);
    assert_eq!(
        env.last_cause.as_deref(),
        Some("smtp_auth_disabled"),
        "{env:?}"
    );
    assert!(env.last_error.as_deref().unwrap_or("").contains("5.7.139"));
    gw.shutdown(Duration::from_secs(5)).await;
    // Nothing secret in the spool's state.
    for e in std::fs::read_dir(bed.dir.path().join("spool/queue")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("CANARY") && !text.contains("eyJ"), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mail_survives_a_stop_while_exchange_is_down_and_is_delivered_once() {
    let mut bed = bed().await;
    // Exchange unreachable: point SMTP upstream at a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let mut config = bed.config();
    config.upstream.smtp_connect = Some(closed_addr);
    let gw = Gateway::start(config).await.unwrap();
    let before = bed.inbox(&gw).await.unwrap_or(0);
    for n in 0..5 {
        let t = submit(
            &bed.smtp(gw.addresses().smtp[0], false),
            &login("scanner", SCANNER_PW),
            &message(n, "scanner@contoso.com"),
            &none,
        )
        .await;
        assert!(t.ok(), "{t:?}");
    }
    gw.shutdown(Duration::from_secs(5)).await;
    let spool = exgate_gateway::spool::Spool::open(&bed.config().spool.path).unwrap();
    assert_eq!(spool.list().unwrap().len(), 5);

    // Restarted with Exchange reachable: every message delivered, none twice.
    let gw = Gateway::start(bed.config()).await.unwrap();
    wait_for("the spool to drain", async || gw.queue_depth() == 0).await;
    assert_eq!(bed.inbox(&gw).await, Some(before + 5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bed.inbox(&gw).await, Some(before + 5));
    assert!(spool.list().unwrap().is_empty());
    gw.shutdown(Duration::from_secs(5)).await;
    if let Some(e) = bed.emulator.take() {
        e.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_are_served() {
    let bed = bed().await;
    let gw = Arc::new(Gateway::start(bed.config()).await.unwrap());
    let before = bed.inbox(&gw).await.unwrap_or(0);
    let addr = gw.addresses().smtps[0];
    let mut set = tokio::task::JoinSet::new();
    for n in 0..40 {
        let options = bed.smtp(addr, true);
        set.spawn(async move {
            submit(
                &options,
                &login("scanner", SCANNER_PW),
                &message(100 + n, "scanner@contoso.com"),
                &none,
            )
            .await
        });
    }
    while let Some(t) = set.join_next().await {
        let t = t.unwrap();
        assert!(t.ok(), "{t:?}");
    }
    // The per-mailbox limit (30 a minute) holds the rest back; 30 arrive now.
    wait_for("the first 30", async || {
        bed.inbox(&gw).await.unwrap_or(0) >= before + 30
    })
    .await;
    assert!(gw.queue_depth() >= 10 - 1, "queue {}", gw.queue_depth());
    assert_eq!(gw.metrics().get("messages", "scanner", "accepted"), 40);
    if let Ok(gw) = Arc::try_unwrap(gw) {
        gw.shutdown(Duration::from_secs(5)).await;
    }
}

/// Reads one reply line.
async fn reply_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> String {
    use tokio::io::AsyncBufReadExt as _;
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_line_and_idle_limits() {
    use tokio::io::{AsyncWriteExt as _, BufReader};
    let bed = bed().await;
    let mut config = bed.config();
    config.gateway.idle_secs = 3;
    let gw = Gateway::start(config).await.unwrap();
    let addr = gw.addresses().smtp[0];

    // 1,000 clients connected at once: all greeted first, then each says EHLO.
    let mut open = Vec::new();
    for _ in 0..1000 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut r = BufReader::new(tcp);
        let greeting = tokio::time::timeout(Duration::from_secs(10), reply_line(&mut r))
            .await
            .expect("greeted");
        assert!(greeting.starts_with("220 "), "{greeting}");
        open.push(r);
    }
    assert!(gw.metrics().open_connections() >= 1000);
    let mut set = tokio::task::JoinSet::new();
    for mut r in open {
        set.spawn(async move {
            r.get_mut().write_all(b"EHLO load\r\n").await.ok()?;
            let mut last = reply_line(&mut r).await;
            while last.as_bytes().get(3) == Some(&b'-') {
                last = reply_line(&mut r).await;
            }
            let _ = r.get_mut().write_all(b"QUIT\r\n").await;
            Some(last)
        });
    }
    let mut served = 0;
    while let Some(r) = set.join_next().await {
        let last = r.unwrap().expect("answered");
        assert!(last.starts_with("250 "), "{last}");
        served += 1;
    }
    assert_eq!(served, 1000);

    // A command line past 4,096 bytes closes the session with 500 5.5.6.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut r = BufReader::new(tcp);
    reply_line(&mut r).await;
    let long = format!("EHLO {}\r\n", "a".repeat(5000));
    r.get_mut().write_all(long.as_bytes()).await.unwrap();
    assert!(reply_line(&mut r).await.starts_with("500 5.5.6"));

    // A silent client is told 421 4.4.2 after idle_secs and disconnected.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut r = BufReader::new(tcp);
    reply_line(&mut r).await;
    let started = Instant::now();
    let line = reply_line(&mut r).await;
    assert!(line.starts_with("421 4.4.2"), "{line}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(reply_line(&mut r).await, "", "closed after the 421");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_user_pass_is_relayed_as_xoauth2() {
    use exgate_mail::pop::{PopAuth, PopOptions, check};
    let bed = bed().await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    let addr = gw.addresses().pop3s[0];
    let options = PopOptions {
        host: "localhost".into(),
        port: addr.port(),
        connect_to: Some(addr),
        extra_root_pem: Some(bed.ca.clone()),
        timeout: Duration::from_secs(10),
    };
    // One message for alice first.
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("scanner", SCANNER_PW),
        &message(7, "scanner@contoso.com"),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    wait_for("the delivery", async || gw.queue_depth() == 0).await;

    let t = check(
        &options,
        &PopAuth::Login {
            user: "reader".into(),
            password: SecretString::from(READER_PW.to_owned()),
        },
    )
    .await;
    assert!(t.ok(), "{t:?}");
    assert!(t.messages.unwrap_or(0) >= 1, "{t:?}");
    // The CAPA seen is the gateway's (before login).
    assert!(t.capabilities.iter().any(|c| c == "USER"), "{t:?}");

    let t = check(
        &options,
        &PopAuth::Login {
            user: "reader".into(),
            password: SecretString::from("CANARY-wrong".to_owned()),
        },
    )
    .await;
    let f = t.failure().unwrap();
    assert_eq!(f.name, "auth");
    assert!(
        f.response
            .as_deref()
            .unwrap_or("")
            .starts_with("-ERR [AUTH]"),
        "{t:?}"
    );
    // SMTP-only account: no POP.
    let t = check(
        &options,
        &PopAuth::Login {
            user: "scanner".into(),
            password: SecretString::from(SCANNER_PW.to_owned()),
        },
    )
    .await;
    assert_eq!(t.failure().unwrap().name, "auth");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_renewed_between_deliveries() {
    // Tokens of two seconds: the second message needs a new one.
    let bed = bed_with(Some(Duration::from_secs(2))).await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    let before = bed.inbox(&gw).await.unwrap_or(0);
    let emulator = bed.emulator.as_ref().unwrap();
    for n in 0..2 {
        let t = submit(
            &bed.smtp(gw.addresses().smtp[0], false),
            &login("scanner", SCANNER_PW),
            &message(200 + n, "scanner@contoso.com"),
            &none,
        )
        .await;
        assert!(t.ok(), "{t:?}");
        wait_for("the delivery", async || gw.queue_depth() == 0).await;
        if n == 0 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    wait_for("both deliveries", async || {
        bed.inbox(&gw).await == Some(before + 2)
    })
    .await;
    assert!(
        emulator.stats().tokens_issued >= 2,
        "{:?}",
        emulator.stats()
    );
    assert_eq!(gw.metrics().get("upstream_auth", "scanner", "refused"), 0);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_auth_off_falls_back_to_graph_send_mail_with_the_mime() {
    let bed = bed().await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    let before = bed.inbox(&gw).await.unwrap_or(0);
    // fabrikam has SMTP AUTH off; this account may fall back to Graph. Two envelope recipients,
    // one of them only in the envelope (it becomes a Bcc for Graph).
    let mut m = message(300, "scanner@fabrikam.com");
    m.to.push("scanner@contoso.com".into());
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("fabgraph", SCANNER_PW),
        &m,
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    let metrics = gw.metrics();
    wait_for("the Graph delivery", async || {
        metrics.get("messages", "fabgraph", "delivered_graph") == 1
    })
    .await;
    assert_eq!(bed.inbox(&gw).await, Some(before + 1));
    let stats = bed.emulator.as_ref().unwrap().exchange_stats().unwrap();
    assert!(stats.graph_requests >= 1, "{stats:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_returns_the_message_with_a_dsn() {
    let bed = bed().await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    // The gateway lets the scanner use other@contoso.com, Exchange does not (550 5.7.60).
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("scanner", SCANNER_PW),
        &message(400, "other@contoso.com"),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    let spool = exgate_gateway::spool::Spool::open(&bed.config().spool.path).unwrap();
    wait_for("the message returned", async || {
        spool.failed().unwrap().len() == 1 && gw.queue_depth() == 0
    })
    .await;
    let failed = spool.failed().unwrap().remove(0);
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("5.7.60"),
        "{failed:?}"
    );
    assert_eq!(gw.metrics().get("messages", "scanner", "bounced"), 1);
    // The notification went to the sender, from the account's mailbox, and was delivered.
    assert_eq!(gw.metrics().get("messages", "scanner", "delivered"), 1);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_exchange_is_timed_out_and_retried() {
    let bed = bed().await;
    // A server that accepts connections and never says a word.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = bed.config();
    config.upstream.smtp_connect = Some(hung.local_addr().unwrap());
    config.upstream.timeout_secs = 1;
    let gw = Gateway::start(config).await.unwrap();
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("scanner", SCANNER_PW),
        &message(500, "scanner@contoso.com"),
        &none,
    )
    .await;
    assert!(
        t.ok(),
        "the device's submission does not wait for Exchange: {t:?}"
    );
    let spool = exgate_gateway::spool::Spool::open(&bed.config().spool.path).unwrap();
    wait_for("a deferral after the timeout", async || {
        spool
            .list()
            .unwrap()
            .first()
            .is_some_and(|e| e.attempts >= 1)
    })
    .await;
    let env = spool.list().unwrap().remove(0);
    assert!(
        env.last_error.as_deref().unwrap_or("").contains("greeting"),
        "{env:?}"
    );
    assert!(env.next_attempt > env.received, "{env:?}");
    gw.shutdown(Duration::from_secs(5)).await;
    drop(hung);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_oauth_upstream_signs_in_with_its_own_password() {
    let bed = bed().await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    let before = bed.inbox(&gw).await.unwrap_or(0);
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("copier", SCANNER_PW),
        &message(600, "copier@litware.com"),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    wait_for("the delivery", async || {
        bed.inbox(&gw).await == Some(before + 1)
    })
    .await;
    let spool = exgate_gateway::spool::Spool::open(&bed.config().spool.path).unwrap();
    assert!(spool.list().unwrap().is_empty());
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_busy_twice_then_the_message_is_delivered_once() {
    // The emulator's fault injection: the first two SMTP connections get Exchange's "busy"
    // greeting and are closed.
    let bed = bed_from(
        None,
        "[[faults]]\nendpoint = \"smtp\"\nreply = \"421 4.3.2 Service not available, closing transmission channel\"\ncount = 2\n",
    )
    .await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    let before = bed.inbox(&gw).await.unwrap_or(0);
    let t = submit(
        &bed.smtp(gw.addresses().smtp[0], false),
        &login("scanner", SCANNER_PW),
        &message(600, "scanner@contoso.com"),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    let spool = exgate_gateway::spool::Spool::open(&bed.config().spool.path).unwrap();
    // The deferred envelope, as the spool recorded it after the first refusal.
    let mut deferred = None;
    wait_for("a deferral after the 421", async || {
        deferred = spool
            .list()
            .unwrap()
            .first()
            .filter(|e| e.attempts >= 1)
            .cloned();
        deferred.is_some()
    })
    .await;
    let env = deferred.expect("deferred");
    assert!(
        env.last_error.as_deref().unwrap_or("").contains("421"),
        "{env:?}"
    );
    wait_for("the spool to drain", async || gw.queue_depth() == 0).await;
    assert_eq!(bed.inbox(&gw).await, Some(before + 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bed.inbox(&gw).await, Some(before + 1));
    gw.shutdown(Duration::from_secs(5)).await;
}

/// Delivers `n` messages one after the other through the gateway, each once the previous one
/// has left the spool; returns the upstream SMTP sessions the emulator saw for them.
async fn sessions_for_sequential_deliveries(bed: &Bed, gw: &Gateway, n: u32, first: u32) -> u64 {
    let emulator = bed.emulator.as_ref().unwrap();
    let before = emulator.exchange_stats().unwrap().smtp_sessions;
    for k in 0..n {
        let t = submit(
            &bed.smtp(gw.addresses().smtp[0], false),
            &login("scanner", SCANNER_PW),
            &message(first + k, "scanner@contoso.com"),
            &none,
        )
        .await;
        assert!(t.ok(), "{t:?}");
        wait_for("the delivery", async || gw.queue_depth() == 0).await;
    }
    // The device's own sessions with the gateway are not Exchange's: only upstream ones count.
    emulator.exchange_stats().unwrap().smtp_sessions - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstream_session_carries_the_accounts_next_messages() {
    let bed = bed().await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    let before = bed.inbox(&gw).await.unwrap_or(0);
    let sessions = sessions_for_sequential_deliveries(&bed, &gw, 4, 700).await;
    assert_eq!(sessions, 1, "four messages, one signed-in session");
    wait_for("four deliveries", async || {
        bed.inbox(&gw).await == Some(before + 4)
    })
    .await;
    let m = gw.metrics();
    assert_eq!(m.get("upstream_sessions", "scanner", "opened"), 1);
    assert_eq!(m.get("upstream_sessions", "scanner", "reused"), 3);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reuse_off_every_message_has_its_own_session() {
    let bed = bed().await;
    let path = bed.dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("[upstream]\n", "[upstream]\nsmtp_reuse_idle_secs = 0\n"),
    )
    .unwrap();
    let gw = Gateway::start(bed.config()).await.unwrap();
    let sessions = sessions_for_sequential_deliveries(&bed, &gw, 3, 710).await;
    assert_eq!(sessions, 3);
    assert_eq!(
        gw.metrics().get("upstream_sessions", "scanner", "reused"),
        0
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_exchange_closed_while_idle_is_replaced_without_a_retry() {
    // Exchange ends a session idle for its inactivity timeout with `421 4.4.2`; the gateway's
    // kept session is then stale, and the next message goes through a new one at once.
    let bed = bed_with_options(
        EmulatorOptions {
            limits: exgate_emulator::ServerLimits {
                smtp_idle_timeout: Duration::from_secs(1),
                ..exgate_emulator::ServerLimits::default()
            },
            ..EmulatorOptions::default()
        },
        "",
    )
    .await;
    let gw = Gateway::start(bed.config()).await.unwrap();
    let before = bed.inbox(&gw).await.unwrap_or(0);
    assert_eq!(
        sessions_for_sequential_deliveries(&bed, &gw, 1, 720).await,
        1
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sessions_for_sequential_deliveries(&bed, &gw, 1, 721).await,
        1
    );
    wait_for("both deliveries", async || {
        bed.inbox(&gw).await == Some(before + 2)
    })
    .await;
    let m = gw.metrics();
    assert_eq!(m.get("upstream_sessions", "scanner", "stale"), 1);
    assert_eq!(m.get("upstream_sessions", "scanner", "opened"), 2);
    assert_eq!(
        m.get("messages", "scanner", "deferred"),
        0,
        "no attempt was spent"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}
