//! Retry decisions, shared by the Graph, EWS and Autodiscover clients.
//!
//! Rules, in order:
//! 1. 401 and 403 are never retried. (exchangelib's fault-tolerant policy retries 401 as if it
//!    were throttling, which hides a real credential fault for up to an hour.)
//! 2. For a retryable failure (see 3), a server-advertised wait (`Retry-After` seconds or HTTP-date on any status,
//!    `BackOffMilliseconds` in EWS `MessageXml`) is honoured plus up to 10 % jitter. If it is
//!    longer than the cap the request is not retried: retrying earlier would only be refused
//!    again, and the evidence keeps the advertised wait.
//! 3. Otherwise 429, 5xx (for EWS 500: only transient response codes), transient EWS response
//!    codes, connect failures and timeouts back off exponentially from `base_delay` with
//!    jitter, never beyond `max_delay`.
//! 4. A 302 to IIS's `genericerrorpage.htm` counts as transient (as in exchangelib).
//! 5. DNS and TLS failures, other 4xx and everything else are not retried.

use std::time::{Duration, SystemTime};

use crate::evidence::{ErrorEvidence, TransportKind};

/// EWS response codes that mean "try again later".
pub const TRANSIENT_EWS_CODES: &[&str] = &[
    "ErrorServerBusy",
    "ErrorInternalServerTransientError",
    "ErrorMailboxStoreUnavailable",
    "ErrorConnectionFailed",
    "ErrorTimeoutExpired",
    "ErrorExceededConnectionCount",
    "ErrorTooManyObjectsOpened",
    "ErrorMailboxMoveInProgress",
];

/// How a client retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// First exponential back-off step.
    pub base_delay: Duration,
    /// Longest single wait; a server asking for more is not retried.
    pub max_delay: Duration,
    /// Randomise waits (full jitter on computed back-off, +0..10 % on server-advertised waits).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            jitter: true,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    Retry {
        /// The wait.
        after: Duration,
        /// Why the request is retried.
        reason: &'static str,
    },
    /// Give up and report the error.
    Stop {
        /// Why the request is not retried.
        reason: &'static str,
    },
}

impl RetryPolicy {
    /// Never retry.
    pub fn fail_fast() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Decides after `attempt` (1-based) failed with `evidence`. `now` is used for HTTP-date
    /// `Retry-After`; `unit` is a random number in `[0, 1)` used for jitter.
    pub fn decide(
        &self,
        attempt: u32,
        evidence: &ErrorEvidence,
        now: SystemTime,
        unit: f64,
    ) -> RetryDecision {
        if matches!(evidence.status, Some(401 | 403)) {
            return RetryDecision::Stop {
                reason: "401/403 are never retried",
            };
        }
        if !is_retryable(evidence) {
            return RetryDecision::Stop {
                reason: "not a transient failure",
            };
        }
        if attempt >= self.max_attempts {
            return RetryDecision::Stop {
                reason: "retry attempts exhausted",
            };
        }
        let unit = if self.jitter {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if let Some(wait) = advertised_wait(evidence, now) {
            if wait > self.max_delay {
                return RetryDecision::Stop {
                    reason: "server asks to wait longer than the cap",
                };
            }
            let extra = wait.mul_f64(0.1 * unit);
            return RetryDecision::Retry {
                after: (wait + extra).min(self.max_delay),
                reason: "server-advertised back-off",
            };
        }
        let exp = attempt.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let after = if self.jitter {
            full.mul_f64(0.5 + 0.5 * unit)
        } else {
            full
        };
        RetryDecision::Retry {
            after,
            reason: "transient failure, exponential back-off",
        }
    }
}

/// The wait the server asked for: `Retry-After` (seconds or HTTP-date) or `BackOffMilliseconds`.
pub fn advertised_wait(evidence: &ErrorEvidence, now: SystemTime) -> Option<Duration> {
    if let Some(wait) = evidence
        .message_xml_value("BackOffMilliseconds")
        .and_then(exgate_wire::retry_after::back_off_milliseconds)
    {
        return Some(wait);
    }
    exgate_wire::retry_after::parse(evidence.header("retry-after")?, now)
}

fn is_retryable(ev: &ErrorEvidence) -> bool {
    if let Some(t) = ev.transport {
        return matches!(
            t,
            TransportKind::Connect | TransportKind::Timeout | TransportKind::Io
        );
    }
    let code = ev.service_code();
    let transient_code = code.is_some_and(|c| TRANSIENT_EWS_CODES.contains(&c))
        || ev
            .message_xml_value("InnerErrorResponseCode")
            .is_some_and(|c| TRANSIENT_EWS_CODES.contains(&c));
    match ev.status {
        Some(429) => true,
        // IIS answers some EWS failures with a redirect to its generic error page; exchangelib
        // treats that as transient too.
        Some(302) => ev
            .header("location")
            .is_some_and(|l| l.to_ascii_lowercase().contains("genericerrorpage")),
        // EWS answers request-level faults with 500: only transient codes are worth retrying.
        Some(500) if ev.soap_fault.is_some() => transient_code,
        Some(s) if (500..600).contains(&s) => true,
        // Per-item EWS errors in a 200 answer.
        Some(200) => transient_code,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{EwsResponseError, SoapFault};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decisions_respect_the_cap_and_never_retry_auth_failures(
            status in 100u16..600,
            retry_after in proptest::option::of("[0-9]{1,7}|[ -~]{0,30}"),
            back_off in proptest::option::of("[0-9]{1,9}"),
            attempt in 1u32..10,
            unit in 0.0f64..1.0,
            max_ms in 1u64..100_000,
        ) {
            let mut headers = Vec::new();
            if let Some(r) = &retry_after {
                headers.push(("Retry-After".to_owned(), r.clone()));
            }
            let mut e = ErrorEvidence { status: Some(status), headers, ..ErrorEvidence::default() };
            if let Some(b) = back_off {
                e.soap_fault = Some(SoapFault {
                    response_code: Some("ErrorServerBusy".into()),
                    message_xml: vec![("BackOffMilliseconds".into(), b)],
                    ..SoapFault::default()
                });
            }
            let p = RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(max_ms),
                jitter: true,
            };
            match p.decide(attempt, &e, now(), unit) {
                RetryDecision::Retry { after, .. } => {
                    prop_assert!(after <= p.max_delay);
                    prop_assert!(status != 401 && status != 403);
                    prop_assert!(attempt < p.max_attempts);
                }
                RetryDecision::Stop { .. } => {}
            }
        }
    }

