//! The terminal summary: totals, endpoint faults, then failures grouped by cause with the fix
//! once per group and the mailboxes affected.

use std::fmt::Write;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use super::ReportHead;

/// Mailboxes listed per group before "and N more".
const LIST_LIMIT: usize = 20;

/// Renders the report for a terminal (plain text; no colour codes).
pub fn render_text(report: &ReportHead) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "exgate verify: project {} (run {})",
        s.project, s.run_id
    );
    let mut totals = Table::new();
    totals
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "verified", "ok", "failed", "blocked", "skipped", "time", "rate",
        ])
        .add_row(vec![
            s.total.to_string(),
            s.ok.to_string(),
            s.failed.to_string(),
            s.blocked.to_string(),
            s.skipped.to_string(),
            format!("{:.1} s", s.duration_ms as f64 / 1000.0),
            format!("{:.1}/s", s.rate_per_s),
        ]);
    let _ = writeln!(out, "{totals}");
    if s.cancelled {
        let _ = writeln!(
            out,
            "Stopped before the end: {} selected mailboxes were not verified; run again to continue.",
            s.not_run
        );
    }
    if s.skipped > 0 {
        let _ = writeln!(
            out,
            "{} mailboxes were verified ok before and are unchanged (use --all to check them again).",
            s.skipped
        );
    }
    for f in &report.faults {
        let cause = f
            .causes
            .first()
            .map(|c| format!(" [{}]", c.id))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\nEndpoint-wide fault on the {} side{cause}: {} failed for {}: {}",
            f.endpoint, f.step, f.first_mailbox, f.error
        );
        let _ = writeln!(
            out,
            "  Every other {} mailbox was marked blocked instead of being tried.",
            f.endpoint
        );
    }
    if report.groups.is_empty() {
        if s.total > 0 {
            let _ = writeln!(out, "\nEvery verified mailbox is reachable on both sides.");
        }
        return out;
    }
    let _ = writeln!(out, "\nFailures by cause:");
    for g in &report.groups {
        let _ = writeln!(
            out,
            "\n[{}] {}  ({} failed, {} blocked)",
            g.id,
            g.title,
            g.failed.len(),
            g.blocked.len()
        );
        for (i, line) in g.fix.iter().flat_map(|s| s.lines()).enumerate() {
            let lead = if i == 0 { "  fix: " } else { "       " };
            let _ = writeln!(out, "{lead}{line}");
        }
        for r in &g.references {
            let _ = writeln!(out, "  see: {r}");
        }
        for a in g.failed.iter().take(LIST_LIMIT) {
            let _ = writeln!(
                out,
                "  - {}: {} {}: {}",
                a.label(),
                a.endpoint,
                a.step,
                a.error
            );
        }
        if g.failed.len() > LIST_LIMIT {
            let _ = writeln!(out, "  … and {} more failed", g.failed.len() - LIST_LIMIT);
        }
        if !g.blocked.is_empty() {
            let shown: Vec<&str> = g.blocked.iter().take(5).map(String::as_str).collect();
            let more = g.blocked.len().saturating_sub(shown.len());
            let _ = write!(out, "  blocked: {}", shown.join(", "));
            if more > 0 {
                let _ = write!(out, " … and {more} more");
            }
            let _ = writeln!(out);
        }
    }
    out
}
