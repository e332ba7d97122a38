//! `exgate demo`: the embedded emulator, a ready migration programme, a report.
//!
//! The demo is self-contained: the scenario (`scenarios/demo.toml`), its certificate and the
//! project files (`scenarios/demo/`) are compiled into the binary and written to a temporary
//! directory, so the command works from any directory. It starts the emulator in-process over TLS,
//! verifies every project of the programme against it, prints one combined report, and checks that
//! every planted fault was found with the right cause while every other mailbox passed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use exgate_emulator::{Emulator, EmulatorOptions, Scenario};
use exgate_verify::live::{LiveOptions, LiveProber};
use exgate_verify::report::{Report, render_html, render_text};
use exgate_verify::store::{Store, sqlite_url};
use exgate_verify::{RunOptions, Side, Status, VerifyOptions, verify_project};
use serde::Serialize;
use tokio::sync::watch;

use super::verify::Bar;
use crate::exit;

const EXAMPLES: &str = "\
Examples:
  Run the demonstration and read the report:
    exgate demo
  The same report as JSON, and as a self-contained HTML page:
    exgate demo --json > demo.json
    exgate demo --html demo.html

The demo starts the built-in emulator of Entra ID and Exchange (scenarios/demo.toml: Contoso's
on-premises Exchange, Fabrikam's Exchange Online, about 2,000 mailboxes), verifies the migration
projects in scenarios/demo/ against it, and shows how exgate names each planted fault and its fix.
Nothing leaves this machine. Exit codes: 0 the demo behaved as designed (every planted fault found
with the right cause, every other mailbox reachable), 1 it did not, 2 it could not run.";

/// Run the demonstration on the embedded emulator.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Write a self-contained HTML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Keep the demo's working directory (scenario, projects, state database) and print its path.
    #[arg(long)]
    pub keep: bool,
}

/// Files of the demo, as (path relative to the working directory, contents).
const FILES: &[(&str, &str)] = &[
    ("demo.toml", include_str!("../../../../scenarios/demo.toml")),
    (
        "demo-certs/migration-daemon.crt.pem",
        include_str!("../../../../scenarios/demo-certs/migration-daemon.crt.pem"),
    ),
    (
        "demo-certs/migration-daemon.key.pem",
        include_str!("../../../../scenarios/demo-certs/migration-daemon.key.pem"),
    ),
    (
        "demo/contoso-to-fabrikam.csv",
        include_str!("../../../../scenarios/demo/contoso-to-fabrikam.csv"),
    ),
];

/// The projects of the programme, in the order they are verified.
const PROJECTS: &[(&str, &str)] = &[
    (
        "demo/01-contoso-to-fabrikam.toml",
        include_str!("../../../../scenarios/demo/01-contoso-to-fabrikam.toml"),
    ),
    (
        "demo/02-legacy-sync-admin.toml",
        include_str!("../../../../scenarios/demo/02-legacy-sync-admin.toml"),
    ),
    (
        "demo/03-fabrikam-basic-ews.toml",
        include_str!("../../../../scenarios/demo/03-fabrikam-basic-ews.toml"),
    ),
    (
        "demo/04-fabrikam-reporting.toml",
        include_str!("../../../../scenarios/demo/04-fabrikam-reporting.toml"),
    ),
    (
        "demo/05-contoso-archive.toml",
        include_str!("../../../../scenarios/demo/05-contoso-archive.toml"),
    ),
    (
        "demo/06-contoso-branch-hma.toml",
        include_str!("../../../../scenarios/demo/06-contoso-branch-hma.toml"),
    ),
    (
        "demo/07-fabrikam-sync.toml",
        include_str!("../../../../scenarios/demo/07-fabrikam-sync.toml"),
    ),
];

/// Which mailboxes a planted fault concerns.
#[derive(Clone, Copy)]
enum Scope {
    /// Every mailbox of the project: the fault concerns the whole endpoint.
    Endpoint,
    /// These addresses (on the fault's side).
    Mailboxes(&'static [&'static str]),
}

/// A fault planted in the demo scenario and the cause exgate must name first.
struct Planted {
    project: &'static str,
    side: Side,
    scope: Scope,
    cause: &'static str,
    what: &'static str,
}

