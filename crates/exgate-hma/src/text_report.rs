//! The readiness report as text: a tree of the checks with their findings, what was read and
//! the fix; then what was not read.

use crate::checks::{Report, Severity, Status};

/// Control characters of pasted text (terminal escapes) shown escaped, never sent to a terminal.
fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Renders `r` as the text `exgate hma check` prints.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let count = |s: Severity| r.findings.iter().filter(|f| f.severity == s).count();
    let not_run = r
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::NotRun(_)))
        .count();
    o.push_str(&format!(
        "Hybrid Modern Authentication readiness: {} ({} errors, {} warnings, {} checks not run)\n",
        if r.ready { "READY" } else { "NOT READY" },
        count(Severity::Error),
        count(Severity::Warning),
        not_run
    ));
    let catalog = exgate_diagnose::builtin_catalog().ok();
    for c in &r.checks {
        let mark = match &c.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warning => "WARN",
            Status::NotRun(_) => "SKIP",
        };
        o.push_str(&format!("\n[{mark}] {}\n", c.title));
        if let Status::NotRun(why) = &c.status {
            o.push_str(&format!("       not run: {why}\n"));
        }
        for f in &c.findings {
            let title = catalog
                .and_then(|cat| cat.cause(&f.id))
                .map_or(String::new(), |d| format!(": {}", d.title));
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            o.push_str(&format!(
                "       {sev} {} ({}{title})\n",
                clean(&f.subject),
                f.id
            ));
            for e in &f.evidence {
                o.push_str(&format!("         read: {}\n", clean(e)));
            }
            o.push_str(&format!("         fix:  {}\n", clean(&f.fix)));
        }
        for p in &c.passed {
            o.push_str(&format!("       ok {}\n", clean(p)));
        }
    }
    if !r.unrecognised.is_empty() {
        o.push_str(&format!("\nNot read ({}):\n", r.unrecognised.len()));
        for u in r.unrecognised.iter().take(20) {
            o.push_str(&format!("  {}\n", clean(u)));
        }
        if r.unrecognised.len() > 20 {
            o.push_str(&format!("  ... and {} more\n", r.unrecognised.len() - 20));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_escapes_in_pasted_text_are_shown_escaped() {
        let mut org = crate::Org::default();
        org.add("x.txt", "\u{1b}[31mhello\n");
        let r = crate::check(&org, time::macros::datetime!(2026-12-07 12:00));
        let text = super::render(&r);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("\\u{1b}[31mhello"), "{text}");
    }
}
