//! The live prober against the Entra ID emulator: real token requests, real AADSTS answers,
//! diagnosed causes, one fault per endpoint and the rest blocked.

use exgate_emulator::Emulator;
use exgate_verify::live::LiveOptions;
use exgate_verify::{Side, Status, StepName, VerifyOptions};

use crate::support;

const SCENARIO: &str = r#"
[[tenants]]
name = "fabrikam"
id = "22222222-3333-4444-5555-666666666666"
domains = ["fabrikam.onmicrosoft.com", "fabrikam.com"]

[[tenants.consent]]
app = "Fabrikam sync service"
resource = "https://graph.microsoft.com"
roles = ["Mail.ReadWrite", "User.Read.All"]

[[applications]]
client_id = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
name = "Fabrikam sync service"
home_tenant = "fabrikam"

[[applications.secrets]]
value = "good-secret-2099"
expires = "2099-12-31"

[[applications.secrets]]
value = "old-secret-2024"
expires = "2024-12-31"

[[applications.permissions]]
resource = "https://graph.microsoft.com"
roles = ["Mail.ReadWrite", "User.Read.All"]
"#;

async fn emulator() -> Emulator {
    support::start_emulator(SCENARIO).await
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn project(authority: &str, secret: &str, n: usize) -> exgate_verify::Project {
    let graph = format!("http://127.0.0.1:{}/v1.0", closed_port());
    let mut text = format!(
        r#"name = "live"
[source]
kind = "exchange-online"
api = "graph"
url = "{graph}"
tenant = "fabrikam.com"
authority_host = "{authority}"
[source.auth]
mode = "app-secret"
client_id = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
secret = "good-secret-2099"

[destination]
kind = "exchange-online"
api = "graph"
url = "{graph}"
tenant = "fabrikam.com"
authority_host = "{authority}"
[destination.auth]
mode = "app-secret"
client_id = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
secret = "{secret}"
"#
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"user{i}@fabrikam.com\"\n"
        ));
    }
    support::parse_project(&text)
}

async fn verify(
    emu: &Emulator,
    secret: &str,
    n: usize,
) -> (
    exgate_verify::report::Report,
    exgate_verify::store::Store,
    tempfile::TempDir,
) {
    let project = project(emu.base_url(), secret, n);
    support::run(&project, &LiveOptions::default(), &VerifyOptions::default()).await
}

#[tokio::test]
async fn wrong_secret_is_one_diagnosed_fault_and_the_rest_blocked() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let emu = emulator().await;
    let (report, store, _dir) = verify(&emu, "not-the-secret", 25).await;
    let dest = report
        .head
        .faults
        .iter()
        .find(|f| f.endpoint == Side::Destination)
        .expect("a destination fault");
    assert_eq!(dest.step, StepName::Token);
    assert_eq!(
        dest.evidence.code.as_deref(),
        Some("AADSTS7000215"),
        "{dest:?}"
    );
    assert_eq!(
        dest.causes[0].id, "invalid_client_secret",
        "{:?}",
        dest.causes
    );
    assert!(!dest.causes[0].fix.is_empty());
    // Reported once; every other destination is blocked, never sent to Entra again.
    let failed_dest_tokens = report
        .mailboxes
        .iter()
        .flat_map(|m| &m.steps)
        .filter(|s| {
            s.endpoint == Side::Destination
                && s.name == StepName::Token
                && s.status == Status::Failed
        })
        .count();
    assert_eq!(failed_dest_tokens, 1);
    let blocked_dest = report
        .mailboxes
        .iter()
        .flat_map(|m| &m.steps)
        .filter(|s| s.endpoint == Side::Destination && s.status == Status::Blocked)
        .count();
    assert_eq!(blocked_dest, 24);
    // The source side got its token once (shared) and failed to reach Graph: one network fault.
    let src = report
        .head
        .faults
        .iter()
        .find(|f| f.endpoint == Side::Source)
        .expect("a source fault");
    assert_eq!(src.step, StepName::Open);
    assert!(
        src.causes.iter().any(|c| c.id == "network_unreachable"),
        "{:?}",
        src.causes
    );
    // Tokens: one for the source, a handful of failed attempts for the destination at most.
    let requests = emu.stats().token_requests;
    assert!(
        requests <= 1 + 8 + 1,
        "{requests} token requests for 25 mailboxes"
    );
    // Secrets never reach the report.
    let json = report.to_json();
    assert!(!json.contains("not-the-secret") && !json.contains("good-secret-2099"));
    store.close().await;
    emu.shutdown().await;
}

