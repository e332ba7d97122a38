//! Benchmarks of the verify engine: the runner over 2,000 mailboxes with an instant prober,
//! SQLite recording, the project loader, the three report renderings, and the live prober
//! against the in-process emulator (Entra ID token, EWS with impersonation and Graph over
//! loopback HTTP).
//!
//! Run with `cargo bench -p exgate-verify`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exgate_verify::report::{render_html, render_text};
use exgate_verify::{
    NoProgress, Prober, Project, Resolved, RunOptions, StepFailure, StepOutput, Target, TokenKey,
    VerifyOptions, verify_project,
};
use tokio::sync::{mpsc, watch};

const MAILBOXES: usize = 2_000;

struct Instant;

impl Prober for Instant {
    type Token = Arc<str>;
    async fn resolve(&self, t: &Target) -> Result<Resolved, StepFailure> {
        Ok(Resolved {
            url: format!("https://{}.example/ews", t.side),
        })
    }
    fn token_key(&self, t: &Target, r: &Resolved) -> TokenKey {
        TokenKey {
            side: t.side,
            tenant: t.endpoint.tenant_key(),
            resource: r.url.clone(),
            principal: None,
        }
    }
    async fn acquire_token(&self, _: &Target, _: &TokenKey) -> Result<Arc<str>, StepFailure> {
        Ok(Arc::from("token"))
    }
    async fn open(
        &self,
        _: &Target,
        _: &Resolved,
        _: &Arc<str>,
    ) -> Result<StepOutput, StepFailure> {
        Ok(StepOutput::default())
    }
    async fn inbox_count(
        &self,
        _: &Target,
        _: &Resolved,
        _: &Arc<str>,
    ) -> Result<StepOutput, StepFailure> {
        Ok(StepOutput {
            detail: None,
            item_count: Some(1),
        })
    }
    async fn write_probe(
        &self,
        _: &Target,
        _: &Resolved,
        _: &Arc<str>,
    ) -> Result<StepOutput, StepFailure> {
        Ok(StepOutput::default())
    }
}

fn project_text(n: usize) -> String {
    let mut text = String::from(
        r#"name = "bench"
[source]
kind = "exchange-onprem"
url = "https://mail.contoso.com/EWS/Exchange.asmx"
[source.auth]
mode = "basic"
username = "svc@contoso.com"
password = "pw"
impersonation = true
[destination]
kind = "exchange-online"
tenant = "fabrikam.onmicrosoft.com"
[destination.auth]
mode = "app-secret"
client_id = "11111111-2222-3333-4444-555555555555"
secret = "s"
"#,
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"user{i}@contoso.com\"\ndestination = \"user{i}@fabrikam.com\"\n"
        ));
    }
    text
}

fn project(n: usize) -> Project {
    exgate_verify::project::parse(
        &project_text(n),
        Path::new("bench.toml"),
        &HashMap::<String, String>::new(),
    )
    .expect("bench project")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let project = project(MAILBOXES);

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(MAILBOXES as u64));
    g.sample_size(10);
    g.bench_function("runner_2000_mailboxes", |b| {
        b.to_async(&rt).iter(|| async {
            let (_tx, cancel) = watch::channel(false);
            let (rtx, mut rrx) = mpsc::channel(100_000);
            let options = RunOptions {
                concurrency: 64,
                per_tenant: 32,
                ..RunOptions::default()
            };
            let out = exgate_verify::run(
                Arc::new(Instant),
                &project,
                project.mailboxes.clone(),
                options,
                cancel,
                rtx,
            )
            .await;
            rrx.close();
            out.completed
        })
    });
    g.bench_function("verify_project_sqlite_2000_mailboxes", |b| {
        b.to_async(&rt).iter(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = exgate_verify::store::Store::open(&exgate_verify::store::sqlite_url(
                &dir.path().join("b.sqlite"),
            ))
            .await
            .expect("store");
            let (_tx, cancel) = watch::channel(false);
            let r = verify_project(
                Arc::new(Instant),
                &project,
                &store,
                &VerifyOptions::default(),
                cancel,
                &mut NoProgress,
            )
            .await
            .expect("verify");
            store.close().await;
            r.summary.ok
        })
    });
    g.bench_function("load_project_2000_mailboxes", |b| {
        let text = project_text(MAILBOXES);
        b.iter(|| {
            exgate_verify::project::parse(
                &text,
                Path::new("bench.toml"),
                &HashMap::<String, String>::new(),
            )
            .map(|p| p.mailboxes.len())
        })
    });
    let report = rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = exgate_verify::store::Store::open(&exgate_verify::store::sqlite_url(
            &dir.path().join("r.sqlite"),
        ))
        .await
        .expect("store");
        let (_tx, cancel) = watch::channel(false);
        let head = verify_project(
            Arc::new(Instant),
            &project,
            &store,
            &VerifyOptions::default(),
            cancel,
            &mut NoProgress,
        )
        .await
        .expect("verify");
        exgate_verify::report::Report::load(
            &store,
            &project,
            head,
            exgate_verify::store::Listing::Project,
        )
        .await
        .expect("load")
    });
    g.bench_function("render_json_2000", |b| b.iter(|| report.to_json().len()));
    g.bench_function("render_html_2000", |b| {
        b.iter(|| render_html(&report).len())
    });
    g.bench_function("render_text_2000", |b| {
        b.iter(|| render_text(&report.head).len())
    });
    g.finish();

    live(c, &rt);
}