const PLANTED: &[Planted] = &[
    Planted {
        project: "contoso-to-fabrikam",
        side: Side::Source,
        scope: Scope::Mailboxes(&[
            "user997@contoso.com",
            "user998@contoso.com",
            "user999@contoso.com",
            "user1000@contoso.com",
        ]),
        cause: "impersonation_right_missing",
        what: "mailboxes outside the service account's impersonation scope",
    },
    Planted {
        project: "contoso-to-fabrikam",
        side: Side::Destination,
        scope: Scope::Mailboxes(&[
            "user995@fabrikam.com",
            "user996@fabrikam.com",
            "user997@fabrikam.com",
        ]),
        cause: "mailbox_not_provisioned",
        what: "destination mailboxes not provisioned yet",
    },
    Planted {
        project: "contoso-to-fabrikam",
        side: Side::Destination,
        scope: Scope::Mailboxes(&[
            "user998@fabrikam.com",
            "user999@fabrikam.com",
            "user1000@fabrikam.com",
        ]),
        cause: "mailbox_not_licensed",
        what: "destination mailboxes without an Exchange licence",
    },
    Planted {
        project: "legacy-sync-admin",
        side: Side::Source,
        scope: Scope::Endpoint,
        cause: "mfa_required",
        what: "MFA turned on for the admin account used with Basic",
    },
    Planted {
        project: "fabrikam-basic-ews",
        side: Side::Destination,
        scope: Scope::Endpoint,
        cause: "basic_auth_disabled",
        what: "Basic authentication disabled in Exchange Online",
    },
    Planted {
        project: "fabrikam-reporting",
        side: Side::Destination,
        scope: Scope::Endpoint,
        cause: "missing_application_permission",
        what: "full_access_as_app never consented",
    },
    Planted {
        project: "contoso-archive",
        side: Side::Source,
        scope: Scope::Endpoint,
        cause: "secret_instead_of_certificate",
        what: "client secret where a certificate is required",
    },
    Planted {
        project: "contoso-branch-hma",
        side: Side::Source,
        scope: Scope::Endpoint,
        cause: "ssl_offloading",
        what: "on-premises server behind TLS offloading",
    },
    Planted {
        project: "fabrikam-sync",
        side: Side::Destination,
        scope: Scope::Endpoint,
        cause: "throttled",
        what: "Graph throttling of a small budget",
    },
];

/// The outcome of one planted fault, for the report.
#[derive(Debug, Serialize)]
struct PlantedCheck {
    project: &'static str,
    fault: &'static str,
    expected_cause: &'static str,
    found: bool,
    /// Top causes actually named for the affected mailboxes (deduplicated).
    named: Vec<String>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let work = WorkDir::create()?;
    for (rel, text) in FILES {
        work.write(rel, text)?;
    }
    let scenario = Scenario::load(&work.path("demo.toml")).context("the demo scenario")?;
    let emulator = Emulator::start(
        scenario,
        EmulatorOptions {
            tls: true,
            ..EmulatorOptions::default()
        },
    )
    .await
    .context("cannot start the emulator")?;
    let base = emulator.base_url().to_owned();
    eprintln!("emulator of Entra ID and Exchange serving on {base} (loopback only)");

    let live = LiveOptions {
        extra_root_pem: emulator.ca_pem().map(|p| p.as_bytes().to_vec()),
        ..LiveOptions::default()
    };
    let store = Store::open(&sqlite_url(&work.path("demo-state.sqlite")))
        .await
        .context("state database")?;
    let (cancel_tx, cancel) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: every finished result is kept");
            let _ = cancel_tx.send(true);
        }
    });

    let started = Instant::now();
    let started_at_ms = exgate_verify::now_ms();
    let mut reports = Vec::new();
    for (rel, text) in PROJECTS {
        if *cancel.borrow() {
            break;
        }
        let path = work.write(rel, &text.replace("{emulator}", &base))?;
        let project = exgate_verify::project::load(&path)
            .map_err(|e| anyhow::anyhow!("demo project {rel}: {e}"))?;
        let prober = LiveProber::new(&project, &live)
            .map_err(|e| anyhow::anyhow!("demo project {rel}: {e}"))?;
        eprintln!("project {}:", project.name);
        let options = VerifyOptions {
            all: true,
            run: RunOptions::default(),
        };
        let mut bar = Bar::new();
        let report = verify_project(
            Arc::new(prober),
            &project,
            &store,
            &options,
            cancel.clone(),
            &mut bar,
        )
        .await
        .context("state database")?;
        reports.push(report);
    }
    stopper.abort();
    store.close().await;
    emulator.shutdown().await;

    let programme = Report::combine(
        "exgate demo (7 projects)",
        started_at_ms,
        started.elapsed().as_millis() as u64,
        reports,
    );
    let checks = check_planted(&programme);
    let unexpected = unexpected_failures(&programme);
    let as_designed = checks.iter().all(|c| c.found) && unexpected.is_empty();

    if let Some(path) = &args.html {
        std::fs::write(path, render_html(&programme))
            .with_context(|| format!("cannot write the HTML report {}", path.display()))?;
        eprintln!("HTML report written to {}", path.display());
    }
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let mut value = serde_json::to_value(&programme).context("report")?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("planted".to_owned(), serde_json::to_value(&checks)?);
            obj.insert("unexpected".to_owned(), serde_json::to_value(&unexpected)?);
            obj.insert(
                "as_designed".to_owned(),
                serde_json::Value::Bool(as_designed),
            );
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)
    } else {
        write!(
            out,
            "{}{}",
            render_text(&programme),
            render_checks(&checks, &unexpected)
        )
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e).context("cannot write the report");
    }
    if args.keep {
        eprintln!("demo files kept in {}", work.root.display());
        work.keep();
    }
    Ok(if programme.summary.cancelled {
        exit::could_not_run()
    } else if as_designed {
        exit::ok()
    } else {
        exit::found_failures()
    })
}