#[tokio::test]
async fn expired_secret_is_named() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let emu = emulator().await;
    let (report, store, _dir) = verify(&emu, "old-secret-2024", 3).await;
    let dest = report
        .head
        .faults
        .iter()
        .find(|f| f.endpoint == Side::Destination)
        .expect("a destination fault");
    assert_eq!(
        dest.causes[0].id, "expired_client_secret",
        "{:?}",
        dest.causes
    );
    assert_eq!(report.head.summary.ok, 0);
    store.close().await;
    emu.shutdown().await;
}

/// EWS with impersonation (source, fabrikam) and Graph (destination, contoso) end to end against
/// the emulator's Entra ID and Exchange planes. (The write check has its own tests in
/// `write_check.rs`.)
#[tokio::test]
async fn ews_and_graph_end_to_end_with_mailbox_faults() {
    let emu = support::start_emulator(support::TWO_TENANTS).await;
    let base = emu.base_url();
    let text = format!(
        r#"name = "end-to-end"
[source]
kind = "exchange-online"
api = "ews"
url = "{base}/EWS/Exchange.asmx"
tenant = "fabrikam.com"
authority_host = "{base}"
[source.auth]
mode = "app-secret"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
secret = "daemon-secret-2099"

[destination]
kind = "exchange-online"
api = "graph"
url = "{base}/v1.0"
tenant = "contoso.com"
authority_host = "{base}"
[destination.auth]
mode = "app-secret"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
secret = "daemon-secret-2099"

[[mailboxes]]
source = "alice@fabrikam.com"
destination = "alice@contoso.com"

[[mailboxes]]
source = "bob@fabrikam.com"
destination = "bob@contoso.com"

[[mailboxes]]
source = "carol@fabrikam.com"
destination = "carol@contoso.com"
"#
    );
    let project = support::parse_project(&text);
    let (report, store, _dir) =
        support::run(&project, &LiveOptions::default(), &VerifyOptions::default()).await;
    let by_source = |s: &str| {
        report
            .mailboxes
            .iter()
            .find(|m| m.source == s)
            .unwrap_or_else(|| panic!("{s} missing"))
    };
    let text_report = exgate_verify::report::render_text(&report.head);

    // alice: every step on both sides.
    let alice = by_source("alice@fabrikam.com");
    assert!(alice.ok, "{text_report}");
    let count = |side: Side| {
        alice
            .steps
            .iter()
            .find(|s| s.endpoint == side && s.name == StepName::Inbox)
            .and_then(|s| s.item_count)
    };
    assert_eq!(
        (count(Side::Source), count(Side::Destination)),
        (Some(5), Some(7))
    );
    assert_eq!(alice.steps.len(), 8, "{text_report}");
    // Mailbox problems stay with their mailboxes: no endpoint fault, nothing blocked.
    assert!(report.head.faults.is_empty(), "{text_report}");
    assert_eq!(report.head.summary.blocked, 0);

    // bob: the source mailbox is not provisioned yet; EWS says it does not exist.
    let bob = by_source("bob@fabrikam.com");
    let failed: Vec<_> = bob.steps.iter().filter(|s| !s.ok).collect();
    assert_eq!(failed.len(), 1, "{text_report}");
    assert_eq!(
        (failed[0].endpoint, failed[0].name),
        (Side::Source, StepName::Open)
    );
    assert_eq!(
        failed[0].evidence.as_ref().and_then(|e| e.code.as_deref()),
        Some("ErrorNonExistentMailbox")
    );
    assert_eq!(failed[0].causes[0].id, "mailbox_not_found", "{text_report}");

    // carol exists on neither side: EWS and Graph both say so.
    let carol = by_source("carol@fabrikam.com");
    let failed: Vec<_> = carol.steps.iter().filter(|s| !s.ok).collect();
    assert_eq!(failed.len(), 2, "{text_report}");
    assert!(failed.iter().all(|f| f.name == StepName::Open));
    let graph = failed
        .iter()
        .find(|f| f.endpoint == Side::Destination)
        .unwrap();
    assert_eq!(graph.evidence.as_ref().and_then(|e| e.status), Some(404));

    // One token per tenant and resource for the whole run.
    assert_eq!(emu.stats().token_requests, 2, "{text_report}");
    store.close().await;
    emu.shutdown().await;
}

