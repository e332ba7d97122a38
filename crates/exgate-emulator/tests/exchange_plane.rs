//! The Exchange plane mounted next to Entra ID when the scenario has an `[exchange]` section:
//! tokens from the emulator's token endpoint are accepted by Graph and EWS, Basic auth is
//! checked against the scenario's users, and on-premises SPNs become token audiences.

mod common;

use std::path::Path;

use common::*;
use exgate_emulator::{EmulatorOptions, Scenario};

const EXCHANGE: &str = r#"
[exchange]
default_inbox_messages = 3

[[exchange.mailboxes]]
address = "alice@contoso.com"

[[exchange.servers]]
name = "ex01"
tenant = "contoso.com"
public_url = "https://mail.contoso.com"
hma = true
spns = ["https://mail.contoso.com", "https://legacy.contoso.com"]
"#;

async fn app_token(emu: &exgate_emulator::Emulator, scope: &str) -> (u16, serde_json::Value) {
    post_form(
        &token_url(emu, CONTOSO),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("scope", scope),
        ],
    )
    .await
}

#[tokio::test]
async fn graph_accepts_an_emulator_token_and_lists_messages() {
    let cert = TestCert::new("c");
    let emu = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions::default(),
    )
    .await;
    let (status, body) = app_token(&emu, "https://graph.microsoft.com/.default").await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap_or("");
    let resp = client()
        .get(format!(
            "{}/v1.0/users/alice@contoso.com/mailFolders/inbox/messages",
            emu.base_url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("graph");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["value"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(emu.exchange_stats().is_some());
}

#[tokio::test]
async fn ews_challenges_without_a_token() {
    let cert = TestCert::new("c");
    let emu = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions::default(),
    )
    .await;
    let resp = client()
        .post(format!("{}/EWS/Exchange.asmx", emu.base_url()))
        .header("content-type", "text/xml; charset=utf-8")
        .body("<x/>")
        .send()
        .await
        .expect("ews");
    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
}

#[tokio::test]
async fn onprem_spns_become_exchange_audiences() {
    let cert = TestCert::new("c");
    let emu = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions::default(),
    )
    .await;
    let (status, body) = app_token(&emu, "https://legacy.contoso.com/.default").await;
    assert_eq!(status, 200, "{body}");
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["aud"], "https://legacy.contoso.com");
}

#[test]
fn invalid_exchange_section_is_a_scenario_error_at_its_line() {
    let cert = TestCert::new("c");
    let toml = scenario_toml(
        &cert,
        "",
        "[exchange]\n\n[[exchange.mailboxes]]\naddress = \"x@nowhere.example\"\n",
    );
    let err = Scenario::from_toml_str(&toml, Path::new("s.toml")).expect_err("unknown tenant");
    let text = err.to_string();
    assert!(
        text.contains("nowhere.example") || text.contains("tenant"),
        "{text}"
    );
    let header_line = toml
        .lines()
        .position(|l| l.trim() == "[exchange]")
        .map(|i| i + 1);
    assert_eq!(err.line(), header_line, "{text}");
}

#[test]
fn scenarios_without_exchange_section_mount_no_exchange_plane() {
    let cert = TestCert::new("c");
    let s = Scenario::from_toml_str(&scenario_toml(&cert, "", ""), Path::new("s.toml"))
        .expect("scenario");
    assert!(s.exchange.is_none());
}

