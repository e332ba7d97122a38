//! The `Mailbox` interface: the same scenario through Graph and through EWS.

use exgate_mail::ews::ConnectingSid;
use exgate_mail::{
    ErrorKind, MailEndpoint, Mailbox, PageCursor, Protocol, SyncState, open_mailbox,
};

use crate::fixture::{self, Fixture};
use crate::{bearer, http};

const USER: &str = "user@example.com";

fn endpoints(fx: &Fixture) -> Vec<MailEndpoint> {
    vec![
        MailEndpoint::Graph {
            base: format!("{}/v1.0", fx.base),
        },
        MailEndpoint::Ews {
            url: fx.url("/EWS/Exchange.asmx"),
            impersonation: Some(ConnectingSid::PrimarySmtpAddress(USER.into())),
            server_version: None,
        },
    ]
}

async fn all_ids(mb: &dyn Mailbox) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<PageCursor> = None;
    loop {
        let page = mb
            .page_message_ids("inbox", cursor.as_ref(), 2)
            .await
            .unwrap();
        assert!(page.ids.len() <= 2);
        ids.extend(page.ids);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn same_scenario_through_graph_and_ews() {
    let fx = Fixture::start(fixture::exchange()).await;
    for ep in endpoints(&fx) {
        let mb = open_mailbox(&ep, &http(), bearer("app-token"), USER).unwrap();
        let info = mb.open().await.unwrap();
        assert_eq!(info.address, USER);
        assert_eq!(info.protocol, mb.protocol());
        if mb.protocol() == Protocol::Ews {
            assert_eq!(info.server_version.as_deref(), Some("15.20.8466.32"));
            assert_eq!(info.id, "AAMkRoot");
        } else {
            assert_eq!(info.display_name.as_deref(), Some("User One"));
        }
        let folders = mb.list_folders().await.unwrap();
        let names: Vec<_> = folders.iter().filter_map(|f| f.name.as_deref()).collect();
        assert_eq!(names, ["Inbox", "Sent Items"], "{:?}", mb.protocol());
        assert_eq!(mb.inbox_count().await.unwrap(), 3);
        assert_eq!(
            all_ids(mb.as_ref()).await,
            ["AAMkItem1", "AAMkItem2", "AAMkItem3"]
        );
        assert_eq!(mb.fetch_mime("AAMkItem2").await.unwrap(), fixture::MIME);
        mb.write_probe().await.unwrap();
    }
}

#[tokio::test]
async fn ews_mailbox_always_sends_anchor_and_impersonation() {
    let fx = Fixture::start(fixture::exchange()).await;
    let mb = open_mailbox(&endpoints(&fx)[1], &http(), bearer("app-token"), USER).unwrap();
    mb.open().await.unwrap();
    mb.inbox_count().await.unwrap();
    mb.sync("inbox", None).await.unwrap();
    mb.write_probe().await.unwrap();
    let reqs = fx.requests();
    assert_eq!(reqs.len(), 5);
    for r in reqs {
        assert_eq!(r.header("x-anchormailbox"), Some(USER));
        assert!(
            r.body
                .contains("<t:PrimarySmtpAddress>user@example.com</t:PrimarySmtpAddress>")
        );
    }
}

#[tokio::test]
async fn incremental_sync_through_graph_delta() {
    let fx = Fixture::start(fixture::exchange()).await;
    let mb = open_mailbox(&endpoints(&fx)[0], &http(), bearer("app-token"), USER).unwrap();
    let b1 = mb.sync("inbox", None).await.unwrap();
    assert_eq!(b1.changed, ["AAMkItem1", "AAMkItem2"]);
    assert!(b1.more);
    let b2 = mb.sync("inbox", Some(&b1.state)).await.unwrap();
    assert_eq!(b2.changed, ["AAMkItem3"]);
    assert!(!b2.more);
    let SyncState::Graph(delta) = &b2.state else {
        panic!("graph state expected")
    };
    assert!(delta.contains("deltatoken=d1"));
    let b3 = mb.sync("inbox", Some(&b2.state)).await.unwrap();
    assert_eq!(b3.deleted, ["AAMkItem1"]);
    assert!(b3.changed.is_empty());
    assert!(
        fx.requests()[0]
            .header("prefer")
            .unwrap()
            .starts_with("odata.maxpagesize=")
    );
    let expired = SyncState::Graph(format!(
        "{}/v1.0/users/{USER}/mailFolders('inbox')/messages/delta?$deltatoken=expired",
        fx.base
    ));
    let e = mb.sync("inbox", Some(&expired)).await.unwrap_err();
    assert_eq!(e.evidence().status, Some(410));
    assert_eq!(
        e.evidence().graph_error.as_ref().unwrap().code,
        "syncStateNotFound"
    );
}

#[tokio::test]
async fn incremental_sync_through_ews_sync_folder_items() {
    let fx = Fixture::start(fixture::exchange()).await;
    let mb = open_mailbox(&endpoints(&fx)[1], &http(), bearer("app-token"), USER).unwrap();
    let b1 = mb.sync("inbox", None).await.unwrap();
    assert_eq!(b1.changed, ["AAMkItem1", "AAMkItem2"]);
    assert_eq!(b1.state, SyncState::Ews("S1".into()));
    assert!(!b1.more);
    let b2 = mb.sync("inbox", Some(&b1.state)).await.unwrap();
    assert_eq!(b2.deleted, ["AAMkItem1"]);
    assert_eq!(
        b2.changed,
        ["AAMkItem2"],
        "read-flag changes count as changes"
    );
    let e = mb
        .sync("inbox", Some(&SyncState::Ews("bogus".into())))
        .await
        .unwrap_err();
    assert_eq!(
        e.evidence().ews_response.as_ref().unwrap().response_code,
        "ErrorInvalidSyncStateData"
    );
}

#[tokio::test]
async fn states_and_cursors_of_the_other_protocol_are_refused() {
    let fx = Fixture::start(fixture::exchange()).await;
    let eps = endpoints(&fx);
    let graph = open_mailbox(&eps[0], &http(), bearer("app-token"), USER).unwrap();
    let ews = open_mailbox(&eps[1], &http(), bearer("app-token"), USER).unwrap();
    let e = graph
        .sync("inbox", Some(&SyncState::Ews("S1".into())))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = ews
        .page_message_ids("inbox", Some(&PageCursor::Graph("x".into())), 2)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(fx.requests().is_empty());
    // Cursors and states survive serialisation unchanged.
    let s = serde_json::to_string(&SyncState::Ews("S1".into())).unwrap();
    assert_eq!(
        serde_json::from_str::<SyncState>(&s).unwrap(),
        SyncState::Ews("S1".into())
    );
}

#[tokio::test]
async fn open_failures_carry_protocol_evidence() {
    let fx = Fixture::start(fixture::exchange()).await;
    let graph = open_mailbox(
        &endpoints(&fx)[0],
        &http(),
        bearer("app-token"),
        "onprem@example.com",
    )
    .unwrap();
    let e = graph.open().await.unwrap_err();
    assert_eq!(
        e.evidence().graph_error.as_ref().unwrap().code,
        "MailboxNotEnabledForRESTAPI"
    );
    assert_eq!(e.evidence().protocol, Some(Protocol::Graph));
    let ews = open_mailbox(
        &MailEndpoint::Ews {
            url: fx.url("/EWS/Exchange.asmx"),
            impersonation: None,
            server_version: None,
        },
        &http(),
        bearer("app-token"),
        USER,
    )
    .unwrap();
    let e = ews.open().await.unwrap_err();
    assert_eq!(
        e.evidence()
            .soap_fault
            .as_ref()
            .unwrap()
            .response_code
            .as_deref(),
        Some("ErrorInvalidExchangeImpersonationHeaderData")
    );
}
