//! Runner tests with a fake prober that injects faults, throttling and delays.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::*;
use crate::model::{Cause, Evidence};
use crate::project::{self, Project};

fn cause(id: &str) -> Cause {
    Cause {
        id: id.to_owned(),
        confidence: 0.9,
        title: format!("title of {id}"),
        explanation: String::new(),
        evidence: Vec::new(),
        entry: String::new(),
        fix: vec![format!("fix for {id}")],
        references: Vec::new(),
        check: None,
    }
}

/// Which (side, step, address) fails, and how. Address `*` matches every mailbox.
type FaultMap = HashMap<(Side, StepName, String), StepFailure>;

/// One call seen by the fake: side, step, address, when it ended, whether it succeeded.
type Call = (Side, StepName, String, Instant, bool);

#[derive(Default)]
struct Fake {
    faults: FaultMap,
    /// Number of throttled answers the destination inbox step gives before succeeding.
    throttle_inbox: AtomicU32,
    throttle_after: Duration,
    token_calls: Mutex<HashMap<TokenKey, u32>>,
    log: Mutex<Vec<Call>>,
    in_flight: [AtomicUsize; 2],
    max_in_flight: [AtomicUsize; 2],
    delay: Duration,
}

impl Fake {
    async fn step(&self, side: Side, name: StepName, address: &str) -> Result<(), StepFailure> {
        let i = side_index(side);
        let now = self.in_flight[i].fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight[i].fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.in_flight[i].fetch_sub(1, Ordering::SeqCst);
        let mut result = Ok(());
        if side == Side::Destination
            && name == StepName::Inbox
            && self
                .throttle_inbox
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            result = Err(StepFailure::mailbox(
                "ErrorServerBusy",
                Evidence {
                    code: Some("ErrorServerBusy".into()),
                    ..Evidence::default()
                },
                vec![cause("throttled")],
            )
            .throttled(self.throttle_after));
        }
        for key in [
            (side, name, address.to_owned()),
            (side, name, "*".to_owned()),
        ] {
            if let Some(f) = self.faults.get(&key) {
                result = Err(f.clone());
            }
        }
        self.log.lock().unwrap().push((
            side,
            name,
            address.to_owned(),
            Instant::now(),
            result.is_ok(),
        ));
        result
    }

    fn count(&self, side: Side, name: StepName) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, n, ..)| *s == side && *n == name)
            .count()
    }
}

impl Prober for Fake {
    type Token = String;

    async fn resolve(&self, target: &Target) -> Result<Resolved, StepFailure> {
        self.step(target.side, StepName::Resolve, &target.address)
            .await?;
        Ok(Resolved {
            url: format!("https://{}.example/EWS/Exchange.asmx", target.side),
        })
    }

    fn token_key(&self, target: &Target, resolved: &Resolved) -> TokenKey {
        TokenKey {
            side: target.side,
            tenant: target.endpoint.tenant_key(),
            resource: resolved.url.clone(),
            principal: None,
        }
    }

    async fn acquire_token(&self, target: &Target, key: &TokenKey) -> Result<String, StepFailure> {
        *self
            .token_calls
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default() += 1;
        self.step(target.side, StepName::Token, &target.address)
            .await?;
        Ok(format!("token-{}", key.side))
    }

    async fn open(
        &self,
        target: &Target,
        _: &Resolved,
        token: &String,
    ) -> Result<StepOutput, StepFailure> {
        assert_eq!(token, &format!("token-{}", target.side));
        self.step(target.side, StepName::Open, &target.address)
            .await?;
        Ok(StepOutput::detail(format!("opened {}", target.address)))
    }

    async fn inbox_count(
        &self,
        target: &Target,
        _: &Resolved,
        _: &String,
    ) -> Result<StepOutput, StepFailure> {
        self.step(target.side, StepName::Inbox, &target.address)
            .await?;
        Ok(StepOutput {
            detail: Some("Inbox".into()),
            item_count: Some(42),
        })
    }

    async fn write_probe(
        &self,
        target: &Target,
        _: &Resolved,
        _: &String,
    ) -> Result<StepOutput, StepFailure> {
        self.step(target.side, StepName::WriteProbe, &target.address)
            .await?;
        Ok(StepOutput::detail("created and deleted a probe item"))
    }
}

fn project_with(n: usize) -> Project {
    let mut text = String::from(
        r#"
[source]
kind = "exchange-onprem"
url = "https://mail.contoso.com/EWS/Exchange.asmx"
[source.auth]
mode = "basic"
username = "svc@contoso.com"
password = "pw"
impersonation = true

[destination]
kind = "exchange-online"
api = "ews"
tenant = "fabrikam.onmicrosoft.com"
[destination.auth]
mode = "app-secret"
client_id = "11111111-2222-3333-4444-555555555555"
secret = "s"
"#,
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"user{i:05}@contoso.com\"\ndestination = \"user{i:05}@fabrikam.com\"\n"
        ));
    }
    project::parse(&text, Path::new("p.toml"), &HashMap::new()).unwrap()
}

