//! What the live tests share: an emulator started from a scenario, a project parsed from its
//! text, and one verify run with a fresh SQLite state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use exgate_emulator::{Emulator, EmulatorOptions};
use exgate_verify::live::{LiveOptions, LiveProber};
use exgate_verify::report::Report;
use exgate_verify::store::{Listing, Store, sqlite_url};
use exgate_verify::{NoProgress, Project, VerifyOptions, verify_project};
use tokio::sync::watch;

/// Starts the emulator on a loopback port with this scenario.
pub(crate) async fn start_emulator(scenario: &str) -> Emulator {
    exgate_test::start_emulator(scenario, EmulatorOptions::default()).await
}

/// Parses a project file's text (no environment variables).
pub(crate) fn parse_project(text: &str) -> Project {
    exgate_verify::project::parse(text, Path::new("project.toml"), &HashMap::new()).unwrap()
}

/// Verifies `project` with the live prober, state in a fresh SQLite file. The store stays open
/// (for re-runs); the directory lives as long as the returned guard.
pub(crate) async fn run(
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
    let head = verify_project(prober, project, &store, options, cancel, &mut NoProgress)
        .await
        .unwrap();
    let report = Report::load(&store, project, head, Listing::RunOnly)
        .await
        .unwrap();
    (report, store, dir)
}

/// Two tenants for the live tests: the migration daemon (secret, multi-tenant; Graph
/// `Mail.ReadWrite` at Contoso, EWS `full_access_as_app` at Fabrikam), a read-only reporting app
/// (Graph `Mail.Read` at Contoso), and mailboxes on both sides (`bob@fabrikam.com` not provisioned).
pub(crate) const TWO_TENANTS: &str = r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]

[[tenants.consent]]
app = "Migration daemon"
resource = "https://graph.microsoft.com"
roles = ["Mail.ReadWrite", "User.Read.All"]

[[tenants.consent]]
app = "Read-only report"
resource = "https://graph.microsoft.com"
roles = ["Mail.Read", "User.Read.All"]

[[tenants]]
name = "fabrikam"
id = "22222222-3333-4444-5555-666666666666"
domains = ["fabrikam.com"]

[[tenants.consent]]
app = "Migration daemon"
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]

[[applications]]
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
name = "Migration daemon"
home_tenant = "contoso"
multi_tenant = true

[[applications.secrets]]
value = "daemon-secret-2099"
expires = "2099-12-31"

[[applications.permissions]]
resource = "https://graph.microsoft.com"
roles = ["Mail.ReadWrite", "User.Read.All"]

[[applications.permissions]]
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]

[[applications]]
client_id = "cccccccc-dddd-eeee-ffff-000000000000"
name = "Read-only report"
home_tenant = "contoso"

[[applications.secrets]]
value = "daemon-secret-2099"
expires = "2099-12-31"

[[applications.permissions]]
resource = "https://graph.microsoft.com"
roles = ["Mail.Read", "User.Read.All"]

[exchange]
default_inbox_messages = 5
default_sent_messages = 2

[[exchange.mailboxes]]
address = "alice@contoso.com"
inbox_messages = 7

[[exchange.mailboxes]]
address = "bob@contoso.com"
inbox_messages = 0

[[exchange.mailboxes]]
address = "alice@fabrikam.com"

[[exchange.mailboxes]]
address = "bob@fabrikam.com"
provisioned = false
"#;
