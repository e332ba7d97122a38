//! [`MailError`]: one error type for all three clients, always carrying [`ErrorEvidence`].

use std::fmt::Write as _;

use crate::credentials::BoxError;
use crate::evidence::{ErrorEvidence, ErrorKind};

/// A failed mail operation. The message names what failed and, where it is known, the fix;
/// [`MailError::evidence`] holds the raw facts for diagnosis.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MailError {
    kind: ErrorKind,
    message: String,
    evidence: Box<ErrorEvidence>,
    #[source]
    source: Option<BoxError>,
}

impl MailError {
    /// Builds an error of `kind` from evidence; the message is derived from the evidence.
    pub fn from_evidence(kind: ErrorKind, mut evidence: ErrorEvidence) -> Self {
        evidence.kind = Some(kind);
        let message = describe(kind, &evidence);
        MailError {
            kind,
            message,
            evidence: Box::new(evidence),
            source: None,
        }
    }

    /// An error with an explicit message (configuration problems, unusable answers).
    pub fn with_message(
        kind: ErrorKind,
        message: impl Into<String>,
        mut evidence: ErrorEvidence,
    ) -> Self {
        evidence.kind = Some(kind);
        let mut message = message.into();
        if let Some(url) = &evidence.url {
            let _ = write!(
                message,
                " ({} {url})",
                evidence.method.as_deref().unwrap_or("?")
            );
        }
        MailError {
            kind,
            message,
            evidence: Box::new(evidence),
            source: None,
        }
    }

    /// A configuration error (bad URL, bad address) that never reached the network.
    pub fn config(message: impl Into<String>) -> Self {
        MailError::with_message(ErrorKind::Config, message, ErrorEvidence::default())
    }

    pub(crate) fn with_source(mut self, source: BoxError) -> Self {
        self.source = Some(source);
        self
    }

    /// The broad class of the failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The facts: status, headers, parsed fault or error body, transport failure.
    pub fn evidence(&self) -> &ErrorEvidence {
        &self.evidence
    }

    pub(crate) fn set_attempts(&mut self, n: u32) {
        self.evidence.attempts = n;
        if n > 1 {
            let _ = write!(self.message, " (gave up after {n} attempts)");
        }
    }
}

fn describe(kind: ErrorKind, ev: &ErrorEvidence) -> String {
    let mut m = String::new();
    let op = ev.operation.as_deref().unwrap_or("request");
    let _ = write!(m, "{op}");
    if let Some(url) = &ev.url {
        let _ = write!(m, " to {url}");
    }
    m.push_str(" failed: ");
    if let Some(status) = ev.status {
        let _ = write!(m, "HTTP {status}");
    }
    if let Some(f) = &ev.soap_fault {
        let code = f.response_code.as_deref().unwrap_or(&f.faultcode);
        let _ = write!(m, ", SOAP fault {code}: {}", f.faultstring.trim());
    }
    if let Some(e) = &ev.ews_response {
        let _ = write!(m, ", {} {}", e.response_class, e.response_code);
        if let Some(t) = &e.message_text {
            let _ = write!(m, ": {}", t.trim());
        }
    }
    if let Some(g) = &ev.graph_error {
        let _ = write!(m, ", Graph {}: {}", g.code, g.message);
    }
    if let Some(a) = &ev.autodiscover_error {
        let _ = write!(m, ", Autodiscover error {}", a.code);
        if let Some(t) = &a.message {
            let _ = write!(m, ": {t}");
        }
    }
    if let Some(d) = &ev.diagnostics {
        let _ = write!(m, ", x-ms-diagnostics {}", d.code.as_deref().unwrap_or("-"));
        if !d.reason.is_empty() {
            let _ = write!(m, " ({})", d.reason);
        }
    }
    if let Some(t) = ev.transport {
        let _ = write!(m, "{t:?} error");
        if let Some(msg) = &ev.transport_message {
            let _ = write!(m, ": {msg}");
        }
    }
    let fix = match kind {
        ErrorKind::Unauthorized => Some(
            "the server rejected the credentials; check the token audience, expiry and permissions (x-ms-diagnostics and WWW-Authenticate say which)",
        ),
        ErrorKind::Forbidden => Some(
            "authenticated but not allowed; check the app's permissions and access policies for this mailbox",
        ),
        ErrorKind::Throttled => {
            Some("the server is throttling; wait for the advertised back-off and lower concurrency")
        }
        ErrorKind::Transport => {
            Some("check the host name, network path, proxy and TLS trust (extra root CA)")
        }
        _ => None,
    };
    if let Some(fix) = fix {
        let _ = write!(m, " — {fix}");
    }
    m
}