async fn run_fake(
    fake: Arc<Fake>,
    project: &Project,
    options: RunOptions,
) -> (RunOutcome, Vec<MailboxResult>) {
    let (_tx, cancel) = watch::channel(false);
    let (rtx, mut rrx) = mpsc::channel(100_000);
    let outcome = run(
        fake,
        project,
        project.mailboxes.clone(),
        options,
        cancel,
        rtx,
    )
    .await;
    let mut results = Vec::new();
    while let Ok(r) = rrx.try_recv() {
        results.push(r);
    }
    (outcome, results)
}

#[tokio::test]
async fn every_step_is_recorded_on_both_sides() {
    let project = project_with(10);
    let fake = Arc::new(Fake::default());
    let options = RunOptions {
        write_check: true,
        ..RunOptions::default()
    };
    let (outcome, results) = run_fake(fake, &project, options).await;
    assert!(!outcome.cancelled);
    assert!(outcome.faults.is_empty());
    assert_eq!(results.len(), 10);
    for r in &results {
        assert!(r.ok, "{r:?}");
        let names: Vec<(Side, StepName)> = r.steps.iter().map(|s| (s.endpoint, s.name)).collect();
        assert_eq!(
            names,
            vec![
                (Side::Source, StepName::Resolve),
                (Side::Source, StepName::Token),
                (Side::Source, StepName::Open),
                (Side::Source, StepName::Inbox),
                (Side::Destination, StepName::Resolve),
                (Side::Destination, StepName::Token),
                (Side::Destination, StepName::Open),
                (Side::Destination, StepName::Inbox),
                (Side::Destination, StepName::WriteProbe),
            ]
        );
        assert_eq!(r.steps[3].item_count, Some(42));
    }
}

#[tokio::test]
async fn a_project_without_destination_checks_the_source_alone() {
    let mut text = String::from(
        r#"
[source]
kind = "exchange-online"
api = "ews"
tenant = "contoso.onmicrosoft.com"
[source.auth]
mode = "app-secret"
client_id = "11111111-2222-3333-4444-555555555555"
secret = "s"
"#,
    );
    for i in 0..20 {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"user{i:05}@contoso.com\"\n"
        ));
    }
    let project = project::parse(&text, Path::new("p.toml"), &HashMap::new()).unwrap();
    let fake = Arc::new(Fake::default());
    let options = RunOptions {
        write_check: true,
        ..RunOptions::default()
    };
    let (outcome, results) = run_fake(fake.clone(), &project, options).await;
    assert!(!outcome.cancelled);
    assert_eq!(results.len(), 20);
    for r in &results {
        assert!(r.ok, "{r:?}");
        assert_eq!(r.destination, None);
        let names: Vec<(Side, StepName)> = r.steps.iter().map(|s| (s.endpoint, s.name)).collect();
        // The write probe, asked for, goes to the only side there is.
        assert_eq!(
            names,
            vec![
                (Side::Source, StepName::Resolve),
                (Side::Source, StepName::Token),
                (Side::Source, StepName::Open),
                (Side::Source, StepName::Inbox),
                (Side::Source, StepName::WriteProbe),
            ]
        );
    }
    let log = fake.log.lock().unwrap();
    assert!(log.iter().all(|(side, ..)| *side == Side::Source));
    // Resolve, open, inbox and the probe per mailbox; one token for all of them.
    assert_eq!(log.len(), 20 * 4 + 1);
}

#[tokio::test]
async fn token_is_acquired_once_per_tenant_and_resource() {
    let project = project_with(300);
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(1),
        ..Fake::default()
    });
    let options = RunOptions {
        concurrency: 64,
        per_tenant: 16,
        ..RunOptions::default()
    };
    let (_, results) = run_fake(fake.clone(), &project, options).await;
    assert_eq!(results.len(), 300);
    let calls = fake.token_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one key per side: {calls:?}");
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");
}

