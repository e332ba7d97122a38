//! The readiness report as one self-contained HTML page (no scripts, no external resources),
//! every text escaped.

use exgate_wire::markup::escape;

use crate::checks::{Report, Severity, Status};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}\
h1{font-size:1.4em}.ready{color:#176c2c}.notready{color:#a11}\
details{border:1px solid #ddd;border-radius:4px;margin:.5em 0;padding:.4em .8em}\
summary{cursor:pointer;font-weight:600}.pass{color:#176c2c}.fail{color:#a11}.warning{color:#8a5a00}\
.skip{color:#666}code,pre{background:#f5f5f5;padding:.1em .3em;white-space:pre-wrap;word-break:break-all}\
li{margin:.3em 0}";

/// Renders `report` as HTML; `title` names what was checked (file names, namespaces).
pub fn render(report: &Report, title: &str) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str(&format!(
        "<title>HMA readiness: {}</title><style>{STYLE}</style></head><body>",
        escape(title)
    ));
    h.push_str(&section(report, title));
    h.push_str("</body></html>\n");
    h
}

/// The report as one `<section>` (with its own scoped style) to place in another page.
pub fn section(report: &Report, title: &str) -> String {
    let mut h = String::from("<section class=\"hma\">");
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    h.push_str(&format!(
        "<h1>Hybrid Modern Authentication readiness: <span class=\"{}\">{}</span></h1>\
         <p>{} &middot; {} errors, {} warnings, {} checks not run</p>",
        if report.ready { "ready" } else { "notready" },
        if report.ready { "READY" } else { "NOT READY" },
        escape(title),
        count(Severity::Error),
        count(Severity::Warning),
        report
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::NotRun(_)))
            .count()
    ));
    for c in &report.checks {
        let (class, mark) = match &c.status {
            Status::Pass => ("pass", "PASS"),
            Status::Fail => ("fail", "FAIL"),
            Status::Warning => ("warning", "WARN"),
            Status::NotRun(_) => ("skip", "NOT RUN"),
        };
        let open = if matches!(c.status, Status::Fail) {
            " open"
        } else {
            ""
        };
        h.push_str(&format!(
            "<details{open}><summary><span class=\"{class}\">[{mark}]</span> {}</summary>",
            escape(c.title)
        ));
        if let Status::NotRun(why) = &c.status {
            h.push_str(&format!("<p class=\"skip\">Not run: {}</p>", escape(why)));
        }
        if !c.findings.is_empty() {
            h.push_str("<ul>");
            for f in &c.findings {
                let sev = match f.severity {
                    Severity::Error => "fail",
                    Severity::Warning => "warning",
                    Severity::Info => "skip",
                };
                h.push_str(&format!(
                    "<li><span class=\"{sev}\">{}</span> <b>{}</b> <code>{}</code><ul>",
                    match f.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                        Severity::Info => "info",
                    },
                    escape(&f.subject),
                    escape(&f.id)
                ));
                for e in &f.evidence {
                    h.push_str(&format!("<li>read: <code>{}</code></li>", escape(e)));
                }
                h.push_str(&format!(
                    "<li>fix: <pre>{}</pre></li></ul></li>",
                    escape(&f.fix)
                ));
            }
            h.push_str("</ul>");
        }
        if !c.passed.is_empty() {
            h.push_str("<ul class=\"pass\">");
            for p in &c.passed {
                h.push_str(&format!("<li>{}</li>", escape(p)));
            }
            h.push_str("</ul>");
        }
        h.push_str("</details>");
    }
    if !report.unrecognised.is_empty() {
        h.push_str(&format!(
            "<details><summary>Not read ({})</summary><ul>",
            report.unrecognised.len()
        ));
        for u in &report.unrecognised {
            h.push_str(&format!("<li><code>{}</code></li>", escape(u)));
        }
        h.push_str("</ul></details>");
    }
    h.push_str("</section>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Org;

    #[test]
    fn text_is_escaped_and_the_verdict_shown() {
        let mut org = Org::default();
        org.add(
            "<x>.txt",
            "[PS] C:\\> Get-OrganizationConfig | fl OAuth2ClientProfileEnabled\nOAuth2ClientProfileEnabled : False\n<script>alert(1)</script>\n",
        );
        let r = crate::check(&org, time::macros::datetime!(2026-12-07 12:00));
        let h = render(&r, "<x>.txt");
        assert!(h.contains("NOT READY"));
        assert!(h.contains("Set-OrganizationConfig -OAuth2ClientProfileEnabled $true"));
        assert!(!h.contains("<script>"), "unescaped text");
        assert!(h.contains("&lt;script&gt;"));
        assert!(h.contains("&lt;x&gt;.txt"));
    }
}
