//! Graph client: request shape, error bodies, 401/403 never retried, 429 Retry-After, paging.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use exgate_mail::ErrorKind;
use exgate_mail::graph::GraphClient;

use crate::fixture::{self, Canned, Fixture};
use crate::{bearer, http};

const USER: &str = "user@example.com";

fn client(fx: &Fixture, token: &str) -> GraphClient {
    GraphClient::new(http(), &format!("{}/v1.0", fx.base), bearer(token)).unwrap()
}

#[tokio::test]
async fn user_lookup_sends_bearer_accept_and_a_client_request_id() {
    let fx = Fixture::start(fixture::exchange()).await;
    let u = client(&fx, "app-token").user(USER).await.unwrap();
    assert_eq!(u.id, "87d349ed-44d7-43e1-9a83-5f2406dee5bd");
    assert_eq!(u.display_name.as_deref(), Some("User One"));
    let r = &fx.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/v1.0/users/user@example.com");
    assert_eq!(r.header("authorization"), Some("Bearer app-token"));
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("client-request-id").map(str::len), Some(36));
}

#[tokio::test]
async fn graph_error_bodies_are_kept_as_typed_evidence() {
    let fx = Fixture::start(fixture::exchange()).await;
    let c = client(&fx, "app-token");
    for (user, status, code, kind) in [
        (
            "nobody@example.com",
            404,
            "ErrorInvalidUser",
            ErrorKind::Graph,
        ),
        (
            "onprem@example.com",
            404,
            "MailboxNotEnabledForRESTAPI",
            ErrorKind::Graph,
        ),
        (
            "denied@example.com",
            403,
            "ErrorAccessDenied",
            ErrorKind::Forbidden,
        ),
        (
            "unlicensed@example.com",
            403,
            "ErrorInvalidLicense",
            ErrorKind::Forbidden,
        ),
    ] {
        let e = c.user(user).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{user}");
        let ev = e.evidence();
        assert_eq!(ev.status, Some(status));
        let g = ev.graph_error.as_ref().unwrap();
        assert_eq!(g.code, code);
        assert_eq!(
            g.request_id.as_deref(),
            Some("6c57aaaa-0000-0000-0000-000000000001")
        );
        assert_eq!(g.date.as_deref(), Some("2024-01-01T10:00:00"));
        assert_eq!(ev.attempts, 1);
        assert!(e.to_string().contains(code));
    }
    assert_eq!(fx.requests().len(), 4, "403 and 404 are not retried");
    let e = client(&fx, "").user(USER).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert_eq!(
        e.evidence().graph_error.as_ref().unwrap().code,
        "InvalidAuthenticationToken"
    );
    assert_eq!(
        e.evidence().challenges[0].param("client_id"),
        Some("00000003-0000-0000-c000-000000000000")
    );
    assert_eq!(fx.requests().len(), 5, "401 is not retried");
}

fn counting(respond: impl Fn(usize) -> Canned + Send + Sync + 'static) -> fixture::Responder {
    let n = Arc::new(AtomicUsize::new(0));
    Arc::new(move |_, _| respond(n.fetch_add(1, Ordering::SeqCst)))
}

const TOO_MANY: &str = r#"{"error":{"code":"TooManyRequests","innerError":{"code":"429","date":"2024-01-01T10:00:00","message":"Please retry after","request-id":"r1","status":"429"},"message":"Please retry again later."}}"#;

#[tokio::test]
async fn too_many_requests_waits_for_retry_after_then_succeeds() {
    let fx = Fixture::start(counting(|n| {
        if n == 0 {
            Canned::json(429, TOO_MANY).header("retry-after", "0")
        } else {
            Canned::json(200, r#"{"id":"u1"}"#)
        }
    }))
    .await;
    let u = client(&fx, "app-token").user(USER).await.unwrap();
    assert_eq!(u.id, "u1");
    let reqs = fx.requests();
    assert_eq!(reqs.len(), 2);
    assert_ne!(
        reqs[0].header("client-request-id"),
        reqs[1].header("client-request-id")
    );
}

#[tokio::test]
async fn persistent_throttling_ends_as_throttled_with_the_graph_code() {
    let fx = Fixture::start(counting(|_| {
        Canned::json(429, TOO_MANY).header("retry-after", "0")
    }))
    .await;
    let e = client(&fx, "app-token").user(USER).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled);
    assert_eq!(e.evidence().attempts, 3);
    assert_eq!(
        e.evidence()
            .graph_error
            .as_ref()
            .unwrap()
            .inner_code
            .as_deref(),
        Some("429")
    );
    assert_eq!(e.evidence().header("retry-after"), Some("0"));
    assert_eq!(fx.requests().len(), 3);
}