const BASIC_SCENARIO: &str = r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]
basic_auth = true

[[tenants.users]]
upn = "alice@contoso.com"
password = "Alice-Pass-1"

[[tenants.users]]
upn = "bob@contoso.com"
password = "Bob-Pass-1"

[[tenants]]
name = "fabrikam"
id = "22222222-3333-4444-5555-666666666666"
domains = ["fabrikam.com"]
basic_auth = false

[[tenants.users]]
upn = "alice@fabrikam.com"
password = "Alice-Pass-2"

[exchange]
default_inbox_messages = 4

[[exchange.mailboxes]]
address = "alice@contoso.com"

[[exchange.mailboxes]]
address = "bob@contoso.com"

[[exchange.mailboxes]]
address = "alice@fabrikam.com"
"#;

/// Basic with per-user credentials: a wrong password stays with its mailbox (never blocks the
/// others), and Basic disabled on the destination tenant is one endpoint fault.
#[tokio::test]
async fn basic_per_user_credentials() {
    let emu = support::start_emulator(BASIC_SCENARIO).await;
    let base = emu.base_url();
    let text = format!(
        r#"name = "basic"
[source]
kind = "exchange-online"
api = "ews"
url = "{base}/EWS/Exchange.asmx"
[source.auth]
mode = "basic"
username = "nobody@contoso.com"
password = "unused"

[destination]
kind = "exchange-online"
api = "ews"
url = "{base}/EWS/Exchange.asmx"
[destination.auth]
mode = "basic"
username = "alice@fabrikam.com"
password = "Alice-Pass-2"

[[mailboxes]]
source = "alice@contoso.com"
destination = "alice@fabrikam.com"
source_username = "alice@contoso.com"
source_password = "Alice-Pass-1"

[[mailboxes]]
source = "bob@contoso.com"
destination = "alice@fabrikam.com"
source_username = "bob@contoso.com"
source_password = "CANARY-wrong-password"
"#
    );
    let project = support::parse_project(&text);
    let (report, store, _dir) =
        support::run(&project, &LiveOptions::default(), &VerifyOptions::default()).await;
    let text_report = exgate_verify::report::render_text(&report.head);
    let source_steps = |src: &str| -> Vec<exgate_verify::StepResult> {
        report
            .mailboxes
            .iter()
            .find(|m| m.source == src)
            .unwrap()
            .steps
            .iter()
            .filter(|s| s.endpoint == Side::Source)
            .cloned()
            .collect()
    };
    // alice's own credentials work; bob's password is wrong: his alone.
    assert!(
        source_steps("alice@contoso.com").iter().all(|s| s.ok),
        "{text_report}"
    );
    let bob = source_steps("bob@contoso.com");
    let bad = bob.iter().find(|s| !s.ok).expect("bob fails");
    assert_eq!(bad.name, StepName::Open);
    assert_eq!(bad.status, Status::Failed);
    assert_eq!(bad.evidence.as_ref().and_then(|e| e.status), Some(401));
    assert!(
        report
            .head
            .faults
            .iter()
            .all(|f| f.endpoint != Side::Source),
        "{text_report}"
    );
    // Basic is off for fabrikam: one destination fault, the other mailbox blocked.
    let dest = report
        .head
        .faults
        .iter()
        .find(|f| f.endpoint == Side::Destination)
        .unwrap_or_else(|| panic!("{text_report}"));
    assert_eq!(dest.causes[0].id, "basic_auth_disabled", "{text_report}");
    assert_eq!(report.head.summary.blocked + report.head.summary.failed, 2);
    assert!(!report.to_json().contains("CANARY-wrong-password"));
    store.close().await;
    emu.shutdown().await;
}

