//! `--write-check` end to end: the live prober creates and deletes a probe item in each
//! destination mailbox of the emulator (EWS DeleteItem, Graph `POST`/`DELETE messages`), the
//! mailbox ends as it began, and an app with only `Mail.Read` is told it lacks a permission.

use std::sync::Arc;

use exgate_auth::{
    Authority, Credential, EndpointVersion, ProviderConfig, TokenProvider, TokenRequest,
};
use exgate_emulator::Emulator;
use exgate_mail::ews::ConnectingSid;
use exgate_mail::{Bearer, HttpClient, MailEndpoint, open_mailbox};
use exgate_verify::live::LiveOptions;
use exgate_verify::{RunOptions, Side, StepName, StepResult, VerifyOptions};
use secrecy::SecretString;
use url::Url;

use crate::support;

const DAEMON: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const READER: &str = "cccccccc-dddd-eeee-ffff-000000000000";
const SECRET: &str = "daemon-secret-2099";

async fn emulator() -> Emulator {
    support::start_emulator(support::TWO_TENANTS).await
}

/// One side of a project: `api`, tenant and client id.
fn side(name: &str, base: &str, api: &str, tenant: &str, client_id: &str) -> String {
    let url = if api == "ews" {
        format!("{base}/EWS/Exchange.asmx")
    } else {
        format!("{base}/v1.0")
    };
    format!(
        r#"[{name}]
kind = "exchange-online"
api = "{api}"
url = "{url}"
tenant = "{tenant}"
authority_host = "{base}"
[{name}.auth]
mode = "app-secret"
client_id = "{client_id}"
secret = "{SECRET}"
"#
    )
}

/// Runs `verify --write-check` for one line item.
async fn verify_with_write_check(
    source: &str,
    destination: &str,
    mailbox: (&str, &str),
) -> (exgate_verify::report::Report, tempfile::TempDir) {
    let text = format!(
        "name = \"write-check\"\n{source}\n{destination}\n[[mailboxes]]\nsource = \"{}\"\ndestination = \"{}\"\n",
        mailbox.0, mailbox.1
    );
    let project = support::parse_project(&text);
    let options = VerifyOptions {
        run: RunOptions {
            write_check: true,
            ..RunOptions::default()
        },
        ..VerifyOptions::default()
    };
    let (report, store, dir) = support::run(&project, &LiveOptions::default(), &options).await;
    store.close().await;
    (report, dir)
}

fn write_step(report: &exgate_verify::report::Report) -> &StepResult {
    let text = exgate_verify::report::render_text(&report.head);
    report
        .mailboxes
        .first()
        .and_then(|m| {
            m.steps
                .iter()
                .find(|s| s.endpoint == Side::Destination && s.name == StepName::WriteProbe)
        })
        .unwrap_or_else(|| panic!("no write_probe step:\n{text}"))
}

/// Items per top-level folder of a mailbox, read with the daemon's own token.
async fn folder_totals(
    emu: &Emulator,
    api: &str,
    tenant: &str,
    address: &str,
) -> Vec<(String, u64)> {
    let authority = Authority::new(emu.base_url(), tenant, EndpointVersion::V2).unwrap();
    let config = ProviderConfig::new(
        authority,
        DAEMON,
        Credential::ClientSecret(SecretString::from(SECRET)),
    );
    let provider = TokenProvider::new(config).unwrap();
    let (request, endpoint) = if api == "ews" {
        (
            TokenRequest::exchange_online(),
            MailEndpoint::Ews {
                url: Url::parse(&format!("{}/EWS/Exchange.asmx", emu.base_url())).unwrap(),
                impersonation: Some(ConnectingSid::PrimarySmtpAddress(address.to_owned())),
                server_version: None,
            },
        )
    } else {
        (
            TokenRequest::resource_default("https://graph.microsoft.com"),
            MailEndpoint::Graph {
                base: format!("{}/v1.0", emu.base_url()),
            },
        )
    };
    let token = provider.token(&request).await.unwrap();
    let creds = Arc::new(Bearer::fixed(SecretString::from(token.secret().to_owned())));
    let mailbox = open_mailbox(&endpoint, &HttpClient::new().unwrap(), creds, address).unwrap();
    let mut totals: Vec<(String, u64)> = mailbox
        .list_folders()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.name.unwrap_or(f.id), f.total.unwrap_or(0)))
        .collect();
    totals.sort();
    totals
}

fn total_of(totals: &[(String, u64)], name: &str) -> u64 {
    totals
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no folder {name} in {totals:?}"))
}

#[tokio::test]
async fn ews_app_only_destination_write_probe_leaves_the_mailbox_unchanged() {
    let emu = emulator().await;
    let base = emu.base_url().to_owned();
    let before = folder_totals(&emu, "ews", "fabrikam.com", "alice@fabrikam.com").await;
    assert_eq!(total_of(&before, "Inbox"), 5);
    assert_eq!(total_of(&before, "Drafts"), 0);
    let created = emu.exchange_stats().map(|s| s.items_created).unwrap_or(0);
    let (report, _dir) = verify_with_write_check(
        &side("source", &base, "graph", "contoso.com", DAEMON),
        &side("destination", &base, "ews", "fabrikam.com", DAEMON),
        ("alice@contoso.com", "alice@fabrikam.com"),
    )
    .await;
    let text = exgate_verify::report::render_text(&report.head);
    let step = write_step(&report);
    assert!(step.ok, "{text}");
    assert!(report.mailboxes[0].ok, "{text}");
    // The probe really went through CreateItem and DeleteItem.
    assert_eq!(
        emu.exchange_stats().map(|s| s.items_created).unwrap_or(0),
        created + 1
    );
    let after = folder_totals(&emu, "ews", "fabrikam.com", "alice@fabrikam.com").await;
    assert_eq!(after, before);
    emu.shutdown().await;
}