#[tokio::test]
async fn messages_page_uses_top_select_and_follows_next_link() {
    let fx = Fixture::start(fixture::exchange()).await;
    let c = client(&fx, "app-token");
    let p1 = c
        .messages_page(USER, "inbox", 2, &["id"], None)
        .await
        .unwrap();
    assert_eq!(p1.value.len(), 2);
    let next = p1.next_link.clone().unwrap();
    let p2 = c
        .messages_page(USER, "inbox", 2, &["id"], Some(&next))
        .await
        .unwrap();
    assert_eq!(p2.value[0].id, "AAMkItem3");
    assert_eq!(p2.next_link, None);
    let reqs = fx.requests();
    assert_eq!(
        reqs[0].path,
        "/v1.0/users/user@example.com/mailFolders/inbox/messages"
    );
    assert_eq!(reqs[0].query, "%24top=2&%24select=id");
    assert_eq!(
        reqs[1].query, "%24top=2&%24skip=2",
        "the nextLink is used verbatim"
    );
}

#[tokio::test]
async fn refuses_to_follow_a_next_link_to_another_host() {
    let fx = Fixture::start(Arc::new(|_, _| {
        Canned::json(200, r#"{"value":[{"id":"a"}],"@odata.nextLink":"https://attacker.example/v1.0/users/x/messages?$skip=1"}"#)
    }))
    .await;
    let c = client(&fx, "app-token");
    let p = c.messages_page(USER, "inbox", 1, &[], None).await.unwrap();
    let e = c
        .messages_page(USER, "inbox", 1, &[], p.next_link.as_deref())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(fx.requests().len(), 1);
}

#[tokio::test]
async fn mime_send_mail_and_draft_round_trip() {
    let fx = Fixture::start(fixture::exchange()).await;
    let c = client(&fx, "app-token");
    assert_eq!(
        c.message_mime(USER, "AAMkItem1").await.unwrap(),
        fixture::MIME
    );
    let e = c.message_mime(USER, "missing").await.unwrap_err();
    assert_eq!(
        e.evidence().graph_error.as_ref().unwrap().code,
        "ErrorItemNotFound"
    );
    c.send_mail(USER, serde_json::json!({"subject": "hi", "toRecipients": [{"emailAddress": {"address": "x@example.org"}}]}), false)
        .await
        .unwrap();
    let send = fx
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/sendMail"))
        .unwrap();
    assert_eq!(send.method, "POST");
    assert_eq!(send.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&send.body).unwrap();
    assert_eq!(body["saveToSentItems"], false);
    assert_eq!(body["message"]["subject"], "hi");
    let id = c.create_draft(USER, "s", "t").await.unwrap();
    c.delete_message(USER, &id).await.unwrap();
    assert_eq!(fx.requests().last().unwrap().method, "DELETE");
}

#[tokio::test]
async fn resource_not_found_is_a_graph_error_not_retried() {
    let fx = Fixture::start(Arc::new(|_, _| {
        fixture::graph_error(404, "ResourceNotFound", "Resource could not be discovered.")
    }))
    .await;
    let e = client(&fx, "app-token")
        .mail_folder(USER, "nosuchfolder")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Graph);
    assert_eq!(
        e.evidence().graph_error.as_ref().unwrap().code,
        "ResourceNotFound"
    );
    assert_eq!(
        e.evidence().operation.as_deref(),
        Some("GET /users/{id}/mailFolders/{id}")
    );
    assert_eq!(fx.requests().len(), 1);
}
