//! Reports: the result model of a run and its three renderings (text, JSON, HTML).
//!
//! [`Report::build`] groups failures by their most likely cause, so each fix is given once with
//! the mailboxes it concerns; mailboxes blocked by an endpoint-wide fault are counted in the group
//! of that fault's cause. The JSON shape is `{"summary": {...}, "faults": [...], "groups": [...],
//! "mailboxes": [{"source", "destination", "ok", "status", "steps": [{"name", "endpoint", "ok",
//! "ms", "causes": [{"id", ...}]}]}]}`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::model::{Cause, Fault, MailboxResult, Status};
use crate::project::Project;
use crate::store::{Listing, Store, StoreError};
use crate::verify::Progress;

mod html;
mod text;

pub use html::{HtmlWriter, escape as escape_html, render_html};
pub use text::render_text;

/// Totals of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Project name.
    pub project: String,
    /// Run id in the state database.
    pub run_id: String,
    /// When the run started (epoch ms).
    pub started_at_ms: i64,
    /// Line items in the project.
    pub project_items: u64,
    /// Mailboxes verified in this run.
    pub total: u64,
    /// Verified ok.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Blocked by an endpoint-wide fault.
    pub blocked: u64,
    /// Not verified because they were ok before and unchanged.
    pub skipped: u64,
    /// Selected but not verified because the run was stopped.
    pub not_run: u64,
    /// The run was stopped before the end.
    pub cancelled: bool,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Mailboxes verified per second.
    pub rate_per_s: f64,
    /// Mailboxes per cause id (failed and blocked), most frequent first.
    pub causes: Vec<CauseCount>,
}

/// How many mailboxes one cause affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CauseCount {
    /// Cause id.
    pub id: String,
    /// Failed mailboxes whose most likely cause this is.
    pub failed: u64,
    /// Mailboxes blocked by a fault with this cause.
    pub blocked: u64,
}

impl Affected {
    /// `source -> destination`, or the source alone, for messages.
    pub fn label(&self) -> String {
        match &self.destination {
            Some(d) => format!("{} -> {d}", self.source),
            None => self.source.clone(),
        }
    }
}

/// A mailbox affected by a cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    /// Source address.
    pub source: String,
    /// Destination address (`null` in a one-sided project).
    pub destination: Option<String>,
    /// `source` or `destination`: the side that failed.
    pub endpoint: String,
    /// The step that failed.
    pub step: String,
    /// The error line.
    pub error: String,
}

/// Failures sharing a most likely cause: the fix once, and every mailbox it concerns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseGroup {
    /// Cause id (`undiagnosed` when the failure named none).
    pub id: String,
    /// Title.
    pub title: String,
    /// The fix, step by step.
    pub fix: Vec<String>,
    /// Documentation links.
    pub references: Vec<String>,
    /// Failed mailboxes.
    pub failed: Vec<Affected>,
    /// Mailboxes blocked by an endpoint fault with this cause (addresses `source -> destination`,
    /// or the source alone in a one-sided project).
    pub blocked: Vec<String>,
}

/// What a run found: totals, endpoint-wide faults and failures grouped by cause. The list of
/// mailboxes is not part of it: a run records each result in the state store as it arrives, and
/// the writers ([`JsonWriter`], [`HtmlWriter`]) take the mailboxes one at a time, so a report of a
/// million mailboxes is never held in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportHead {
    /// Totals.
    pub summary: Summary,
    /// Endpoint-wide faults, each found once.
    pub faults: Vec<Fault>,
    /// Failures grouped by cause, largest group first.
    pub groups: Vec<CauseGroup>,
}

/// A full report held in memory: the head and every mailbox (for small reports, tests and the
/// report of a programme of projects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Totals, faults and groups.
    #[serde(flatten)]
    pub head: ReportHead,
    /// The mailboxes, sorted by source then destination.
    pub mailboxes: Vec<MailboxResult>,
}

