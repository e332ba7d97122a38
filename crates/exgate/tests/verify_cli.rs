//! `exgate verify` from the command line: a run its configuration stops leaves no files behind.

mod common;

use assert_cmd::Command;

#[test]
fn a_run_stopped_by_its_configuration_creates_no_state_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        r#"name = "broken certificate"
[source]
kind = "exchange-online"
api = "graph"
tenant = "contoso.com"
[source.auth]
mode = "app-certificate"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
certificate = "missing.pfx"

[[mailboxes]]
source = "alice@contoso.com"
"#,
    )
    .unwrap();
    let out = Command::cargo_bin("exgate")
        .unwrap()
        .current_dir(dir.path())
        .args(["verify", "p.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.pfx"), "{stderr}");
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["p.toml"], "files left behind: {files:?}");
}

/// The emulator example of `exgate verify --help` runs as written: the emulator on the port the
/// example names, then the example project, every mailbox reachable.
#[test]
fn the_emulator_example_runs_as_written() {
    use std::process::Stdio;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("emulator-ca.pem");
    let state = dir.path().join("state.json");
    let mut emulator = std::process::Command::new(assert_cmd::cargo::cargo_bin("exgate"))
        .current_dir(root)
        .args(["emulator", "--scenario", "scenarios/demo.toml", "--tls"])
        .args(["--listen", "127.0.0.1:8443", "--ca-out"])
        .arg(&ca)
        .arg("--state-file")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_file(&state, "the emulator on 127.0.0.1:8443");
    // The state database goes to the temporary directory, so the example directory stays clean.
    let out = Command::cargo_bin("exgate")
        .unwrap()
        .current_dir(root)
        .args(["verify", "examples/projects/emulator.toml", "--ca-cert"])
        .arg(&ca)
        .arg("--database")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("state.sqlite").display()
        ))
        .output()
        .unwrap();
    let _ = emulator.kill();
    let _ = emulator.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Every verified mailbox is reachable"),
        "{stdout}"
    );
}
