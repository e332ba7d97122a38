//! `exgate demo` end to end: the embedded emulator, seven projects, one report, and every planted
//! fault named with the right cause while every other mailbox passes.

use assert_cmd::Command;

#[test]
fn demo_finds_every_planted_fault_and_nothing_else() {
    let dir = tempfile::tempdir().expect("dir");
    let html = dir.path().join("demo.html");
    let out = Command::cargo_bin("exgate")
        .expect("binary")
        .args(["demo", "--json", "--html"])
        .arg(&html)
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        out.status.code(),
        Some(0),
        "planted: {}\nunexpected: {}\nstderr:\n{stderr}",
        report["planted"],
        report["unexpected"]
    );
    assert_eq!(report["unexpected"], serde_json::json!([]));

    assert_eq!(report["as_designed"], true);
    let planted = report["planted"].as_array().expect("planted");
    assert_eq!(planted.len(), 13);
    let page = std::fs::read_to_string(&html).expect("HTML report");
    assert!(page.contains("HMA readiness of Contoso") && page.contains("hma_vdir_oauth_disabled"));
    assert_eq!(report["hma"]["ready"], false);
    for p in planted {
        assert_eq!(p["found"], true, "{p}");
        assert_eq!(p["named"], serde_json::json!([p["expected_cause"]]), "{p}");
    }

    // 1,030 line items: 2,060 mailboxes, source and destination.
    let summary = &report["summary"];
    assert_eq!(summary["total"], 1030);
    let (ok, failed, blocked) = (
        summary["ok"].as_u64().unwrap_or_default(),
        summary["failed"].as_u64().unwrap_or_default(),
        summary["blocked"].as_u64().unwrap_or_default(),
    );
    assert_eq!(ok + failed + blocked, 1030);
    assert!(ok >= 990, "{summary}");
    let mailboxes = report["mailboxes"].as_array().expect("mailboxes");
    assert_eq!(mailboxes.len(), 1030);
    // A healthy mailbox passed every step on both sides and counted its inbox.
    let healthy = mailboxes
        .iter()
        .find(|m| m["source"] == "user1@contoso.com")
        .expect("user1");
    assert_eq!(healthy["ok"], true);
    assert!(
        healthy["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .any(|s| s["name"] == "inbox" && s["endpoint"] == "destination" && s["ok"] == true)
    );
    // The MFA fault was told apart from a wrong password by the sign-in check.
    let mfa = report["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .find(|f| {
            f["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("legacy-sync-admin/"))
        })
        .expect("the legacy-sync-admin fault");
    assert_eq!(mfa["causes"][0]["id"], "mfa_required");
    assert!(
        mfa["evidence"]["facts"]["signin_check"]
            .as_str()
            .is_some_and(|s| s.contains("AADSTS50076")),
        "{mfa}"
    );
    // Demo secrets are published, but reports still never carry passwords or secrets.
    let text = String::from_utf8_lossy(&out.stdout);
    for secret in [
        "Demo-Svc-Pass-1",
        "Demo-Admin-Pass-1",
        "demo-sync-secret-2026",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the report");
    }
}

#[test]
fn demo_help_has_examples() {
    let out = Command::cargo_bin("exgate")
        .expect("binary")
        .args(["demo", "--help"])
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Examples:"), "{help}");
    assert!(help.contains("exgate demo --json"), "{help}");
}
