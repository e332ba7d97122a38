//! `exgate demo`: the embedded emulator, a ready migration programme, a report.
//!
//! The demo is self-contained: the scenario (`scenarios/demo.toml`), its certificate and the
//! project files (`scenarios/demo/`) are compiled into the binary and written to a temporary
//! directory, so the command works from any directory. It starts the emulator in-process over TLS,
//! verifies every project of the programme against it, checks HMA readiness of its on-premises
//! organisation, prints one combined report, and checks that every planted fault was found with
//! the right cause while every other mailbox passed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use exgate_emulator::{Emulator, EmulatorOptions, Scenario};
use exgate_verify::live::{LiveOptions, LiveProber};
use exgate_verify::report::{Report, render_html, render_text};
use exgate_verify::store::{Listing, Store, sqlite_url};
use exgate_verify::{RunOptions, Side, Status, VerifyOptions, verify_project};
use serde::Serialize;
use tokio::sync::watch;

use super::verify::Bar;
use crate::cmd::flags::ReportArgs;
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
projects in scenarios/demo/ against it, checks Hybrid Modern Authentication readiness of Contoso's
on-premises organisation (its cmdlet output and a live probe), and shows how exgate names each
planted fault and its fix.
Nothing leaves this machine. Exit codes: 0 the demo behaved as designed (every planted fault found
with the right cause, every other mailbox reachable), 1 it did not, 2 it could not run.";

/// Run the demonstration on the embedded emulator.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    #[command(flatten)]
    pub output: ReportArgs,

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

/// A fault planted in the demo's on-premises organisation (its cmdlet output,
/// `scenarios/demo/hma/contoso-onprem.txt`), and the error finding HMA readiness must give.
struct PlantedHma {
    cause: &'static str,
    subject: &'static str,
    what: &'static str,
}

const HMA_PROJECT: &str = "contoso-onprem-hma";

const PLANTED_HMA: &[PlantedHma] = &[
    PlantedHma {
        cause: "spn_missing",
        subject: "https://mail.corp.contoso.com/",
        what: "internal EWS namespace not an SPN of Exchange Online",
    },
    PlantedHma {
        cause: "hma_vdir_oauth_disabled",
        subject: "ex02 MAPI",
        what: "OAuth missing on ex02's MAPI virtual directory",
    },
    PlantedHma {
        cause: "hma_auth_certificate_invalid",
        subject: "on ex02",
        what: "Auth certificate not on ex02",
    },
    PlantedHma {
        cause: "ssl_offloading",
        subject: "/onprem/ex02",
        what: "TLS terminated in front of ex02 (its sign-in probe)",
    },
];

/// The user and public client the demo's sign-in probe signs in with (`scenarios/demo.toml`),
/// and the name clients use for each on-premises server.
const HMA_SIGNIN_CLIENT: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
const HMA_SIGNIN_USER: (&str, &str) = ("alice@contoso.com", "Demo-Alice-Pass-1");
const HMA_NAMESPACES: &[(&str, &str)] = &[
    ("ex01", "https://mail.contoso.com"),
    ("ex02", "https://mail2.contoso.com"),
];

const HMA_CMDLETS: &str = include_str!("../../../../scenarios/demo/hma/contoso-onprem.txt");