const LIVE_MAILBOXES: usize = 500;

/// The full stack over loopback: per mailbox, EWS `GetFolder` twice on the source and Graph
/// user + inbox on the destination; two token requests per run.
fn live(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut scenario = String::from(
        r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]
[[tenants.consent]]
app = "Daemon"
resource = "https://graph.microsoft.com"
roles = ["Mail.ReadWrite", "User.Read.All"]
[[tenants]]
name = "fabrikam"
id = "22222222-3333-4444-5555-666666666666"
domains = ["fabrikam.com"]
[[tenants.consent]]
app = "Daemon"
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]
[[applications]]
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
name = "Daemon"
home_tenant = "contoso"
multi_tenant = true
[[applications.secrets]]
value = "bench-secret"
expires = "2099-12-31"
[[applications.permissions]]
resource = "https://graph.microsoft.com"
roles = ["Mail.ReadWrite", "User.Read.All"]
[[applications.permissions]]
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]
[exchange]
default_inbox_messages = 3
[exchange.throttling]
ews_budget = 100000000
graph_budget = 100000000
"#,
    );
    for i in 0..LIVE_MAILBOXES {
        scenario.push_str(&format!(
            "[[exchange.mailboxes]]\naddress = \"u{i}@fabrikam.com\"\n[[exchange.mailboxes]]\naddress = \"u{i}@contoso.com\"\n"
        ));
    }
    let emu = rt.block_on(async {
        let s = exgate_emulator::Scenario::from_toml_str(&scenario, Path::new("bench.toml"))
            .expect("bench scenario");
        exgate_emulator::Emulator::start(s, exgate_emulator::EmulatorOptions::default())
            .await
            .expect("emulator")
    });
    let base = emu.base_url().to_owned();
    let mut text = format!(
        r#"name = "live-bench"
[source]
kind = "exchange-online"
api = "ews"
url = "{base}/EWS/Exchange.asmx"
tenant = "fabrikam.com"
authority_host = "{base}"
[source.auth]
mode = "app-secret"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
secret = "bench-secret"
[destination]
kind = "exchange-online"
api = "graph"
url = "{base}/v1.0"
tenant = "contoso.com"
authority_host = "{base}"
[destination.auth]
mode = "app-secret"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
secret = "bench-secret"
"#
    );
    for i in 0..LIVE_MAILBOXES {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"u{i}@fabrikam.com\"\ndestination = \"u{i}@contoso.com\"\n"
        ));
    }
    let project = exgate_verify::project::parse(
        &text,
        Path::new("live-bench.toml"),
        &HashMap::<String, String>::new(),
    )
    .expect("live project");
    let mut g = c.benchmark_group("live");
    g.throughput(Throughput::Elements(LIVE_MAILBOXES as u64));
    g.sample_size(10);
    g.bench_function("emulator_500_mailboxes_ews_and_graph", |b| {
        b.to_async(rt).iter(|| async {
            let prober = Arc::new(
                exgate_verify::live::LiveProber::new(
                    &project,
                    &exgate_verify::live::LiveOptions::default(),
                )
                .expect("prober"),
            );
            let (_tx, cancel) = watch::channel(false);
            let (rtx, mut rrx) = mpsc::channel(100_000);
            let options = RunOptions {
                concurrency: 64,
                per_tenant: 32,
                ..RunOptions::default()
            };
            exgate_verify::run(
                prober,
                &project,
                project.mailboxes.clone(),
                options,
                cancel,
                rtx,
            )
            .await;
            let mut ok = 0;
            while let Ok(r) = rrx.try_recv() {
                ok += usize::from(r.ok);
            }
            assert_eq!(ok, LIVE_MAILBOXES, "every mailbox verifies");
            ok
        })
    });
    g.finish();
    rt.block_on(emu.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
