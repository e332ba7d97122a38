//! The seam between the runner and the protocols: a [`Prober`] performs one step at a time.
//!
//! The runner calls, per endpoint, [`Prober::acquire_token`] once per [`TokenKey`] (tenant,
//! resource and, with per-user credentials, the user), and per mailbox [`Prober::resolve`],
//! [`Prober::open`], [`Prober::inbox_count`] and, with `--write-check`, [`Prober::write_probe`].
//! Each returns `Result<_, StepFailure>`; a failure carries the evidence and the ranked causes
//! (already diagnosed), and says whether it concerns one mailbox or the whole endpoint.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{Cause, Evidence, Side};
use crate::project::{Endpoint, UserCredentials};

/// What one side of one line item is: the endpoint, the address and optional per-user credentials.
#[derive(Debug, Clone)]
pub struct Target {
    /// Source or destination.
    pub side: Side,
    /// The endpoint configuration.
    pub endpoint: Arc<Endpoint>,
    /// The mailbox address.
    pub address: String,
    /// Per-user credentials from the mailbox list, if any.
    pub credentials: Option<Arc<UserCredentials>>,
}

/// The outcome of the resolve step: where this mailbox is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The service URL (EWS `Exchange.asmx` or the Graph root).
    pub url: String,
}

/// Tokens are shared per key: one acquisition per tenant and resource however many mailboxes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    /// Which side (each side has its own credentials).
    pub side: Side,
    /// Tenant id or domain (empty for Basic).
    pub tenant: String,
    /// Resource (audience) the token is for, e.g. `https://outlook.office365.com`.
    pub resource: String,
    /// The user, for per-user or delegated credentials.
    pub principal: Option<String>,
}

/// What a successful step found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutput {
    /// A short human description (identity, folder, URL).
    pub detail: Option<String>,
    /// An item count, for the inbox step.
    pub item_count: Option<u64>,
}

impl StepOutput {
    /// An output with only a detail line.
    pub fn detail(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            item_count: None,
        }
    }
}

/// Whether a failure concerns one mailbox or every mailbox of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureScope {
    /// Only this mailbox (not found, no impersonation right on it, …).
    Mailbox,
    /// The whole endpoint (bad secret, missing consent, unreachable host, …): report once, mark
    /// the remaining mailboxes of the endpoint blocked.
    Endpoint,
}

/// A failed step, diagnosed.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    /// The failure in one line.
    pub error: String,
    /// What was seen on the wire (no secrets). Boxed to keep `Result`s small.
    pub evidence: Box<Evidence>,
    /// Ranked causes, most likely first.
    pub causes: Vec<Cause>,
    /// One mailbox or the whole endpoint.
    pub scope: FailureScope,
    /// Set when the server is throttling: the runner pauses this tenant for that long and
    /// retries the step.
    pub retry_after: Option<Duration>,
}

impl StepFailure {
    /// A mailbox-scoped failure.
    pub fn mailbox(error: impl Into<String>, evidence: Evidence, causes: Vec<Cause>) -> Self {
        Self {
            error: error.into(),
            evidence: Box::new(evidence),
            causes,
            scope: FailureScope::Mailbox,
            retry_after: None,
        }
    }

    /// An endpoint-wide failure.
    pub fn endpoint(error: impl Into<String>, evidence: Evidence, causes: Vec<Cause>) -> Self {
        Self {
            scope: FailureScope::Endpoint,
            ..Self::mailbox(error, evidence, causes)
        }
    }

    /// Marks the failure as throttling, to be retried after `after`.
    pub fn throttled(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

/// Performs the verification steps against real (or emulated, or fake) services.
///
/// Futures must be `Send`: the runner verifies many mailboxes on a multi-threaded runtime.
pub trait Prober: Send + Sync + 'static {
    /// Whatever authorises later calls: a bearer token, a self-renewing token provider handle,
    /// or checked Basic credentials.
    type Token: Clone + Send + Sync + 'static;

    /// Finds the service URL of a mailbox (Autodiscover or the configured URL).
    fn resolve(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Resolved, StepFailure>> + Send;

    /// The key under which the token for this target is shared.
    fn token_key(&self, target: &Target, resolved: &Resolved) -> TokenKey;

    /// Acquires the token for a key; called once per key per run unless it fails.
    fn acquire_token(
        &self,
        target: &Target,
        key: &TokenKey,
    ) -> impl Future<Output = Result<Self::Token, StepFailure>> + Send;

    /// Opens the mailbox (impersonated for EWS, `/users/{id}` for Graph).
    fn open(
        &self,
        target: &Target,
        resolved: &Resolved,
        token: &Self::Token,
    ) -> impl Future<Output = Result<StepOutput, StepFailure>> + Send;

    /// Reads the inbox folder and its item count.
    fn inbox_count(
        &self,
        target: &Target,
        resolved: &Resolved,
        token: &Self::Token,
    ) -> impl Future<Output = Result<StepOutput, StepFailure>> + Send;

    /// Creates and deletes a probe item (destination only, with `--write-check`).
    fn write_probe(
        &self,
        target: &Target,
        resolved: &Resolved,
        token: &Self::Token,
    ) -> impl Future<Output = Result<StepOutput, StepFailure>> + Send;
}
