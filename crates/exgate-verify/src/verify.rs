//! One verification run end to end: select from the state store, run, record, report.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::model::{MailboxResult, now_ms};
use crate::probe::Prober;
use crate::project::{LineItem, Project};
use crate::report::{ReportBuilder, ReportHead, RunInfo};
use crate::runner::{RunOptions, run};
use crate::store::{RunTotals, Store, StoreError};

/// Receives progress events; the command line draws a bar or prints lines from them.
pub trait Progress: Send {
    /// The run starts: `selected` mailboxes to verify, `skipped` already verified.
    fn start(&mut self, selected: usize, skipped: usize);
    /// A mailbox finished.
    fn mailbox(&mut self, result: &MailboxResult);
    /// The run ended (finished or stopped).
    fn finish(&mut self);
    /// A report is being written: `rows` mailboxes of it so far (called every few hundred
    /// rows, then once with the total).
    fn report_rows(&mut self, rows: u64) {
        let _ = rows;
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: usize, _: usize) {}
    fn mailbox(&mut self, _: &MailboxResult) {}
    fn finish(&mut self) {}
}

/// What to verify and how.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Verify every line item, not only failed, changed and new ones.
    pub all: bool,
    /// Runner settings (concurrency, write check, throttling).
    pub run: RunOptions,
}

/// Results are written to the store in batches of this size (or after [`FLUSH_EVERY`]).
const BATCH: usize = 256;
/// Finished results waiting to be recorded, at most: beyond, the runner waits for the store
/// (memory stays bounded when the database is slower than the endpoints).
const RESULTS_IN_FLIGHT: usize = 4 * BATCH;
/// Longest time a finished result waits before being written.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Verifies a project: selects the line items to check from `store`, runs them with `prober`,
/// records every result as it arrives (so a stopped run keeps what it verified) and returns the
/// head of the report of this run. The mailboxes are not kept in memory: they are in `store`,
/// read one at a time by [`Store::each_result`] to write a report.
pub async fn verify_project<P: Prober>(
    prober: Arc<P>,
    project: &Project,
    store: &Store,
    options: &VerifyOptions,
    cancel: watch::Receiver<bool>,
    progress: &mut dyn Progress,
) -> Result<ReportHead, StoreError> {
    let started_at_ms = now_ms();
    let clock = tokio::time::Instant::now();
    let selection = store
        .select(project, options.all, options.run.write_check)
        .await?;
    let selected = selection.verify.len();
    let skipped = selection.skipped.len();
    let run_id = store
        .begin_run(
            &project.name,
            options.all,
            options.run.write_check,
            selected,
        )
        .await?;
    progress.start(selected, skipped);

    // The line item of each result, for its fingerprint: sorted by id (16 bytes per line).
    let mut by_id: Vec<(&str, &LineItem)> = selection
        .verify
        .iter()
        .map(|(i, _)| (i.id.as_str(), *i))
        .collect();
    by_id.sort_unstable_by_key(|(id, _)| *id);
    let (tx, mut rx) = mpsc::channel::<MailboxResult>(RESULTS_IN_FLIGHT);
    let items = selection.verify.iter().map(|(i, _)| (*i).clone());
    let runner = run(prober, project, items, options.run.clone(), cancel, tx);

    let write_check = options.run.write_check;
    let consumer = async {
        let mut builder = ReportBuilder::default();
        let mut pending: Vec<MailboxResult> = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first_error: Option<StoreError> = None;
        loop {
            let flush = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => {
                        progress.mailbox(&r);
                        builder.add(&r);
                        pending.push(r);
                        pending.len() >= BATCH
                    }
                    None => break,
                },
                _ = tick.tick() => !pending.is_empty(),
            };
            if flush {
                if let Err(e) = record(store, project, &run_id, write_check, &by_id, &pending).await
                {
                    first_error.get_or_insert(e);
                }
                pending.clear();
            }
        }
        if !pending.is_empty()
            && let Err(e) = record(store, project, &run_id, write_check, &by_id, &pending).await
        {
            first_error.get_or_insert(e);
        }
        (builder, first_error)
    };
    let (outcome, (builder, store_error)) = tokio::join!(runner, consumer);
    progress.finish();
    if let Some(e) = store_error {
        return Err(e);
    }
    let (ok, failed, blocked) = builder.counts();
    let totals = RunTotals {
        ok,
        failed,
        blocked,
        cancelled: outcome.cancelled,
    };
    store.finish_run(&run_id, &totals, &outcome.faults).await?;
    Ok(builder.finish(
        RunInfo {
            project: project.name.clone(),
            run_id,
            started_at_ms,
            project_items: project.mailboxes.len() as u64,
            skipped: skipped as u64,
            selected: selected as u64,
            cancelled: outcome.cancelled,
            duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        outcome.faults,
    ))
}

async fn record(
    store: &Store,
    project: &Project,
    run_id: &str,
    write_check: bool,
    by_id: &[(&str, &LineItem)],
    results: &[MailboxResult],
) -> Result<(), StoreError> {
    let batch: Vec<(&LineItem, &MailboxResult)> = results
        .iter()
        .filter_map(|r| {
            let at = by_id
                .binary_search_by_key(&r.id.as_str(), |(id, _)| *id)
                .ok()?;
            Some((by_id[at].1, r))
        })
        .collect();
    store
        .record(&project.name, run_id, write_check, &batch)
        .await
}
