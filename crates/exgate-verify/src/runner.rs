//! The per-mailbox runner: concurrency, per-tenant limits, throttling, shared tokens,
//! endpoint-wide faults and cancellation.
//!
//! Invariants:
//! - A token is acquired once per [`TokenKey`] per run (single flight); a failed acquisition is
//!   not cached, so a transient failure is retried by the next mailbox.
//! - The first endpoint-wide failure on a side becomes that side's [`Fault`]: it is recorded once,
//!   with its causes, on the mailbox where it was found; every later mailbox on that side is
//!   recorded as blocked by it, without calling the endpoint.
//! - A throttled step pauses its whole tenant for the server's `Retry-After` and is retried; other
//!   mailboxes of that tenant wait too.
//! - On cancellation no new mailbox starts and unfinished ones are dropped: every result that was
//!   sent is complete, and nothing half-verified is reported.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore, SemaphorePermit, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::model::{Fault, MailboxResult, Side, Status, StepName, StepResult, now_ms};
use crate::probe::{FailureScope, Prober, Resolved, StepFailure, StepOutput, Target, TokenKey};
use crate::project::{LineItem, Project};

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Mailboxes verified at the same time.
    pub concurrency: usize,
    /// Requests in flight per tenant (an endpoint's `max_concurrency` overrides it).
    pub per_tenant: usize,
    /// Create and delete a probe item in each destination mailbox.
    pub write_check: bool,
    /// Attempts per step when throttled (the first try included).
    pub max_attempts: u32,
    /// Longest pause honoured for one `Retry-After`; a server asking for more gets the step
    /// reported as throttled at once.
    pub max_pause: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            per_tenant: 8,
            write_check: false,
            max_attempts: 5,
            max_pause: Duration::from_secs(120),
        }
    }
}

/// What a run ended with. The mailbox results went to the channel.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// `true` when the run was stopped before every mailbox was verified.
    pub cancelled: bool,
    /// Endpoint-wide faults found (at most one per side).
    pub faults: Vec<Fault>,
    /// Mailboxes whose result was sent.
    pub completed: usize,
}

/// A per-tenant gate: a concurrency limit and a throttling pause.
#[derive(Debug)]
struct Gate {
    permits: Semaphore,
    paused_until: Mutex<Option<Instant>>,
}

impl Gate {
    fn new(permits: usize) -> Self {
        Self {
            permits: Semaphore::new(permits.max(1)),
            paused_until: Mutex::new(None),
        }
    }

    fn pause_deadline(&self) -> Option<Instant> {
        let guard = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        (*guard).filter(|t| *t > Instant::now())
    }

    async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        loop {
            if let Some(until) = self.pause_deadline() {
                tokio::time::sleep_until(until).await;
            }
            let permit = self.permits.acquire().await.ok()?;
            if self.pause_deadline().is_none() {
                return Some(permit);
            }
        }
    }

    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut guard = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none_or(|t| t < until) {
            *guard = Some(until);
        }
    }
}

struct Shared<P: Prober> {
    prober: Arc<P>,
    options: RunOptions,
    tokens: Mutex<HashMap<TokenKey, Arc<OnceCell<P::Token>>>>,
    /// The first endpoint-wide failure to get each token: later callers get it at once instead
    /// of asking the token endpoint again (one budget per endpoint, not per mailbox).
    token_failures: Mutex<HashMap<TokenKey, StepFailure>>,
    faults: [OnceLock<Arc<Fault>>; 2],
    gates: [Arc<Gate>; 2],
    cancel: watch::Receiver<bool>,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Source => 0,
        Side::Destination => 1,
    }
}

enum Attempt<T> {
    Done(T, StepResult),
    Failed(StepFailure, StepResult),
    Cancelled,
}