    fn ev(status: u16, headers: &[(&str, &str)]) -> ErrorEvidence {
        ErrorEvidence {
            status: Some(status),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ErrorEvidence::default()
        }
    }

    fn fault(code: &str, back_off: Option<&str>) -> ErrorEvidence {
        let mut e = ev(500, &[]);
        e.soap_fault = Some(SoapFault {
            faultcode: format!("a:{code}"),
            faultstring: "x".into(),
            response_code: Some(code.into()),
            message: None,
            message_xml: back_off
                .map(|b| vec![("BackOffMilliseconds".to_owned(), b.to_owned())])
                .unwrap_or_default(),
        });
        e
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            jitter: false,
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn after(d: RetryDecision) -> Duration {
        match d {
            RetryDecision::Retry { after, .. } => after,
            RetryDecision::Stop { reason } => panic!("expected a retry, got stop: {reason}"),
        }
    }

    #[test]
    fn never_retries_401_or_403_even_with_retry_after() {
        for s in [401, 403] {
            let e = ev(s, &[("Retry-After", "1")]);
            assert!(matches!(
                policy().decide(1, &e, now(), 0.5),
                RetryDecision::Stop { .. }
            ));
        }
    }

    #[test]
    fn honours_retry_after_seconds_on_429_and_503() {
        for s in [429, 503] {
            let e = ev(s, &[("Retry-After", "7")]);
            assert_eq!(
                after(policy().decide(1, &e, now(), 0.9)),
                Duration::from_secs(7)
            );
        }
    }

    #[test]
    fn honours_retry_after_http_date() {
        let when = httpdate::fmt_http_date(now() + Duration::from_secs(12));
        let e = ev(503, &[("retry-after", &when)]);
        assert_eq!(
            after(policy().decide(1, &e, now(), 0.0)),
            Duration::from_secs(12)
        );
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(12));
        let e = ev(503, &[("retry-after", &past)]);
        assert_eq!(after(policy().decide(1, &e, now(), 0.0)), Duration::ZERO);
    }

