//! `exgate explain`, `exgate redact` and `exgate token inspect` from the command line.

use assert_cmd::Command;
use predicates::prelude::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../exgate-diagnose/tests/fixtures"
);

fn exgate() -> Command {
    let mut c = Command::cargo_bin("exgate").expect("binary");
    c.env("NO_COLOR", "1");
    c
}

fn json_of(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).expect("JSON output")
}

#[test]
fn explain_har_with_ssl_offloading_ranks_it_first() {
    let out = exgate()
        .args(["explain", "--json"])
        .arg(format!("{FIXTURES}/ssl_offloading.har"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v = json_of(&out);
    assert_eq!(v["causes"][0]["id"], "ssl_offloading");
    assert!(
        v["causes"][0]["confidence"]
            .as_f64()
            .is_some_and(|c| c > 0.5)
    );
    assert!(
        v["causes"][0]["fix"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );
    assert!(
        v["causes"][0]["evidence"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );
}

#[test]
fn explain_har_with_successful_handshake_reports_nothing() {
    let out = exgate()
        .args(["explain", "--json"])
        .arg(format!("{FIXTURES}/hma_success.har"))
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v = json_of(&out);
    assert_eq!(v["causes"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["handshakes_completed"], 1);
}

#[test]
fn explain_text_from_stdin() {
    let out = exgate()
        .args(["explain", "--json", "-"])
        .write_stdin("401 Unauthorized - Http POST request to 'autodiscover-s.outlook.com' failed - Basic Auth Disabled: MigrationWiz has detected that Basic Authentication is not enabled for the tenant.")
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_of(&out)["causes"][0]["id"], "basic_auth_disabled");
    exgate()
        .arg("explain")
        .write_stdin("AADSTS7000215: Invalid client secret provided.")
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("invalid_client_secret").and(predicate::str::contains("Fix:")),
        );
}

#[test]
fn explain_exit_codes_for_clean_and_unreadable_input() {
    exgate()
        .arg("explain")
        .write_stdin("HTTP/1.1 200 OK\n\n")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("No failure recognised"));
    exgate()
        .args(["explain", "/nonexistent/input.txt"])
        .assert()
        .code(2);
    exgate()
        .arg("explain")
        .write_stdin("{\"log\": {\"entries\": [ {")
        .assert()
        .code(2);
}

#[test]
fn redact_removes_secrets_and_explains_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.har");
    exgate()
        .arg("redact")
        .arg(format!("{FIXTURES}/ssl_offloading.har"))
        .arg(&out)
        .assert()
        .code(0);
    let text = std::fs::read_to_string(&out).expect("output");
    assert!(!text.contains("CANARY"));
    assert!(!text.contains("Q0FOQVJZ"));
    let v = json_of(
        &exgate()
            .args(["explain", "--json"])
            .arg(&out)
            .assert()
            .code(1)
            .get_output()
            .stdout
            .clone(),
    );
    assert_eq!(v["causes"][0]["id"], "ssl_offloading");
    // Refuses to overwrite its input.
    exgate().arg("redact").arg(&out).arg(&out).assert().code(2);
}

#[test]
fn redact_raw_capture_to_stdout() {
    exgate()
        .args(["redact", "-"])
        .write_stdin("POST /token HTTP/1.1\nAuthorization: Basic dXNlcjpDQU5BUlk=\n\nclient_secret=CANARY1&grant_type=client_credentials\n")
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("CANARY")
                .not()
                .and(predicate::str::contains("dXNlcjpDQU5BUlk").not())
                .and(predicate::str::contains("grant_type=client_credentials")),
        );
}

/// base64url without padding (the binary's dependencies do not include a base64 crate).
fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn token(claims: serde_json::Value) -> String {
    let h = b64url(br#"{"typ":"JWT","alg":"RS256"}"#);
    format!("{h}.{}.U0lHTkFUVVJF", b64url(claims.to_string().as_bytes()))
}

#[test]
fn token_inspect_lints_scheme_and_never_prints_the_token() {
    let t = token(
        serde_json::json!({"aud":"https://mail.contoso.com","scp":"EWS.AccessAsUser.All","upn":"a@contoso.com","exp":4_000_000_000_i64}),
    );
    let out = exgate()
        .args([
            "token",
            "inspect",
            "--json",
            "--for",
            "http://mail.contoso.com/EWS/Exchange.asmx",
        ])
        .arg(&t)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(!text.contains(&t) && !text.contains("U0lHTkFUVVJF"));
    let v = json_of(&out);
    let findings = v["findings"].as_array().expect("findings");
    assert!(findings.iter().any(|f| f["cause"] == "ssl_offloading"));

    // From a file holding a token response, app-only without roles.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("resp.json");
    let t2 = token(
        serde_json::json!({"aud":"https://outlook.office365.com","scp":"Mail.Read","exp":4_000_000_000_i64}),
    );
    std::fs::write(&file, format!("{{\"access_token\":\"{t2}\"}}")).expect("write");
    exgate()
        .args(["token", "inspect", "--app-only"])
        .arg(&file)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("delegated_instead_of_application"));
    exgate()
        .args(["token", "inspect", "not-a-token-file"])
        .assert()
        .code(2);
}

#[test]
fn no_color_means_no_escape_codes() {
    exgate()
        .args(["explain", "-"])
        .write_stdin("AADSTS50076: you must use multi-factor authentication")
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("mfa_required").and(predicate::str::contains("\x1b[").not()),
        );
}

#[test]
fn help_has_examples() {
    for cmd in [
        &["explain", "--help"][..],
        &["redact", "--help"],
        &["token", "inspect", "--help"],
    ] {
        exgate()
            .args(cmd)
            .assert()
            .code(0)
            .stdout(predicate::str::contains("Examples:"));
    }
}

/// A reader that goes away early (`exgate explain … | head -1`) ends the command quietly with
/// exit code 0: no panic, no error.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let text = "HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Basic realm=\"x\"\n\n".repeat(200);
    for _ in 0..3 {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("exgate"))
            .args(["explain", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        // The reader was gone before anything was written.
        assert_eq!(out.status.code(), Some(0), "{stderr}");
    }
}

/// An operating-system error is named once, with the file it concerns.
#[test]
fn an_os_error_is_printed_once() {
    for args in [
        vec!["emulator", "--scenario", "/nonexistent/scenario.toml"],
        vec!["verify", "/nonexistent/project.toml"],
        vec!["explain", "/nonexistent/error.txt"],
    ] {
        let out = assert_cmd::Command::cargo_bin("exgate")
            .unwrap()
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.matches("os error 2").count(),
            1,
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("/nonexistent/"), "{args:?}: {stderr}");
    }
}
