//! `exgate verify`: checks every mailbox of a migration or sync project, on both sides, and
//! explains every failure.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exgate_verify::Project;
use exgate_verify::live::{LiveOptions, LiveProber};
use exgate_verify::report::{ReportHead, render_text, write_html_from, write_json_from};
use exgate_verify::store::{Listing, Store, StoreError, default_state_path, sqlite_url};
use exgate_verify::{MailboxResult, Progress, RunOptions, Status, VerifyOptions, verify_project};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::cmd::flags::{ReportArgs, TrustArgs};
use crate::exit;

const EXAMPLES: &str = "\
Examples:
  Verify a project (state kept in migration.exgate.sqlite next to the file):
    exgate verify migration.toml
  Check the write path too, and write a shareable HTML report:
    exgate verify migration.toml --write-check --html report.html
  Machine-readable report, everything re-checked, state in PostgreSQL:
    exgate verify migration.toml --all --json \\
      --database postgres://exgate@db.example.com/exgate > report.json
  A project without [destination] checks its source mailboxes alone (archivers, scanners):
    exgate verify examples/projects/archiver.toml
  Against the emulator (start it on the port the example names, then trust its CA):
    exgate emulator --scenario scenarios/demo.toml --tls --listen 127.0.0.1:8443 \\
      --ca-out /tmp/emulator-ca.pem &
    exgate verify examples/projects/emulator.toml --ca-cert /tmp/emulator-ca.pem

A re-run verifies only the mailboxes that failed, were blocked, changed or were never verified;
--all checks every one. Its JSON and HTML reports still list every mailbox of the project, the
results of earlier runs marked with their run (--changes-only: this run's alone). Ctrl-C stops
cleanly: what was verified is kept.
Exit codes: 0 every verified mailbox is reachable, 1 some failed or were blocked,
2 could not run (bad project file, database unreachable, stopped before any failure was found).
The project format is described in docs/verify.md.";

/// Verify that every mailbox of a migration or sync project can be reached.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The project file (TOML): endpoints, auth profiles and mailboxes.
    #[arg(value_name = "PROJECT")]
    pub project: PathBuf,

    /// State database: sqlite://PATH or postgres://USER@HOST/DB.
    /// Default: PROJECT.exgate.sqlite next to the project file.
    #[arg(long, value_name = "URL", env = "EXGATE_DATABASE_URL")]
    pub database: Option<String>,

    /// Verify every mailbox, not only the failed, changed and new ones.
    #[arg(long)]
    pub all: bool,

    /// Also create and delete a probe item in each destination mailbox (in each source mailbox
    /// of a project without destination).
    #[arg(long)]
    pub write_check: bool,

    #[command(flatten)]
    pub output: ReportArgs,

    /// List only the mailboxes verified in this run in the JSON and HTML reports. By default
    /// they list every mailbox of the project, results of earlier runs marked with their run.
    #[arg(long)]
    pub changes_only: bool,

    /// Mailboxes verified at the same time.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// Requests in flight per tenant (an endpoint's max_concurrency overrides it).
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub per_tenant: u16,

    #[command(flatten)]
    pub trust: TrustArgs,

    /// Per-request timeout in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
}

/// Progress on stderr: a bar with rate and ETA on a terminal, plain lines otherwise.
pub(crate) struct Bar {
    bar: Option<ProgressBar>,
    /// Rows of the JSON or HTML report written, once the run is over.
    report: Option<ProgressBar>,
    total: usize,
    done: usize,
    failed: usize,
    blocked: usize,
    last_line: Instant,
}

impl Bar {
    pub(crate) fn new() -> Self {
        Self {
            bar: None,
            report: None,
            total: 0,
            done: 0,
            failed: 0,
            blocked: 0,
            last_line: Instant::now(),
        }
    }
}