    #[test]
    fn honours_back_off_milliseconds_of_error_server_busy() {
        let e = fault("ErrorServerBusy", Some("1500"));
        assert_eq!(
            after(policy().decide(1, &e, now(), 0.3)),
            Duration::from_millis(1500)
        );
        // The same value inside a per-item response message (HTTP 200).
        let mut e = ev(200, &[]);
        e.ews_response = Some(EwsResponseError {
            response_class: "Error".into(),
            response_code: "ErrorServerBusy".into(),
            message_text: None,
            message_xml: vec![("BackOffMilliseconds".into(), "250".into())],
        });
        assert_eq!(
            after(policy().decide(1, &e, now(), 0.3)),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn stops_when_the_server_asks_for_more_than_the_cap() {
        let e = fault("ErrorServerBusy", Some("297749"));
        assert!(matches!(
            policy().decide(1, &e, now(), 0.0),
            RetryDecision::Stop { reason } if reason.contains("cap")
        ));
    }

    #[test]
    fn jitter_adds_at_most_ten_percent_to_server_waits() {
        let p = RetryPolicy {
            jitter: true,
            ..policy()
        };
        let e = ev(429, &[("Retry-After", "10")]);
        let a = after(p.decide(1, &e, now(), 0.999));
        assert!(
            a >= Duration::from_secs(10) && a <= Duration::from_secs(11),
            "{a:?}"
        );
        assert_eq!(after(p.decide(1, &e, now(), 0.0)), Duration::from_secs(10));
    }

    #[test]
    fn retries_5xx_with_capped_exponential_back_off() {
        let e = ev(502, &[]);
        assert_eq!(
            after(policy().decide(1, &e, now(), 0.0)),
            Duration::from_millis(100)
        );
        assert_eq!(
            after(policy().decide(3, &e, now(), 0.0)),
            Duration::from_millis(400)
        );
        let p = RetryPolicy {
            max_attempts: 100,
            ..policy()
        };
        assert_eq!(after(p.decide(40, &e, now(), 0.0)), Duration::from_secs(30));
        let jittered = RetryPolicy {
            jitter: true,
            ..policy()
        };
        let a = after(jittered.decide(2, &e, now(), 0.0));
        assert_eq!(
            a,
            Duration::from_millis(100),
            "full jitter halves at unit 0"
        );
    }

    #[test]
    fn retries_transient_ews_codes_but_not_permanent_faults() {
        let e = fault("ErrorInternalServerTransientError", None);
        assert!(matches!(
            policy().decide(1, &e, now(), 0.0),
            RetryDecision::Retry { .. }
        ));
        let e = fault("ErrorInvalidExchangeImpersonationHeaderData", None);
        assert!(matches!(
            policy().decide(1, &e, now(), 0.0),
            RetryDecision::Stop { .. }
        ));
        // ErrorInternalServerError wrapping an inner ErrorServerBusy.
        let mut e = ev(200, &[]);
        e.ews_response = Some(EwsResponseError {
            response_class: "Error".into(),
            response_code: "ErrorInternalServerError".into(),
            message_text: None,
            message_xml: vec![("InnerErrorResponseCode".into(), "ErrorServerBusy".into())],
        });
        assert!(matches!(
            policy().decide(1, &e, now(), 0.0),
            RetryDecision::Retry { .. }
        ));
    }

    #[test]
    fn stops_after_max_attempts_and_on_client_errors() {
        let e = ev(503, &[]);
        assert!(matches!(
            policy().decide(5, &e, now(), 0.0),
            RetryDecision::Stop { .. }
        ));
        assert!(matches!(
            RetryPolicy::fail_fast().decide(1, &e, now(), 0.0),
            RetryDecision::Stop { .. }
        ));
        assert!(matches!(
            policy().decide(1, &ev(404, &[]), now(), 0.0),
            RetryDecision::Stop { .. }
        ));
        assert!(matches!(
            policy().decide(1, &ev(400, &[]), now(), 0.0),
            RetryDecision::Stop { .. }
        ));
    }

    #[test]
    fn generic_error_page_redirect_is_transient_other_redirects_are_not() {
        let e = ev(
            302,
            &[(
                "Location",
                "/ews/genericerrorpage.htm?aspxerrorpath=/ews/exchange.asmx",
            )],
        );
        assert!(matches!(
            policy().decide(1, &e, now(), 0.0),
            RetryDecision::Retry { .. }
        ));
        let e = ev(302, &[("Location", "https://elsewhere.example/owa/")]);
        assert!(matches!(
            policy().decide(1, &e, now(), 0.0),
            RetryDecision::Stop { .. }
        ));
    }

    #[test]
    fn transport_failures_retry_only_when_transient() {
        let mut e = ErrorEvidence::default();
        for (kind, retry) in [
            (TransportKind::Connect, true),
            (TransportKind::Timeout, true),
            (TransportKind::Dns, false),
            (TransportKind::Tls, false),
        ] {
            e.transport = Some(kind);
            let d = policy().decide(1, &e, now(), 0.0);
            assert_eq!(matches!(d, RetryDecision::Retry { .. }), retry, "{kind:?}");
        }
    }
}
