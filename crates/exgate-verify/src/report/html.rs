//! The HTML report: one self-contained page (inline CSS, inline SVG chart, inline script, no
//! external resource) with the summary, the causes grouped with their fix, and a searchable,
//! filterable table of every mailbox.
//!
//! Every value taken from the results is escaped. Summary numbers carry `id="summary-…"` and
//! `data-value` attributes so tools and tests can read them.

use std::fmt::Write as _;
use std::io::Write;

use super::{Report, ReportHead};
use crate::model::{MailboxResult, Status};

pub use exgate_wire::markup::escape;

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1f24;background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin-top:2rem}
.muted{color:#59636e}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #d1d9e0;border-radius:8px;padding:.75rem 1rem;min-width:7rem}
.card .n{font-size:1.8rem;font-weight:600;display:block}
.ok{color:#1a7f37}.failed{color:#cf222e}.blocked{color:#9a6700}
.group{border:1px solid #d1d9e0;border-left:4px solid #cf222e;border-radius:6px;padding:.5rem 1rem;margin:.75rem 0}
.group h3{margin:.25rem 0;font-size:1rem}.fix{white-space:pre-wrap;background:#f6f8fa;padding:.5rem;border-radius:4px}
.fault{border-left-color:#9a6700}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #d1d9e0;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}code{font-size:.85em}
.controls{display:flex;gap:.5rem;margin:.5rem 0}input,select{font:inherit;padding:.25rem .5rem}
details summary{cursor:pointer}
"#;

const SCRIPT: &str = r#"
(function(){
  var q=document.getElementById('filter'),st=document.getElementById('status-filter');
  var rows=Array.prototype.slice.call(document.querySelectorAll('#mailboxes tbody tr'));
  var shown=document.getElementById('rows-shown');
  function apply(){
    var text=(q.value||'').toLowerCase(),want=st.value,n=0;
    rows.forEach(function(r){
      var hit=(!text||r.getAttribute('data-search').indexOf(text)>=0)&&(!want||r.getAttribute('data-status')===want);
      r.style.display=hit?'':'none'; if(hit){n++;}
    });
    shown.textContent=String(n); shown.setAttribute('data-value',String(n));
  }
  q.addEventListener('input',apply); st.addEventListener('change',apply);
  var hash=decodeURIComponent((location.hash||'').slice(1));
  if(hash.indexOf('status=')===0){st.value=hash.slice(7);} 
  apply();
})();
"#;

fn card(out: &mut String, id: &str, label: &str, value: u64, class: &str) {
    let _ = write!(
        out,
        r#"<div class="card"><span class="n {class}" id="summary-{id}" data-value="{value}">{value}</span><span class="muted">{label}</span></div>"#
    );
}

/// A horizontal stacked bar of ok / failed / blocked, and one bar per cause.
fn chart(report: &ReportHead) -> String {
    let s = &report.summary;
    let total = (s.ok + s.failed + s.blocked).max(1) as f64;
    let width = 600.0;
    let mut svg = String::new();
    let cause_rows = report.summary.causes.len().min(12);
    let height = 50 + cause_rows * 24;
    let _ = write!(
        svg,
        r#"<svg id="summary-chart" role="img" aria-label="ok {ok}, failed {failed}, blocked {blocked}" width="{w}" height="{height}" viewBox="0 0 {w} {height}" xmlns="http://www.w3.org/2000/svg">"#,
        ok = s.ok,
        failed = s.failed,
        blocked = s.blocked,
        w = width + 200.0,
    );
    let mut x = 0.0;
    for (n, color, label) in [
        (s.ok, "#2da44e", "ok"),
        (s.failed, "#cf222e", "failed"),
        (s.blocked, "#bf8700", "blocked"),
    ] {
        let w = width * n as f64 / total;
        if n > 0 {
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="0" width="{w:.1}" height="28" fill="{color}" data-series="{label}" data-value="{n}"><title>{label}: {n}</title></rect>"#
            );
        }
        x += w;
    }
    let max = report
        .summary
        .causes
        .iter()
        .map(|c| c.failed + c.blocked)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    for (i, c) in report.summary.causes.iter().take(cause_rows).enumerate() {
        let y = 44 + i * 24;
        let n = c.failed + c.blocked;
        let w = (width - 200.0) * n as f64 / max;
        let _ = write!(
            svg,
            r##"<text x="0" y="{ty}" font-size="12" fill="#1b1f24">{id}</text><rect x="260" y="{y}" width="{w:.1}" height="16" fill="#cf222e" data-cause="{id}" data-value="{n}"></rect><text x="{tx:.1}" y="{ty}" font-size="12" fill="#59636e">{n}</text>"##,
            ty = y + 12,
            id = escape(&c.id),
            tx = 266.0 + w,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Renders the report as one self-contained HTML page.
pub fn render_html(report: &Report) -> String {
    let mut out = Vec::with_capacity(4096 + report.mailboxes.len() * 400);
    let two_sided = report.mailboxes.iter().any(|m| m.destination.is_some());
    let written = HtmlWriter::begin(&report.head, two_sided, &mut out).and_then(|mut html| {
        for m in &report.mailboxes {
            html.mailbox(m)?;
        }
        html.finish()
    });
    // Writing to memory cannot fail.
    debug_assert!(written.is_ok());
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the HTML page with the mailboxes given one at a time (the table of a million
/// mailboxes is written without being held in memory).
pub struct HtmlWriter<W: Write> {
    w: std::io::BufWriter<W>,
    two_sided: bool,
    rows: u64,
}

impl<W: Write> HtmlWriter<W> {
    /// Writes everything before the mailbox rows; `two_sided` says whether the table has a
    /// destination column.
    pub fn begin(report: &ReportHead, two_sided: bool, w: W) -> std::io::Result<Self> {
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, w);
        w.write_all(head(report, two_sided).as_bytes())?;
        Ok(Self {
            w,
            two_sided,
            rows: 0,
        })
    }

    /// Writes the row of one mailbox.
    pub fn mailbox(&mut self, m: &MailboxResult) -> std::io::Result<()> {
        self.rows += 1;
        self.w.write_all(row(m, self.two_sided).as_bytes())
    }

    /// Closes the table and the page, and flushes. The count of rows shown is set by the page's
    /// script; the number of rows is also written under the table.
    pub fn finish(mut self) -> std::io::Result<()> {
        write!(
            self.w,
            r#"</tbody></table><p class="muted"><span id="rows-total" data-value="{n}">{n}</span> mailboxes listed</p><script>{SCRIPT}</script></body></html>"#,
            n = self.rows
        )?;
        self.w.flush()
    }
}

fn head(report: &ReportHead, two_sided: bool) -> String {
    let s = &report.summary;
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>exgate verify: {project}</title><style>{STYLE}</style></head><body>"#,
        project = escape(&s.project)
    );
    let _ = write!(
        out,
        r#"<h1>exgate verify: {}</h1><p class="muted">run <code>{}</code> · {} mailboxes in the project · {:.1} s · {:.1} mailboxes/s{}</p>"#,
        escape(&s.project),
        escape(&s.run_id),
        s.project_items,
        s.duration_ms as f64 / 1000.0,
        s.rate_per_s,
        if s.cancelled {
            " · <strong>stopped before the end</strong>"
        } else {
            ""
        }
    );
    out.push_str(r#"<div class="cards">"#);
    card(&mut out, "total", "verified", s.total, "");
    card(&mut out, "ok", "ok", s.ok, "ok");
    card(&mut out, "failed", "failed", s.failed, "failed");
    card(&mut out, "blocked", "blocked", s.blocked, "blocked");
    card(&mut out, "skipped", "skipped (ok before)", s.skipped, "");
    out.push_str("</div>");
    out.push_str(&chart(report));

    if !report.faults.is_empty() {
        out.push_str("<h2>Endpoint-wide faults</h2>");
        for f in &report.faults {
            let _ = write!(
                out,
                r#"<div class="group fault" data-fault="{id}"><h3>{side} side: {step} failed for {mb}</h3><p>{err}</p><p class="muted">Every other {side} mailbox was marked blocked instead of being tried.</p></div>"#,
                id = escape(&f.id),
                side = f.endpoint,
                step = f.step,
                mb = escape(&f.first_mailbox),
                err = escape(&f.error),
            );
        }
    }

    out.push_str("<h2>Failures by cause</h2>");
    if report.groups.is_empty() {
        out.push_str(r#"<p class="ok">No failures.</p>"#);
    }
    for g in &report.groups {
        let _ = write!(
            out,
            r#"<div class="group" data-cause="{id}"><h3><code>{id}</code> {title} <span class="muted">({f} failed, {b} blocked)</span></h3><div class="fix">{fix}</div>"#,
            id = escape(&g.id),
            title = escape(&g.title),
            f = g.failed.len(),
            b = g.blocked.len(),
            fix = escape(&g.fix.join("\n")),
        );
        for r in &g.references {
            let _ = write!(out, r#"<p class="muted">see: {}</p>"#, escape(r));
        }
        if !g.failed.is_empty() {
            let _ = write!(
                out,
                "<details><summary>{} failed mailboxes</summary><ul>",
                g.failed.len()
            );
            for a in &g.failed {
                let _ = write!(
                    out,
                    "<li>{}: {} {}: {}</li>",
                    escape(&a.label().replace(" -> ", " → ")),
                    escape(&a.endpoint),
                    escape(&a.step),
                    escape(&a.error)
                );
            }
            out.push_str("</ul></details>");
        }
        if !g.blocked.is_empty() {
            let _ = write!(
                out,
                "<details><summary>{} blocked mailboxes</summary><ul>",
                g.blocked.len()
            );
            for b in &g.blocked {
                let _ = write!(out, "<li>{}</li>", escape(b));
            }
            out.push_str("</ul></details>");
        }
        out.push_str("</div>");
    }

    let _ = write!(
        out,
        r#"<h2>Mailboxes</h2><div class="controls"><input id="filter" type="search" placeholder="Search address, step, cause…" aria-label="search"><select id="status-filter" aria-label="status"><option value="">all</option><option value="ok">ok</option><option value="failed">failed</option><option value="blocked">blocked</option></select><span class="muted"><span id="rows-shown" data-value=""></span> shown</span></div>"#
    );
    let _ = write!(
        out,
        r#"<table id="mailboxes"><thead><tr><th>source</th>{}<th>status</th><th>steps</th><th>causes</th><th>ms</th></tr></thead><tbody>"#,
        if two_sided {
            "<th>destination</th>"
        } else {
            ""
        }
    );
    out
}

fn row(m: &MailboxResult, two_sided: bool) -> String {
    let mut out = String::with_capacity(400);
    let causes: Vec<&str> = m
        .steps
        .iter()
        .filter_map(|s| s.causes.first().map(|c| c.id.as_str()))
        .collect();
    let steps: Vec<String> = m
        .steps
        .iter()
        .map(|s| {
            let mark = match s.status {
                Status::Ok => "✓",
                Status::Failed => "✗",
                Status::Blocked => "⊘",
            };
            format!("{} {}.{}", mark, s.endpoint, s.name)
        })
        .collect();
    let search = format!(
        "{} {} {} {} {}",
        m.source,
        m.destination.as_deref().unwrap_or_default(),
        m.status.as_str(),
        steps.join(" "),
        causes.join(" ")
    )
    .to_lowercase();
    let _ = write!(
        out,
        r#"<tr data-status="{st}" data-search="{search}"><td>{src}</td>{dst}<td class="{st}">{st}{earlier}</td><td>{steps}</td><td>{causes}</td><td>{ms}</td></tr>"#,
        st = m.status.as_str(),
        earlier = m
            .earlier_run
            .as_deref()
            .map(|run| format!(
                r#" <span class="muted" data-earlier-run="{run}">(earlier run {run})</span>"#,
                run = escape(run)
            ))
            .unwrap_or_default(),
        search = escape(&search),
        src = escape(&m.source),
        dst = if two_sided {
            format!(
                "<td>{}</td>",
                escape(m.destination.as_deref().unwrap_or_default())
            )
        } else {
            String::new()
        },
        steps = escape(&steps.join(" · ")),
        causes = escape(&causes.join(", ")),
        ms = m.ms,
    );
    out
}
