//! `exgate emulator` prints (and writes to its state file) where every service lives, and takes
//! fixed addresses for SMTP and IMAP.

mod common;

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

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Out of file descriptors, the emulator's accept loop backs off instead of spinning, and it
/// serves again once descriptors are free.
#[cfg(target_os = "linux")]
#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/demo.toml");
    let port = free_port();
    let state = dir.path().join("state.json");
    // A low descriptor limit for the emulator alone (`exec` keeps the pid).
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 40 && exec \"$0\" emulator --scenario {scenario} --listen 127.0.0.1:{port} --state-file {}",
            state.display()
        ))
        .arg(assert_cmd::cargo::cargo_bin("exgate"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_file(&state, "the emulator");
    // More connections than the emulator has descriptors for.
    let held: Vec<std::net::TcpStream> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(held.len() >= 60, "{} connections", held.len());
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_seconds(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_seconds(child.id()) - before;
    assert!(matches!(child.try_wait(), Ok(None)), "the emulator stopped");
    // A spinning accept loop burns a whole core (2 s here); backing off costs next to nothing.
    assert!(
        spent < 0.5,
        "{spent:.2} s of CPU in 2 s while out of descriptors"
    );
    drop(held);
    // Descriptors free again: a request is served.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(
            b"GET /_exgate/stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        if buf.starts_with(b"HTTP/1.1 ") {
            break String::from_utf8_lossy(&buf).into_owned();
        }
        assert!(Instant::now() < deadline, "not served again");
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
