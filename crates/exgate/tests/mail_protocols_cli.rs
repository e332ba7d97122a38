//! `exgate smtp check` and `exgate imap check` through the binary: help, exit codes, and (with
//! the emulator) XOAUTH2 accepted and Exchange Online's refusals explained.

mod common;

use std::path::Path;

use assert_cmd::Command;

fn exgate() -> Command {
    let mut c = Command::cargo_bin("exgate").expect("binary");
    c.env("NO_COLOR", "1")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_CLIENT_CERTIFICATE_PATH");
    c
}

/// The JSON a check printed, after asserting its exit code (output shown on failure).
fn json_output(out: &std::process::Output, code: i32) -> (String, serde_json::Value) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stdout}{stderr}");
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (stdout, v)
}

#[test]
fn help_has_examples() {
    let out = exgate().args(["smtp", "check", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Examples:") && text.contains("--token-env"),
        "{text}"
    );
}

#[test]
fn an_unreachable_server_could_not_run_and_the_password_stays_hidden() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = exgate()
        .env("SMTP_PW", "CANARY-smtp-cli-password")
        .args([
            "smtp",
            "check",
            "--user",
            "scanner@contoso.com",
            "--password-env",
            "SMTP_PW",
            "--host",
            "localhost",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["failed_step"], "connect");
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("CANARY"));

    // A missing variable is a usage error naming it.
    let out = exgate()
        .args([
            "smtp",
            "check",
            "--user",
            "a@b.c",
            "--token-env",
            "NO_SUCH_VAR_X",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NO_SUCH_VAR_X"));
}

const SCENARIO: &str = r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]

[[tenants.consent]]
app = "Scanner"
resource = "https://outlook.office365.com"
roles = ["SMTP.SendAsApp", "IMAP.AccessAsApp", "POP.AccessAsApp"]

[[tenants.users]]
upn = "alice@contoso.com"
password = "Alice-Pass-1"

[[tenants.users]]
upn = "copier@contoso.com"
password = "Copier-Pass-1"

[[tenants]]
name = "fabrikam"
id = "22222222-3333-4444-5555-666666666666"
domains = ["fabrikam.com"]

[[tenants.consent]]
app = "Scanner"
resource = "https://outlook.office365.com"
roles = ["SMTP.SendAsApp"]

[[tenants]]
name = "northwind"
id = "33333333-4444-5555-6666-777777777777"
domains = ["northwind.com"]

[[tenants.consent]]
app = "Scanner"
resource = "https://outlook.office365.com"
roles = ["IMAP.AccessAsApp"]

[[applications]]
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
name = "Scanner"
home_tenant = "contoso"
multi_tenant = true

[[applications.secrets]]
value = "scanner-secret~1"
expires = "2099-01-01"

# Microsoft's Azure CLI: the sign-in check's public client, present in every tenant (not
# consented here: Entra ID answers AADSTS65001 once the password is verified).
[[applications]]
client_id = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
name = "Microsoft Azure CLI"
home_tenant = "contoso"
multi_tenant = true
public_client = true

[[applications.permissions]]
resource = "https://outlook.office365.com"
scopes = ["EWS.AccessAsUser.All"]

[exchange]

[[exchange.mailboxes]]
address = "scanner@contoso.com"

[[exchange.mailboxes]]
address = "alice@contoso.com"

[[exchange.mailboxes]]
address = "scanner@fabrikam.com"

[[exchange.mailboxes]]
address = "scanner@northwind.com"

[[exchange.organizations]]
tenant = "fabrikam.com"
smtp_auth_enabled = false

# On-premises: the copier's mailbox on ex01, reached at mail.contoso.com.
[[exchange.mailboxes]]
address = "copier@contoso.com"
server = "ex01"

[[exchange.servers]]
name = "ex01"
tenant = "contoso.com"
public_url = "https://mail.contoso.com"
"#;

use common::Emulator;

/// Starts `exgate emulator --tls`; returns it with its base URL and SMTP address.
fn start_emulator(dir: &Path) -> (Emulator, String, String) {
    let (emulator, base, smtp, _) = start_emulator_with_imap(dir);
    (emulator, base, smtp)
}

/// Starts `exgate emulator --tls`; returns it with its base URL, SMTP and IMAP addresses.
fn start_emulator_with_imap(dir: &Path) -> (Emulator, String, String, String) {
    std::fs::write(dir.join("scenario.toml"), SCENARIO).unwrap();
    let (emulator, v) = common::start_emulator(dir, &["--tls", "--ca-out", "ca.pem"], |v| {
        v["smtp"].is_string() && v["imap"].is_string() && dir.join("ca.pem").exists()
    });
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    (emulator, text("base_url"), text("smtp"), text("imap"))
}

/// `exgate <protocol> check --json` for `user` with the Scanner app's token from `tenant`.
fn mail_check(
    dir: &Path,
    base: &str,
    protocol: &str,
    addr: &str,
    tenant: &str,
    user: &str,
    extra: &[&str],
) -> std::process::Output {
    exgate()
        .current_dir(dir)
        .env("AZURE_TENANT_ID", tenant)
        .env("AZURE_CLIENT_ID", "aaaaaaaa-0000-0000-0000-000000000001")
        .env("AZURE_CLIENT_SECRET", "scanner-secret~1")
        .args([
            protocol,
            "check",
            "--user",
            user,
            "--host",
            "localhost",
            "--connect",
            addr,
        ])
        .args(["--authority-host", base, "--ca-cert", "ca.pem", "--json"])
        .args(extra)
        .output()
        .unwrap()
}

fn smtp_check(
    dir: &Path,
    base: &str,
    smtp: &str,
    tenant: &str,
    user: &str,
) -> std::process::Output {
    mail_check(
        dir,
        base,
        "smtp",
        smtp,
        tenant,
        user,
        &["--to", "alice@contoso.com"],
    )
}

#[test]
fn xoauth2_sends_through_the_emulator_and_a_disabled_tenant_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, base, smtp) = start_emulator(dir.path());

    let out = smtp_check(
        dir.path(),
        &base,
        &smtp,
        "contoso.com",
        "scanner@contoso.com",
    );
    let (stdout, v) = json_output(&out, 0);
    let steps: Vec<&str> = v["transcript"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "connect", "greeting", "ehlo", "starttls", "ehlo", "auth", "mail", "rcpt", "data",
            "quit"
        ]
    );
    assert!(!stdout.contains("scanner-secret"));
    // The header names the TLS name and where the connection really went.
    assert_eq!(
        v["transcript"]["server"].as_str().unwrap_or(""),
        format!("localhost:587 via {smtp}"),
        "{stdout}"
    );

    let out = smtp_check(
        dir.path(),
        &base,
        &smtp,
        "fabrikam.com",
        "scanner@fabrikam.com",
    );
    let (stdout, v) = json_output(&out, 1);
    assert_eq!(v["failed_step"], "auth");
    assert!(
        v["error"].as_str().unwrap_or("").contains("5.7.139"),
        "{stdout}"
    );
    assert_eq!(v["causes"][0]["id"], "smtp_auth_disabled", "{stdout}");

    // Northwind consented IMAP.AccessAsApp only: Exchange answers the bare 535 5.7.3, and the
    // check reads its own token to name the missing role first.
    let out = smtp_check(
        dir.path(),
        &base,
        &smtp,
        "northwind.com",
        "scanner@northwind.com",
    );
    let (stdout, v) = json_output(&out, 1);
    assert_eq!(v["failed_step"], "auth");
    assert!(
        v["error"].as_str().unwrap_or("").contains("5.7.3"),
        "{stdout}"
    );
    assert_eq!(
        v["causes"][0]["id"], "missing_application_permission",
        "{stdout}"
    );
    assert!(
        v["causes"][0]["evidence"].as_array().is_some_and(|e| e
            .iter()
            .any(|l| l.as_str().unwrap_or("").contains("SMTP.SendAsApp"))),
        "{stdout}"
    );
    let permissions = v["token_checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "permissions"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(permissions["ok"], false, "{stdout}");

    // Without the emulator's CA the TLS step fails, and the answer names exgate's trust option.
    let out = exgate()
        .current_dir(dir.path())
        .env("SMTP_PW", "CANARY-smtp-password")
        .args([
            "smtp",
            "check",
            "--user",
            "scanner@contoso.com",
            "--password-env",
            "SMTP_PW",
            "--host",
            "localhost",
            "--connect",
            &smtp,
            "--json",
        ])
        .output()
        .unwrap();
    let (stdout, v) = json_output(&out, 2);
    assert_eq!(v["failed_step"], "starttls", "{stdout}");
    assert!(
        v["hint"].as_str().unwrap_or("").contains("--ca-cert"),
        "{stdout}"
    );
    assert_eq!(v["causes"][0]["id"], "tls_untrusted", "{stdout}");
    assert!(!stdout.contains("CANARY"));

    // Entra ID refuses the app's secret: the token step fails, explained, and no secret shows.
    let out = exgate()
        .current_dir(dir.path())
        .env("AZURE_TENANT_ID", "contoso.com")
        .env("AZURE_CLIENT_ID", "aaaaaaaa-0000-0000-0000-000000000001")
        .env("AZURE_CLIENT_SECRET", "CANARY-wrong-secret")
        .args([
            "smtp",
            "check",
            "--user",
            "scanner@contoso.com",
            "--host",
            "localhost",
        ])
        .args([
            "--connect",
            &smtp,
            "--authority-host",
            &base,
            "--ca-cert",
            "ca.pem",
            "--json",
        ])
        .output()
        .unwrap();
    let (stdout, v) = json_output(&out, 1);
    assert_eq!(v["failed_step"], "token");
    assert!(
        v["error"].as_str().unwrap_or("").contains("7000215"),
        "{stdout}"
    );
    assert!(
        v["causes"].as_array().is_some_and(|c| !c.is_empty()),
        "{stdout}"
    );
    assert!(!stdout.contains("CANARY"));
}