#[tokio::test]
async fn tenant_wide_fault_is_reported_once_and_the_rest_blocked() {
    let project = project_with(500);
    let mut faults = FaultMap::new();
    faults.insert(
        (Side::Destination, StepName::Token, "*".into()),
        StepFailure::endpoint(
            "AADSTS7000215: Invalid client secret provided",
            Evidence {
                status: Some(401),
                code: Some("AADSTS7000215".into()),
                ..Evidence::default()
            },
            vec![cause("invalid_client_secret")],
        ),
    );
    let fake = Arc::new(Fake {
        faults,
        ..Fake::default()
    });
    let options = RunOptions {
        concurrency: 32,
        per_tenant: 4,
        ..RunOptions::default()
    };
    let (outcome, results) = run_fake(fake.clone(), &project, options).await;
    assert_eq!(results.len(), 500);
    assert_eq!(outcome.faults.len(), 1);
    let fault = &outcome.faults[0];
    assert_eq!(fault.endpoint, Side::Destination);
    assert_eq!(fault.step, StepName::Token);
    assert_eq!(fault.causes[0].id, "invalid_client_secret");

    let failed: Vec<&StepResult> = results
        .iter()
        .flat_map(|r| &r.steps)
        .filter(|s| s.status == Status::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "the fault is reported once");
    assert_eq!(failed[0].causes[0].id, "invalid_client_secret");
    let blocked = results
        .iter()
        .filter(|r| r.status == Status::Blocked)
        .count();
    assert_eq!(blocked, 499);
    for r in results.iter().filter(|r| r.status == Status::Blocked) {
        let b: Vec<&StepResult> = r
            .steps
            .iter()
            .filter(|s| s.status == Status::Blocked)
            .collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].blocked_by.as_deref(), Some("destination"));
        assert!(
            b[0].causes.is_empty(),
            "blocked steps do not repeat the causes"
        );
        // The source side is still verified.
        assert!(
            r.steps
                .iter()
                .filter(|s| s.endpoint == Side::Source)
                .all(|s| s.ok)
        );
    }
    // The endpoint is not hammered: at most one call per permit in flight when the fault hit.
    assert!(
        fake.count(Side::Destination, StepName::Token) <= 4,
        "{}",
        fake.count(Side::Destination, StepName::Token)
    );
}

#[tokio::test]
async fn mailbox_fault_stays_with_its_mailbox() {
    let project = project_with(20);
    let mut faults = FaultMap::new();
    faults.insert(
        (Side::Source, StepName::Open, "user00007@contoso.com".into()),
        StepFailure::mailbox(
            "ErrorNonExistentMailbox",
            Evidence::default(),
            vec![cause("mailbox_not_found")],
        ),
    );
    let fake = Arc::new(Fake {
        faults,
        ..Fake::default()
    });
    let (outcome, results) = run_fake(fake, &project, RunOptions::default()).await;
    assert!(outcome.faults.is_empty());
    let bad: Vec<&MailboxResult> = results.iter().filter(|r| !r.ok).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].source, "user00007@contoso.com");
    assert_eq!(bad[0].status, Status::Failed);
    // The failed side stops at the failing step; the other side is complete.
    let src: Vec<StepName> = bad[0]
        .steps
        .iter()
        .filter(|s| s.endpoint == Side::Source)
        .map(|s| s.name)
        .collect();
    assert_eq!(
        src,
        vec![StepName::Resolve, StepName::Token, StepName::Open]
    );
    assert_eq!(
        bad[0]
            .steps
            .iter()
            .filter(|s| s.endpoint == Side::Destination && s.ok)
            .count(),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_pauses_the_tenant_and_retries() {
    let project = project_with(12);
    let fake = Arc::new(Fake {
        throttle_inbox: AtomicU32::new(3),
        throttle_after: Duration::from_secs(30),
        delay: Duration::from_millis(5),
        ..Fake::default()
    });
    let options = RunOptions {
        concurrency: 4,
        per_tenant: 4,
        ..RunOptions::default()
    };
    let (_, results) = run_fake(fake.clone(), &project, options).await;
    assert_eq!(results.len(), 12);
    assert!(results.iter().all(|r| r.ok), "retried until ok");
    let retried: u32 = results
        .iter()
        .flat_map(|r| &r.steps)
        .filter(|s| s.name == StepName::Inbox && s.endpoint == Side::Destination)
        .map(|s| s.attempts - 1)
        .sum();
    assert_eq!(retried, 3);
    // After the first throttled answer, no destination call started until the pause was over.
    let log = fake.log.lock().unwrap().clone();
    let first_throttle = log
        .iter()
        .find(|(s, n, _, _, ok)| *s == Side::Destination && *n == StepName::Inbox && !ok)
        .map(|e| e.3)
        .unwrap();
    let during_pause = log
        .iter()
        .filter(|(s, ..)| *s == Side::Destination)
        .filter(|e| {
            // Calls end `delay` after they start.
            let started = e.3 - Duration::from_millis(5);
            started > first_throttle && started < first_throttle + Duration::from_secs(30)
        })
        .count();
    assert_eq!(during_pause, 0, "the tenant was paused for Retry-After");
}

#[tokio::test(start_paused = true)]
async fn throttling_gives_up_after_max_attempts() {
    let project = project_with(1);
    let fake = Arc::new(Fake {
        throttle_inbox: AtomicU32::new(u32::MAX),
        throttle_after: Duration::from_secs(1),
        ..Fake::default()
    });
    let options = RunOptions {
        max_attempts: 3,
        ..RunOptions::default()
    };
    let (_, results) = run_fake(fake, &project, options).await;
    let step = results[0]
        .steps
        .iter()
        .find(|s| s.status == Status::Failed)
        .unwrap();
    assert_eq!(step.name, StepName::Inbox);
    assert_eq!(step.attempts, 3);
    assert_eq!(step.causes[0].id, "throttled");
}

#[tokio::test(start_paused = true)]
async fn a_pause_longer_than_max_pause_is_reported_at_once() {
    let project = project_with(1);
    let fake = Arc::new(Fake {
        throttle_inbox: AtomicU32::new(u32::MAX),
        throttle_after: Duration::from_secs(600),
        ..Fake::default()
    });
    let options = RunOptions {
        max_pause: Duration::from_secs(120),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let (_, results) = run_fake(fake, &project, options).await;
    let step = results[0]
        .steps
        .iter()
        .find(|s| s.status == Status::Failed)
        .unwrap();
    assert_eq!(step.name, StepName::Inbox);
    assert_eq!(
        step.attempts, 1,
        "not retried: the server asked for more than max_pause"
    );
    assert_eq!(step.causes[0].id, "throttled");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "no pause was taken (virtual time)"
    );
}

#[tokio::test]
async fn per_tenant_limit_is_honoured() {
    let project = project_with(60);
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(2),
        ..Fake::default()
    });
    let options = RunOptions {
        concurrency: 30,
        per_tenant: 3,
        ..RunOptions::default()
    };
    let (_, results) = run_fake(fake.clone(), &project, options).await;
    assert_eq!(results.len(), 60);
    for i in 0..2 {
        let max = fake.max_in_flight[i].load(Ordering::SeqCst);
        assert!((1..=3).contains(&max), "side {i}: {max} in flight");
    }
}

