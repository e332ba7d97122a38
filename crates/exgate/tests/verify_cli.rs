//! `exgate verify` from the command line: a run its configuration stops leaves no files behind.

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