fn imap_check(
    dir: &Path,
    base: &str,
    imap: &str,
    tenant: &str,
    user: &str,
) -> std::process::Output {
    mail_check(dir, base, "imap", imap, tenant, user, &[])
}

#[test]
fn imap_xoauth2_selects_the_inbox_and_a_token_without_the_role_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, base, _smtp, imap) = start_emulator_with_imap(dir.path());

    let out = imap_check(
        dir.path(),
        &base,
        &imap,
        "contoso.com",
        "scanner@contoso.com",
    );
    let (stdout, v) = json_output(&out, 0);
    assert!(v["transcript"]["exists"].is_u64(), "{stdout}");
    assert!(!stdout.contains("scanner-secret"));

    // Fabrikam consented SMTP.SendAsApp only: Exchange refuses without saying why.
    let out = imap_check(
        dir.path(),
        &base,
        &imap,
        "fabrikam.com",
        "scanner@fabrikam.com",
    );
    let (stdout, v) = json_output(&out, 1);
    assert_eq!(v["failed_step"], "authenticate");
    assert_eq!(v["error"], "IMAP NO AUTHENTICATE failed.");
    // The check holds the token: it lacks IMAP.AccessAsApp, and the report says so first.
    assert_eq!(
        v["causes"][0]["id"], "missing_application_permission",
        "{stdout}"
    );
    assert!(stdout.contains("IMAP.AccessAsApp"), "{stdout}");
    let permissions = v["token_checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "permissions"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(permissions["ok"], false, "{stdout}");
}

