//! Re-running after a fix verifies only what failed (on SQLite and PostgreSQL).

use std::sync::Arc;

use exgate_verify::report::write_json_from;
use exgate_verify::store::Listing;
use exgate_verify::{NoProgress, Side, Status, StepName, VerifyOptions, verify_project};
use tokio::sync::watch;

use crate::backends::Backend;
use crate::fake::{self, Fake};
use crate::on_every_backend;

async fn rerun_suite(b: &Backend) {
    let store = &b.store;
    let project = fake::project(&format!("rerun-{}", b.name), 10);
    let fake = Arc::new(Fake::default());
    fake.mailbox_faults
        .lock()
        .unwrap()
        .extend([2, 5, 7].map(|i| (Side::Source, StepName::Open, format!("user{i}@contoso.com"))));
    let (_tx, cancel) = watch::channel(false);
    let opts = VerifyOptions::default();

    let r1 = verify_project(
        fake.clone(),
        &project,
        store,
        &opts,
        cancel.clone(),
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!((r1.summary.ok, r1.summary.failed), (7, 3), "{}", b.name);
    assert_eq!(r1.groups[0].id, "mailbox_not_found");
    assert_eq!(fake.total_resolves(), 10);

    // The operator fixes the three mailboxes; the re-run checks only them.
    fake.mailbox_faults.lock().unwrap().clear();
    let r2 = verify_project(
        fake.clone(),
        &project,
        store,
        &opts,
        cancel.clone(),
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(
        (r2.summary.total, r2.summary.ok, r2.summary.skipped),
        (3, 3, 7)
    );
    // The report of the re-run lists the whole project, read from the store in source order:
    // the seven skipped mailboxes with their result of the first run, marked with it.
    let listed = |listing, project: &exgate_verify::Project| {
        let r2 = r2.clone();
        let project = project.clone();
        async move {
            let mut out = Vec::new();
            let n = write_json_from(store, &project, &r2, listing, &mut out, &mut NoProgress)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let rows: Vec<(String, Option<String>)> = v["mailboxes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["source"].as_str().unwrap().to_owned(),
                        m["earlier_run"].as_str().map(str::to_owned),
                    )
                })
                .collect();
            assert_eq!(n as usize, rows.len());
            rows
        }
    };
    let whole = listed(Listing::Project, &project).await;
    let mut expected: Vec<(String, Option<String>)> = (0..10)
        .map(|i| {
            let earlier = (![2, 5, 7].contains(&i)).then(|| r1.summary.run_id.clone());
            (format!("user{i}@contoso.com"), earlier)
        })
        .collect();
    expected.sort();
    assert_eq!(whole, expected, "{}", b.name);
    let changes = listed(Listing::RunOnly, &project).await;
    assert_eq!(
        changes,
        [
            "user2@contoso.com",
            "user5@contoso.com",
            "user7@contoso.com"
        ]
        .map(|s| (s.to_owned(), None))
        .to_vec()
    );
    // A line removed from the project is no longer reported.
    let mut smaller = project.clone();
    smaller
        .mailboxes
        .retain(|m| m.source != "user3@contoso.com");
    let whole = listed(Listing::Project, &smaller).await;
    assert_eq!(whole.len(), 9);
    assert!(whole.iter().all(|(s, _)| s != "user3@contoso.com"));
    for i in 0..10 {
        let expected = if [2, 5, 7].contains(&i) { 2 } else { 1 };
        assert_eq!(
            fake.resolves_of(&format!("user{i}@contoso.com")),
            expected,
            "user{i} on {}",
            b.name
        );
    }

    // Nothing left to do; --all checks everything again.
    let r3 = verify_project(
        fake.clone(),
        &project,
        store,
        &opts,
        cancel.clone(),
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!((r3.summary.total, r3.summary.skipped), (0, 10));
    assert!(r3.all_ok());
    let all = VerifyOptions {
        all: true,
        ..VerifyOptions::default()
    };
    let r4 = verify_project(fake.clone(), &project, store, &all, cancel, &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(r4.summary.total, 10);
}

async fn tenant_fault_suite(b: &Backend) {
    let store = &b.store;
    let project = fake::project(&format!("tenant-fault-{}", b.name), 40);
    let fake = Arc::new(Fake::default());
    fake.endpoint_faults
        .lock()
        .unwrap()
        .insert((Side::Destination, StepName::Token));
    let (_tx, cancel) = watch::channel(false);
    let opts = VerifyOptions::default();
    let r1 = verify_project(
        fake.clone(),
        &project,
        store,
        &opts,
        cancel.clone(),
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(
        (r1.summary.failed, r1.summary.blocked),
        (1, 39),
        "{}",
        b.name
    );
    assert_eq!(r1.faults.len(), 1);
    assert_eq!(r1.groups.len(), 1, "one cause, one fix");
    assert_eq!(r1.groups[0].id, "invalid_client_secret");
    assert_eq!(
        (r1.groups[0].failed.len(), r1.groups[0].blocked.len()),
        (1, 39)
    );

    // The secret is fixed: everything that failed or was blocked is verified, and passes.
    fake.endpoint_faults.lock().unwrap().clear();
    let r2 = verify_project(
        fake.clone(),
        &project,
        store,
        &opts,
        cancel,
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!((r2.summary.total, r2.summary.ok), (40, 40));
    let hist = store
        .history(&project.name, &project.mailboxes[0].id)
        .await
        .unwrap();
    assert_eq!(hist.len(), 2);
    assert_ne!(hist[0].status, Status::Ok);
    assert_eq!(hist[1].status, Status::Ok);
}

#[tokio::test]
async fn rerun_after_fix_checks_only_failed_items() {
    on_every_backend!(rerun_suite);
}

#[tokio::test]
async fn tenant_fault_rerun_after_fix() {
    on_every_backend!(tenant_fault_suite);
}
