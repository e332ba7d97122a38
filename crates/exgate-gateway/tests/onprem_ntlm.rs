//! Toward on-premises Exchange that takes no OAuth and no password in the clear: the gateway
//! signs in upstream with Windows authentication (NTLMv2: SMTP `AUTH NTLM`, IMAP
//! `AUTHENTICATE NTLM`, POP `AUTH NTLM`) to the emulator's on-premises server reached at its
//! own name, which checks the proofs against the directory.

use std::time::Duration;

use exgate_emulator::{Emulator, EmulatorOptions};
use exgate_gateway::config::GatewayConfig;
use exgate_gateway::{Gateway, accounts};
use exgate_mail::imap::{ImapAuth, ImapOptions};
use exgate_mail::ntlm::NtlmCredentials;
use exgate_mail::pop::{PopAuth, PopOptions};
use exgate_mail::smtp::{Outgoing, SmtpAuth, SmtpOptions, SmtpSecurity, submit};
use secrecy::SecretString;

const SCENARIO: &str = r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]
basic_auth = true

[[tenants.users]]
upn = "copier@contoso.com"
password = "CANARY-ntlm-upstream-pw"

[exchange]
default_inbox_messages = 0

[[exchange.mailboxes]]
address = "copier@contoso.com"
server = "ex01"

[[exchange.servers]]
name = "ex01"
tenant = "contoso.com"
public_url = "https://mail.contoso.com"
"#;

const DEVICE_PW: &str = "CANARY-device-password";

struct Bed {
    _emulator: Emulator,
    dir: tempfile::TempDir,
    emulator_ca: Vec<u8>,
    smtp: std::net::SocketAddr,
    imap: std::net::SocketAddr,
    pop: std::net::SocketAddr,
}

