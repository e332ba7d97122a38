//! `exgate emulator` prints (and writes to its state file) where every service lives, and takes
//! fixed addresses for SMTP and IMAP.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn every_endpoint_is_named_and_mail_ports_can_be_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/demo.toml");
    let (smtp, imap) = (free_port(), free_port());
    let state = dir.path().join("state.json");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("exgate"))
        .args(["emulator", "--scenario", scenario, "--tls"])
        .args(["--smtp-listen", &format!("127.0.0.1:{smtp}")])
        .args(["--imap-listen", &format!("127.0.0.1:{imap}")])
        .arg("--state-file")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let doc: serde_json::Value = loop {
        if let Ok(text) = std::fs::read_to_string(&state)
            && let Ok(v) = serde_json::from_str(&text)
        {
            break v;
        }
        assert!(Instant::now() < deadline, "no state file");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(doc["smtp"], format!("127.0.0.1:{smtp}"));
    assert_eq!(doc["imap"], format!("127.0.0.1:{imap}"));
    let services: Vec<String> = doc["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["service"].as_str().unwrap(),
                e["url"].as_str().unwrap()
            )
        })
        .collect();
    for want in ["ews ", "graph ", "autodiscover ", "onprem ex01 "] {
        assert!(
            services.iter().any(|s| s.starts_with(want)),
            "{want} missing: {services:?}"
        );
    }
    // A non-loopback mail address is refused like the HTTP one.
    let out = Command::new(assert_cmd::cargo::cargo_bin("exgate"))
        .args([
            "emulator",
            "--scenario",
            scenario,
            "--tls",
            "--smtp-listen",
            "0.0.0.0:2525",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}
