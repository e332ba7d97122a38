//! `exgate gateway` through the binary: help, passwd, --check, status, and a kill -9 during
//! delivery followed by a restart (every accepted message delivered; a second copy only where
//! the gateway said it might send one).

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin;
use exgate_mail::imap::{ImapAuth, ImapOptions};
use exgate_mail::smtp::{Outgoing, SmtpAuth, SmtpOptions, SmtpSecurity, Stage, submit};
use secrecy::SecretString;

const SCENARIO: &str = r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]

[[tenants.consent]]
app = "Scanner"
resource = "https://outlook.office365.com"
roles = ["SMTP.SendAsApp", "IMAP.AccessAsApp"]

[[applications]]
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
name = "Scanner"
home_tenant = "contoso"

[[applications.secrets]]
value = "CANARY-app-secret~1"
expires = "2099-01-01"

[exchange]

[[exchange.mailboxes]]
address = "scanner@contoso.com"

[[exchange.mailboxes]]
address = "alice@contoso.com"
"#;

const PW: &str = "CANARY-device-password";

fn exgate() -> Command {
    let mut c = Command::cargo_bin("exgate").expect("binary");
    c.env("NO_COLOR", "1");
    c
}

fn write_config(dir: &Path, emulator: &serde_json::Value) {
    let text = |k: &str| emulator[k].as_str().unwrap_or_default().to_owned();
    std::fs::write(dir.join("app-secret"), "CANARY-app-secret~1").unwrap();
    let config = format!(
        r#"
[listen]
smtp = ["127.0.0.1:0"]
imaps = ["127.0.0.1:0"]
metrics = "127.0.0.1:0"

[tls]
certificate = "gw.cert.pem"
key = "gw.key.pem"

[spool]
retry_initial_secs = 1

[upstream]
smtp_host = "localhost"
smtp_connect = "{smtp}"
imap_host = "localhost"
imap_connect = "{imap}"
ca_pem = "ca.pem"
messages_per_minute = 10000
timeout_secs = 5

[profiles.contoso]
tenant = "contoso.com"
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_secret_file = "app-secret"
authority_host = "{base}"
ca_pem = "ca.pem"

[[accounts]]
name = "scanner"
mailbox = "scanner@contoso.com"

[[accounts]]
name = "reader"
mailbox = "alice@contoso.com"
protocols = ["imap"]
"#,
        smtp = text("smtp"),
        imap = text("imap"),
        base = text("base_url"),
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    exgate()
        .current_dir(dir)
        .args([
            "cert",
            "new",
            "--subject",
            "CN=gw",
            "--out",
            "gw",
            "--san",
            "localhost",
        ])
        .assert()
        .success();
    for name in ["scanner", "reader"] {
        exgate()
            .current_dir(dir)
            .env("DEVICE_PW", PW)
            .args(["gateway", "passwd", name, "--password-env", "DEVICE_PW"])
            .assert()
            .success();
    }
}

struct Running {
    child: Child,
    smtp: std::net::SocketAddr,
    imaps: std::net::SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(dir: &Path, log: &str) -> Running {
    let mut child = StdCommand::new(cargo_bin("exgate"))
        .current_dir(dir)
        .args(["gateway", "run", "--config", "gateway.toml"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut smtp, mut imaps) = (None, None);
    while smtp.is_none() || imaps.is_none() {
        let line = lines
            .next()
            .expect("the gateway printed its addresses")
            .unwrap();
        let addr = line
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .parse()
            .ok();
        if line.starts_with("smtp (STARTTLS)") {
            smtp = addr;
        } else if line.starts_with("imaps") {
            imaps = addr;
        }
    }
    Running {
        child,
        smtp: smtp.unwrap(),
        imaps: imaps.unwrap(),
    }
}

fn ca(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("gw.cert.pem")).unwrap()
}

async fn send(dir: &Path, addr: std::net::SocketAddr, n: u32) -> bool {
    let options = SmtpOptions {
        host: "localhost".into(),
        port: addr.port(),
        connect_to: Some(addr),
        security: SmtpSecurity::StartTls,
        extra_root_pem: Some(ca(dir)),
        timeout: Duration::from_secs(10),
        ehlo_name: "printer".into(),
    };
    let auth = SmtpAuth::Login {
        user: "scanner".into(),
        password: SecretString::from(PW.to_owned()),
    };
    let message = Outgoing {
        from: "scanner@contoso.com".into(),
        to: vec!["alice@contoso.com".into()],
        data: format!("Subject: scan {n}\r\nMessage-ID: <scan-{n}@printer>\r\n\r\npage {n}\r\n")
            .into_bytes(),
    };
    let none = |_: Stage| Ok(());
    submit(&options, &auth, &message, &none).await.ok()
}

async fn inbox(dir: &Path, addr: std::net::SocketAddr) -> u64 {
    let t = exgate_mail::imap::check(
        &ImapOptions {
            host: "localhost".into(),
            port: addr.port(),
            connect_to: Some(addr),
            extra_root_pem: Some(ca(dir)),
            timeout: Duration::from_secs(10),
        },
        &ImapAuth::Login {
            user: "reader".into(),
            password: SecretString::from(PW.to_owned()),
        },
        "INBOX",
    )
    .await;
    assert!(t.ok(), "{t:?}");
    t.exists.unwrap_or(0)
}

fn queued(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("spool/queue")).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count()
    })
}