/// Autodiscover finds each mailbox's EWS URL; an address Exchange does not know fails at the
/// resolve step, for that mailbox only.
#[tokio::test]
async fn autodiscover_resolves_each_mailbox() {
    let emu = support::start_emulator(support::TWO_TENANTS).await;
    let base = emu.base_url();
    let text = format!(
        r#"name = "autodiscover"
[source]
kind = "exchange-online"
api = "ews"
autodiscover_url = "{base}"
tenant = "fabrikam.com"
authority_host = "{base}"
[source.auth]
mode = "app-secret"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
secret = "daemon-secret-2099"

[destination]
kind = "exchange-online"
api = "graph"
url = "{base}/v1.0"
tenant = "contoso.com"
authority_host = "{base}"
[destination.auth]
mode = "app-secret"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
secret = "daemon-secret-2099"

[[mailboxes]]
source = "alice@fabrikam.com"
destination = "alice@contoso.com"

[[mailboxes]]
source = "zed@fabrikam.com"
destination = "bob@contoso.com"
"#
    );
    let project = support::parse_project(&text);
    let (report, store, _dir) = support::run(
        &project,
        &LiveOptions {
            allow_http: true,
            ..LiveOptions::default()
        },
        &VerifyOptions::default(),
    )
    .await;
    let text_report = exgate_verify::report::render_text(&report.head);
    let alice = report
        .mailboxes
        .iter()
        .find(|m| m.source == "alice@fabrikam.com")
        .unwrap();
    assert!(alice.ok, "{text_report}");
    let resolve = &alice.steps[0];
    assert_eq!(resolve.name, StepName::Resolve);
    assert!(
        resolve
            .detail
            .as_deref()
            .is_some_and(|u| u.ends_with("/EWS/Exchange.asmx")),
        "{resolve:?}"
    );
    let zed = report
        .mailboxes
        .iter()
        .find(|m| m.source == "zed@fabrikam.com")
        .unwrap();
    let failed: Vec<_> = zed.steps.iter().filter(|s| !s.ok).collect();
    assert_eq!(failed.len(), 1, "{text_report}");
    assert_eq!(failed[0].endpoint, Side::Source);
    assert_eq!(failed[0].name, StepName::Resolve, "{text_report}");
    assert!(report.head.faults.is_empty(), "{text_report}");
    store.close().await;
    emu.shutdown().await;
}

/// A loopback HTTP/1.1 server that answers every request with `answer`, counting the requests.
async fn canned_http_server(
    answer: &'static str,
) -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Read the head, then the body its Content-Length announces.
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    buf.drain(..end + 4 + len);
                    counted.fetch_add(1, Ordering::SeqCst);
                    if sock.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, count, task)
}

/// The 401 Exchange gives a token it cannot validate: a Bearer challenge and
/// `x-ms-diagnostics: 2000001`.
const REFUSED_TOKEN: &str = "HTTP/1.1 401 Unauthorized\r\n\
    WWW-Authenticate: Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", error=\"invalid_token\"\r\n\
    x-ms-diagnostics: 2000001;reason=\"The token signature is invalid or the signing key is unknown.\";error_category=\"invalid_token\"\r\n\
    Content-Length: 0\r\n\r\n";

