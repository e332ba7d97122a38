//! Report tests: grouping, the JSON shape, text and HTML rendering, escaping.

use super::*;
use crate::model::{Evidence, Side, StepName, StepResult};

fn cause(id: &str, fix: &str) -> Cause {
    Cause {
        id: id.into(),
        confidence: 0.8,
        title: format!("Title {id}"),
        explanation: "because".into(),
        evidence: vec!["AADSTS7000215".into()],
        entry: String::new(),
        fix: vec![fix.into()],
        references: vec!["https://learn.microsoft.com/x".into()],
        check: None,
    }
}

fn step(side: Side, name: StepName, status: Status, causes: Vec<Cause>) -> StepResult {
    StepResult {
        name,
        endpoint: side,
        ok: status == Status::Ok,
        status,
        ms: 3,
        attempts: 1,
        detail: None,
        item_count: None,
        error: (status != Status::Ok).then(|| "it broke".to_owned()),
        causes,
        evidence: (status == Status::Failed).then(Evidence::default),
        blocked_by: (status == Status::Blocked).then(|| "destination".to_owned()),
    }
}

fn mailbox(src: &str, steps: Vec<StepResult>) -> MailboxResult {
    let status = MailboxResult::status_of(&steps);
    MailboxResult {
        id: src.into(),
        source: src.into(),
        destination: Some(src.replace("contoso", "fabrikam")),
        ok: status == Status::Ok,
        status,
        ms: 7,
        finished_at_ms: 1,
        steps,
        earlier_run: None,
    }
}

pub(crate) fn sample() -> Report {
    let secret = cause(
        "invalid_client_secret",
        "Create a new secret; copy its Value",
    );
    let fault = Fault {
        id: "destination".into(),
        endpoint: Side::Destination,
        step: StepName::Token,
        first_mailbox: "a@fabrikam.com".into(),
        error: "AADSTS7000215".into(),
        causes: vec![secret.clone()],
        evidence: Evidence::default(),
    };
    let ok = |s: &str| {
        mailbox(
            s,
            vec![
                step(Side::Source, StepName::Open, Status::Ok, vec![]),
                step(Side::Destination, StepName::Open, Status::Ok, vec![]),
            ],
        )
    };
    let mailboxes = vec![
        ok("c@contoso.com"),
        mailbox(
            "a@contoso.com",
            vec![step(
                Side::Destination,
                StepName::Token,
                Status::Failed,
                vec![secret],
            )],
        ),
        mailbox(
            "b@contoso.com",
            vec![step(
                Side::Destination,
                StepName::Token,
                Status::Blocked,
                vec![],
            )],
        ),
        mailbox(
            "<script>alert(1)</script>@contoso.com",
            vec![step(
                Side::Source,
                StepName::Open,
                Status::Failed,
                vec![cause(
                    "mailbox_not_found",
                    "Check the address & <b>licence</b>",
                )],
            )],
        ),
        mailbox(
            "e@contoso.com",
            vec![step(Side::Source, StepName::Inbox, Status::Failed, vec![])],
        ),
        ok("d@contoso.com"),
    ];
    Report::build(
        RunInfo {
            project: "p<1>".into(),
            run_id: "run-1".into(),
            started_at_ms: 0,
            project_items: 9,
            skipped: 3,
            selected: 6,
            cancelled: false,
            duration_ms: 2000,
        },
        mailboxes,
        vec![fault],
    )
}