/// HMA readiness of the emulator's on-premises Contoso: its cmdlet output, a live probe of
/// servers ex01 and ex02, and a sign-in probe of each as Alice.
async fn hma_readiness(base: &str, ca: Option<Vec<u8>>) -> anyhow::Result<exgate_hma::Report> {
    let org = exgate_hma::read_files([("hma/contoso-onprem.txt", HMA_CMDLETS.as_bytes())]);
    let http = exgate_auth::build_http_client(&exgate_auth::HttpOptions {
        extra_root_ca_pem: ca.clone(),
        timeout: std::time::Duration::from_secs(15),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut answers = Vec::new();
    for (server, _) in HMA_NAMESPACES {
        let namespace = format!("{base}/onprem/{server}");
        answers.extend(exgate_hma::probe::probe_namespace(&http, &namespace).await);
    }
    // The sign-in probe: Alice's token for each server's name, then one EWS call with it.
    let authority = exgate_auth::Authority::new(base, "contoso.com", Default::default())?;
    let mut config = exgate_auth::ProviderConfig::new(
        authority,
        HMA_SIGNIN_CLIENT,
        exgate_auth::Credential::Password {
            client: exgate_auth::ClientAuth::Public,
            username: HMA_SIGNIN_USER.0.to_owned(),
            password: exgate_auth::SecretString::from(HMA_SIGNIN_USER.1.to_owned()),
        },
    );
    config.http.extra_root_ca_pem = ca.clone();
    let provider = exgate_auth::TokenProvider::new(config)?;
    let mut mail_http = exgate_mail::HttpClientBuilder::new()
        .timeout(std::time::Duration::from_secs(15))
        .retry(exgate_mail::RetryPolicy::fail_fast());
    if let Some(pem) = ca {
        mail_http = mail_http.extra_root_pem(pem);
    }
    let mail_http = mail_http.build()?;
    let mut signins = Vec::new();
    for (server, resource) in HMA_NAMESPACES {
        let namespace = format!("{base}/onprem/{server}");
        signins.push(
            exgate_hma::signin::sign_in_namespace(
                &provider, &mail_http, &namespace, resource, true,
            )
            .await,
        );
    }
    Ok(exgate_hma::check_now(
        &org,
        &exgate_hma::Live {
            probes: Some(&answers),
            signins: Some(&signins),
        },
    ))
}

/// The planted HMA faults found, and the error findings no planted fault explains.
fn check_hma(report: &exgate_hma::Report) -> (Vec<PlantedCheck>, Vec<String>) {
    let errors: Vec<&exgate_hma::Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity == exgate_hma::Severity::Error)
        .collect();
    let checks = PLANTED_HMA
        .iter()
        .map(|p| {
            let about: Vec<&&exgate_hma::Finding> = errors
                .iter()
                .filter(|f| f.subject.contains(p.subject))
                .collect();
            PlantedCheck {
                project: HMA_PROJECT,
                fault: p.what,
                expected_cause: p.cause,
                found: about.first().is_some_and(|f| f.id == p.cause),
                named: about.iter().map(|f| f.id.clone()).collect(),
            }
        })
        .collect();
    let unexpected = errors
        .iter()
        .filter(|f| !PLANTED_HMA.iter().any(|p| f.subject.contains(p.subject)))
        .map(|f| format!("{HMA_PROJECT}: {} ({})", f.subject, f.id))
        .collect();
    (checks, unexpected)
}

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
        // Every line is verified (`all`): this run's results are the whole project.
        let report = Report::load(&store, &project, report, Listing::RunOnly)
            .await
            .context("state database")?;
        reports.push(report);
    }
    stopper.abort();
    store.close().await;
    eprintln!("HMA readiness of Contoso's on-premises organisation:");
    let hma = hma_readiness(&base, emulator.ca_pem().map(|p| p.as_bytes().to_vec())).await;
    emulator.shutdown().await;
    let hma = hma.context("HMA readiness")?;

    let programme = Report::combine(
        "exgate demo (7 projects)",
        started_at_ms,
        started.elapsed().as_millis() as u64,
        reports,
    );
    let mut checks = check_planted(&programme);
    let mut unexpected = unexpected_failures(&programme);
    let (hma_checks, hma_unexpected) = check_hma(&hma);
    checks.extend(hma_checks);
    unexpected.extend(hma_unexpected);
    let as_designed = checks.iter().all(|c| c.found) && unexpected.is_empty();

    if let Some(path) = &args.output.html {
        let mut page = render_html(&programme);
        let hma_section = format!(
            "<h2>HMA readiness of Contoso's on-premises organisation</h2>{}",
            exgate_hma::html::section(&hma, "hma/contoso-onprem.txt, live probe of ex01 and ex02")
        );
        match page.rfind("</body>") {
            Some(at) => page.insert_str(at, &hma_section),
            None => page.push_str(&hma_section),
        }
        std::fs::write(path, page)
            .with_context(|| format!("cannot write the HTML report {}", path.display()))?;
        eprintln!("HTML report written to {}", path.display());
    }
    let mut out = std::io::stdout().lock();
    let written = if args.output.json {
        let mut value = serde_json::to_value(&programme).context("report")?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("planted".to_owned(), serde_json::to_value(&checks)?);
            obj.insert("unexpected".to_owned(), serde_json::to_value(&unexpected)?);
            obj.insert("hma".to_owned(), serde_json::to_value(&hma)?);
            obj.insert(
                "as_designed".to_owned(),
                serde_json::Value::Bool(as_designed),
            );
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)
    } else {
        write!(
            out,
            "{}\nHMA readiness of Contoso's on-premises organisation (hma/contoso-onprem.txt, live probe of ex01 and ex02)\n{}{}",
            render_text(&programme.head),
            exgate_hma::text_report::render(&hma),
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
    Ok(if programme.head.summary.cancelled {
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
                        .head
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
