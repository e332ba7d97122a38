//! Injected faults and latency (`[[faults]]` in a scenario): a status with or without
//! `Retry-After`, a hang, a connection dropped mid-answer, or added latency, on one kind of
//! endpoint, for a window of its requests and a fraction of them. On the HTTP planes (token,
//! authorize and device-code, EWS, Graph, Autodiscover) per request; on SMTP, IMAP and POP per
//! connection, where a fault is a hang, a reset, latency before the greeting, or another
//! greeting (`reply`, e.g. `421 4.3.2 ...`) after which the server closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Which endpoints a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultEndpoint {
    /// `/{tenant}/oauth2[/v2.0]/token`.
    Token,
    /// `/{tenant}/oauth2[/v2.0]/authorize` and `.../devicecode`.
    Authorize,
    /// `/EWS/Exchange.asmx`, on premises too.
    Ews,
    /// `/v1.0/...` and `/beta/...`.
    Graph,
    /// Any Autodiscover path.
    Autodiscover,
    /// Every HTTP request.
    Any,
    /// Each SMTP submission connection.
    Smtp,
    /// Each IMAP4 connection.
    Imap,
    /// Each POP3 connection.
    Pop,
}

impl FaultEndpoint {
    fn matches(self, path: &str) -> bool {
        let l = path.to_ascii_lowercase();
        match self {
            FaultEndpoint::Token => l.contains("/oauth2/") && l.ends_with("/token"),
            FaultEndpoint::Authorize => {
                l.contains("/oauth2/") && (l.ends_with("/authorize") || l.ends_with("/devicecode"))
            }
            FaultEndpoint::Ews => l.contains("/ews/"),
            FaultEndpoint::Graph => l.starts_with("/v1.0/") || l.starts_with("/beta/"),
            FaultEndpoint::Autodiscover => l.contains("autodiscover"),
            FaultEndpoint::Any => !l.starts_with("/_exgate/"),
            FaultEndpoint::Smtp | FaultEndpoint::Imap | FaultEndpoint::Pop => false,
        }
    }

    /// A line protocol's connections, not HTTP requests.
    fn is_line(self) -> bool {
        matches!(
            self,
            FaultEndpoint::Smtp | FaultEndpoint::Imap | FaultEndpoint::Pop
        )
    }
}

/// `[[faults]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    endpoint: FaultEndpoint,
    status: Option<u16>,
    retry_after: Option<u64>,
    #[serde(default)]
    hang: bool,
    #[serde(default)]
    reset: bool,
    reply: Option<String>,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    jitter_ms: u64,
    rate: Option<f64>,
    #[serde(default)]
    from: u64,
    count: Option<u64>,
}

/// What a fault does to a request it applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Answer with this status (and `Retry-After` seconds, when given) and an empty body.
    Status {
        /// The status.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Never answer.
    Hang,
    /// Drop the connection without an answer.
    Reset,
    /// Only the added latency: the real answer follows.
    Delay,
    /// SMTP, IMAP, POP: this line instead of the greeting, then the server closes.
    Reply(String),
}

/// One injected fault.
#[derive(Clone, Debug)]
pub struct Fault {
    /// The endpoints it applies to.
    pub endpoint: FaultEndpoint,
    /// What it does.
    pub action: FaultAction,
    /// Added before the answer (fixed part).
    pub latency: Duration,
    /// Added before the answer (uniformly random part, 0..jitter).
    pub jitter: Duration,
    /// The fraction of the requests in the window it applies to, spread evenly (deterministic).
    pub rate: f64,
    /// The first matching request it applies to (0-based).
    pub from: u64,
    /// How many matching requests from `from` (`None`: all later ones).
    pub count: Option<u64>,
    seen: Arc<AtomicU64>,
}