impl Progress for Bar {
    fn start(&mut self, selected: usize, skipped: usize) {
        self.total = selected;
        let mut err = std::io::stderr();
        if skipped > 0 {
            let _ = writeln!(
                err,
                "{skipped} mailboxes were verified ok before and are unchanged (--all to re-check)"
            );
        }
        let _ = writeln!(err, "verifying {selected} mailboxes");
        if std::io::stderr().is_terminal() && selected > 0 {
            let bar =
                ProgressBar::with_draw_target(Some(selected as u64), ProgressDrawTarget::stderr());
            let template = if exit::color_enabled() {
                "{bar:40.cyan/blue} {pos}/{len} {per_sec} eta {eta} {msg}"
            } else {
                "{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
    }

    fn mailbox(&mut self, r: &MailboxResult) {
        self.done += 1;
        match r.status {
            Status::Failed => self.failed += 1,
            Status::Blocked => self.blocked += 1,
            Status::Ok => {}
        }
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{} failed, {} blocked", self.failed, self.blocked));
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(5) || self.done == self.total {
                    self.last_line = Instant::now();
                    let _ = writeln!(
                        std::io::stderr(),
                        "verified {}/{} ({} failed, {} blocked)",
                        self.done,
                        self.total,
                        self.failed,
                        self.blocked
                    );
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn report_rows(&mut self, rows: u64) {
        if std::io::stderr().is_terminal() {
            let bar = self.report.get_or_insert_with(|| {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                if let Ok(style) =
                    ProgressStyle::with_template("writing the report: {pos} mailboxes {per_sec}")
                {
                    bar.set_style(style);
                }
                bar
            });
            bar.set_position(rows);
        } else if self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            let _ = writeln!(std::io::stderr(), "writing the report: {rows} mailboxes");
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.report.take() {
            bar.finish_and_clear();
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let project = match exgate_verify::project::load(&args.project) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::could_not_run());
        }
    };
    let extra_root_pem = args.trust.pem()?;
    let live = LiveOptions {
        extra_root_pem,
        timeout: Duration::from_secs(args.timeout),
        allow_http: false,
        // Each mailbox has a source and a destination step in flight at most.
        max_in_flight: 2 * usize::from(args.concurrency.max(args.per_tenant)),
    };
    let prober = match LiveProber::new(&project, &live) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::could_not_run());
        }
    };
    // The state database is opened (and created) only once the project and its credentials
    // are known to be usable: a run stopped by its configuration leaves no files behind.
    let url = match &args.database {
        Some(u) => u.clone(),
        None => sqlite_url(&default_state_path(&args.project)),
    };
    let store = Store::open(&url).await.context("state database")?;

    let (cancel_tx, cancel) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nstopping: mailboxes in flight are abandoned, every finished result is kept"
            );
            let _ = cancel_tx.send(true);
        }
    });

    let options = VerifyOptions {
        all: args.all,
        run: RunOptions {
            concurrency: usize::from(args.concurrency),
            per_tenant: usize::from(args.per_tenant),
            write_check: args.write_check,
            ..RunOptions::default()
        },
    };
    let mut bar = Bar::new();
    let report = verify_project(prober, &project, &store, &options, cancel, &mut bar).await;
    stopper.abort();
    let written = match report {
        Ok(report) => write_reports(&args, &project, &store, &report, &mut bar)
            .await
            .map(|()| report),
        Err(e) => Err(anyhow::Error::new(e).context("state database")),
    };
    store.close().await;
    let report = written?;

    Ok(if !report.all_ok() {
        exit::found_failures()
    } else if report.summary.cancelled {
        exit::could_not_run()
    } else {
        exit::ok()
    })
}

/// Writes the HTML file, then the JSON or text report on stdout; the mailboxes of the JSON and
/// HTML reports are read from the state database one at a time.
async fn write_reports(
    args: &Args,
    project: &Project,
    store: &Store,
    report: &ReportHead,
    bar: &mut Bar,
) -> anyhow::Result<()> {
    let listing = if args.changes_only {
        Listing::RunOnly
    } else {
        Listing::Project
    };
    if let Some(path) = &args.output.html {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write the HTML report {}", path.display()))?;
        write_html_from(store, project, report, listing, file, bar)
            .await
            .with_context(|| format!("cannot write the HTML report {}", path.display()))?;
        eprintln!("HTML report written to {}", path.display());
    }
    let out = std::io::stdout().lock();
    let written = if args.output.json {
        write_json_from(store, project, report, listing, out, bar)
            .await
            .map(|_| ())
    } else {
        let mut out = out;
        write!(out, "{}", render_text(report)).map_err(|source| StoreError::Output { source })
    };
    match written {
        Err(StoreError::Output { source }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        Err(e) => Err(e).context("cannot write the report"),
        Ok(()) => Ok(()),
    }
}