fn check_planted(report: &Report) -> Vec<PlantedCheck> {
    PLANTED
        .iter()
        .map(|p| {
            let mut named = Vec::new();
            let mut found = false;
            match p.scope {
                Scope::Endpoint => {
                    // Found once as an endpoint-wide fault, or (a budget running out partway
                    // through) on every mailbox that failed on that side.
                    let faults: Vec<_> = report
                        .faults
                        .iter()
                        .filter(|f| Report::project_of(&f.id) == p.project && f.endpoint == p.side)
                        .collect();
                    if faults.is_empty() {
                        for step in report
                            .mailboxes
                            .iter()
                            .filter(|m| Report::project_of(&m.id) == p.project)
                            .flat_map(|m| m.steps.iter())
                            .filter(|s| s.endpoint == p.side && s.status == Status::Failed)
                        {
                            named.push(top_cause(step.causes.first()));
                        }
                        found = !named.is_empty() && named.iter().all(|n| n == p.cause);
                    } else {
                        for fault in faults {
                            let top = top_cause(fault.causes.first());
                            found |= top == p.cause;
                            named.push(top);
                        }
                    }
                }
                Scope::Mailboxes(addresses) => {
                    found = true;
                    for address in addresses {
                        let top = report
                            .mailboxes
                            .iter()
                            .filter(|m| Report::project_of(&m.id) == p.project)
                            .filter(|m| match p.side {
                                Side::Source => m.source == *address,
                                Side::Destination => m.destination.as_deref() == Some(*address),
                            })
                            .flat_map(|m| m.steps.iter())
                            .find(|s| s.endpoint == p.side && s.status == Status::Failed)
                            .map(|s| top_cause(s.causes.first()))
                            .unwrap_or_else(|| "(no failure)".to_owned());
                        found &= top == p.cause;
                        named.push(top);
                    }
                }
            }
            named.sort();
            named.dedup();
            PlantedCheck {
                project: p.project,
                fault: p.what,
                expected_cause: p.cause,
                found,
                named,
            }
        })
        .collect()
}

fn top_cause(cause: Option<&exgate_verify::Cause>) -> String {
    cause.map_or_else(|| "(no cause named)".to_owned(), |c| c.id.clone())
}

/// Failures that no planted fault explains: in the demo, every such mailbox should have passed.
fn unexpected_failures(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for m in &report.mailboxes {
        for s in m.steps.iter().filter(|s| s.status != Status::Ok) {
            let project = Report::project_of(&m.id);
            let address = match s.endpoint {
                Side::Source => m.source.as_str(),
                Side::Destination => m.destination.as_deref().unwrap_or_default(),
            };
            let planted = PLANTED.iter().any(|p| {
                p.project == project
                    && p.side == s.endpoint
                    && match p.scope {
                        Scope::Endpoint => true,
                        Scope::Mailboxes(list) => list.contains(&address),
                    }
            });
            if !planted {
                out.push(format!(
                    "{project}: {address} ({} {}): {}",
                    s.endpoint.as_str(),
                    s.name.as_str(),
                    s.error.as_deref().unwrap_or("failed")
                ));
            }
        }
    }
    out
}

fn render_checks(checks: &[PlantedCheck], unexpected: &[String]) -> String {
    let mut out = String::from("\nPlanted faults\n");
    for c in checks {
        let mark = if c.found { "found " } else { "MISSED" };
        out.push_str(&format!(
            "  {mark} {:<22} {:<55} -> {}",
            c.project, c.fault, c.expected_cause
        ));
        if !c.found {
            out.push_str(&format!(" (named: {})", c.named.join(", ")));
        }
        out.push('\n');
    }
    if unexpected.is_empty() {
        out.push_str("Every other mailbox was reachable.\n");
    } else {
        out.push_str("Unexpected failures:\n");
        for u in unexpected {
            out.push_str(&format!("  {u}\n"));
        }
    }
    out
}

/// A private temporary directory for the demo's files, removed when dropped unless kept.
struct WorkDir {
    root: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create() -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!(
            "exgate-demo-{}-{}",
            std::process::id(),
            exgate_verify::now_ms()
        ));
        std::fs::create_dir_all(root.join("demo"))
            .with_context(|| format!("cannot create {}", root.display()))?;
        Ok(Self { root, keep: false })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.path(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        write_file(&path, text)?;
        Ok(path)
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