/// `--cert` with its key in another file: `--key` exists, and a certificate without a key names
/// the ways to give one.
#[test]
fn a_certificate_and_its_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = exgate()
        .current_dir(dir.path())
        .env("AZURE_TENANT_ID", "contoso.com")
        .env("AZURE_CLIENT_ID", "aaaaaaaa-0000-0000-0000-000000000001")
        .env_remove("AZURE_CLIENT_SECRET")
        .args([
            "smtp",
            "check",
            "--user",
            "a@contoso.com",
            "--host",
            "localhost",
            "--cert",
            "missing.pem",
            "--key",
            "missing.key",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert!(stderr.contains("missing.pem"), "{stderr}");

    // A PEM certificate without its key: the message names --key, and it exists.
    std::fs::write(
        dir.path().join("only-cert.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = exgate()
        .current_dir(dir.path())
        .env("AZURE_TENANT_ID", "contoso.com")
        .env("AZURE_CLIENT_ID", "aaaaaaaa-0000-0000-0000-000000000001")
        .env_remove("AZURE_CLIENT_SECRET")
        .args([
            "smtp",
            "check",
            "--user",
            "a@contoso.com",
            "--host",
            "localhost",
            "--cert",
            "only-cert.pem",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    if stderr.contains("--key") {
        let help = exgate().args(["smtp", "check", "--help"]).output().unwrap();
        assert!(String::from_utf8_lossy(&help.stdout).contains("--key"));
    }
}

#[test]
fn a_refused_password_is_told_apart_by_the_sign_in_check() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, base, _smtp, imap) = start_emulator_with_imap(dir.path());
    let run = |password: &str, json: bool| {
        let mut cmd = exgate();
        cmd.current_dir(dir.path()).env("IMAP_PW", password).args([
            "imap",
            "check",
            "--user",
            "alice@contoso.com",
            "--password-env",
            "IMAP_PW",
            "--host",
            "localhost",
            "--connect",
            &imap,
            "--authority-host",
            &base,
            "--ca-cert",
            "ca.pem",
        ]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    // The right password; Basic is off for IMAP in Exchange Online.
    let (stdout, v) = json_output(&run("Alice-Pass-1", true), 1);
    assert_eq!(v["causes"][0]["id"], "basic_auth_disabled", "{stdout}");
    for out in ["wrong_credentials", "mfa_required", "consent_required"] {
        assert!(
            v["causes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["id"] != out),
            "{out}: {stdout}"
        );
    }
    assert!(stdout.contains("Entra ID accepted the same user name and password"));
    assert!(!stdout.contains("Alice-Pass-1"));
    let human = run("Alice-Pass-1", false);
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(
        stderr.contains("sign-in check: Entra ID verified the same user name and password"),
        "{stderr}"
    );
    // A wrong password: Entra ID says AADSTS50126.
    let (stdout, v) = json_output(&run("CANARY-wrong-pw", true), 1);
    assert_eq!(v["causes"][0]["id"], "wrong_credentials", "{stdout}");
    assert!(stdout.contains("50126"), "{stdout}");
    assert!(!stdout.contains("CANARY"));
    let human = run("CANARY-wrong-pw", false);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&human.stdout),
        String::from_utf8_lossy(&human.stderr)
    );
    assert!(all.contains("refused it: AADSTS50126"), "{all}");
    assert!(!all.contains("CANARY"));
}

#[test]
fn pop_check_reads_the_maildrop_and_explains_a_missing_role() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, base, _smtp, _imap) = start_emulator_with_imap(dir.path());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap())
            .unwrap();
    let pop = state["pop"]
        .as_str()
        .expect("the emulator serves POP3")
        .to_owned();

    let out = mail_check(
        dir.path(),
        &base,
        "pop",
        &pop,
        "contoso.com",
        "scanner@contoso.com",
        &[],
    );
    let (stdout, v) = json_output(&out, 0);
    assert!(v["transcript"]["messages"].is_u64(), "{stdout}");
    assert!(!stdout.contains("scanner-secret"));

    // Fabrikam consented SMTP.SendAsApp only: the same bare refusal as every POP sign-in.
    let out = mail_check(
        dir.path(),
        &base,
        "pop",
        &pop,
        "fabrikam.com",
        "scanner@fabrikam.com",
        &[],
    );
    let (stdout, v) = json_output(&out, 1);
    assert_eq!(v["failed_step"], "auth", "{stdout}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("Logon failure"),
        "{stdout}"
    );
    assert_eq!(
        v["causes"][0]["id"], "missing_application_permission",
        "{stdout}"
    );
    assert!(stdout.contains("POP.AccessAsApp"), "{stdout}");
}

/// `--ntlm`: Windows authentication with the password toward an on-premises server reached at its
/// name; a wrong password is refused with 535 and explained without token causes, and the password
/// never shows.
#[test]
fn ntlm_signs_in_to_an_onprem_server_and_a_wrong_password_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, _base, smtp) = start_emulator(dir.path());
    let run = |password: &str| {
        exgate()
            .current_dir(dir.path())
            .env("PW", password)
            .args([
                "smtp",
                "check",
                "--user",
                "CONTOSO\\copier",
                "--password-env",
                "PW",
                "--ntlm",
                "--host",
                "mail.contoso.com",
                "--connect",
                &smtp,
                "--ca-cert",
                "ca.pem",
                "--json",
            ])
            .output()
            .unwrap()
    };
    let (stdout, v) = json_output(&run("Copier-Pass-1"), 0);
    assert_eq!(v["transcript"]["mechanism"], "ntlm", "{stdout}");
    assert!(!stdout.contains("Copier-Pass-1"));
    let (stdout, v) = json_output(&run("CANARY-ntlm-wrong"), 1);
    assert!(stdout.contains("535"), "{stdout}");
    let causes: Vec<&str> = v["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(!causes.is_empty(), "{stdout}");
    for token_cause in [
        "wrong_audience",
        "missing_application_permission",
        "token_expired",
    ] {
        assert!(!causes.contains(&token_cause), "{token_cause}: {stdout}");
    }
    assert!(!stdout.contains("CANARY"));
}
