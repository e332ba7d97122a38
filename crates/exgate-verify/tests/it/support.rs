//! What the live tests share: an emulator started from a scenario, a project parsed from its
//! text, and one verify run with a fresh SQLite state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use exgate_emulator::{Emulator, EmulatorOptions, Scenario};
use exgate_verify::live::{LiveOptions, LiveProber};
use exgate_verify::report::Report;
use exgate_verify::store::{Store, sqlite_url};
use exgate_verify::{NoProgress, Project, VerifyOptions, verify_project};
use tokio::sync::watch;

/// Starts the emulator on a loopback port with this scenario.
pub async fn start_emulator(scenario: &str) -> Emulator {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let scenario = Scenario::from_toml_str(scenario, Path::new("scenario.toml")).unwrap();
    Emulator::start(scenario, EmulatorOptions::default())
        .await
        .unwrap()
}

/// Parses a project file's text (no environment variables).
pub fn parse_project(text: &str) -> Project {
    exgate_verify::project::parse(text, Path::new("project.toml"), &HashMap::new()).unwrap()
}

/// Verifies `project` with the live prober, state in a fresh SQLite file. The store stays open
/// (for re-runs); the directory lives as long as the returned guard.
pub async fn run(
    project: &Project,
    live: &LiveOptions,
    options: &VerifyOptions,
) -> (Report, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_url(&dir.path().join("state.sqlite")))
        .await
        .unwrap();
    let prober = Arc::new(LiveProber::new(project, live).unwrap());
    let (_tx, cancel) = watch::channel(false);
    let report = verify_project(prober, project, &store, options, cancel, &mut NoProgress)
        .await
        .unwrap();
    (report, store, dir)
}