/// Waits until the cancel flag is set (or forever if its sender is gone without setting it).
async fn cancelled(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl<P: Prober> Shared<P> {
    fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    fn fault(&self, side: Side) -> Option<Arc<Fault>> {
        self.faults[side_index(side)].get().cloned()
    }

    fn token_failure(&self, key: &TokenKey) -> Option<StepFailure> {
        let map = self
            .token_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    fn remember_token_failure(&self, key: &TokenKey, failure: &StepFailure) {
        let mut map = self
            .token_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone()).or_insert_with(|| failure.clone());
    }

    fn token_cell(&self, key: &TokenKey) -> Arc<OnceCell<P::Token>> {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone()).or_default().clone()
    }

    /// Runs one step with the tenant gate, throttling retries and cancellation.
    async fn attempt<T, F, Fut>(&self, side: Side, name: StepName, mut call: F) -> Attempt<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(T, StepOutput), StepFailure>>,
    {
        let gate = &self.gates[side_index(side)];
        let start = Instant::now();
        let mut attempts = 0u32;
        loop {
            if self.is_cancelled() {
                return Attempt::Cancelled;
            }
            attempts += 1;
            let result = tokio::select! {
                biased;
                _ = cancelled(self.cancel.clone()) => return Attempt::Cancelled,
                r = async {
                    let _permit = gate.acquire().await;
                    call().await
                } => r,
            };
            let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
            match result {
                Ok((value, out)) => {
                    let step = StepResult {
                        name,
                        endpoint: side,
                        ok: true,
                        status: Status::Ok,
                        ms,
                        attempts,
                        detail: out.detail,
                        item_count: out.item_count,
                        error: None,
                        causes: Vec::new(),
                        evidence: None,
                        blocked_by: None,
                    };
                    return Attempt::Done(value, step);
                }
                Err(failure) => {
                    // A pause longer than the server asked is wasted, and a shorter one earns
                    // another refusal: past `max_pause` the step is reported as throttled.
                    if let Some(after) = failure.retry_after
                        && after <= self.options.max_pause
                        && attempts < self.options.max_attempts.max(1)
                    {
                        tracing::debug!(%side, step = %name, ?after, "throttled; pausing tenant");
                        gate.pause(after);
                        continue;
                    }
                    let step = StepResult {
                        name,
                        endpoint: side,
                        ok: false,
                        status: Status::Failed,
                        ms,
                        attempts,
                        detail: None,
                        item_count: None,
                        error: Some(failure.error.clone()),
                        causes: failure.causes.clone(),
                        evidence: Some((*failure.evidence).clone()),
                        blocked_by: None,
                    };
                    return Attempt::Failed(failure, step);
                }
            }
        }
    }

    /// Records a failed step: as the side's fault if it is endpoint-wide and the first, as
    /// blocked if endpoint-wide and a fault exists, as a plain failure otherwise.
    fn record_failure(
        &self,
        target: &Target,
        failure: StepFailure,
        mut step: StepResult,
        steps: &mut Vec<StepResult>,
    ) {
        if failure.scope == FailureScope::Endpoint {
            let slot = &self.faults[side_index(target.side)];
            let mut mine = false;
            let fault = slot.get_or_init(|| {
                mine = true;
                Arc::new(Fault {
                    id: target.side.as_str().to_owned(),
                    endpoint: target.side,
                    step: step.name,
                    first_mailbox: target.address.clone(),
                    error: failure.error.clone(),
                    causes: failure.causes.clone(),
                    evidence: (*failure.evidence).clone(),
                })
            });
            if !mine {
                step = blocked_step(fault, step.ms);
            } else {
                step.blocked_by = None;
            }
        }
        steps.push(step);
    }

    /// Verifies one side of a line item. Returns `None` when cancelled.
    async fn verify_side(&self, target: Target, write: bool) -> Option<Vec<StepResult>> {
        let mut steps = Vec::new();
        if let Some(fault) = self.fault(target.side) {
            steps.push(blocked_step(&fault, 0));
            return Some(steps);
        }
        let prober = &self.prober;

        let resolved: Resolved = match self
            .attempt(target.side, StepName::Resolve, || async {
                let r = prober.resolve(&target).await?;
                let out = StepOutput::detail(r.url.clone());
                Ok((r, out))
            })
            .await
        {
            Attempt::Done(r, step) => {
                steps.push(step);
                r
            }
            Attempt::Failed(f, step) => {
                self.record_failure(&target, f, step, &mut steps);
                return Some(steps);
            }
            Attempt::Cancelled => return None,
        };

        let key = prober.token_key(&target, &resolved);
        let cell = self.token_cell(&key);
        if let Some(fault) = self.fault(target.side) {
            steps.push(blocked_step(&fault, 0));
            return Some(steps);
        }
        let token: P::Token = match self
            .attempt(target.side, StepName::Token, || async {
                let shared = cell.initialized();
                let token = cell
                    .get_or_try_init(|| async {
                        if let Some(f) = self.token_failure(&key) {
                            return Err(f);
                        }
                        let result = prober.acquire_token(&target, &key).await;
                        if let Err(f) = &result
                            && f.scope == FailureScope::Endpoint
                            && f.retry_after.is_none()
                        {
                            self.remember_token_failure(&key, f);
                        }
                        result
                    })
                    .await?
                    .clone();
                let detail = if shared {
                    format!("shared token for {}", key.resource)
                } else {
                    format!("token for {}", key.resource)
                };
                Ok((token, StepOutput::detail(detail)))
            })
            .await
        {
            Attempt::Done(t, step) => {
                steps.push(step);
                t
            }
            Attempt::Failed(f, step) => {
                self.record_failure(&target, f, step, &mut steps);
                return Some(steps);
            }
            Attempt::Cancelled => return None,
        };

        let mut plan = vec![StepName::Open, StepName::Inbox];
        if write {
            plan.push(StepName::WriteProbe);
        }
        for name in plan {
            let outcome = self
                .attempt(target.side, name, || async {
                    let out = match name {
                        StepName::Open => prober.open(&target, &resolved, &token).await?,
                        StepName::Inbox => prober.inbox_count(&target, &resolved, &token).await?,
                        _ => prober.write_probe(&target, &resolved, &token).await?,
                    };
                    Ok(((), out))
                })
                .await;
            match outcome {
                Attempt::Done((), step) => steps.push(step),
                Attempt::Failed(f, step) => {
                    self.record_failure(&target, f, step, &mut steps);
                    return Some(steps);
                }
                Attempt::Cancelled => return None,
            }
        }
        Some(steps)
    }

    async fn verify_item(&self, project: &ProjectRefs, item: LineItem) -> Option<MailboxResult> {
        let start = Instant::now();
        let target = |side: Side| {
            Some(Target {
                side,
                endpoint: project.endpoint(side)?,
                address: item.address(side)?.to_owned(),
                credentials: item.credentials(side).cloned().map(Arc::new),
            })
        };
        let write = self.options.write_check;
        let steps = match target(Side::Destination) {
            Some(dst) => {
                let (src, dst) = tokio::join!(
                    self.verify_side(target(Side::Source)?, false),
                    self.verify_side(dst, write),
                );
                let mut steps = src?;
                steps.extend(dst?);
                steps
            }
            // A one-sided project: the write probe, when asked for, goes to the source.
            None => self.verify_side(target(Side::Source)?, write).await?,
        };
        let status = MailboxResult::status_of(&steps);
        Some(MailboxResult {
            id: item.id,
            source: item.source,
            destination: item.destination,
            ok: status == Status::Ok,
            status,
            ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            finished_at_ms: now_ms(),
            steps,
            earlier_run: None,
        })
    }
}