#[test]
fn totals_and_groups() {
    let r = sample();
    let s = &r.head.summary;
    assert_eq!(
        (s.total, s.ok, s.failed, s.blocked, s.skipped),
        (6, 2, 3, 1, 3)
    );
    assert_eq!(s.rate_per_s, 3.0);
    assert!(!r.all_ok());
    let ids: Vec<&str> = r.head.groups.iter().map(|g| g.id.as_str()).collect();
    // The secret group has one failed and one blocked mailbox: largest first.
    assert_eq!(
        ids,
        vec!["invalid_client_secret", "mailbox_not_found", "undiagnosed"]
    );
    let g = &r.head.groups[0];
    assert_eq!(g.failed.len(), 1);
    assert_eq!(
        g.blocked,
        vec!["b@contoso.com -> b@fabrikam.com".to_owned()]
    );
    assert_eq!(
        g.fix,
        vec!["Create a new secret; copy its Value".to_owned()]
    );
    assert_eq!(
        s.causes[0],
        CauseCount {
            id: "invalid_client_secret".into(),
            failed: 1,
            blocked: 1
        }
    );
}

#[test]
fn json_has_the_documented_shape() {
    let r = sample();
    let mut written = Vec::new();
    r.write_json(&mut written).unwrap();
    assert_eq!(written, format!("{}\n", r.to_json()).into_bytes());
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    for key in [
        "total",
        "ok",
        "failed",
        "blocked",
        "duration_ms",
        "rate_per_s",
        "causes",
    ] {
        assert!(v["summary"].get(key).is_some(), "summary.{key}");
    }
    let m = &v["mailboxes"][0];
    assert_eq!(m["source"], "<script>alert(1)</script>@contoso.com");
    assert!(m["destination"].is_string());
    assert_eq!(m["ok"], false);
    let s = &m["steps"][0];
    assert_eq!(s["name"], "open");
    assert_eq!(s["endpoint"], "source");
    assert_eq!(s["ok"], false);
    assert!(s["ms"].is_u64());
    assert_eq!(s["causes"][0]["id"], "mailbox_not_found");
    assert!(s["causes"][0]["confidence"].is_f64());
    // And it reads back.
    let back: Report = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn text_gives_each_fix_once_with_its_mailboxes() {
    let t = render_text(&sample().head);
    assert_eq!(
        t.matches("Create a new secret; copy its Value").count(),
        1,
        "{t}"
    );
    assert!(t.contains("[invalid_client_secret]"), "{t}");
    assert!(
        t.contains("a@contoso.com -> a@fabrikam.com: destination token"),
        "{t}"
    );
    assert!(
        t.contains("blocked: b@contoso.com -> b@fabrikam.com"),
        "{t}"
    );
    assert!(
        t.contains("Endpoint-wide fault on the destination side"),
        "{t}"
    );
    assert!(t.contains("3 mailboxes were verified ok before"), "{t}");
}

#[test]
fn html_escapes_everything_and_is_self_contained() {
    let h = render_html(&sample());
    assert!(!h.contains("<script>alert(1)"), "raw markup from data");
    assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;@contoso.com"));
    assert!(h.contains("Check the address &amp; &lt;b&gt;licence&lt;/b&gt;"));
    assert!(h.contains("exgate verify: p&lt;1&gt;"));
    assert!(h.contains(r#"id="summary-ok" data-value="2""#));
    assert!(h.contains(r#"id="summary-failed" data-value="3""#));
    assert!(h.contains(r#"id="summary-blocked" data-value="1""#));
    assert!(h.contains("<svg id=\"summary-chart\""));
    // No external resources.
    for needle in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!h.contains(needle), "{needle}");
    }
    assert_eq!(h.matches("<script>").count(), 1, "only the inline script");
}

#[test]
fn escape_covers_attribute_breakers() {
    assert_eq!(html::escape(r#"a"b'c<d>&"#), "a&quot;b&#39;c&lt;d&gt;&amp;");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn html_never_lets_data_through_unescaped(src in "[a-z<>&\"' /=]{1,30}", err in "\\PC{0,60}") {
            // Markers make the data findable in the page whatever it contains.
            let src = format!("zq{src}qz");
            let mut r = sample();
            r.mailboxes[0].source = src.clone();
            r.mailboxes[0].steps[0].error = Some(err.clone());
            r.head.groups[0].title = err.clone();
            let h = render_html(&r);
            if src.contains(['<', '>', '&', '"', '\'']) {
                prop_assert!(!h.contains(&src), "raw data in the page");
            }
            prop_assert!(h.contains(&html::escape(&src)));
            prop_assert_eq!(h.matches("<script>").count(), 1);
        }

        #[test]
        fn json_round_trips(src in "\\PC{0,40}", ms in any::<u64>()) {
            let mut r = sample();
            r.mailboxes[0].source = src;
            r.mailboxes[0].ms = ms;
            let back: Report = serde_json::from_str(&r.to_json()).unwrap();
            prop_assert_eq!(back, r);
        }
    }
}

#[test]
fn combined_reports_keep_each_blocked_mailbox_with_its_own_fault() {
    let mut first = sample();
    first.head.summary.project = "one".into();
    let mut second = sample();
    second.head.summary.project = "two".into();
    let combined = Report::combine("programme", 5, 4000, vec![first.clone(), second]);

    assert_eq!(combined.head.summary.project, "programme");
    assert_eq!(combined.head.summary.total, 2 * first.head.summary.total);
    assert_eq!(combined.head.summary.failed, 2 * first.head.summary.failed);
    assert_eq!(
        combined.head.summary.blocked,
        2 * first.head.summary.blocked
    );
    assert_eq!(combined.head.summary.project_items, 18);
    assert_eq!(combined.head.summary.skipped, 6);
    assert_eq!(combined.head.summary.run_id, "run-1,run-1");
    let fault_ids: Vec<&str> = combined.head.faults.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(fault_ids, ["one/destination", "two/destination"]);
    for m in &combined.mailboxes {
        let project = Report::project_of(&m.id);
        assert!(project == "one" || project == "two", "{}", m.id);
        for s in m.steps.iter().filter(|s| s.status == Status::Blocked) {
            assert_eq!(s.blocked_by, Some(format!("{project}/destination")));
        }
    }
    // Blocked mailboxes of both projects land in the group of their fault's cause.
    let secret = combined
        .head
        .groups
        .iter()
        .find(|g| g.id == "invalid_client_secret")
        .expect("group");
    assert_eq!(secret.blocked.len(), 2);
    assert_eq!(secret.failed.len(), 2);
}

/// A mailbox whose two sides are blocked by one fault, or failed for one cause, counts once.
#[test]
fn cause_counts_are_of_mailboxes_not_sides() {
    let secret = cause("invalid_client_secret", "Create a new secret");
    let fault = Fault {
        id: "destination".into(),
        endpoint: Side::Destination,
        step: StepName::Token,
        first_mailbox: "m0@contoso.com".into(),
        error: "AADSTS7000215".into(),
        causes: vec![secret.clone()],
        evidence: Evidence::default(),
    };
    let both = |s: &str, status: Status| {
        let causes = if status == Status::Failed {
            vec![secret.clone()]
        } else {
            vec![]
        };
        mailbox(
            s,
            vec![
                step(Side::Source, StepName::Token, status, causes.clone()),
                step(Side::Destination, StepName::Token, status, causes),
            ],
        )
    };
    let mut mailboxes = vec![both("m0@contoso.com", Status::Failed)];
    for i in 1..6 {
        mailboxes.push(both(&format!("m{i}@contoso.com"), Status::Blocked));
    }
    let r = Report::build(
        RunInfo {
            project: "p".into(),
            run_id: "r".into(),
            started_at_ms: 0,
            project_items: 6,
            skipped: 0,
            selected: 6,
            cancelled: false,
            duration_ms: 1,
        },
        mailboxes,
        vec![fault],
    );
    let c = r
        .head
        .summary
        .causes
        .iter()
        .find(|c| c.id == "invalid_client_secret")
        .expect("count");
    assert_eq!((c.failed, c.blocked), (1, 5), "{:?}", r.head.summary.causes);
}
