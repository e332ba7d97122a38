//! Explains and redacts a generated HAR of N MiB (default 1024) streamed from memory, and reports
//! throughput and peak resident memory (VmHWM from /proc, Linux).
//!
//! `cargo run --release -p exgate-diagnose --example har_memory -- 1024`

use std::io::{Read, Write};
use std::time::Instant;

use exgate_diagnose::har::{HarOptions, explain_har, redact_har};
use exgate_diagnose::redact::TokenMode;

#[path = "../benches/support/har_gen.rs"]
mod har_gen;

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Counts bytes written and drops them.
struct Sink(u64);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts bytes read through it.
struct Counting<R>(R, u64);
impl<R: Read> Read for Counting<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(b)?;
        self.1 += n as u64;
        Ok(n)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let before = peak_rss_kib().unwrap_or(0);

    let mut input = Counting(har_gen::GeneratedHar::new(mib * 1024 * 1024), 0);
    let start = Instant::now();
    let report = explain_har(std::io::BufReader::new(&mut input), HarOptions::default())?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = input.1;
    println!(
        "explain: {:.0} MiB, {} entries, {} failures ({} kept), top cause {:?}: {:.1} s, {:.1} MB/s",
        bytes as f64 / 1048576.0,
        report.entries,
        report.failures.len() + report.failures_not_kept,
        report.failures.len(),
        report.causes.first().map(|c| c.id.as_str()),
        secs,
        bytes as f64 / 1e6 / secs
    );
    let after_explain = peak_rss_kib().unwrap_or(0);
    drop(report);

    let mut input = Counting(har_gen::GeneratedHar::new(mib * 1024 * 1024), 0);
    let mut sink = Sink(0);
    let start = Instant::now();
    let stats = redact_har(
        std::io::BufReader::new(&mut input),
        &mut sink,
        TokenMode::Summary,
    )?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "redact:  {:.0} MiB in, {:.0} MiB out, {} values redacted: {:.1} s, {:.1} MB/s",
        input.1 as f64 / 1048576.0,
        sink.0 as f64 / 1048576.0,
        stats.values_redacted,
        secs,
        input.1 as f64 / 1e6 / secs
    );
    let after_redact = peak_rss_kib().unwrap_or(0);
    println!(
        "peak resident memory (VmHWM): start {} KiB, after explain {} KiB, after redact {} KiB",
        before, after_explain, after_redact
    );
    Ok(())
}