impl Fault {
    /// Validates a `[[faults]]` table: `Err((field, message, fix))`.
    pub(crate) fn from_raw(r: &RawFault) -> Result<Fault, (&'static str, String, &'static str)> {
        let chosen = [r.status.is_some(), r.hang, r.reset, r.reply.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if chosen > 1 {
            return Err((
                "status",
                "a fault is one of status, reply, hang or reset".into(),
                "write one [[faults]] table per behaviour",
            ));
        }
        if r.endpoint.is_line() && r.status.is_some() {
            return Err((
                "status",
                "SMTP, IMAP and POP have no HTTP status".into(),
                "use reply = \"421 4.3.2 Service not available\" (SMTP), \"* BYE ...\" (IMAP) or \"-ERR ...\" (POP)",
            ));
        }
        if let Some(reply) = &r.reply {
            if !r.endpoint.is_line() {
                return Err((
                    "reply",
                    "reply is the greeting of an SMTP, IMAP or POP connection".into(),
                    "use status for HTTP endpoints, or endpoint = \"smtp\", \"imap\" or \"pop\"",
                ));
            }
            if reply.is_empty() || reply.len() > 512 || reply.chars().any(|c| c.is_control()) {
                return Err((
                    "reply",
                    "the reply must be one line of at most 512 characters".into(),
                    "write the line without CR or LF, e.g. \"421 4.3.2 Service not available\"",
                ));
            }
        }
        if let Some(s) = r.status
            && !(100..=599).contains(&s)
        {
            return Err((
                "status",
                format!("{s} is not an HTTP status"),
                "use 100-599",
            ));
        }
        if r.retry_after.is_some() && r.status.is_none() {
            return Err((
                "retry_after",
                "retry_after goes with a status".into(),
                "add status = 429 (or 503)",
            ));
        }
        let rate = r.rate.unwrap_or(1.0);
        if !(rate > 0.0 && rate <= 1.0) {
            return Err((
                "rate",
                format!("{rate} is not in (0, 1]"),
                "use a fraction such as 0.25",
            ));
        }
        let action = match (r.status, r.hang, r.reset, &r.reply) {
            (Some(status), _, _, _) => FaultAction::Status {
                status,
                retry_after: r.retry_after,
            },
            (None, _, _, Some(reply)) => FaultAction::Reply(reply.clone()),
            (None, true, _, None) => FaultAction::Hang,
            (None, false, true, None) => FaultAction::Reset,
            (None, false, false, None) if r.latency_ms > 0 || r.jitter_ms > 0 => FaultAction::Delay,
            (None, false, false, None) => {
                return Err((
                    "endpoint",
                    "the fault does nothing".into(),
                    "add status (HTTP), reply (SMTP/IMAP/POP), hang = true, reset = true or latency_ms",
                ));
            }
        };
        Ok(Fault {
            endpoint: r.endpoint,
            action,
            latency: Duration::from_millis(r.latency_ms),
            jitter: Duration::from_millis(r.jitter_ms),
            rate,
            from: r.from,
            count: r.count,
            seen: Arc::default(),
        })
    }

    /// Whether the fault applies to the `n`-th matching request (0-based).
    fn applies(&self, n: u64) -> bool {
        if n < self.from || self.count.is_some_and(|c| n >= self.from + c) {
            return false;
        }
        // Exactly `rate` of the window, spread evenly: request k applies when floor(k * rate)
        // steps up.
        let k = (n - self.from) as f64;
        ((k + 1.0) * self.rate).floor() > (k * self.rate).floor()
    }
}

/// The middleware: the first fault whose endpoint matches and that applies to this request acts.
pub(crate) async fn layer(
    State(faults): State<Arc<Vec<Fault>>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let mut acting = None;
    for f in faults.iter().filter(|f| f.endpoint.matches(&path)) {
        let n = f.seen.fetch_add(1, Ordering::Relaxed);
        if acting.is_none() && f.applies(n) {
            acting = Some(f.clone());
        }
    }
    let Some(f) = acting else {
        return next.run(req).await;
    };
    let wait = f.latency
        + if f.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(
                u64::try_from(f.jitter.as_nanos()).unwrap_or(u64::MAX) / 1000
                    * (rand_unit_thousandths()),
            )
        };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match f.action {
        FaultAction::Delay => next.run(req).await,
        FaultAction::Hang => std::future::pending().await,
        FaultAction::Status {
            status,
            retry_after,
        } => {
            let mut resp = StatusCode::from_u16(status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
            }
            resp
        }
        // Line endpoints never match an HTTP path.
        FaultAction::Reply(_) => next.run(req).await,
        FaultAction::Reset => {
            // The accept loop sees this marker and drops the connection without an answer.
            let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            resp.extensions_mut().insert(InjectedReset);
            resp
        }
    }
}

/// The hook a line server (SMTP, IMAP, POP) asks on each connection: the first of `faults` for
/// `endpoint` that applies to this connection (counted per fault, as requests are). `None` when
/// no fault names the endpoint.
pub(crate) fn connect_hook(
    faults: &[Fault],
    endpoint: FaultEndpoint,
) -> exgate_emulator_exchange::OnConnect {
    exgate_emulator_exchange::OnConnect(hook(faults, endpoint))
}

fn hook(
    faults: &[Fault],
    endpoint: FaultEndpoint,
) -> Option<exgate_emulator_exchange::ConnectHook> {
    let mine: Vec<Fault> = faults
        .iter()
        .filter(|f| f.endpoint == endpoint)
        .cloned()
        .collect();
    if mine.is_empty() {
        return None;
    }
    Some(Arc::new(move || {
        let mut acting = None;
        for f in &mine {
            let n = f.seen.fetch_add(1, Ordering::Relaxed);
            if acting.is_none() && f.applies(n) {
                acting = Some(f);
            }
        }
        let f = acting?;
        let delay = f.latency + jitter(f.jitter);
        use exgate_emulator_exchange::ConnectAction as A;
        let action = match &f.action {
            FaultAction::Hang => A::Hang,
            FaultAction::Reset => A::Reset,
            FaultAction::Reply(text) => A::Reply(text.clone()),
            FaultAction::Delay | FaultAction::Status { .. } => A::Proceed,
        };
        Some(exgate_emulator_exchange::ConnectFault { action, delay })
    }))
}

