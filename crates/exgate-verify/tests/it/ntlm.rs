//! `mode = "ntlm"` end to end: exgate's NTLM client against the emulator's independent NTLMv2
//! verifier, on an on-premises server whose EWS has Basic off (`auth = ["ntlm"]`): the service
//! account impersonates its mailboxes, a wrong password is one endpoint fault named as a credential
//! failure, and the password never reaches the report.

use exgate_verify::live::LiveOptions;
use exgate_verify::{RunOptions, Side, Status, StepName, VerifyOptions};

use crate::support;

const SCENARIO: &str = r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.onmicrosoft.com", "contoso.com"]

[[tenants.users]]
upn = "svc@contoso.com"
password = "CANARY-svc-password-1"
display_name = "Migration service account"

[exchange]
default_inbox_messages = 4

[[exchange.mailboxes]]
address = "ann@contoso.com"
server = "ex01"
groups = ["migration"]

[[exchange.mailboxes]]
address = "ben@contoso.com"
server = "ex01"
groups = ["migration"]

[[exchange.impersonation]]
account = "svc@contoso.com"
group = "migration"

[[exchange.servers]]
name = "ex01"
tenant = "contoso.com"
public_url = "https://mail.contoso.com"
[exchange.servers.ews]
auth = ["ntlm"]
"#;

fn project(base: &str, account: &str, password: &str) -> exgate_verify::Project {
    support::parse_project(&format!(
        r#"name = "ntlm"
[source]
kind = "exchange-onprem"
url = "{base}/onprem/ex01/EWS/Exchange.asmx"
[source.auth]
mode = "ntlm"
username = '{account}'
password = "{password}"
impersonation = true

[[mailboxes]]
source = "ann@contoso.com"

[[mailboxes]]
source = "ben@contoso.com"
"#
    ))
}

#[tokio::test]
async fn ntlm_service_account_impersonates_every_mailbox() {
    let emu = support::start_emulator(SCENARIO).await;
    let base = emu.base_url().to_owned();
    for account in ["CONTOSO\\svc", "svc@contoso.com"] {
        let p = project(&base, account, "CANARY-svc-password-1");
        let options = VerifyOptions {
            run: RunOptions {
                write_check: true,
                ..RunOptions::default()
            },
            ..VerifyOptions::default()
        };
        let (report, store, _dir) = support::run(&p, &LiveOptions::default(), &options).await;
        store.close().await;
        let text = exgate_verify::report::render_text(&report.head);
        assert_eq!(report.head.summary.ok, 2, "{account}:\n{text}");
        let inbox = report.mailboxes[0]
            .steps
            .iter()
            .find(|s| s.name == StepName::Inbox)
            .unwrap();
        assert_eq!(inbox.item_count, Some(4), "{text}");
        assert!(
            report.mailboxes[0]
                .steps
                .iter()
                .any(|s| s.name == StepName::WriteProbe && s.ok),
            "{text}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn a_wrong_ntlm_password_is_one_fault_named_as_a_credential_failure() {
    let emu = support::start_emulator(SCENARIO).await;
    let p = project(emu.base_url(), "CONTOSO\\svc", "CANARY-wrong-ntlm-password");
    let (report, store, _dir) =
        support::run(&p, &LiveOptions::default(), &VerifyOptions::default()).await;
    store.close().await;
    let text = exgate_verify::report::render_text(&report.head);
    assert_eq!(report.head.summary.ok, 0, "{text}");
    assert_eq!(report.head.faults.len(), 1, "{text}");
    let fault = &report.head.faults[0];
    assert_eq!(fault.endpoint, Side::Source);
    assert_eq!(fault.evidence.status, Some(401), "{text}");
    assert_eq!(
        fault.causes.first().map(|c| c.id.as_str()),
        Some("wrong_credentials"),
        "{text}"
    );
    assert!(
        report.mailboxes.iter().any(|m| m.status == Status::Blocked),
        "{text}"
    );
    let json = report.to_json();
    assert!(!json.contains("CANARY-wrong-ntlm-password"));
    assert!(!text.contains("CANARY-wrong-ntlm-password"));
    emu.shutdown().await;
}