#[test]
fn help_examples_and_bad_configuration() {
    for args in [
        ["gateway", "run", "--help"],
        ["gateway", "passwd", "--help"],
        ["gateway", "status", "--help"],
        ["pop", "check", "--help"],
    ] {
        let out = exgate().args(args).output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[profiles.p]\ntenant = \"contoso.com\"\nclient_id = \"x\"\nclient_secret = \"CANARY-inline\"\n",
    )
    .unwrap();
    let out = exgate()
        .current_dir(dir.path())
        .args(["gateway", "run", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("profiles.p.client_secret") && err.contains("client_secret_env"),
        "{err}"
    );
    assert!(!err.contains("CANARY"), "{err}");
}

#[test]
fn kill_9_during_delivery_then_restart_delivers_every_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).unwrap();
    let (_emulator, state) =
        common::start_emulator(dir.path(), &["--tls", "--ca-out", "ca.pem"], |v| {
            v["smtp"].is_string() && v["imap"].is_string()
        });
    write_config(dir.path(), &state);
    exgate()
        .current_dir(dir.path())
        .args(["gateway", "run", "--check"])
        .assert()
        .success();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut gw = start_gateway(dir.path(), "first.log");
    let before = rt.block_on(inbox(dir.path(), gw.imaps));
    // Sixty devices submit at once while delivery runs; SIGKILL as soon as they are answered.
    let accepted = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for n in 0..60 {
            let d = dir.path().to_owned();
            let smtp = gw.smtp;
            set.spawn(async move { send(&d, smtp, n).await });
        }
        let mut ok = 0u64;
        while let Some(r) = set.join_next().await {
            ok += u64::from(r.unwrap_or(false));
        }
        ok
    });
    let _ = gw.child.kill();
    let _ = gw.child.wait();
    let left = queued(dir.path());
    eprintln!("accepted {accepted}, still in the spool after kill -9: {left}");

    let gw = start_gateway(dir.path(), "second.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while queued(dir.path()) > 0 {
        assert!(
            Instant::now() < deadline,
            "the spool did not drain: {}\n{:?}",
            std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default(),
            std::fs::read_dir(dir.path().join("spool/queue"))
                .unwrap()
                .map(|e| {
                    let p = e.unwrap().path();
                    (p.clone(), std::fs::read_to_string(&p).unwrap_or_default())
                })
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = rt.block_on(inbox(dir.path(), gw.imaps));
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    let announced = log.matches("it may arrive twice").count() as u64;
    let delivered = after - before;
    eprintln!(
        "delivered {delivered} of {accepted} accepted; announced possible duplicates: {announced}"
    );
    assert!(
        delivered >= accepted,
        "lost messages: {delivered} < {accepted}"
    );
    assert!(
        delivered <= accepted + announced,
        "unannounced duplicates: {delivered} > {accepted} + {announced}"
    );

    // status: nothing waiting; no secret in any log.
    let out = exgate()
        .current_dir(dir.path())
        .args(["gateway", "status", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["queued"].as_array().map(Vec::len), Some(0));
    for name in ["first.log", "second.log"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(
            !text.contains("CANARY") && !text.contains("eyJ"),
            "{name}: {text}"
        );
    }
    assert!(log.contains("exgate::audit"), "{log}");
}

/// `AUTH PLAIN` on a plain listener: the reply code.
fn auth_plain(addr: &str, user: &str, password: &str) -> u16 {
    use std::io::{BufRead as _, Write as _};
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    let mut line = String::new();
    let mut read = |r: &mut BufReader<std::net::TcpStream>| loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.as_bytes().get(3) != Some(&b'-') {
            return line[..3].parse::<u16>().unwrap_or(0);
        }
    };
    read(&mut r);
    w.write_all(b"EHLO t\r\n").unwrap();
    read(&mut r);
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
    };
    w.write_all(format!("AUTH PLAIN {b64}\r\n").as_bytes())
        .unwrap();
    let code = read(&mut r);
    let _ = w.write_all(b"QUIT\r\n");
    code
}

