//! Reports: the result model of a run and its three renderings (text, JSON, HTML).
//!
//! [`Report::build`] groups failures by their most likely cause, so each fix is given once with
//! the mailboxes it concerns; mailboxes blocked by an endpoint-wide fault are counted in the group
//! of that fault's cause. The JSON shape is `{"summary": {...}, "faults": [...], "groups": [...],
//! "mailboxes": [{"source", "destination", "ok", "status", "steps": [{"name", "endpoint", "ok",
//! "ms", "causes": [{"id", ...}]}]}]}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Cause, Fault, MailboxResult, Status};

mod html;
mod text;

pub use html::{escape as escape_html, render_html};
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

/// A full report of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Totals.
    pub summary: Summary,
    /// Endpoint-wide faults, each found once.
    pub faults: Vec<Fault>,
    /// Failures grouped by cause, largest group first.
    pub groups: Vec<CauseGroup>,
    /// Every mailbox verified in this run, every step.
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

impl Report {
    /// Builds the report of a run from its results (in any order; sorted here by source).
    pub fn build(info: RunInfo, mut mailboxes: Vec<MailboxResult>, faults: Vec<Fault>) -> Self {
        mailboxes.sort_by(|a, b| {
            a.source
                .cmp(&b.source)
                .then(a.destination.cmp(&b.destination))
        });
        let count = |s: Status| mailboxes.iter().filter(|m| m.status == s).count() as u64;
        let (ok, failed, blocked) = (
            count(Status::Ok),
            count(Status::Failed),
            count(Status::Blocked),
        );
        let total = mailboxes.len() as u64;

        let mut groups: BTreeMap<String, CauseGroup> = BTreeMap::new();
        let group_for = |groups: &mut BTreeMap<String, CauseGroup>, cause: Option<&Cause>| {
            let id = cause
                .map(|c| c.id.clone())
                .unwrap_or_else(|| UNDIAGNOSED.to_owned());
            groups.entry(id.clone()).or_insert_with(|| CauseGroup {
                id,
                title: cause
                    .map(|c| c.title.clone())
                    .unwrap_or_else(|| "No cause could be named".to_owned()),
                fix: cause.map(|c| c.fix.clone()).unwrap_or_else(|| {
                    vec!["Run `exgate explain` on the evidence, or re-run with -vv".to_owned()]
                }),
                references: cause.map(|c| c.references.clone()).unwrap_or_default(),
                failed: Vec::new(),
                blocked: Vec::new(),
            });
        };
        // Mailboxes (by id) per cause, for counts of mailboxes rather than of sides.
        let mut failed_ids: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
        let mut blocked_ids: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for m in &mailboxes {
            for s in &m.steps {
                match s.status {
                    Status::Failed => {
                        let cause = s.causes.first();
                        group_for(&mut groups, cause);
                        let id = cause.map(|c| c.id.as_str()).unwrap_or(UNDIAGNOSED);
                        failed_ids
                            .entry(id.to_owned())
                            .or_default()
                            .insert(m.id.as_str());
                        if let Some(g) = groups.get_mut(id) {
                            g.failed.push(Affected {
                                source: m.source.clone(),
                                destination: m.destination.clone(),
                                endpoint: s.endpoint.as_str().to_owned(),
                                step: s.name.as_str().to_owned(),
                                error: s.error.clone().unwrap_or_default(),
                            });
                        }
                    }
                    Status::Blocked => {
                        let fault = faults.iter().find(|f| Some(&f.id) == s.blocked_by.as_ref());
                        let cause = fault.and_then(|f| f.causes.first());
                        group_for(&mut groups, cause);
                        let id = cause.map(|c| c.id.as_str()).unwrap_or(UNDIAGNOSED);
                        // One entry per mailbox, however many of its sides were blocked.
                        if let Some(g) = groups.get_mut(id)
                            && blocked_ids
                                .entry(id.to_owned())
                                .or_default()
                                .insert(m.id.as_str())
                        {
                            g.blocked.push(m.label());
                        }
                    }
                    Status::Ok => {}
                }
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
        let empty = std::collections::BTreeSet::new();
        let causes = groups
            .iter()
            .map(|g| {
                let failed = failed_ids.get(&g.id).unwrap_or(&empty);
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
        Report {
            summary: Summary {
                project: info.project,
                run_id: info.run_id,
                started_at_ms: info.started_at_ms,
                project_items: info.project_items,
                total,
                ok,
                failed,
                blocked,
                skipped: info.skipped,
                not_run: info.selected.saturating_sub(total),
                cancelled: info.cancelled,
                duration_ms: info.duration_ms,
                rate_per_s: (rate_per_s * 10.0).round() / 10.0,
                causes,
            },
            faults,
            groups,
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
            let project = report.summary.project;
            info.project_items += report.summary.project_items;
            info.skipped += report.summary.skipped;
            info.selected += report.summary.total + report.summary.not_run;
            info.cancelled |= report.summary.cancelled;
            run_ids.push(report.summary.run_id);
            for mut fault in report.faults {
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
        self.summary.failed == 0 && self.summary.blocked == 0
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data structs cannot fail; an empty object is returned if it ever does.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Writes the report as pretty JSON, followed by a newline, without building it in memory
    /// first (the report of 100,000 mailboxes is over 100 MB of JSON).
    pub fn write_json(&self, w: impl std::io::Write) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, w);
        serde_json::to_writer_pretty(&mut w, self).map_err(std::io::Error::from)?;
        w.write_all(b"\n")?;
        w.flush()
    }
}

#[cfg(test)]
mod tests;
