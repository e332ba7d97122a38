//! Scenario files on disk: the shipped demo, and errors that name the file, line and field.

use std::path::{Path, PathBuf};

use exgate_emulator::{Emulator, EmulatorOptions, Scenario, ScenarioError};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn demo_scenario_loads_with_two_tenants_and_both_credential_kinds() {
    let s = Scenario::load(&repo_root().join("scenarios/demo.toml")).expect("demo.toml is valid");
    assert!(s.tenant("contoso.com").is_some());
    assert!(s.tenant("fabrikam.com").is_some());
    assert!(s.applications.iter().any(|a| !a.certificates.is_empty()));
    assert!(s.applications.iter().any(|a| !a.secrets.is_empty()));
    assert!(s.exchange.is_some(), "the demo has mailboxes");
    let fabrikam = s.tenant("fabrikam").expect("fabrikam");
    assert!(fabrikam.users.iter().any(|u| u.admin && u.mfa_required));
}

#[tokio::test]
async fn demo_scenario_serves_a_certificate_free_token() {
    let s = Scenario::load(&repo_root().join("scenarios/demo.toml")).expect("demo");
    let emu = Emulator::start(s, EmulatorOptions::default())
        .await
        .expect("start");
    let resp = reqwest::Client::new()
        .post(format!("{}/fabrikam.com/oauth2/v2.0/token", emu.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"),
            ("client_secret", "demo-sync-secret-2026"),
            ("scope", "https://outlook.office365.com/.default"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn error_in_a_file_names_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("exgate-scenario-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("broken.toml");
    std::fs::write(
        &path,
        "[[tenants]]\nname = \"t\"\nid = \"11111111-2222-3333-4444-555555555555\"\n\n[[tenants.users]]\nupn = \"a@t.example\"\nlocked = 3\n",
    )
    .expect("write");
    let err = Scenario::load(&path).expect_err("invalid");
    let text = err.to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        text.starts_with(&format!("{}:7:10: ", path.display())),
        "{text}"
    );
    assert_eq!(err.field(), Some("[[tenants.users]] locked"));
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let err = Scenario::load(Path::new("/nonexistent/scenario.toml")).expect_err("missing");
    assert!(matches!(err, ScenarioError::Io { .. }));
    assert!(err.to_string().starts_with("/nonexistent/scenario.toml: "));
}

#[test]
fn certificate_file_is_resolved_relative_to_the_scenario() {
    let toml = "[[tenants]]\nname = \"t\"\nid = \"11111111-2222-3333-4444-555555555555\"\n\n[[applications]]\nclient_id = \"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee\"\nhome_tenant = \"t\"\n\n[[applications.certificates]]\nfile = \"demo-certs/missing.pem\"\n";
    let err = Scenario::from_toml_str(toml, &repo_root().join("scenarios/x.toml"))
        .expect_err("missing cert file");
    assert_eq!(err.line(), Some(10), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

/// A typo inside `[exchange]` is reported at its own line of the file, with its table and key.
#[test]
fn an_exchange_typo_names_its_line_and_key() {
    let src = "[[tenants]]\nname = \"contoso\"\nid = \"11111111-2222-3333-4444-555555555555\"\ndomains = [\"contoso.com\"]\n\n[exchange]\n\n[[exchange.mailboxes]]\naddress = \"alice@contoso.com\"\n\n[[exchange.mailboxes]]\nadress = \"bob@contoso.com\"\n";
    let err =
        exgate_emulator::Scenario::from_toml_str(src, std::path::Path::new("s.toml")).unwrap_err();
    assert_eq!(err.line(), Some(12), "{err}");
    let text = err.to_string();
    assert!(text.contains("exchange.mailboxes.adress"), "{text}");
    assert!(text.contains("unknown field `adress`"), "{text}");
}