async fn bed(upstream_password: &str) -> Bed {
    let emulator = exgate_test::start_emulator_tls(SCENARIO, EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let emulator_ca = emulator.ca_pem().unwrap().as_bytes().to_vec();
    std::fs::write(dir.path().join("emulator-ca.pem"), &emulator_ca).unwrap();
    std::fs::write(dir.path().join("upstream-pw"), upstream_password).unwrap();
    // The gateway's own certificate; devices trust its CA (`gateway-ca.pem`).
    exgate_test::TestPki::new(&["localhost"]).write(dir.path(), "gateway");
    let mut passwords = accounts::PasswordFile::default();
    passwords.set(
        "copier",
        accounts::hash_password(&SecretString::from(DEVICE_PW.to_owned())).unwrap(),
    );
    std::fs::write(dir.path().join("gateway.passwd"), passwords.to_text()).unwrap();
    let (smtp, imap, pop) = (
        emulator.smtp_addr().unwrap(),
        emulator.imap_addr().unwrap(),
        emulator.pop_addr().unwrap(),
    );
    let config = format!(
        r#"
[listen]
smtp = ["127.0.0.1:0"]
imaps = ["127.0.0.1:0"]
pop3s = ["127.0.0.1:0"]

[tls]
certificate = "gateway.pem"
key = "gateway.key"

[upstream]
smtp_host = "mail.contoso.com"
smtp_connect = "{smtp}"
imap_host = "mail.contoso.com"
imap_connect = "{imap}"
pop_host = "mail.contoso.com"
pop_connect = "{pop}"
ca_pem = "emulator-ca.pem"

[[accounts]]
name = "copier"
mailbox = "copier@contoso.com"
protocols = ["smtp", "imap", "pop"]
upstream_basic = {{ username = "CONTOSO\\copier", password_file = "upstream-pw", mechanism = "ntlm" }}
"#
    );
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    Bed {
        _emulator: emulator,
        dir,
        emulator_ca,
        smtp,
        imap,
        pop,
    }
}

fn ntlm(password: &str) -> NtlmCredentials {
    NtlmCredentials::new("CONTOSO\\copier", SecretString::from(password.to_owned()))
}

fn imap_options(host: &str, addr: std::net::SocketAddr, ca: Vec<u8>) -> ImapOptions {
    ImapOptions {
        host: host.into(),
        port: addr.port(),
        connect_to: Some(addr),
        extra_root_pem: Some(ca),
        timeout: Duration::from_secs(10),
    }
}

fn pop_options(host: &str, addr: std::net::SocketAddr, ca: Vec<u8>) -> PopOptions {
    PopOptions {
        host: host.into(),
        port: addr.port(),
        connect_to: Some(addr),
        extra_root_pem: Some(ca),
        timeout: Duration::from_secs(10),
    }
}

fn onprem_smtp(bed: &Bed) -> SmtpOptions {
    SmtpOptions {
        host: "mail.contoso.com".into(),
        port: bed.smtp.port(),
        connect_to: Some(bed.smtp),
        security: SmtpSecurity::StartTls,
        extra_root_pem: Some(bed.emulator_ca.clone()),
        timeout: Duration::from_secs(10),
        ehlo_name: "gateway".into(),
    }
}

fn note(n: u32) -> Outgoing {
    Outgoing {
        from: "copier@contoso.com".into(),
        to: vec!["copier@contoso.com".into()],
        data: format!(
            "From: <copier@contoso.com>\r\nTo: <copier@contoso.com>\r\nSubject: Scan {n}\r\n\r\npage {n}\r\n"
        )
        .into_bytes(),
    }
}

fn none(_: exgate_mail::smtp::Stage) -> Result<(), String> {
    Ok(())
}

/// The on-premises server at its own name offers NTLM and LOGIN (no XOAUTH2), and takes an
/// NTLMv2 exchange made with the right password, not one made with a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_onprem_server_takes_ntlm_on_smtp_imap_and_pop() {
    let bed = bed("CANARY-ntlm-upstream-pw").await;
    let t = submit(
        &onprem_smtp(&bed),
        &SmtpAuth::Ntlm(ntlm("CANARY-ntlm-upstream-pw")),
        &note(1),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    assert!(
        t.extensions.iter().any(|e| e == "AUTH NTLM LOGIN"),
        "{:?}",
        t.extensions
    );
    let wrong = submit(
        &onprem_smtp(&bed),
        &SmtpAuth::Ntlm(ntlm("CANARY-wrong-pw")),
        &note(2),
        &none,
    )
    .await;
    assert!(!wrong.ok());
    let reply = wrong
        .failure()
        .and_then(|f| f.reply.clone())
        .expect("reply");
    assert_eq!(reply.code, 535, "{reply:?}");

    let imap = exgate_mail::imap::check(
        &imap_options("mail.contoso.com", bed.imap, bed.emulator_ca.clone()),
        &ImapAuth::Ntlm(ntlm("CANARY-ntlm-upstream-pw")),
        "INBOX",
    )
    .await;
    assert!(imap.ok(), "{imap:?}");
    assert_eq!(imap.exists, Some(1), "the message sent above is there");
    // At Exchange Online's name the same server offers no NTLM: the tagged refusal is the
    // step's answer (a refusal to explain), not a transport error.
    let refused = exgate_mail::imap::check(
        &imap_options("localhost", bed.imap, bed.emulator_ca.clone()),
        &ImapAuth::Ntlm(ntlm("CANARY-ntlm-upstream-pw")),
        "INBOX",
    )
    .await;
    let failed = refused.failure().expect("refused");
    assert_eq!(failed.name, "authenticate", "{refused:?}");
    assert!(
        failed
            .response
            .as_deref()
            .is_some_and(|r| r.contains("NO AUTHENTICATE failed.")),
        "{refused:?}"
    );
    let pop = exgate_mail::pop::check(
        &pop_options("mail.contoso.com", bed.pop, bed.emulator_ca.clone()),
        &PopAuth::Ntlm(ntlm("CANARY-ntlm-upstream-pw")),
    )
    .await;
    assert!(pop.ok(), "{pop:?}");
    assert!(
        pop.capabilities.iter().any(|c| c == "SASL NTLM PLAIN"),
        "{:?}",
        pop.capabilities
    );
}

/// A device speaking Basic to the gateway; the gateway speaking NTLM upstream: the message is
/// delivered, read back over IMAP and POP through the gateway, and the password never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_passes_a_device_through_with_ntlm_upstream() {
    let bed = bed("CANARY-ntlm-upstream-pw\n").await;
    let config = GatewayConfig::load(&bed.dir.path().join("gateway.toml")).unwrap();
    let gw = Gateway::start(config).await.unwrap();
    let device_ca = std::fs::read(bed.dir.path().join("gateway-ca.pem")).unwrap();
    let addr = gw.addresses().smtp[0];
    let t = submit(
        &SmtpOptions {
            host: "localhost".into(),
            port: addr.port(),
            connect_to: Some(addr),
            security: SmtpSecurity::StartTls,
            extra_root_pem: Some(device_ca.clone()),
            timeout: Duration::from_secs(10),
            ehlo_name: "printer".into(),
        },
        &SmtpAuth::Login {
            user: "copier".into(),
            password: SecretString::from(DEVICE_PW.to_owned()),
        },
        &note(7),
        &none,
    )
    .await;
    assert!(t.ok(), "{t:?}");
    // Delivered upstream (store-and-forward): the mailbox on ex01 shows it, read through the
    // gateway's IMAP, which signs in upstream with NTLM too.
    let imaps = gw.addresses().imaps[0];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = exgate_mail::imap::check(
            &imap_options("localhost", imaps, device_ca.clone()),
            &ImapAuth::Login {
                user: "copier".into(),
                password: SecretString::from(DEVICE_PW.to_owned()),
            },
            "INBOX",
        )
        .await;
        assert!(t.ok(), "{t:?}");
        if t.exists == Some(1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not delivered: {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pop3s = gw.addresses().pop3s[0];
    let pop = exgate_mail::pop::check(
        &pop_options("localhost", pop3s, device_ca),
        &PopAuth::Login {
            user: "copier".into(),
            password: SecretString::from(DEVICE_PW.to_owned()),
        },
    )
    .await;
    assert!(pop.ok(), "{pop:?}");
    gw.shutdown(Duration::from_secs(2)).await;
}