#[tokio::test]
async fn cancellation_keeps_what_was_verified() {
    let project = project_with(200);
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(3),
        ..Fake::default()
    });
    let options = RunOptions {
        concurrency: 4,
        per_tenant: 4,
        ..RunOptions::default()
    };
    let (cancel_tx, cancel) = watch::channel(false);
    let (rtx, mut rrx) = mpsc::channel(100_000);
    let items = project.mailboxes.clone();
    let p2 = project.clone();
    let task = tokio::spawn(async move { run(fake, &p2, items, options, cancel, rtx).await });
    let mut results = Vec::new();
    while let Some(r) = rrx.recv().await {
        results.push(r);
        if results.len() == 10 {
            cancel_tx.send(true).unwrap();
        }
    }
    let outcome = task.await.unwrap();
    assert!(outcome.cancelled);
    assert!(
        results.len() >= 10 && results.len() < 200,
        "{}",
        results.len()
    );
    assert_eq!(outcome.completed, results.len());
    for r in &results {
        assert!(r.ok);
        assert_eq!(r.steps.len(), 8, "only complete mailboxes are reported");
    }
}

#[tokio::test]
async fn a_slow_consumer_holds_the_run_back_instead_of_piling_up_results() {
    // A caller that does not take results (a database slower than the endpoints): the run stops
    // starting mailboxes once the channel is full, so results never pile up in memory.
    let project = project_with(500);
    let fake = Arc::new(Fake::default());
    let options = RunOptions {
        concurrency: 4,
        per_tenant: 4,
        ..RunOptions::default()
    };
    let (_cancel_tx, cancel) = watch::channel(false);
    let (rtx, mut rrx) = mpsc::channel(8);
    let items = project.mailboxes.clone();
    let p2 = project.clone();
    let f2 = fake.clone();
    let task = tokio::spawn(async move { run(f2, &p2, items, options, cancel, rtx).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 8 waiting in the channel, one being sent, at most `concurrency` in flight.
    let started = fake.count(Side::Source, StepName::Resolve);
    assert!(
        (8..=8 + 1 + 4).contains(&started),
        "{started} mailboxes started"
    );
    // Taking the results lets the run finish.
    let mut taken = 0;
    while rrx.recv().await.is_some() {
        taken += 1;
    }
    let outcome = task.await.unwrap();
    assert_eq!((taken, outcome.completed), (500, 500));
}
