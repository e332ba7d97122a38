//! The state store suite, run on SQLite and on PostgreSQL.

use exgate_verify::store::{Reason, RunTotals};
use exgate_verify::{
    Cause, Evidence, LineItem, MailboxResult, Secret, Side, Status, StepName, StepResult,
    UserCredentials,
};

use crate::backends::Backend;
use crate::fake;
use crate::on_every_backend;

fn result(item: &LineItem, status: Status) -> MailboxResult {
    let causes = if status == Status::Failed {
        vec![Cause {
            id: "mailbox_not_found".into(),
            confidence: 0.75,
            title: "No mailbox".into(),
            explanation: "ErrorNonExistentMailbox".into(),
            evidence: vec!["ErrorNonExistentMailbox".into()],
            entry: "ews_non_existent_mailbox".into(),
            fix: vec!["Check the address".into(), "Wait for provisioning".into()],
            references: vec!["https://learn.microsoft.com/".into()],
            check: None,
        }]
    } else {
        vec![]
    };
    let steps = vec![
        StepResult {
            name: StepName::Resolve,
            endpoint: Side::Source,
            ok: true,
            status: Status::Ok,
            ms: 4,
            attempts: 1,
            detail: Some("https://mail.contoso.com/EWS/Exchange.asmx".into()),
            item_count: None,
            error: None,
            causes: vec![],
            evidence: None,
            blocked_by: None,
        },
        StepResult {
            name: StepName::Inbox,
            endpoint: Side::Destination,
            ok: status == Status::Ok,
            status,
            ms: 12,
            attempts: 2,
            detail: None,
            item_count: (status == Status::Ok).then_some(1234),
            error: (status != Status::Ok).then(|| "it failed".into()),
            causes,
            evidence: (status == Status::Failed).then(|| Evidence {
                status: Some(404),
                code: Some("ErrorNonExistentMailbox".into()),
                message: "The SMTP address has no mailbox associated with it.".into(),
                ..Evidence::default()
            }),
            blocked_by: (status == Status::Blocked).then(|| "destination".into()),
        },
    ];
    MailboxResult {
        id: item.id.clone(),
        source: item.source.clone(),
        destination: item.destination.clone(),
        ok: status == Status::Ok,
        status,
        ms: 20,
        finished_at_ms: exgate_verify::now_ms(),
        steps,
        earlier_run: None,
    }
}

async fn state_suite(b: &Backend) {
    let store = &b.store;
    let mut project = fake::project("store-suite", 5);
    let items = project.mailboxes.clone();

    let sel = store.select(&project, false, false).await.unwrap();
    assert_eq!(sel.verify.len(), 5, "{}", b.name);
    assert!(sel.verify.iter().all(|(_, r)| *r == Reason::New));

    let run1 = store
        .begin_run(&project.name, false, false, 5)
        .await
        .unwrap();
    let statuses = [
        Status::Ok,
        Status::Ok,
        Status::Ok,
        Status::Failed,
        Status::Blocked,
    ];
    let results: Vec<MailboxResult> = items
        .iter()
        .zip(statuses)
        .map(|(i, s)| result(i, s))
        .collect();
    let batch: Vec<(&LineItem, &MailboxResult)> = items.iter().zip(results.iter()).collect();
    store
        .record(&project.name, &run1, false, &batch)
        .await
        .unwrap();
    store
        .finish_run(
            &run1,
            &RunTotals {
                ok: 3,
                failed: 1,
                blocked: 1,
                cancelled: false,
            },
            &[],
        )
        .await
        .unwrap();

    // Only the failed and the blocked item are selected again.
    let sel = store.select(&project, false, false).await.unwrap();
    let again: Vec<(&str, Reason)> = sel
        .verify
        .iter()
        .map(|(i, r)| (i.source.as_str(), *r))
        .collect();
    assert_eq!(
        again,
        vec![
            ("user3@contoso.com", Reason::Failed),
            ("user4@contoso.com", Reason::Blocked)
        ],
        "{}",
        b.name
    );
    assert_eq!(sel.skipped.len(), 3);

    // --all forces everything; --write-check re-checks ok items not yet write-checked.
    let sel = store.select(&project, true, false).await.unwrap();
    assert_eq!(sel.verify.len(), 5);
    assert!(sel.verify.iter().all(|(_, r)| *r == Reason::Forced));
    let sel = store.select(&project, false, true).await.unwrap();
    assert_eq!(
        sel.verify
            .iter()
            .filter(|(_, r)| *r == Reason::WriteCheck)
            .count(),
        3
    );

    // A changed line (new per-user credentials) is verified again.
    project.mailboxes[0].source_credentials = Some(Box::new(UserCredentials {
        username: "CONTOSO\\user0".into(),
        password: Secret::new("pw"),
    }));
    let sel = store.select(&project, false, false).await.unwrap();
    assert!(
        sel.verify
            .iter()
            .any(|(i, r)| i.source == "user0@contoso.com" && *r == Reason::Changed)
    );

    // History keeps every step, causes and evidence.
    let hist = store.history(&project.name, &items[3].id).await.unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].run_id, run1);
    assert_eq!(hist[0].status, Status::Failed);
    assert_eq!(hist[0].steps, results[3].steps, "{}", b.name);

    // A second run fixes item 3: its history grows, its state is ok.
    let run2 = store
        .begin_run(&project.name, false, false, 2)
        .await
        .unwrap();
    let fixed = result(&items[3], Status::Ok);
    store
        .record(&project.name, &run2, false, &[(&items[3], &fixed)])
        .await
        .unwrap();
    let hist = store.history(&project.name, &items[3].id).await.unwrap();
    assert_eq!(
        hist.iter().map(|h| h.status).collect::<Vec<_>>(),
        vec![Status::Failed, Status::Ok]
    );
    let states = store.items(&project.name).await.unwrap();
    assert_eq!(states[&items[3].id].last_status, Some(Status::Ok));
    assert_eq!(
        states[&items[3].id].last_run_id.as_deref(),
        Some(run2.as_str())
    );

    let runs = store.runs(&project.name).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].totals.failed, 1);
    assert!(runs[0].finished_at.is_some());
    assert!(runs[1].finished_at.is_none());

    // The process dies before run 2 finishes: the next run closes it with what it recorded.
    let run3 = store
        .begin_run(&project.name, false, false, 0)
        .await
        .unwrap();
    let runs = store.runs(&project.name).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1].id, run2);
    assert!(runs[1].finished_at.is_some(), "an abandoned run stays open");
    assert_eq!(runs[1].totals.ok, 1);
    assert!(runs[1].totals.cancelled);
    assert_eq!(runs[2].id, run3);
    assert!(runs[2].finished_at.is_none());

    // Another project in the same database is independent.
    let other = fake::project("store-suite-other", 5);
    let sel = store.select(&other, false, false).await.unwrap();
    assert_eq!(sel.verify.len(), 5);

    // A one-sided project (no destination) keeps "no destination" through the database.
    let mut one = fake::project("store-suite-one-sided", 2);
    one.destination = None;
    for m in &mut one.mailboxes {
        m.destination = None;
        m.id = exgate_verify::project::line_item_id(&m.source, None);
    }
    let run = store.begin_run(&one.name, false, false, 2).await.unwrap();
    let results: Vec<MailboxResult> = one
        .mailboxes
        .iter()
        .map(|i| result(i, Status::Ok))
        .collect();
    let batch: Vec<(&LineItem, &MailboxResult)> =
        one.mailboxes.iter().zip(results.iter()).collect();
    store.record(&one.name, &run, false, &batch).await.unwrap();
    let states = store.items(&one.name).await.unwrap();
    assert_eq!(states.len(), 2, "{}", b.name);
    assert!(
        states.values().all(|s| s.destination.is_none()),
        "{}",
        b.name
    );
    let sel = store.select(&one, false, false).await.unwrap();
    assert!(sel.verify.is_empty(), "{}", b.name);
}