/// An EWS 401 with `x-ms-diagnostics: 2000001` reaches the report as a named cause, with the
/// server's diagnostics among its evidence.
#[tokio::test]
async fn ews_401_with_diagnostics_2000001_is_named() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let emu = support::start_emulator(support::TWO_TENANTS).await;
    let base = emu.base_url();
    let (port, _count, server) = canned_http_server(REFUSED_TOKEN).await;
    let text = format!(
        r#"name = "2000001"
[source]
kind = "exchange-online"
api = "ews"
url = "http://127.0.0.1:{port}/EWS/Exchange.asmx"
tenant = "fabrikam.com"
authority_host = "{base}"
[source.auth]
mode = "app-secret"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
secret = "daemon-secret-2099"

[[mailboxes]]
source = "alice@fabrikam.com"

[[mailboxes]]
source = "bob@fabrikam.com"
"#
    );
    let project = support::parse_project(&text);
    let (report, store, _dir) =
        support::run(&project, &LiveOptions::default(), &VerifyOptions::default()).await;
    let fault = report
        .head
        .faults
        .iter()
        .find(|f| f.endpoint == Side::Source)
        .unwrap_or_else(|| panic!("no source fault: {report:?}"));
    assert_eq!(fault.causes[0].id, "token_malformed", "{:?}", fault.causes);
    assert!(
        fault.causes[0]
            .evidence
            .iter()
            .any(|e| e.contains("2000001")),
        "{:?}",
        fault.causes[0].evidence
    );
    // The token the endpoint sent was checked too, and passed: its audience, roles and
    // lifetime are not the matter, so those causes stay off the list.
    assert!(
        fault
            .causes
            .iter()
            .all(|c| c.id != "token_expired" && c.id != "missing_application_permission"),
        "{:?}",
        fault.causes
    );
    assert_eq!(report.head.summary.ok, 0);
    server.abort();
    store.close().await;
    emu.shutdown().await;
}

const DELEGATED: &str = r#"
[[tenants]]
name = "fabrikam"
id = "22222222-3333-4444-5555-666666666666"
domains = ["fabrikam.com"]

[[tenants.users]]
upn = "alice@fabrikam.com"
password = "alice-pw"

[[tenants.consent]]
app = "Sync tool"
resource = "https://outlook.office365.com"
scopes = ["EWS.AccessAsUser.All"]

[[tenants.refresh_tokens]]
value = "rt-seeded-alice"
user = "alice@fabrikam.com"
app = "Sync tool"
scopes = ["https://outlook.office365.com/EWS.AccessAsUser.All", "offline_access"]

[[applications]]
client_id = "dddddddd-0000-0000-0000-000000000001"
name = "Sync tool"
home_tenant = "fabrikam"
public_client = true

[exchange]

[[exchange.mailboxes]]
address = "alice@fabrikam.com"
"#;

fn delegated_project(base: &str, store: Option<&std::path::Path>) -> exgate_verify::Project {
    let mut text = format!(
        r#"name = "delegated"
[source]
kind = "exchange-online"
api = "ews"
url = "{base}/EWS/Exchange.asmx"
tenant = "fabrikam.com"
authority_host = "{base}"
[source.auth]
mode = "delegated-refresh"
client_id = "dddddddd-0000-0000-0000-000000000001"
refresh_token = "rt-seeded-alice"
"#
    );
    if let Some(dir) = store {
        text.push_str(&format!(
            "[source.auth.store]\npath = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("tokens.bin").display(),
            dir.join("store.key").display()
        ));
    }
    text.push_str("\n[[mailboxes]]\nsource = \"alice@fabrikam.com\"\n");
    support::parse_project(&text)
}

/// Entra ID rotates refresh tokens: the token a delegated project names works once. With
/// `[source.auth.store]` the rotated token is kept (encrypted) and the next run uses it; without,
/// the next run fails and the report says the token was already redeemed.
#[tokio::test]
async fn delegated_refresh_keeps_the_rotated_token_across_runs() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let emu = support::start_emulator(DELEGATED).await;
    let base = emu.base_url();
    let dir = tempfile::tempdir().unwrap();
    exgate_auth::StoreKey::generate()
        .unwrap()
        .write_new_file(&dir.path().join("store.key"))
        .unwrap();

    let project = delegated_project(base, Some(dir.path()));
    for run in 1..=3 {
        let (report, store, _state) =
            support::run(&project, &LiveOptions::default(), &VerifyOptions::default()).await;
        assert_eq!(report.head.summary.ok, 1, "run {run}: {report:?}");
        store.close().await;
    }
    let stored = std::fs::read(dir.path().join("tokens.bin")).unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains("rt-"),
        "the store holds refresh tokens in the clear"
    );
    emu.shutdown().await;

    // Without a store: the first run redeems the token, the second is refused and explained.
    let emu = support::start_emulator(DELEGATED).await;
    let project = delegated_project(emu.base_url(), None);
    let (first, store, _state) =
        support::run(&project, &LiveOptions::default(), &VerifyOptions::default()).await;
    assert_eq!(first.head.summary.ok, 1, "{first:?}");
    store.close().await;
    let (second, store, _state) =
        support::run(&project, &LiveOptions::default(), &VerifyOptions::default()).await;
    assert_eq!(second.head.summary.ok, 0);
    let fault = second
        .head
        .faults
        .iter()
        .find(|f| f.endpoint == Side::Source)
        .unwrap_or_else(|| panic!("no source fault: {second:?}"));
    assert_eq!(
        fault.causes[0].id, "refresh_token_expired",
        "{:?}",
        fault.causes
    );
    store.close().await;
    emu.shutdown().await;
}