#[test]
fn directory_password_checks_follow_the_scenario_users() {
    use exgate_emulator_exchange::{Directory, PasswordCheck};
    let cert = TestCert::new("c");
    let s = Scenario::from_toml_str(&scenario_toml(&cert, "", ""), Path::new("s.toml"))
        .expect("scenario");
    let dir = exgate_emulator::exchange::ScenarioDirectory::new(s.tenants.clone());
    assert_eq!(
        dir.check_password("alice@contoso.com", "alice-pw"),
        PasswordCheck::Ok
    );
    assert_eq!(
        dir.check_password("alice@contoso.com", "nope"),
        PasswordCheck::WrongPassword
    );
    assert_eq!(
        dir.check_password("mfa@contoso.com", "mfa-pw"),
        PasswordCheck::MfaRequired
    );
    assert_eq!(
        dir.check_password("locked@contoso.com", "locked-pw"),
        PasswordCheck::Locked
    );
    assert_eq!(
        dir.check_password("disabled@contoso.com", "disabled-pw"),
        PasswordCheck::Disabled
    );
    assert_eq!(
        dir.check_password("expired@contoso.com", "expired-pw"),
        PasswordCheck::PasswordExpired
    );
    assert_eq!(
        dir.check_password("ghost@contoso.com", "ghost-pw"),
        PasswordCheck::UnknownUser
    );
    assert_eq!(
        dir.check_password("user@fabrikam.com", "fab-user-pw"),
        PasswordCheck::MfaRequired,
        "security defaults"
    );
    let t = dir.tenant("contoso.com").expect("tenant");
    assert_eq!(t.id, CONTOSO);
}

#[tokio::test]
async fn an_onpremises_server_answers_at_its_own_name() {
    // A client pointed at mail.contoso.com by a hosts-file line (here: reqwest's resolve): the
    // certificate names the host, and the request reaches ex01's EWS, not Exchange Online's.
    let cert = TestCert::new("c");
    let emu = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions {
            tls: true,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let port: u16 = emu
        .base_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().expect("ca").as_bytes()).expect("ca");
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve(
            "mail.contoso.com",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .expect("client");
    let probe = |url: String| {
        let http = http.clone();
        async move {
            http.post(url)
                .header("Authorization", "Bearer")
                .header("Content-Type", "text/xml")
                .body("")
                .send()
                .await
                .expect("EWS answers")
        }
    };
    let r = probe(format!("https://mail.contoso.com:{port}/EWS/Exchange.asmx")).await;
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // An on-premises challenge names the tenant; Exchange Online's says `@*`.
    assert!(
        challenge.contains("trusted_issuers=\"00000001-0000-0000-c000-000000000000@")
            && !challenge.contains("@*\""),
        "{challenge}"
    );
    // The same server under its path prefix answers the same.
    let r = probe(format!("{}/onprem/ex01/EWS/Exchange.asmx", emu.base_url())).await;
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(challenge.as_str())
    );
}

#[tokio::test]
async fn with_microsoft_names_a_client_keeps_microsofts_urls() {
    let cert = TestCert::new("c");
    let emu = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions {
            tls: true,
            microsoft_names: true,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let port: u16 = emu
        .base_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().expect("ca").as_bytes()).expect("ca");
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("login.microsoftonline.com", at)
        .resolve("outlook.office365.com", at)
        .build()
        .expect("client");
    // A token from login.microsoftonline.com, used at outlook.office365.com, TLS checks on.
    let r = http
        .post(format!(
            "https://login.microsoftonline.com:{port}/{CONTOSO}/oauth2/v2.0/token"
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("scope", "https://outlook.office365.com/.default"),
        ])
        .send()
        .await
        .expect("token endpoint");
    assert_eq!(r.status().as_u16(), 200);
    let token = r.json::<serde_json::Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = http
        .post(format!(
            "https://outlook.office365.com:{port}/EWS/Exchange.asmx"
        ))
        .bearer_auth(&token)
        .header("Content-Type", "text/xml")
        .body("")
        .send()
        .await
        .expect("EWS answers");
    // Authenticated (an empty body is a SOAP error, not a 401).
    assert_ne!(r.status().as_u16(), 401);
    // Without the option, the certificate does not name them.
    let plain = start_with(
        &scenario_toml(&cert, "", EXCHANGE),
        EmulatorOptions {
            tls: true,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let port: u16 = plain
        .base_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let ca = reqwest::Certificate::from_pem(plain.ca_pem().expect("ca").as_bytes()).expect("ca");
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve(
            "outlook.office365.com",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .expect("client");
    assert!(
        http.get(format!(
            "https://outlook.office365.com:{port}/EWS/Exchange.asmx"
        ))
        .send()
        .await
        .is_err()
    );
}