#[tokio::test]
async fn state_store_on_every_backend() {
    on_every_backend!(state_suite);
}

#[tokio::test]
async fn reopening_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let url = exgate_verify::store::sqlite_url(&dir.path().join("s.sqlite"));
    let project = fake::project("reopen", 2);
    {
        let store = exgate_verify::store::Store::open(&url).await.unwrap();
        let run = store.begin_run("reopen", false, false, 2).await.unwrap();
        let r = result(&project.mailboxes[0], Status::Ok);
        store
            .record("reopen", &run, false, &[(&project.mailboxes[0], &r)])
            .await
            .unwrap();
        store.close().await;
    }
    let store = exgate_verify::store::Store::open(&url).await.unwrap();
    let sel = store.select(&project, false, false).await.unwrap();
    assert_eq!(sel.verify.len(), 1);
    assert_eq!(sel.skipped.len(), 1);
}

#[tokio::test]
async fn unsupported_urls_and_passwords_in_errors() {
    let err = exgate_verify::store::Store::open("mysql://u:CANARY-DBPW@h/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("CANARY-DBPW"), "{err}");
    assert!(err.contains("unsupported"), "{err}");
    let err = exgate_verify::store::Store::open("postgres://u:CANARY-DBPW@127.0.0.1:1/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("CANARY-DBPW"), "{err}");
    assert!(err.contains("u:***@127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn a_sqlite_url_to_a_new_file_creates_it_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-state.sqlite");
    let url = format!("sqlite://{}", path.display());
    let store = exgate_verify::store::Store::open(&url).await.unwrap();
    store.close().await;
    assert!(path.exists(), "the database file was created");
    // WAL is recorded in the file header: bytes 18 and 19 are 2 in WAL mode (1 in rollback mode).
    let header = std::fs::read(&path).unwrap();
    assert_eq!(
        header.get(18..20),
        Some(&[2u8, 2u8][..]),
        "journal mode is WAL"
    );
}

/// Large batches are written in several multi-row statements; every row must arrive.
async fn bulk_suite(b: &Backend) {
    let store = &b.store;
    let project = fake::project("bulk-suite", 450);
    let run = store
        .begin_run(&project.name, false, false, 450)
        .await
        .unwrap();
    let results: Vec<MailboxResult> = project
        .mailboxes
        .iter()
        .enumerate()
        .map(|(i, item)| {
            result(
                item,
                if i % 3 == 0 {
                    Status::Failed
                } else {
                    Status::Ok
                },
            )
        })
        .collect();
    let batch: Vec<(&LineItem, &MailboxResult)> =
        project.mailboxes.iter().zip(results.iter()).collect();
    store
        .record(&project.name, &run, false, &batch)
        .await
        .unwrap();
    let sel = store.select(&project, false, false).await.unwrap();
    assert_eq!(sel.verify.len(), 150, "{}", b.name);
    assert_eq!(sel.skipped.len(), 300);
    let last = project.mailboxes.last().unwrap();
    let hist = store.history(&project.name, &last.id).await.unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].steps, results.last().unwrap().steps, "{}", b.name);
}

#[tokio::test]
async fn large_batches_on_every_backend() {
    on_every_backend!(bulk_suite);
}