fn blocked_step(fault: &Fault, ms: u64) -> StepResult {
    StepResult {
        name: fault.step,
        endpoint: fault.endpoint,
        ok: false,
        status: Status::Blocked,
        ms,
        attempts: 0,
        detail: None,
        item_count: None,
        error: Some(format!(
            "not checked: {} endpoint fault found on {}",
            fault.endpoint, fault.first_mailbox
        )),
        causes: Vec::new(),
        evidence: None,
        blocked_by: Some(fault.id.clone()),
    }
}

#[derive(Clone)]
struct ProjectRefs {
    source: Arc<crate::project::Endpoint>,
    destination: Option<Arc<crate::project::Endpoint>>,
}

impl ProjectRefs {
    fn endpoint(&self, side: Side) -> Option<Arc<crate::project::Endpoint>> {
        match side {
            Side::Source => Some(self.source.clone()),
            Side::Destination => self.destination.clone(),
        }
    }
}

/// Verifies `items` of `project` with `prober`, sending each finished mailbox to `results` as soon
/// as it is complete (waiting while the channel is full). Stops starting new mailboxes when `cancel` becomes `true`.
pub async fn run<P: Prober>(
    prober: Arc<P>,
    project: &Project,
    items: impl IntoIterator<Item = LineItem>,
    options: RunOptions,
    cancel: watch::Receiver<bool>,
    results: mpsc::Sender<MailboxResult>,
) -> RunOutcome {
    let concurrency = options.concurrency.max(1);
    // A one-sided project's destination gate is the source's: it is never used.
    let gate_for = |side: Side, gates: &mut HashMap<String, Arc<Gate>>| {
        let ep = project.endpoint(side).unwrap_or(&project.source);
        gates
            .entry(ep.tenant_key())
            .or_insert_with(|| {
                Arc::new(Gate::new(ep.max_concurrency.unwrap_or(options.per_tenant)))
            })
            .clone()
    };
    let mut by_tenant = HashMap::new();
    let gates = [
        gate_for(Side::Source, &mut by_tenant),
        gate_for(Side::Destination, &mut by_tenant),
    ];
    let shared = Arc::new(Shared {
        prober,
        options,
        tokens: Mutex::new(HashMap::new()),
        token_failures: Mutex::new(HashMap::new()),
        faults: [OnceLock::new(), OnceLock::new()],
        gates,
        cancel: cancel.clone(),
    });
    let refs = ProjectRefs {
        source: project.source.clone(),
        destination: project.destination.clone(),
    };

    let mut outcome = RunOutcome::default();
    let mut set: JoinSet<Option<MailboxResult>> = JoinSet::new();
    let mut pending = items.into_iter();
    loop {
        while set.len() < concurrency && !shared.is_cancelled() {
            let Some(item) = pending.next() else { break };
            let shared = shared.clone();
            let refs = refs.clone();
            set.spawn(async move { shared.verify_item(&refs, item).await });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        match joined {
            Ok(Some(result)) => {
                outcome.completed += 1;
                // A bounded channel: when the caller records results slower than they are
                // found, the run waits instead of piling them up in memory. The receiver may be
                // gone (caller stopped listening); the run still finishes.
                let _ = results.send(result).await;
            }
            Ok(None) => {}
            Err(e) => tracing::error!("a verification task failed: {e}"),
        }
    }
    outcome.cancelled = shared.is_cancelled() || pending.next().is_some();
    outcome.faults = Side::BOTH
        .iter()
        .filter_map(|s| shared.fault(*s).map(|f| (*f).clone()))
        .collect();
    outcome
}

#[cfg(test)]
mod tests;
