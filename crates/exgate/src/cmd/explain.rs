//! `exgate explain [FILE|-]`: names the cause and the fix of a failure.

use std::io::{BufReader, Cursor, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use exgate_diagnose::har::{HarOptions, HarReport, explain_har};
use exgate_diagnose::jwt::{Finding, Severity};
use exgate_diagnose::{Diagnosis, InputKind, RankedCause, detect_input, explain_text};

use crate::cmd::flags::JsonArgs;
use crate::exit;

const EXAMPLES: &str = "\
Examples:
  exgate explain error.txt                 An exception message or a tool's error line
  pbpaste | exgate explain                 Whatever is on the clipboard (raw HTTP, JSON, SOAP, JWT)
  exgate explain capture.har --json        Every failing exchange of a browser/Fiddler HAR, as JSON
  exgate explain response.txt --now 1700000000
                                           Check token expiry against a fixed time

Input: free error text, a raw HTTP response or request/response pair, an Entra error JSON body, a
SOAP body, a JWT, or a HAR file. Secrets in the input are never printed.
--json prints {\"causes\": [{\"id\", \"confidence\", \"title\", \"evidence\", \"fix\", \"check\", ...}]}.
Exit codes: 0 no failure found, 1 causes found, 2 the input could not be read.";

/// Explain a failure: error text, HTTP response, Entra JSON, SOAP body, JWT or HAR file.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The file to explain; `-` or nothing reads standard input.
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub output: JsonArgs,
    /// "Now" as Unix seconds for token expiry checks (default: the clock; HAR entries use their own time).
    #[arg(long, value_name = "SECONDS")]
    pub now: Option<i64>,
}

/// Largest non-HAR input read, in bytes.
const TEXT_LIMIT: u64 = 64 * 1024 * 1024;

pub(crate) fn open_input(input: Option<&PathBuf>) -> anyhow::Result<(Box<dyn Read>, String)> {
    match input {
        Some(p) if p.as_os_str() != "-" => {
            let f = std::fs::File::open(p)
                .with_context(|| format!("cannot open {}: check the path", p.display()))?;
            Ok((Box::new(BufReader::new(f)), p.display().to_string()))
        }
        _ => Ok((Box::new(std::io::stdin().lock()), "standard input".into())),
    }
}

/// Reads up to 64 KiB to tell a HAR from other input.
pub(crate) fn read_prefix(r: &mut dyn Read, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(64 * 1024);
    r.take(64 * 1024)
        .read_to_end(&mut prefix)
        .with_context(|| format!("cannot read {name}"))?;
    Ok(prefix)
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (mut reader, name) = open_input(args.input.as_ref())?;
    let prefix = read_prefix(&mut reader, &name)?;
    let color = exit::color_enabled();
    match detect_input(&prefix) {
        InputKind::Har => {
            let stream = Cursor::new(prefix).chain(reader);
            let report = explain_har(stream, HarOptions { now: args.now })
                .with_context(|| format!("{name} is not a readable HAR file"))?;
            if args.output.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_har(&report, color);
            }
            Ok(
                if report.failures.is_empty() && report.failures_not_kept == 0 {
                    exit::ok()
                } else {
                    exit::found_failures()
                },
            )
        }
        InputKind::Jwt | InputKind::Text => {
            let mut bytes = prefix;
            reader
                .take(TEXT_LIMIT)
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {name}"))?;
            let text = String::from_utf8_lossy(&bytes);
            if text.trim().is_empty() {
                anyhow::bail!(
                    "{name} is empty: paste an error message, an HTTP response, a JWT or a HAR file"
                );
            }
            let d = explain_text(&text, Some(args.now.unwrap_or_else(now_secs)));
            if args.output.json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print_diagnosis(&d, color, "");
            }
            Ok(if d.causes.is_empty() {
                exit::ok()
            } else {
                exit::found_failures()
            })
        }
    }
}

fn bold(s: &str, color: bool) -> String {
    if color {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

fn print_cause(i: usize, c: &RankedCause, color: bool, indent: &str) {
    println!(
        "{indent}{}. {}  {}  (confidence {:.0}%)",
        i + 1,
        bold(&c.id, color),
        c.title,
        c.confidence * 100.0
    );
    if !c.evidence.is_empty() {
        println!("{indent}   Evidence:");
        for e in &c.evidence {
            println!("{indent}     - {e}");
        }
    }
    println!("{indent}   Why: {}", c.explanation.replace('\n', " "));
    if let Some(check) = &c.check {
        println!("{indent}   Tells it apart: {check}");
    }
    println!("{indent}   Fix:");
    for (n, f) in c.fix.iter().enumerate() {
        println!("{indent}     {}. {f}", n + 1);
    }
    for r in &c.references {
        println!("{indent}   See: {r}");
    }
}

fn print_findings(findings: &[Finding], indent: &str) {
    if findings.is_empty() {
        return;
    }
    println!("{indent}Token:");
    for f in findings {
        let tag = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        println!("{indent}  [{tag}] {}", f.message);
    }
}

pub(crate) fn print_diagnosis(d: &Diagnosis, color: bool, indent: &str) {
    if d.causes.is_empty() {
        println!("{indent}No failure recognised.");
        print_findings(&d.token_findings, indent);
        return;
    }
    if d.causes.len() > 1 {
        println!(
            "{indent}{} possible causes, most likely first:",
            d.causes.len()
        );
    }
    for (i, c) in d.causes.iter().enumerate() {
        print_cause(i, c, color, indent);
    }
    print_findings(&d.token_findings, indent);
    if !d.token_checks.is_empty() {
        println!("{indent}Checked on the token:");
        for c in &d.token_checks {
            println!(
                "{indent}  [{}] {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
    }
    if !d.decisive_questions.is_empty() {
        println!("{indent}To decide between these, find out:");
        for q in &d.decisive_questions {
            println!("{indent}  - {q}");
        }
    }
}

fn print_har(r: &HarReport, color: bool) {
    println!(
        "{} entries, {} failing, {} completed Bearer handshake(s).",
        r.entries,
        r.failures.len() + r.failures_not_kept,
        r.handshakes_completed
    );
    for f in &r.failures {
        println!();
        println!(
            "{} #{} {} {} -> {}",
            bold("Exchange", color),
            f.index,
            f.method,
            f.url,
            if f.status == 0 {
                "no response".to_owned()
            } else {
                f.status.to_string()
            }
        );
        if let Some(t) = &f.token {
            println!("  Bearer token: {t}");
        }
        if f.diagnosis.causes.is_empty() {
            println!(
                "  No catalog entry matches this failure; the status and headers above are all there is."
            );
            print_findings(&f.diagnosis.token_findings, "  ");
        } else {
            print_diagnosis(&f.diagnosis, color, "  ");
        }
    }
    if r.failures_not_kept > 0 {
        println!(
            "\n{} more failing exchanges not shown.",
            r.failures_not_kept
        );
    }
}