#[tokio::test]
async fn graph_destination_with_mail_read_write_write_probe_leaves_the_mailbox_unchanged() {
    let emu = emulator().await;
    let base = emu.base_url().to_owned();
    let before = folder_totals(&emu, "graph", "contoso.com", "alice@contoso.com").await;
    assert_eq!(total_of(&before, "Inbox"), 7);
    assert_eq!(total_of(&before, "Drafts"), 0);
    let created = emu.exchange_stats().map(|s| s.items_created).unwrap_or(0);
    let (report, _dir) = verify_with_write_check(
        &side("source", &base, "ews", "fabrikam.com", DAEMON),
        &side("destination", &base, "graph", "contoso.com", DAEMON),
        ("alice@fabrikam.com", "alice@contoso.com"),
    )
    .await;
    let text = exgate_verify::report::render_text(&report.head);
    assert!(write_step(&report).ok, "{text}");
    assert!(report.mailboxes[0].ok, "{text}");
    assert_eq!(
        emu.exchange_stats().map(|s| s.items_created).unwrap_or(0),
        created + 1
    );
    let after = folder_totals(&emu, "graph", "contoso.com", "alice@contoso.com").await;
    assert_eq!(after, before);
    emu.shutdown().await;
}

#[tokio::test]
async fn graph_destination_with_only_mail_read_fails_the_write_probe_naming_the_permission() {
    let emu = emulator().await;
    let base = emu.base_url().to_owned();
    let before = folder_totals(&emu, "graph", "contoso.com", "alice@contoso.com").await;
    let (report, _dir) = verify_with_write_check(
        &side("source", &base, "ews", "fabrikam.com", DAEMON),
        &side("destination", &base, "graph", "contoso.com", READER),
        ("alice@fabrikam.com", "alice@contoso.com"),
    )
    .await;
    let text = exgate_verify::report::render_text(&report.head);
    let step = write_step(&report);
    assert!(!step.ok, "{text}");
    assert_eq!(
        step.evidence.as_ref().and_then(|e| e.status),
        Some(403),
        "{text}"
    );
    assert_eq!(
        step.evidence.as_ref().and_then(|e| e.code.as_deref()),
        Some("ErrorAccessDenied"),
        "{text}"
    );
    let first = step.causes.first().map(|c| c.id.as_str());
    assert!(
        matches!(
            first,
            Some("missing_application_permission" | "missing_permission")
        ),
        "first cause {first:?}\n{text}"
    );
    // The permission writing needs is named, in the error and in the first fix step.
    assert!(
        step.error
            .as_deref()
            .unwrap_or("")
            .contains("Mail.ReadWrite"),
        "{text}"
    );
    assert!(
        step.causes[0].fix[0].contains("Mail.ReadWrite"),
        "{:?}",
        step.causes[0].fix
    );
    // Reading still works with Mail.Read: only the write probe failed.
    let failed: Vec<_> = report.mailboxes[0].steps.iter().filter(|s| !s.ok).collect();
    assert_eq!(failed.len(), 1, "{text}");
    assert_eq!(
        folder_totals(&emu, "graph", "contoso.com", "alice@contoso.com").await,
        before
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_project_without_destination_checks_and_write_probes_the_source() {
    let emu = emulator().await;
    let base = emu.base_url().to_owned();
    let before = folder_totals(&emu, "ews", "fabrikam.com", "alice@fabrikam.com").await;
    let text = format!(
        "name = \"one-sided\"\n{}\n[[mailboxes]]\nsource = \"alice@fabrikam.com\"\n",
        side("source", &base, "ews", "fabrikam.com", DAEMON)
    );
    let project = support::parse_project(&text);
    let options = VerifyOptions {
        run: RunOptions {
            write_check: true,
            ..RunOptions::default()
        },
        ..VerifyOptions::default()
    };
    let (report, store, _dir) = support::run(&project, &LiveOptions::default(), &options).await;
    store.close().await;
    let text = exgate_verify::report::render_text(&report.head);
    let m = &report.mailboxes[0];
    assert!(m.ok, "{text}");
    assert_eq!(m.destination, None);
    let steps: Vec<(Side, StepName)> = m.steps.iter().map(|s| (s.endpoint, s.name)).collect();
    assert_eq!(
        steps,
        [
            (Side::Source, StepName::Resolve),
            (Side::Source, StepName::Token),
            (Side::Source, StepName::Open),
            (Side::Source, StepName::Inbox),
            (Side::Source, StepName::WriteProbe),
        ],
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["mailboxes"][0]["destination"].is_null(), "{json}");
    let html = exgate_verify::report::render_html(&report);
    assert!(!html.contains("<th>destination</th>"));
    assert_eq!(
        folder_totals(&emu, "ews", "fabrikam.com", "alice@fabrikam.com").await,
        before
    );
    emu.shutdown().await;
}
