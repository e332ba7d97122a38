//! 10,000 generated mailboxes, each opened and counted through Graph and through EWS.

mod common;

use axum::http::StatusCode;
use common::*;

const MANY: &str = r#"
[[mailbox_sets]]
domain = "contoso.com"
prefix = "user"
count = 10000
inbox_messages = 3
"#;

#[tokio::test]
async fn ten_thousand_mailboxes_answer_through_graph_and_ews() {
    let h = Harness::with(MANY);
    assert_eq!(h.state.stats().mailboxes, 10_000);
    let graph = bearer(&app_token(GRAPH, &["Mail.Read", "User.Read.All"]));
    let ews = bearer(&app_token(EXO, &["full_access_as_app"]));
    for n in 1..=10_000u32 {
        let upn = format!("user{n}@contoso.com");
        let r = h
            .get(
                &format!("/v1.0/users/{upn}/mailFolders/inbox"),
                Some(&graph),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{upn}: {}", r.body);
        let v = r.json();
        assert_eq!(v["totalItemCount"], 3, "{upn}");
        assert_eq!(v["displayName"], "Inbox", "{upn}");
        let r = h
            .ews(&ews, &soap(&imp(&upn), &get_folder("inbox", Some(&upn))))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{upn}: {}", r.body);
        assert_eq!(tag(&r.body, "TotalCount").as_deref(), Some("3"), "{upn}");
        assert!(
            r.body
                .contains("<m:GetFolderResponseMessage ResponseClass=\"Success\">"),
            "{upn}"
        );
    }
    let s = h.state.stats();
    assert_eq!(s.graph_requests, 10_000);
    assert_eq!(s.ews_requests, 10_000);
    assert_eq!(s.auth_failures, 0);
}