/// Inputs of [`Report::build`] besides the results.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Project name.
    pub project: String,
    /// Run id.
    pub run_id: String,
    /// Start (epoch ms).
    pub started_at_ms: i64,
    /// Line items in the project.
    pub project_items: u64,
    /// Items skipped as already verified.
    pub skipped: u64,
    /// Items selected for the run.
    pub selected: u64,
    /// Whether the run was stopped.
    pub cancelled: bool,
    /// Wall time.
    pub duration_ms: u64,
}

const UNDIAGNOSED: &str = "undiagnosed";

/// Sort key of a mailbox in every list of a report: source, then destination.
type Key = (String, Option<String>);

/// The failed steps of one cause: the cause as first seen (title, fix, references), and each
/// affected mailbox with its sort key.
type Failures = (Option<Cause>, Vec<(Key, Affected)>);

/// Builds a [`ReportHead`] from results given one at a time, in any order. It keeps only what
/// the head needs of failed and blocked mailboxes; a successful one costs three counters.
#[derive(Debug, Default)]
pub struct ReportBuilder {
    ok: u64,
    failed: u64,
    blocked: u64,
    /// Failed steps per cause id, with the cause of the first one (title, fix, references).
    failures: BTreeMap<String, Failures>,
    /// Mailbox ids per cause id, for counts of mailboxes rather than of sides.
    failed_ids: BTreeMap<String, BTreeSet<String>>,
    /// Blocked mailboxes per fault id (the fault's cause is known once the run has ended).
    blocked_by_fault: BTreeMap<String, BTreeMap<String, (Key, String)>>,
}

