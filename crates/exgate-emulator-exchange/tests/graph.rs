//! Microsoft Graph mail: users, folders, paging, delta, MIME, sendMail and Graph's errors.

mod common;

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};

fn reader() -> String {
    bearer(&app_token(GRAPH, &["Mail.Read", "User.Read.All"]))
}

fn path_of(link: &str) -> String {
    link.strip_prefix("http://127.0.0.1:8443")
        .unwrap_or(link)
        .to_owned()
}

fn error_code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn user_by_upn_and_by_object_id() {
    let h = Harness::new();
    let r = h
        .get("/v1.0/users/adele@contoso.com", Some(&reader()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["userPrincipalName"], "adele@contoso.com");
    assert_eq!(v["displayName"], "Adele Vance");
    assert!(
        r.header("content-type")
            .starts_with("application/json; odata.metadata=minimal")
    );
    assert!(!r.header("request-id").is_empty());
    let id = v["id"].as_str().expect("id").to_owned();
    let r = h.get(&format!("/v1.0/users/{id}"), Some(&reader())).await;
    assert_eq!(r.json()["mail"], "adele@contoso.com");
    let r = h
        .get("/v1.0/users('a.vance@contoso.com')", Some(&reader()))
        .await;
    assert_eq!(r.json()["id"], json!(id));
}

#[tokio::test]
async fn unknown_user_is_request_resource_not_found_and_mail_paths_resource_not_found() {
    let h = Harness::new();
    let r = h
        .get("/v1.0/users/ghost@contoso.com", Some(&reader()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&r), "Request_ResourceNotFound");
    let e = &r.json()["error"]["innerError"];
    assert!(e["request-id"].is_string() && e["date"].is_string());
    let r = h
        .get(
            "/v1.0/users/ghost@contoso.com/mailFolders/inbox/messages",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&r), "ResourceNotFound");
    // Users of another tenant are invisible.
    let r = h
        .get("/v1.0/users/fred@fabrikam.com", Some(&reader()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reading_users_needs_a_user_read_permission() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com",
            Some(&bearer(&app_token(GRAPH, &["Mail.Read"]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&r), "Authorization_RequestDenied");
}

#[tokio::test]
async fn mail_folders_and_inbox_counts() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["totalItemCount"], 12);
    assert_eq!(r.json()["displayName"], "Inbox");
    let r = h
        .get("/v1.0/users/adele@contoso.com/mailFolders", Some(&reader()))
        .await;
    let names: Vec<String> = r.json()["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|f| f["displayName"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        names.contains(&"Sent Items".to_owned()) && names.contains(&"Inbox".to_owned()),
        "{names:?}"
    );
    let id = r.json()["value"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["displayName"] == "Sent Items"))
        .map(|f| f["id"].as_str().unwrap_or("").to_owned())
        .expect("id");
    let r = h
        .get(
            &format!("/v1.0/users/adele@contoso.com/mailFolders/{id}"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["totalItemCount"], 3);
}

#[tokio::test]
async fn messages_page_with_top_and_next_link_until_the_end() {
    let h = Harness::new();
    let mut link = "/v1.0/users/bob@contoso.com/mailFolders/inbox/messages?$top=40".to_owned();
    let mut ids = HashSet::new();
    let mut pages = 0;
    loop {
        let r = h.get(&link, Some(&reader())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v = r.json();
        let page = v["value"].as_array().expect("value");
        assert!(page.len() <= 40);
        for m in page {
            assert!(ids.insert(m["id"].as_str().expect("id").to_owned()));
        }
        pages += 1;
        match v["@odata.nextLink"].as_str() {
            Some(n) => link = path_of(n),
            None => break,
        }
        assert!(pages < 20);
    }
    assert_eq!(ids.len(), 250);
    assert_eq!(pages, 7);
    let r = h
        .get(
            "/v1.0/users/bob@contoso.com/mailFolders/inbox/messages",
            Some(&reader()),
        )
        .await;
    assert_eq!(
        r.json()["value"].as_array().map(Vec::len),
        Some(10),
        "default page size is 10"
    );
}

#[tokio::test]
async fn select_limits_the_properties_but_keeps_id_and_etag() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages?$select=subject,from&$top=2",
            Some(&reader()),
        )
        .await;
    let v = r.json();
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap_or("")
            .ends_with("/messages(subject,from)")
    );
    let first = v["value"][0].as_object().expect("object");
    let keys: HashSet<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        HashSet::from(["@odata.etag", "id", "subject", "from"])
    );
    assert!(
        v["@odata.nextLink"]
            .as_str()
            .unwrap_or("")
            .contains("%24select=subject%2Cfrom")
    );
}