#[test]
fn sighup_reloads_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("secret"), "x").unwrap();
    std::fs::write(
        d.join("gateway.toml"),
        r#"
[listen]
smtp = []
smtp_plain = ["127.0.0.1:0"]
allow_plain = true
metrics = "127.0.0.1:0"

[profiles.p]
tenant = "contoso.com"
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_secret_file = "secret"
authority_host = "https://localhost:9"

[[accounts]]
name = "scanner"
mailbox = "scanner@contoso.com"
"#,
    )
    .unwrap();
    let passwd = |pw: &str| {
        exgate()
            .current_dir(d)
            .env("PW", pw)
            .args(["gateway", "passwd", "scanner", "--password-env", "PW"])
            .assert()
            .success();
    };
    passwd("CANARY-first-password");
    let mut child = StdCommand::new(cargo_bin("exgate"))
        .current_dir(d)
        .args(["gateway", "run"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("gw.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("addresses").unwrap();
        if line.starts_with("smtp (no TLS)") {
            break line.split_whitespace().last().unwrap().to_owned();
        }
    };
    // Keep reading stdout so the gateway never writes into a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    assert_eq!(auth_plain(&addr, "scanner", "CANARY-first-password"), 235);
    passwd("CANARY-second-password");
    let pid = child.id().to_string();
    assert!(
        StdCommand::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while auth_plain(&addr, "scanner", "CANARY-second-password") != 235 {
        assert!(
            Instant::now() < deadline,
            "the new password never took effect"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(auth_plain(&addr, "scanner", "CANARY-first-password"), 535);
    let _ = StdCommand::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful stop: {status:?}");
    let log = std::fs::read_to_string(d.join("gw.log")).unwrap();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(!log.contains("CANARY"), "{log}");
}

const DELEGATED_SCENARIO: &str = r#"
[device_flow]
user = "frontdesk@contoso.com"
outcome = "approve"

[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]

[[tenants.users]]
upn = "frontdesk@contoso.com"
password = "Frontdesk-Pass-1"

[[tenants.consent]]
app = "Gateway delegated"
resource = "https://outlook.office365.com"
scopes = ["SMTP.Send", "IMAP.AccessAsUser.All"]

[[applications]]
client_id = "bbbbbbbb-0000-0000-0000-000000000002"
name = "Gateway delegated"
home_tenant = "contoso"
public_client = true

[[applications.permissions]]
resource = "https://outlook.office365.com"
scopes = ["SMTP.Send", "IMAP.AccessAsUser.All"]

[exchange]

[[exchange.mailboxes]]
address = "frontdesk@contoso.com"

[[exchange.mailboxes]]
address = "alice@contoso.com"
"#;

#[test]
fn login_bootstraps_a_delegated_account_headless_then_the_gateway_sends_as_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("scenario.toml"), DELEGATED_SCENARIO).unwrap();
    let (_emulator, state) = common::start_emulator(d, &["--tls", "--ca-out", "ca.pem"], |v| {
        v["smtp"].is_string()
    });
    let text = |k: &str| state[k].as_str().unwrap_or_default().to_owned();
    let key = "11".repeat(32);
    std::fs::write(
        d.join("gateway.toml"),
        format!(
            r#"
[listen]
smtp = []
smtp_plain = ["127.0.0.1:0"]
allow_plain = true
metrics = "127.0.0.1:0"

[upstream]
smtp_host = "localhost"
smtp_connect = "{smtp}"
ca_pem = "ca.pem"

[profiles.frontdesk]
tenant = "contoso.com"
client_id = "bbbbbbbb-0000-0000-0000-000000000002"
flow = "device_code"
scopes = ["https://outlook.office365.com/SMTP.Send", "offline_access"]
authority_host = "{base}"
ca_pem = "ca.pem"

[profiles.frontdesk.store]
path = "tokens.bin"
key_env = "GW_STORE_KEY"

[profiles.app]
tenant = "contoso.com"
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_secret_file = "ca.pem"

[[accounts]]
name = "frontdesk"
mailbox = "frontdesk@contoso.com"
profile = "frontdesk"

[[accounts]]
name = "appy"
mailbox = "alice@contoso.com"
profile = "app"
"#,
            smtp = text("smtp"),
            base = text("base_url"),
        ),
    )
    .unwrap();
    // An app-only account has nothing to log in.
    let out = exgate()
        .current_dir(d)
        .args(["gateway", "login", "appy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("device_code"));

    let out = exgate()
        .current_dir(d)
        .env("GW_STORE_KEY", &key)
        .args(["gateway", "login", "frontdesk"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("enter the code"), "{err}");
    assert!(d.join("tokens.bin").exists());

    // The gateway, started later, renews from the store and sends as the mailbox.
    exgate()
        .current_dir(d)
        .env("PW", PW)
        .args(["gateway", "passwd", "frontdesk", "--password-env", "PW"])
        .assert()
        .success();
    let mut child = StdCommand::new(cargo_bin("exgate"))
        .current_dir(d)
        .env("GW_STORE_KEY", &key)
        .args(["gateway", "run"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("gw.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines.next().expect("addresses").unwrap();
        if line.starts_with("smtp (no TLS)") {
            break line.split_whitespace().last().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    // Plain listener: speak SMTP by hand (AUTH PLAIN), then let delivery run.
    assert_eq!(auth_plain(&addr.to_string(), "frontdesk", PW), 235);
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent = send_plain(
        &addr.to_string(),
        "frontdesk",
        PW,
        "frontdesk@contoso.com",
        "alice@contoso.com",
    );
    assert!(sent, "the gateway accepted the message");
    // The spool records the delivery before the gateway logs it: wait for both.
    let log = |d: &Path| std::fs::read_to_string(d.join("gw.log")).unwrap_or_default();
    while queued(d) > 0 || !log(d).contains("delivered") {
        assert!(Instant::now() < deadline, "not delivered: {}", log(d));
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = log(d);
    assert!(!log.contains("device-code sign-in is needed"), "{log}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A whole submission on a plain listener; true when the message was queued.
fn send_plain(addr: &str, user: &str, password: &str, from: &str, to: &str) -> bool {
    use std::io::{BufRead as _, Write as _};
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    let code = |r: &mut BufReader<std::net::TcpStream>| {
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line[..3].parse::<u16>().unwrap_or(0);
            }
        }
    };
    code(&mut r);
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
    };
    for (cmd, want) in [
        ("EHLO t".to_owned(), 250),
        (format!("AUTH PLAIN {b64}"), 235),
        (format!("MAIL FROM:<{from}>"), 250),
        (format!("RCPT TO:<{to}>"), 250),
        ("DATA".to_owned(), 354),
        (
            format!("Subject: desk\r\nFrom: <{from}>\r\nTo: <{to}>\r\n\r\nhello\r\n."),
            250,
        ),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        if code(&mut r) != want {
            return false;
        }
    }
    let _ = w.write_all(b"QUIT\r\n");
    true
}