impl ReportBuilder {
    /// Mailboxes added so far that were ok, failed and blocked.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.ok, self.failed, self.blocked)
    }

    /// Takes one result into account.
    pub fn add(&mut self, m: &MailboxResult) {
        match m.status {
            Status::Ok => self.ok += 1,
            Status::Failed => self.failed += 1,
            Status::Blocked => self.blocked += 1,
        }
        let key = || (m.source.clone(), m.destination.clone());
        for s in &m.steps {
            match s.status {
                Status::Failed => {
                    let cause = s.causes.first();
                    let id = cause.map_or(UNDIAGNOSED, |c| c.id.as_str());
                    self.failed_ids
                        .entry(id.to_owned())
                        .or_default()
                        .insert(m.id.clone());
                    let entry = self
                        .failures
                        .entry(id.to_owned())
                        .or_insert_with(|| (cause.cloned(), Vec::new()));
                    entry.1.push((
                        key(),
                        Affected {
                            source: m.source.clone(),
                            destination: m.destination.clone(),
                            endpoint: s.endpoint.as_str().to_owned(),
                            step: s.name.as_str().to_owned(),
                            error: s.error.clone().unwrap_or_default(),
                        },
                    ));
                }
                Status::Blocked => {
                    let fault = s.blocked_by.clone().unwrap_or_default();
                    // One entry per mailbox, however many of its sides were blocked.
                    self.blocked_by_fault
                        .entry(fault)
                        .or_default()
                        .entry(m.id.clone())
                        .or_insert_with(|| (key(), m.label()));
                }
                Status::Ok => {}
            }
        }
    }

    /// The head of the report, once every result was added and the run's faults are known.
    pub fn finish(self, info: RunInfo, faults: Vec<Fault>) -> ReportHead {
        let total = self.ok + self.failed + self.blocked;
        let mut groups: BTreeMap<String, CauseGroup> = BTreeMap::new();
        let group = |groups: &mut BTreeMap<String, CauseGroup>, id: &str, cause: Option<&Cause>| {
            if !groups.contains_key(id) {
                groups.insert(
                    id.to_owned(),
                    CauseGroup {
                        id: id.to_owned(),
                        title: cause.map_or_else(
                            || "No cause could be named".to_owned(),
                            |c| c.title.clone(),
                        ),
                        fix: cause.map_or_else(
                            || {
                                vec![
                                    "Run `exgate explain` on the evidence, or re-run with -vv"
                                        .to_owned(),
                                ]
                            },
                            |c| c.fix.clone(),
                        ),
                        references: cause.map(|c| c.references.clone()).unwrap_or_default(),
                        failed: Vec::new(),
                        blocked: Vec::new(),
                    },
                );
            }
        };
        for (id, (cause, mut affected)) in self.failures {
            group(&mut groups, &id, cause.as_ref());
            affected.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(g) = groups.get_mut(&id) {
                g.failed = affected.into_iter().map(|(_, a)| a).collect();
            }
        }
        let mut blocked_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut blocked_keys: BTreeMap<String, Vec<(Key, String)>> = BTreeMap::new();
        for (fault_id, mailboxes) in self.blocked_by_fault {
            let cause = faults
                .iter()
                .find(|f| f.id == fault_id)
                .and_then(|f| f.causes.first());
            let id = cause.map_or(UNDIAGNOSED, |c| c.id.as_str()).to_owned();
            group(&mut groups, &id, cause);
            let ids = blocked_ids.entry(id.clone()).or_default();
            let keys = blocked_keys.entry(id).or_default();
            for (mailbox_id, entry) in mailboxes {
                if ids.insert(mailbox_id) {
                    keys.push(entry);
                }
            }
        }
        for (id, mut keys) in blocked_keys {
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(g) = groups.get_mut(&id) {
                g.blocked = keys.into_iter().map(|(_, label)| label).collect();
            }
        }
        let mut groups: Vec<CauseGroup> = groups.into_values().collect();
        groups.sort_by(|a, b| {
            (b.failed.len() + b.blocked.len())
                .cmp(&(a.failed.len() + a.blocked.len()))
                .then(a.id.cmp(&b.id))
        });
        // Counts are of mailboxes: a mailbox whose two sides failed for the same cause counts
        // once, and one that failed counts as failed, not also as blocked.
        let empty = BTreeSet::new();
        let causes = groups
            .iter()
            .map(|g| {
                let failed = self.failed_ids.get(&g.id).unwrap_or(&empty);
                let blocked = blocked_ids.get(&g.id).unwrap_or(&empty);
                CauseCount {
                    id: g.id.clone(),
                    failed: failed.len() as u64,
                    blocked: blocked.difference(failed).count() as u64,
                }
            })
            .collect();
        let secs = info.duration_ms as f64 / 1000.0;
        let rate_per_s = if secs > 0.0 { total as f64 / secs } else { 0.0 };
        ReportHead {
            summary: Summary {
                project: info.project,
                run_id: info.run_id,
                started_at_ms: info.started_at_ms,
                project_items: info.project_items,
                total,
                ok: self.ok,
                failed: self.failed,
                blocked: self.blocked,
                skipped: info.skipped,
                not_run: info.selected.saturating_sub(total),
                cancelled: info.cancelled,
                duration_ms: info.duration_ms,
                rate_per_s: (rate_per_s * 10.0).round() / 10.0,
                causes,
            },
            faults,
            groups,
        }
    }
}

impl ReportHead {
    /// `true` when nothing failed or was blocked.
    pub fn all_ok(&self) -> bool {
        self.summary.failed == 0 && self.summary.blocked == 0
    }
}

impl Report {
    /// Builds the report of a run from its results (in any order; sorted here by source).
    pub fn build(info: RunInfo, mut mailboxes: Vec<MailboxResult>, faults: Vec<Fault>) -> Self {
        mailboxes.sort_by(|a, b| {
            a.source
                .cmp(&b.source)
                .then(a.destination.cmp(&b.destination))
        });
        let mut builder = ReportBuilder::default();
        for m in &mailboxes {
            builder.add(m);
        }
        Report {
            head: builder.finish(info, faults),
            mailboxes,
        }
    }

