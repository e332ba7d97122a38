//! What the CLI tests share: the `exgate emulator` process they start and stop.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

/// A running `exgate emulator`, killed when dropped.
pub(crate) struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `exgate emulator --scenario scenario.toml --state-file state.json <extra>` in `dir`
/// (where the scenario has been written) and waits until its state file satisfies `ready`;
/// returns the process and that state.
pub(crate) fn start_emulator(
    dir: &Path,
    extra: &[&str],
    ready: impl Fn(&serde_json::Value) -> bool,
) -> (Emulator, serde_json::Value) {
    let state = dir.join("state.json");
    let child = StdCommand::new(cargo_bin("exgate"))
        .current_dir(dir)
        .args(["emulator", "--scenario", "scenario.toml"])
        .args(extra)
        .arg("--state-file")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the emulator");
    let emulator = Emulator(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&state)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && v["base_url"].is_string()
            && ready(&v)
        {
            return (emulator, v);
        }
        assert!(
            Instant::now() < deadline,
            "the emulator wrote no usable state file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 60 s) until a process started by a test has written `path`.
pub(crate) fn wait_for_file(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}
