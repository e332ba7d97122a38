//! Results: what a verification run records per step and per mailbox.
//!
//! These types are the common currency of the runner, the state store and the reports. They are
//! serialisable and carry no secret: evidence is recorded by the prober after redaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which end of a migration a step talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The mailbox data comes from here.
    Source,
    /// The mailbox data goes there.
    Destination,
}

impl Side {
    /// `"source"` or `"destination"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }

    /// Both sides, source first.
    pub const BOTH: [Side; 2] = [Side::Source, Side::Destination];
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of the verification of a mailbox on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    /// Find the service URL (Autodiscover or the configured URL).
    Resolve,
    /// Acquire an access token (or check Basic credentials), shared per tenant and resource.
    Token,
    /// Open the mailbox (impersonated for EWS, `/users/{id}` for Graph).
    Open,
    /// Read the inbox folder and its item count.
    Inbox,
    /// Create and delete a probe item (destination, with `--write-check`).
    WriteProbe,
}

impl StepName {
    /// The stable name used in reports and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Resolve => "resolve",
            StepName::Token => "token",
            StepName::Open => "open",
            StepName::Inbox => "inbox",
            StepName::WriteProbe => "write_probe",
        }
    }

    /// Parses [`StepName::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "resolve" => StepName::Resolve,
            "token" => StepName::Token,
            "open" => StepName::Open,
            "inbox" => StepName::Inbox,
            "write_probe" => StepName::WriteProbe,
            _ => return None,
        })
    }
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a step or of a whole mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Verified.
    Ok,
    /// Checked and failed; the causes say why.
    Failed,
    /// Not checked: an endpoint-wide fault found on another mailbox makes it pointless.
    Blocked,
}

impl Status {
    /// `"ok"`, `"failed"` or `"blocked"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Blocked => "blocked",
        }
    }

    /// Parses [`Status::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" => Status::Ok,
            "failed" => Status::Failed,
            "blocked" => Status::Blocked,
            _ => return None,
        })
    }
}

/// One ranked cause of a failure: diagnosis's own type, reported as it is.
pub use exgate_diagnose::RankedCause as Cause;

/// What a failed step saw on the wire, already stripped of secrets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The URL called (no query secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// HTTP status, when an HTTP answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Protocol error code: AADSTS number, EWS ResponseCode, Graph error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Error message as the server or the transport gave it.
    #[serde(default)]
    pub message: String,
    /// Selected response headers (`x-ms-diagnostics`, `WWW-Authenticate`, `Retry-After`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Other named facts (trace id, correlation id, token claims summary, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
}

/// The record of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Which step.
    pub name: StepName,
    /// Which side it ran against.
    pub endpoint: Side,
    /// `true` when the step succeeded.
    pub ok: bool,
    /// Ok, failed or blocked.
    pub status: Status,
    /// Wall time in milliseconds, retries included.
    pub ms: u64,
    /// Number of attempts (more than one when throttled).
    #[serde(default = "one")]
    pub attempts: u32,
    /// What the step found (URL resolved, identity, folder name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Item count, for the inbox step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<u64>,
    /// The failure in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Ranked causes of the failure (empty on success and when blocked).
    #[serde(default)]
    pub causes: Vec<Cause>,
    /// Evidence of the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// For a blocked step, the id of the endpoint-wide fault that blocked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
}

fn one() -> u32 {
    1
}

/// The record of one mailbox line item in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxResult {
    /// Stable line-item id (derived from the addresses).
    pub id: String,
    /// Source address.
    pub source: String,
    /// Destination address (`null` when the project checks the source alone).
    pub destination: Option<String>,
    /// `true` when every step on every side succeeded.
    pub ok: bool,
    /// Failed if any step failed, else blocked if any step was blocked, else ok.
    pub status: Status,
    /// Wall time in milliseconds.
    pub ms: u64,
    /// When verification of this mailbox finished, epoch milliseconds.
    pub finished_at_ms: i64,
    /// Every step, source first, in order.
    pub steps: Vec<StepResult>,
    /// The earlier run this result comes from, in a report of the whole project; absent when
    /// the mailbox was verified in the run reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier_run: Option<String>,
}

impl MailboxResult {
    /// `source -> destination`, or the source alone, for messages.
    pub fn label(&self) -> String {
        match &self.destination {
            Some(d) => format!("{} -> {d}", self.source),
            None => self.source.clone(),
        }
    }

    /// Derives `status` and `ok` from the steps.
    pub fn status_of(steps: &[StepResult]) -> Status {
        if steps.iter().any(|s| s.status == Status::Failed) {
            Status::Failed
        } else if steps.iter().any(|s| s.status == Status::Blocked) {
            Status::Blocked
        } else {
            Status::Ok
        }
    }
}

/// An endpoint-wide fault: found once, reported once, blocking the rest of that endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Fault id, referenced by blocked steps (`"source"` or `"destination"`).
    pub id: String,
    /// The side whose endpoint is affected.
    pub endpoint: Side,
    /// The step that failed.
    pub step: StepName,
    /// The mailbox on which it was found.
    pub first_mailbox: String,
    /// The failure in one line.
    pub error: String,
    /// Ranked causes.
    pub causes: Vec<Cause>,
    /// Evidence.
    pub evidence: Evidence,
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