    /// Joins the reports of several projects (a migration programme) into one named `name`.
    /// Mailbox and fault ids are prefixed with their project (`project/id`), so that each blocked
    /// mailbox stays attached to the fault that blocked it; run ids are joined with commas.
    pub fn combine(name: &str, started_at_ms: i64, duration_ms: u64, reports: Vec<Report>) -> Self {
        let mut info = RunInfo {
            project: name.to_owned(),
            started_at_ms,
            duration_ms,
            ..RunInfo::default()
        };
        let mut mailboxes = Vec::new();
        let mut faults = Vec::new();
        let mut run_ids = Vec::new();
        for report in reports {
            let ReportHead {
                summary,
                faults: report_faults,
                ..
            } = report.head;
            let project = summary.project;
            info.project_items += summary.project_items;
            info.skipped += summary.skipped;
            info.selected += summary.total + summary.not_run;
            info.cancelled |= summary.cancelled;
            run_ids.push(summary.run_id);
            for mut fault in report_faults {
                fault.id = format!("{project}/{}", fault.id);
                faults.push(fault);
            }
            for mut mailbox in report.mailboxes {
                mailbox.id = format!("{project}/{}", mailbox.id);
                for step in &mut mailbox.steps {
                    if let Some(by) = &step.blocked_by {
                        step.blocked_by = Some(format!("{project}/{by}"));
                    }
                }
                mailboxes.push(mailbox);
            }
        }
        info.run_id = run_ids.join(",");
        Report::build(info, mailboxes, faults)
    }

    /// The project of a mailbox or fault id in a [combined](Report::combine) report.
    pub fn project_of(id: &str) -> &str {
        id.split_once('/').map(|(p, _)| p).unwrap_or("")
    }

    /// `true` when nothing failed or was blocked.
    pub fn all_ok(&self) -> bool {
        self.head.all_ok()
    }

    /// The report as pretty JSON (what [`Report::write_json`] writes, without the newline).
    pub fn to_json(&self) -> String {
        // Serialising plain data structs cannot fail; an empty object is returned if it ever does.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Writes the report as pretty JSON, followed by a newline.
    pub fn write_json(&self, w: impl Write) -> std::io::Result<()> {
        let mut json = JsonWriter::begin(&self.head, w)?;
        for m in &self.mailboxes {
            json.mailbox(m)?;
        }
        json.finish()
    }
}

/// Writes a report as pretty JSON (`{"summary", "faults", "groups", "mailboxes"}`, the layout
/// `serde_json` gives [`Report`]) with the mailboxes given one at a time: the report of a
/// million mailboxes is written without being held in memory.
pub struct JsonWriter<W: Write> {
    w: std::io::BufWriter<W>,
    mailboxes: u64,
}

impl<W: Write> JsonWriter<W> {
    /// Writes the head and opens the mailbox list.
    pub fn begin(head: &ReportHead, w: W) -> std::io::Result<Self> {
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, w);
        w.write_all(b"{\n  \"summary\": ")?;
        write_indented(&mut w, &head.summary, b"\n  ")?;
        w.write_all(b",\n  \"faults\": ")?;
        write_indented(&mut w, &head.faults, b"\n  ")?;
        w.write_all(b",\n  \"groups\": ")?;
        write_indented(&mut w, &head.groups, b"\n  ")?;
        w.write_all(b",\n  \"mailboxes\": [")?;
        Ok(Self { w, mailboxes: 0 })
    }

    /// Writes one mailbox.
    pub fn mailbox(&mut self, m: &MailboxResult) -> std::io::Result<()> {
        self.w.write_all(if self.mailboxes == 0 {
            b"\n    "
        } else {
            b",\n    "
        })?;
        self.mailboxes += 1;
        write_indented(&mut self.w, m, b"\n    ")
    }

    /// Closes the list and the object, adds a newline and flushes.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.mailboxes > 0 {
            self.w.write_all(b"\n  ")?;
        }
        self.w.write_all(b"]\n}\n")?;
        self.w.flush()
    }
}

/// The line items of `project`, for [`Store::each_result`]: a result of a line that is no
/// longer in the project is not reported (eight bytes per line item).
pub struct ProjectItems(Vec<u64>);

