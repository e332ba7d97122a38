//! Counters for Prometheus (`/metrics`, text format 0.0.4) and the health endpoint.
//!
//! Hand-written: a handful of counters, one gauge and one histogram rendered as text; the
//! `prometheus` and `metrics` crates bring registries and global state this does not need.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the upstream latency histogram.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The gateway's counters. Labels are account names and fixed words, never addresses typed
/// by a client before it signed in.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String, &'static str), u64>>,
    connections: AtomicU64,
    open: AtomicI64,
    queue: AtomicI64,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    started: AtomicU64,
}

impl Metrics {
    /// A new set, started now.
    pub fn new() -> Metrics {
        let m = Metrics::default();
        m.started.store(
            u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0),
            Ordering::Relaxed,
        );
        m
    }

    /// Adds one to `name{account, outcome}`.
    pub fn count(&self, name: &'static str, account: &str, outcome: &'static str) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((name, account.to_owned(), outcome)).or_default() += 1;
    }

    /// A client connection opened.
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection closed.
    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the number of messages waiting in the spool.
    pub fn set_queue_depth(&self, n: usize) {
        self.queue
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// The number of messages waiting in the spool.
    pub fn queue_depth(&self) -> i64 {
        self.queue.load(Ordering::Relaxed)
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Records the duration of one upstream operation (`smtp_submit`, `imap_open`, `token`).
    pub fn observe(&self, op: &'static str, seconds: f64) {
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.entry(op).or_insert_with(|| Histogram {
            counts: vec![0; BUCKETS.len()],
            ..Histogram::default()
        });
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The value of a counter (tests, status).
    pub fn get(&self, name: &'static str, account: &str, outcome: &'static str) -> u64 {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.get(&(name, account.to_owned(), outcome))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = "";
        for ((name, account, outcome), v) in c.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE exgate_gateway_{name}_total counter");
                last = name;
            }
            let _ = writeln!(
                out,
                "exgate_gateway_{name}_total{{account=\"{}\",outcome=\"{outcome}\"}} {v}",
                escape(account)
            );
        }
        drop(c);
        let _ = writeln!(out, "# TYPE exgate_gateway_connections_total counter");
        let _ = writeln!(
            out,
            "exgate_gateway_connections_total {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE exgate_gateway_open_connections gauge");
        let _ = writeln!(
            out,
            "exgate_gateway_open_connections {}",
            self.open_connections()
        );
        let _ = writeln!(out, "# TYPE exgate_gateway_queue_depth gauge");
        let _ = writeln!(out, "exgate_gateway_queue_depth {}", self.queue_depth());
        let _ = writeln!(out, "# TYPE exgate_gateway_start_time_seconds gauge");
        let _ = writeln!(
            out,
            "exgate_gateway_start_time_seconds {}",
            self.started.load(Ordering::Relaxed)
        );
        let l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        if !l.is_empty() {
            let _ = writeln!(out, "# TYPE exgate_gateway_upstream_seconds histogram");
        }
        for (op, h) in l.iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "exgate_gateway_upstream_seconds_bucket{{op=\"{op}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "exgate_gateway_upstream_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "exgate_gateway_upstream_seconds_sum{{op=\"{op}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "exgate_gateway_upstream_seconds_count{{op=\"{op}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The HTTP router: `GET /metrics`, `GET /health`.
pub fn router(metrics: std::sync::Arc<Metrics>) -> axum::Router {
    use axum::routing::get;
    let m = metrics.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let m = metrics.clone();
                async move {
                    axum::Json(serde_json::json!({
                        "status": "ok",
                        "queue_depth": m.queue_depth(),
                        "open_connections": m.open_connections(),
                    }))
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.count("auth", "scanner", "accepted");
        m.count("auth", "scanner", "accepted");
        m.count("messages", "a\"b", "delivered");
        m.observe("smtp_submit", 0.02);
        let t = m.render();
        assert!(
            t.contains("exgate_gateway_auth_total{account=\"scanner\",outcome=\"accepted\"} 2"),
            "{t}"
        );
        assert!(t.contains("account=\"a\\\"b\""), "{t}");
        assert!(
            t.contains("exgate_gateway_upstream_seconds_bucket{op=\"smtp_submit\",le=\"0.025\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("exgate_gateway_upstream_seconds_bucket{op=\"smtp_submit\",le=\"0.01\"} 0"),
            "{t}"
        );
    }
}