#[tokio::test]
async fn message_by_id_and_its_mime_value() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/messages?$top=1",
            Some(&reader()),
        )
        .await;
    let m = r.json()["value"][0].clone();
    let id = m["id"].as_str().expect("id");
    let r = h
        .get(
            &format!("/v1.0/users/adele@contoso.com/messages/{id}"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["subject"], m["subject"]);
    let r = h
        .get(
            &format!("/v1.0/users/adele@contoso.com/messages/{id}/$value"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains(&format!(
            "Subject: {}\r\n",
            m["subject"].as_str().unwrap_or("")
        )),
        "{}",
        r.body
    );
    assert!(r.body.contains("MIME-Version: 1.0"));
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/messages/not-an-id",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&r), "ErrorInvalidIdMalformed");
    let r = h
        .get(
            &format!("/v1.0/users/bob@contoso.com/messages/{id}"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&r), "ErrorItemNotFound");
}

#[tokio::test]
async fn delta_pages_then_gives_a_delta_link_that_returns_only_changes() {
    let h = Harness::new();
    let auth = reader();
    let req = |p: &str| {
        Request::get(p.to_owned())
            .header("host", "127.0.0.1:8443")
            .header("authorization", auth.clone())
            .header("prefer", "odata.maxpagesize=5")
            .body(Body::empty())
            .expect("request")
    };
    let mut link = "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages/delta".to_owned();
    let mut seen = 0;
    let delta_link = loop {
        let r = h.send(req(&link)).await;
        let v = r.json();
        let page = v["value"].as_array().expect("value");
        assert!(
            page.iter()
                .all(|m| m["@odata.type"] == "#microsoft.graph.message")
        );
        seen += page.len();
        if let Some(n) = v["@odata.nextLink"].as_str() {
            assert!(n.contains("$skiptoken=") || n.contains("%24skiptoken="));
            link = path_of(n);
        } else {
            break path_of(v["@odata.deltaLink"].as_str().expect("deltaLink"));
        }
    };
    assert_eq!(seen, 12);
    let r = h.send(req(&delta_link)).await;
    assert_eq!(r.json()["value"].as_array().map(Vec::len), Some(0));
    let sender = bearer(&app_token(GRAPH, &["Mail.Send"]));
    let mail = json!({"message": {"subject": "Delta me", "body": {"contentType": "Text", "content": "x"}, "toRecipients": [{"emailAddress": {"address": "adele@contoso.com"}}]}});
    assert_eq!(
        h.graph_post("/v1.0/users/bob@contoso.com/sendMail", &sender, &mail)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let r = h.send(req(&delta_link)).await;
    let v = r.json();
    assert_eq!(v["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["value"][0]["subject"], "Delta me");
    let r = h
        .send(req(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages/delta?$deltatoken=bogus",
        ))
        .await;
    assert_eq!(r.status, StatusCode::GONE);
}

#[tokio::test]
async fn send_mail_needs_mail_send_and_delivers_with_a_sent_copy() {
    let h = Harness::new();
    let mail = json!({"message": {"subject": "Hi", "body": {"contentType": "HTML", "content": "<p>x</p>"}, "toRecipients": [{"emailAddress": {"address": "adele@contoso.com", "name": "Adele"}}]}});
    let r = h
        .graph_post("/v1.0/users/bob@contoso.com/sendMail", &reader(), &mail)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&r), "ErrorAccessDenied");
    let sender = bearer(&app_token(GRAPH, &["Mail.Send", "Mail.Read"]));
    let r = h
        .graph_post("/v1.0/users/bob@contoso.com/sendMail", &sender, &mail)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["totalItemCount"], 13);
    let r = h
        .get(
            "/v1.0/users/bob@contoso.com/mailFolders/sentitems",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["totalItemCount"], 4);
    let r = h
        .graph_post(
            "/v1.0/users/bob@contoso.com/sendMail",
            &sender,
            &json!({"message": {"subject": "none"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&r), "ErrorInvalidRecipients");
    let r = h
        .send(
            Request::post("/v1.0/users/bob@contoso.com/sendMail")
                .header("authorization", sender.clone())
                .body(Body::from("{not json"))
                .expect("req"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn access_policy_blocks_mailboxes_outside_the_group() {
    let h = Harness::new();
    let t = bearer(&sign(&app_claims(TID, SCOPED_APP, GRAPH, &["Mail.Read"])));
    let ok = h
        .get("/v1.0/users/adele@contoso.com/messages", Some(&t))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let r = h
        .get("/v1.0/users/bob@contoso.com/messages", Some(&t))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&r), "ErrorAccessDenied");
    assert_eq!(
        r.json()["error"]["message"],
        "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."
    );
}

#[tokio::test]
async fn on_premises_or_unprovisioned_mailboxes_are_not_enabled_for_rest() {
    let h = Harness::new();
    for u in ["onprem@contoso.com", "pending@contoso.com"] {
        let r = h
            .get(
                &format!("/v1.0/users/{u}/mailFolders/inbox/messages"),
                Some(&reader()),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{u}");
        assert_eq!(error_code(&r), "MailboxNotEnabledForRESTAPI");
        assert_eq!(
            r.json()["error"]["message"],
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise."
        );
    }
}

#[tokio::test]
async fn unlicensed_mailbox_is_error_invalid_license() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/unlicensed@contoso.com/messages",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&r), "ErrorInvalidLicense");
}

#[tokio::test]
async fn missing_mail_permission_is_access_denied() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/messages",
            Some(&bearer(&app_token(GRAPH, &["User.Read.All"]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["error"]["message"],
        "Access is denied. Check credentials and try again."
    );
}

#[tokio::test]
async fn throttling_is_429_with_retry_after() {
    let h = Harness::new();
    let t = bearer(&sign(&app_claims(
        TID,
        THROTTLED_APP,
        GRAPH,
        &["Mail.Read"],
    )));
    for _ in 0..2 {
        assert_eq!(
            h.get("/v1.0/users/adele@contoso.com/messages", Some(&t))
                .await
                .status,
            StatusCode::OK
        );
    }
    let r = h
        .get("/v1.0/users/adele@contoso.com/messages", Some(&t))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = r
        .header("retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!((500..=600).contains(&secs), "{secs}");
    assert_eq!(error_code(&r), "TooManyRequests");
    assert_eq!(r.json()["error"]["innerError"]["status"], "429");
}

#[tokio::test]
async fn token_problems_are_invalid_authentication_token() {
    let h = Harness::new();
    let r = h.get("/v1.0/users/adele@contoso.com/messages", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["message"], "Access token is empty.");
    assert!(
        r.header("www-authenticate")
            .contains("client_id=\"00000003-0000-0000-c000-000000000000\"")
    );
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/messages",
            Some(&bearer(&app_token(EXO, &["full_access_as_app"]))),
        )
        .await;
    assert_eq!(
        r.json()["error"]["message"],
        "Access token validation failure. Invalid audience."
    );
    let r = h
        .get("/v1.0/users/adele@contoso.com/messages", Some("Bearer abc"))
        .await;
    assert_eq!(error_code(&r), "InvalidAuthenticationToken");
    let mut c = app_claims(TID, APP, GRAPH, &["Mail.Read"]);
    c["exp"] = json!(now() - 3600);
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/messages",
            Some(&bearer(&sign(&c))),
        )
        .await;
    assert_eq!(
        r.json()["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/messages",
            Some(&bearer(&app_token(GRAPH, &[]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&r), "NoPermissionsInAccessToken");
}

#[tokio::test]
async fn me_is_for_delegated_tokens_only() {
    let h = Harness::new();
    let r = h.get("/v1.0/me/messages", Some(&reader())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let t = bearer(&user_token(
        "adele@contoso.com",
        GRAPH,
        "Mail.Read User.Read",
    ));
    let r = h.get("/v1.0/me/mailFolders/inbox", Some(&t)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["totalItemCount"], 12);
    let r = h
        .get("/v1.0/users/bob@contoso.com/messages", Some(&t))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a delegated user reads only their own mailbox"
    );
}

#[tokio::test]
async fn client_request_id_is_echoed() {
    let h = Harness::new();
    let r = h
        .send(
            Request::get("/v1.0/users/adele@contoso.com")
                .header("authorization", reader())
                .header("client-request-id", "abc-123")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(r.header("client-request-id"), "abc-123");
    let _: Value = r.json();
}

#[tokio::test]
async fn v2_graph_tokens_from_the_emulator_authority_are_accepted_others_are_not() {
    let h = Harness::new();
    let t = now();
    let v2 = |iss: String| {
        json!({"aud": "00000003-0000-0000-c000-000000000000", "iss": iss, "iat": t, "nbf": t, "exp": t + 3600,
               "azp": APP, "azpacr": "1", "idtyp": "app", "oid": "99999999-0000-0000-0000-000000000001",
               "roles": ["Mail.Read"], "tid": TID, "ver": "2.0"})
    };
    let ok = bearer(&sign(&v2(format!("{EMULATOR_AUTHORITY}/{TID}/v2.0"))));
    let r = h
        .get("/v1.0/users/adele@contoso.com/mailFolders/inbox", Some(&ok))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let bad = bearer(&sign(&v2(format!("https://evil.example/{TID}/v2.0"))));
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox",
            Some(&bad),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json()["error"]["message"],
        "Access token validation failure. Invalid issuer."
    );
}

#[tokio::test]
async fn generated_folders_appear_as_child_folders_of_the_inbox() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/carol@contoso.com/mailFolders/inbox/childFolders",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    let kids = v["value"].as_array().expect("value");
    assert_eq!(kids.len(), 3);
    assert!(kids.iter().all(|k| k["totalItemCount"] == 4));
    let id = kids[0]["id"].as_str().expect("id");
    let r = h
        .get(
            &format!("/v1.0/users/carol@contoso.com/mailFolders/{id}/messages"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["value"].as_array().map(Vec::len), Some(4));
    let r = h
        .get(
            "/v1.0/users/carol@contoso.com/mailFolders/inbox",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["childFolderCount"], 3);
    let r = h
        .get(
            "/v1.0/users/carol@contoso.com/messages?$top=1000",
            Some(&reader()),
        )
        .await;
    assert_eq!(
        r.json()["value"].as_array().map(Vec::len),
        Some(12 + 3 + 12)
    );
    let r = h
        .get("/v1.0/users/carol@contoso.com/mailFolders", Some(&reader()))
        .await;
    assert!(
        r.json()["value"]
            .as_array()
            .expect("value")
            .iter()
            .all(|f| f["displayName"] != "Project 1"),
        "top level only"
    );
}

#[tokio::test]
async fn bodies_are_html_unless_text_is_preferred() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/messages?$top=1&$select=body",
            Some(&reader()),
        )
        .await;
    let b = &r.json()["value"][0]["body"];
    assert_eq!(b["contentType"], "html");
    assert!(b["content"].as_str().unwrap_or("").starts_with("<html>"));
    let req = Request::get("/v1.0/users/adele@contoso.com/messages?$top=1&$select=body")
        .header("authorization", reader())
        .header("prefer", "outlook.body-content-type=\"text\"")
        .body(Body::empty())
        .expect("req");
    let r = h.send(req).await;
    let b = &r.json()["value"][0]["body"];
    assert_eq!(b["contentType"], "text");
    assert!(b["content"].as_str().unwrap_or("").starts_with("Hello "));
}

#[tokio::test]
async fn send_mail_reads_property_names_as_the_graph_sdks_send_them() {
    // msgraph-sdk-dotnet's SendMailPostRequestBody writes `Message` and `SaveToSentItems`.
    let h = Harness::new();
    let sender = bearer(&app_token(GRAPH, &["Mail.Send", "Mail.Read"]));
    let mail = json!({"Message": {"Subject": "From an SDK", "Body": {"ContentType": "Text", "Content": "x"}, "ToRecipients": [{"EmailAddress": {"Address": "adele@contoso.com"}}]}, "SaveToSentItems": false});
    let r = h
        .graph_post("/v1.0/users/bob@contoso.com/sendMail", &sender, &mail)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["totalItemCount"], 13);
    // SaveToSentItems false was read: no copy in Sent Items (3 generated there).
    let r = h
        .get(
            "/v1.0/users/bob@contoso.com/mailFolders/sentitems",
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["totalItemCount"], 3);
    // And the delivered message kept its subject.
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages?$top=50",
            Some(&reader()),
        )
        .await;
    let v = r.json();
    assert!(
        v["value"]
            .as_array()
            .expect("value")
            .iter()
            .any(|m| m["subject"] == "From an SDK"),
        "{v}"
    );
}

#[tokio::test]
async fn an_error_body_carries_the_request_id_of_its_header() {
    let h = Harness::new();
    let r = h
        .get(
            "/v1.0/users/nobody@contoso.com/mailFolders/inbox",
            Some(&reader()),
        )
        .await;
    assert!(r.status.is_client_error());
    let v = r.json();
    assert_eq!(
        v["error"]["innerError"]["request-id"].as_str(),
        Some(r.header("request-id").as_str()),
        "{v}"
    );
    assert_eq!(
        v["error"]["innerError"]["client-request-id"].as_str(),
        Some(r.header("client-request-id").as_str())
    );
}

#[tokio::test]
async fn message_lists_take_filter_orderby_and_count() {
    let h = Harness::new();
    let list = |q: &str| format!("/v1.0/users/bob@contoso.com/mailFolders/inbox/messages?{q}");
    // Everything, to compare with.
    let all = h.get(&list("$top=1000"), Some(&reader())).await.json();
    let all = all["value"].as_array().expect("value").clone();
    let unread = all.iter().filter(|m| m["isRead"] == false).count();
    let r = h
        .get(
            &list("$filter=isRead%20eq%20false&$count=true&$top=1000"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["@odata.count"], unread);
    assert!(
        v["value"]
            .as_array()
            .expect("value")
            .iter()
            .all(|m| m["isRead"] == false)
    );
    // Oldest first on request, paged with the query kept in the next link.
    let r = h
        .get(
            &list("$orderby=receivedDateTime%20asc&$top=2"),
            Some(&reader()),
        )
        .await;
    let v = r.json();
    let page = v["value"].as_array().expect("value");
    assert_eq!(page.len(), 2);
    assert!(page[0]["receivedDateTime"].as_str() <= page[1]["receivedDateTime"].as_str());
    let mut times: Vec<&str> = all
        .iter()
        .filter_map(|m| m["receivedDateTime"].as_str())
        .collect();
    times.sort_unstable();
    assert_eq!(page[0]["receivedDateTime"].as_str(), times.first().copied());
    let next = v["@odata.nextLink"].as_str().expect("nextLink");
    assert!(next.contains("%24orderby=receivedDateTime%20asc"), "{next}");
    // A subject search with startswith, and a sender filter.
    let subject = all[0]["subject"].as_str().expect("subject");
    let prefix: String = subject.chars().take(4).collect();
    let r = h
        .get(
            &list(&format!(
                "$filter=startswith(subject,'{}')&$top=100",
                prefix.replace(' ', "%20")
            )),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.json()["value"]
            .as_array()
            .expect("value")
            .iter()
            .any(|m| m["subject"] == subject)
    );
    // Graph's refusals.
    let r = h
        .get(&list("$filter=colour%20eq%20'red'"), Some(&reader()))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error"]["message"],
        "Could not find a property named 'colour' on type 'microsoft.graph.message'."
    );
    let r = h.get(&list("$filter=isRead%20eq"), Some(&reader())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&r), "BadRequest");
    // $orderby with $filter: its properties first in the filter, in its order
    // (InefficientFilter otherwise, as "List messages" documents).
    for bad in [
        "$filter=isRead%20eq%20false&$orderby=receivedDateTime%20desc",
        "$filter=isRead%20eq%20false%20and%20receivedDateTime%20ge%202020-01-01T00:00:00Z&$orderby=receivedDateTime%20desc",
        "$filter=receivedDateTime%20ge%202020-01-01T00:00:00Z&$orderby=receivedDateTime,subject",
    ] {
        let r = h.get(&list(bad), Some(&reader())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert_eq!(error_code(&r), "InefficientFilter", "{bad}");
        assert_eq!(
            r.json()["error"]["message"],
            "The restriction or sort order is too complex for this operation."
        );
    }
    let r = h
        .get(
            &list("$filter=receivedDateTime%20ge%202020-01-01T00:00:00Z%20and%20isRead%20eq%20false&$orderby=receivedDateTime%20desc&$top=1000"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let got = r.json();
    let got = got["value"].as_array().expect("value");
    assert_eq!(got.len(), unread);
    assert!(
        got.windows(2)
            .all(|w| w[0]["receivedDateTime"].as_str() >= w[1]["receivedDateTime"].as_str())
    );
}

#[tokio::test]
async fn attachments_of_a_message_without_any() {
    let h = Harness::new();
    let list = h
        .get(
            "/v1.0/users/bob@contoso.com/mailFolders/inbox/messages?$top=1",
            Some(&reader()),
        )
        .await
        .json();
    let id = list["value"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(list["value"][0]["hasAttachments"], false);
    let r = h
        .get(
            &format!("/v1.0/users/bob@contoso.com/messages/{id}/attachments"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["value"], json!([]));
    let r = h
        .get(
            &format!("/v1.0/users/bob@contoso.com/messages/{id}?$expand=attachments"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.json()["attachments"], json!([]));
    let r = h
        .get(
            "/v1.0/users/bob@contoso.com/messages/AAMkAGnone/attachments",
            Some(&reader()),
        )
        .await;
    assert!(r.status.is_client_error());
}

#[tokio::test]
async fn message_lists_take_search() {
    let h = Harness::new();
    let list = |q: &str| format!("/v1.0/users/bob@contoso.com/mailFolders/inbox/messages?{q}");
    let all = h.get(&list("$top=1000"), Some(&reader())).await.json();
    let all = all["value"].as_array().expect("value").clone();
    // A word of the first message's subject: every hit holds it in subject, body or sender.
    let subject = all[0]["subject"].as_str().expect("subject").to_owned();
    let word = subject
        .split_whitespace()
        .max_by_key(|w| w.len())
        .expect("a word")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_owned();
    let r = h
        .get(
            &list(&format!(
                "$search=%22subject:{word}%22&$count=true&$top=1000"
            )),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    let hits = v["value"].as_array().expect("value");
    let expected = all
        .iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains(&word.to_lowercase())
        })
        .count();
    assert!(expected >= 1);
    assert_eq!(hits.len(), expected, "{}", r.body);
    assert_eq!(v["@odata.count"], expected);
    // A sender's address: bare terms search from, subject and body.
    let from = all[0]["from"]["emailAddress"]["address"]
        .as_str()
        .expect("from")
        .to_owned();
    let r = h
        .get(
            &list(&format!("$search=%22from:{from}%22&$top=1000")),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.json()["value"].as_array().expect("value").is_empty());
    // Nothing matches a word no message has.
    let r = h
        .get(&list("$search=%22zzqxnotaword%22"), Some(&reader()))
        .await;
    assert_eq!(r.json()["value"].as_array().map(Vec::len), Some(0));
    // $search with $orderby or $filter is refused, as Graph refuses it.
    let r = h
        .get(
            &list("$search=%22x%22&$orderby=receivedDateTime"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("not supported with '$search'"),
        "{}",
        r.body
    );
    // Paging keeps the search.
    let r = h
        .get(
            &list(&format!("$search=%22{word}%22&$top=1")),
            Some(&reader()),
        )
        .await;
    let next = r.json()["@odata.nextLink"].as_str().map(str::to_owned);
    if expected > 1 {
        assert!(
            next.as_deref().is_some_and(|n| n.contains("%24search=")),
            "{next:?}"
        );
    }
}
