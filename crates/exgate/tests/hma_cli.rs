//! `exgate hma`: exit codes, JSON shape, directories, UTF-16 files and the collection script.

use assert_cmd::Command;

const HEALTHY: &str = include_str!("../../exgate-hma/tests/fixtures/healthy-two-servers.txt");

fn exgate() -> Command {
    let mut c = Command::cargo_bin("exgate").expect("binary");
    c.env("NO_COLOR", "1");
    c
}

#[test]
fn ready_not_ready_and_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = dir.path().join("healthy.txt");
    std::fs::write(&healthy, HEALTHY).unwrap();
    let out = exgate()
        .args(["hma", "check", "--cmdlets"])
        .arg(&healthy)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("Hybrid Modern Authentication readiness: READY")
    );

    // A directory holding the same output as UTF-16 with CRLF, split over two files, one fault.
    let split = dir.path().join("collected");
    std::fs::create_dir(&split).unwrap();
    let bad = HEALTHY.replace(
        "OAuth2ClientProfileEnabled : True",
        "OAuth2ClientProfileEnabled : False",
    );
    let (a, b) = bad.split_at(bad.find("[PS] exgate> Get-AuthServer").unwrap());
    let mut utf16 = vec![0xFF, 0xFE];
    for u in a.replace('\n', "\r\n").encode_utf16() {
        utf16.extend(u.to_le_bytes());
    }
    std::fs::write(split.join("1.txt"), utf16).unwrap();
    std::fs::write(split.join("2.txt"), b).unwrap();
    let out = exgate()
        .args(["hma", "check", "--json", "--cmdlets"])
        .arg(&split)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ready"], false);
    let f = &v["findings"][0];
    assert_eq!(f["id"], "hma_client_profile_disabled");
    assert_eq!(f["severity"], "error");
    assert_eq!(
        f["fix"],
        "Set-OrganizationConfig -OAuth2ClientProfileEnabled $true"
    );
    assert!(f["evidence"][0].as_str().unwrap().contains("2.txt:"), "{f}");
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"].is_string())
    );

    // Nothing readable: exit 2, and what was not read.
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "hello\nworld\n").unwrap();
    let out = exgate()
        .args(["hma", "check", "--cmdlets"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.txt:1") && err.contains("collect-script"),
        "{err}"
    );
    let out = exgate()
        .args(["hma", "check", "--cmdlets", "/nonexistent/x.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.txt"));
}

#[test]
fn the_collection_script_runs_every_cmdlet_the_checks_read() {
    let out = exgate().args(["hma", "collect-script"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    for cmdlet in [
        "Get-ExchangeServer",
        "Get-MapiVirtualDirectory",
        "Get-WebServicesVirtualDirectory",
        "Get-OabVirtualDirectory",
        "Get-AutodiscoverVirtualDirectory",
        "Get-ActiveSyncVirtualDirectory",
        "Get-ClientAccessService",
        "Get-AuthServer",
        "Get-PartnerApplication",
        "Get-OrganizationConfig",
        "Get-AuthConfig",
        "Get-ExchangeCertificate",
        "Get-IntraOrganizationConnector",
        "Test-OAuthConnectivity",
        "Get-MgServicePrincipal",
    ] {
        assert!(script.contains(cmdlet), "{cmdlet}");
    }
    // It writes the prompt lines the reader takes the cmdlet from.
    assert!(script.contains("[PS] exgate> $Command"));
}