impl ProjectItems {
    /// The ids of every line item of `project`.
    pub fn of(project: &Project) -> Self {
        let mut ids: Vec<u64> = project.mailboxes.iter().map(|m| id_key(&m.id)).collect();
        ids.sort_unstable();
        Self(ids)
    }

    /// `true` when `id` is a line item of the project.
    pub fn contains(&self, id: &str) -> bool {
        self.0.binary_search(&id_key(id)).is_ok()
    }
}

fn id_key(id: &str) -> u64 {
    crate::store::key_of(id)
}

fn output(source: std::io::Error) -> StoreError {
    StoreError::Output { source }
}

/// Writes the JSON report of a run of `project`: `head`, then the mailboxes `listing` names,
/// read from `store` one at a time. Returns how many mailboxes were written.
pub async fn write_json_from(
    store: &Store,
    project: &Project,
    head: &ReportHead,
    listing: Listing,
    w: impl Write,
    progress: &mut dyn Progress,
) -> Result<u64, StoreError> {
    let mut json = JsonWriter::begin(head, w).map_err(output)?;
    let n = stream_rows(store, project, head, listing, progress, &mut |m| {
        json.mailbox(m)
    })
    .await?;
    json.finish().map_err(output)?;
    Ok(n)
}

/// Writes the HTML report of a run of `project` like [`write_json_from`].
pub async fn write_html_from(
    store: &Store,
    project: &Project,
    head: &ReportHead,
    listing: Listing,
    w: impl Write,
    progress: &mut dyn Progress,
) -> Result<u64, StoreError> {
    let mut html = HtmlWriter::begin(head, project.destination.is_some(), w).map_err(output)?;
    let n = stream_rows(store, project, head, listing, progress, &mut |m| {
        html.mailbox(m)
    })
    .await?;
    html.finish().map_err(output)?;
    Ok(n)
}

/// Rows of a report written between two calls of [`Progress::report_rows`].
const PROGRESS_EVERY: u64 = 512;

/// Gives `row` every mailbox of the report, from the store, reporting progress.
async fn stream_rows(
    store: &Store,
    project: &Project,
    head: &ReportHead,
    listing: Listing,
    progress: &mut dyn Progress,
    row: &mut dyn FnMut(&MailboxResult) -> std::io::Result<()>,
) -> Result<u64, StoreError> {
    let items = ProjectItems::of(project);
    let mut rows = 0u64;
    let n = store
        .each_result(
            &project.name,
            &head.summary.run_id,
            listing,
            &|id| items.contains(id),
            &mut |m| {
                rows += 1;
                if rows.is_multiple_of(PROGRESS_EVERY) {
                    progress.report_rows(rows);
                }
                row(&m)
            },
        )
        .await?;
    progress.report_rows(n);
    Ok(n)
}

impl Report {
    /// The full report of a run of `project` in memory: `head` and the mailboxes `listing`
    /// names, read from `store` (for small projects, tests and the report of a programme).
    pub async fn load(
        store: &Store,
        project: &Project,
        head: ReportHead,
        listing: Listing,
    ) -> Result<Self, StoreError> {
        let items = ProjectItems::of(project);
        let mut mailboxes = Vec::new();
        store
            .each_result(
                &project.name,
                &head.summary.run_id,
                listing,
                &|id| items.contains(id),
                &mut |m| {
                    mailboxes.push(m);
                    Ok(())
                },
            )
            .await?;
        Ok(Report { head, mailboxes })
    }
}

/// Writes `value` as pretty JSON with every line after the first prefixed: the result is what a
/// pretty serialiser gives for it nested at that depth. JSON strings never hold a raw newline,
/// so every newline of the output is between tokens.
fn write_indented(
    w: &mut impl Write,
    value: &impl Serialize,
    newline: &[u8],
) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::from)?;
    let mut lines = text.split(|b| *b == b'\n');
    if let Some(first) = lines.next() {
        w.write_all(first)?;
    }
    for line in lines {
        w.write_all(newline)?;
        w.write_all(line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
