//! `exgate redact IN [OUT]`: removes secrets from a HAR file or a raw capture.

use std::io::{BufRead, BufReader, BufWriter, Cursor, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use exgate_diagnose::har::redact_har;
use exgate_diagnose::redact::{TokenMode, redact_text};
use exgate_diagnose::{InputKind, detect_input};

use super::explain::{open_input, read_prefix};
use crate::exit;

const EXAMPLES: &str = "\
Examples:
  exgate redact capture.har shared.har     Strip secrets from a HAR before sharing it
  exgate redact trace.txt > clean.txt      A raw HTTP capture or log, to standard output
  exgate redact capture.har out.har --tokens remove
                                           Drop bearer tokens entirely instead of keeping claims

Removed: Authorization and Proxy-Authorization credentials (the scheme stays), Cookie and
Set-Cookie values, passwords, client_secret, client_assertion, refresh/access/id tokens and
authorization codes in bodies and URLs. By default a bearer token is replaced by an unsigned
token holding only its diagnostic claims, so `exgate explain` of the output gives the same causes.";

/// What to do with bearer tokens.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Tokens {
    /// Keep an unsigned claim summary (audience, roles, scopes, times); it cannot be replayed.
    Summary,
    /// Remove the token entirely.
    Remove,
}

/// Remove secrets from a HAR file or a raw capture before sharing it.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The HAR file or capture to redact (`-` for standard input).
    pub input: PathBuf,
    /// Where to write the result (default: standard output). Must differ from the input.
    pub output: Option<PathBuf>,
    /// What to do with bearer tokens.
    #[arg(long, value_enum, default_value = "summary")]
    pub tokens: Tokens,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(out) = &args.output
        && args.input.as_os_str() != "-"
        && (out == &args.input
            || std::fs::canonicalize(out).ok() == std::fs::canonicalize(&args.input).ok()
                && out.exists())
    {
        anyhow::bail!(
            "the output {} is the input: write to another file",
            out.display()
        );
    }
    let mode = match args.tokens {
        Tokens::Summary => TokenMode::Summary,
        Tokens::Remove => TokenMode::Remove,
    };
    let (mut reader, name) = open_input(Some(&args.input))?;
    let prefix = read_prefix(&mut reader, &name)?;
    let writer: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let stream = Cursor::new(prefix.clone()).chain(reader);
    match detect_input(&prefix) {
        InputKind::Har => {
            let stats = redact_har(stream, writer, mode)
                .with_context(|| format!("{name} is not a readable HAR file"))?;
            eprintln!(
                "redacted {} value(s) in {} entries",
                stats.values_redacted, stats.entries
            );
        }
        InputKind::Jwt | InputKind::Text => {
            redact_lines(stream, writer, mode).with_context(|| format!("cannot redact {name}"))?;
        }
    }
    Ok(exit::ok())
}

/// Redacts text block by block (blocks end at blank lines or after 1 MiB), in bounded memory.
fn redact_lines(r: impl Read, mut w: impl Write, mode: TokenMode) -> anyhow::Result<()> {
    let mut block = String::new();
    let mut reader = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n > 0 {
            block.push_str(&String::from_utf8_lossy(&line));
        }
        let end_of_block =
            n == 0 || line.iter().all(|b| b.is_ascii_whitespace()) || block.len() > 1 << 20;
        if end_of_block && !block.is_empty() {
            w.write_all(redact_text(&block, mode).as_bytes())?;
            block.clear();
        }
        if n == 0 {
            break;
        }
    }
    w.flush()?;
    Ok(())
}