/// A token endpoint that always answers 503 is one endpoint fault, found within a small budget
/// of token requests: the mailboxes do not each retry it.
#[tokio::test]
async fn a_dead_token_endpoint_is_one_fault_within_a_budget() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (port, count, server) =
        canned_http_server("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    let graph = format!("http://127.0.0.1:{}/v1.0", closed_port());
    let mut text = format!(
        r#"name = "dead token endpoint"
[source]
kind = "exchange-online"
api = "graph"
url = "{graph}"
tenant = "fabrikam.com"
authority_host = "http://127.0.0.1:{port}"
[source.auth]
mode = "app-secret"
client_id = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
secret = "good-secret-2099"
"#
    );
    for i in 0..50 {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"user{i}@fabrikam.com\"\n"
        ));
    }
    let project = support::parse_project(&text);
    let started = std::time::Instant::now();
    let (report, store, _dir) =
        support::run(&project, &LiveOptions::default(), &VerifyOptions::default()).await;
    let elapsed = started.elapsed();
    let requests = count.load(std::sync::atomic::Ordering::SeqCst);
    assert!(requests <= 20, "{requests} token requests");
    assert!(elapsed < std::time::Duration::from_secs(60), "{elapsed:?}");
    assert_eq!(report.head.summary.ok, 0);
    let fault = report
        .head
        .faults
        .iter()
        .find(|f| f.endpoint == Side::Source)
        .unwrap_or_else(|| panic!("no source fault: {report:?}"));
    assert!(!fault.causes.is_empty(), "{fault:?}");
    assert_eq!(report.head.summary.failed + report.head.summary.blocked, 50);
    println!(
        "dead token endpoint: {requests} token requests, {elapsed:?}: {} {:?}",
        fault.error,
        fault
            .causes
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
    );
    server.abort();
    store.close().await;
}

/// A token endpoint that accepts connections and never answers: reported within the request
/// timeout times the attempts of one mailbox, the other mailboxes blocked behind that fault.
#[tokio::test]
async fn a_hanging_token_endpoint_is_reported_within_one_mailbox_s_attempts() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(sock); // never answered
        }
    });
    let graph = format!("http://127.0.0.1:{}/v1.0", closed_port());
    let mut text = format!(
        r#"name = "hanging token endpoint"
[source]
kind = "exchange-online"
api = "graph"
url = "{graph}"
tenant = "22222222-3333-4444-5555-666666666666"
authority_host = "http://127.0.0.1:{port}"
[source.auth]
mode = "app-secret"
client_id = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"
secret = "good-secret-2099"
"#
    );
    for i in 0..20 {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"user{i}@fabrikam.com\"\n"
        ));
    }
    let project = support::parse_project(&text);
    let timeout = std::time::Duration::from_secs(1);
    let live = LiveOptions {
        timeout,
        ..LiveOptions::default()
    };
    let started = std::time::Instant::now();
    let (report, store, _dir) = support::run(&project, &live, &VerifyOptions::default()).await;
    let elapsed = started.elapsed();
    // Four attempts of one mailbox, with their back-off (0.5 + 1 + 2 s at most), and slack.
    assert!(
        elapsed < timeout * 4 + std::time::Duration::from_secs(6),
        "{elapsed:?}"
    );
    assert!(connections.load(Ordering::SeqCst) <= 8, "{connections:?}");
    assert_eq!(report.head.summary.ok, 0);
    assert!(
        report
            .head
            .faults
            .iter()
            .any(|f| f.endpoint == Side::Source)
    );
    server.abort();
    store.close().await;
}