fn jitter(j: Duration) -> Duration {
    if j.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_nanos(
            u64::try_from(j.as_nanos()).unwrap_or(u64::MAX) / 1000 * rand_unit_thousandths(),
        )
    }
}

/// Marks a response the accept loop must not send: it drops the connection instead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InjectedReset;

/// A number in 0..1000 from the clock's nanoseconds (jitter needs no better randomness).
fn rand_unit_thousandths() -> u64 {
    u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    ) % 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(rate: f64, from: u64, count: Option<u64>) -> Fault {
        Fault {
            endpoint: FaultEndpoint::Any,
            action: FaultAction::Hang,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            rate,
            from,
            count,
            seen: Arc::default(),
        }
    }

    #[test]
    fn windows_and_rates() {
        let f = fault(1.0, 2, Some(3));
        let hits: Vec<u64> = (0..10).filter(|n| f.applies(*n)).collect();
        assert_eq!(hits, [2, 3, 4]);
        let f = fault(0.25, 0, None);
        assert_eq!((0..100).filter(|n| f.applies(*n)).count(), 25);
        let f = fault(0.5, 0, Some(10));
        assert_eq!((0..100).filter(|n| f.applies(*n)).count(), 5);
    }

    #[test]
    fn endpoints() {
        assert!(FaultEndpoint::Token.matches("/contoso.com/oauth2/v2.0/token"));
        assert!(FaultEndpoint::Authorize.matches("/common/oauth2/v2.0/devicecode"));
        assert!(FaultEndpoint::Ews.matches("/onprem/ex01/EWS/Exchange.asmx"));
        assert!(FaultEndpoint::Graph.matches("/v1.0/users/a@b.c"));
        assert!(FaultEndpoint::Autodiscover.matches("/autodiscover/autodiscover.xml"));
        assert!(!FaultEndpoint::Any.matches("/_exgate/stats"));
        assert!(!FaultEndpoint::Token.matches("/v1.0/users"));
    }

    fn raw(text: &str) -> Result<Fault, (&'static str, String, &'static str)> {
        let r: RawFault = toml::from_str(text).expect("toml");
        Fault::from_raw(&r)
    }

    #[test]
    fn line_faults_are_validated_and_played_per_connection() {
        assert_eq!(
            raw("endpoint = \"smtp\"\nstatus = 503").unwrap_err().0,
            "status"
        );
        assert_eq!(
            raw("endpoint = \"ews\"\nreply = \"421 busy\"")
                .unwrap_err()
                .0,
            "reply"
        );
        assert_eq!(
            raw("endpoint = \"imap\"\nreply = \"* BYE a\\r\\nb\"")
                .unwrap_err()
                .0,
            "reply"
        );
        assert_eq!(
            raw("endpoint = \"pop\"\nreply = \"-ERR x\"\nhang = true")
                .unwrap_err()
                .0,
            "status"
        );
        let faults = vec![
            raw("endpoint = \"smtp\"\nreply = \"421 4.3.2 busy\"\ncount = 2").unwrap(),
            raw("endpoint = \"pop\"\nreset = true\nfrom = 1\ncount = 1").unwrap(),
            raw("endpoint = \"imap\"\nlatency_ms = 5").unwrap(),
        ];
        let smtp = connect_hook(&faults, FaultEndpoint::Smtp)
            .0
            .expect("smtp hook");
        let seen: Vec<_> = (0..3).map(|_| smtp().map(|f| f.action)).collect();
        use exgate_emulator_exchange::ConnectAction as A;
        assert_eq!(
            seen,
            [
                Some(A::Reply("421 4.3.2 busy".into())),
                Some(A::Reply("421 4.3.2 busy".into())),
                None
            ]
        );
        let pop = connect_hook(&faults, FaultEndpoint::Pop)
            .0
            .expect("pop hook");
        let seen: Vec<_> = (0..3).map(|_| pop().map(|f| f.action)).collect();
        assert_eq!(seen, [None, Some(A::Reset), None]);
        let imap = connect_hook(&faults, FaultEndpoint::Imap)
            .0
            .expect("imap hook");
        let f = imap().expect("delay");
        assert_eq!(f.action, A::Proceed);
        assert_eq!(f.delay, Duration::from_millis(5));
        // No fault for HTTP paths, and no hook without a fault.
        assert!(!FaultEndpoint::Smtp.matches("/EWS/Exchange.asmx"));
        assert!(connect_hook(&faults[..1], FaultEndpoint::Pop).0.is_none());
    }
}
