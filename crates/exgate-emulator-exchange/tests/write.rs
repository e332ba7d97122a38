//! Writing to mailboxes: EWS CreateItem + DeleteItem and Graph `POST messages` +
//! `DELETE messages/{id}`, with their permission rules and their effect on counts and listings.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};

fn app() -> String {
    bearer(&app_token(EXO, &["full_access_as_app"]))
}

fn writer() -> String {
    bearer(&app_token(GRAPH, &["Mail.ReadWrite", "User.Read.All"]))
}

fn reader() -> String {
    bearer(&app_token(GRAPH, &["Mail.Read", "User.Read.All"]))
}

const SAVE_DRAFT: &str = r#"<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId><t:DistinguishedFolderId Id="drafts"/></m:SavedItemFolderId><m:Items><t:Message><t:ItemClass>IPM.Note</t:ItemClass><t:Subject>exgate write probe</t:Subject><t:Body BodyType="Text">Created and deleted by exgate.</t:Body></t:Message></m:Items></m:CreateItem>"#;

fn delete_item(kind: &str, ids: &[&str]) -> String {
    let ids: String = ids
        .iter()
        .map(|id| format!(r#"<t:ItemId Id="{id}"/>"#))
        .collect();
    format!(r#"<m:DeleteItem DeleteType="{kind}"><m:ItemIds>{ids}</m:ItemIds></m:DeleteItem>"#)
}

fn find_ids(folder: &str) -> String {
    format!(
        r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="1000" Offset="0" BasePoint="Beginning"/><m:ParentFolderIds><t:DistinguishedFolderId Id="{folder}"/></m:ParentFolderIds></m:FindItem>"#
    )
}

/// Item ids FindItem lists in a folder of the impersonated mailbox, and TotalItemsInView.
async fn listed(h: &Harness, who: &str, folder: &str) -> (Vec<String>, String) {
    let r = h.ews(&app(), &soap(who, &find_ids(folder))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let total = attr(&r.body, "TotalItemsInView").unwrap_or_default();
    let items = r.body.split("<t:Items>").nth(1).unwrap_or_default();
    (all_attrs(items, "Id"), total)
}

async fn ews_total(h: &Harness, who: &str, folder: &str) -> String {
    let r = h.ews(&app(), &soap(who, &get_folder(folder, None))).await;
    tag(&r.body, "TotalCount").unwrap_or_default()
}

#[tokio::test]
async fn ews_draft_is_visible_in_drafts_and_hard_delete_removes_it() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h.ews(&app(), &soap(&who, SAVE_DRAFT)).await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let id = attr(&r.body, "Id").expect("created id");
    assert_eq!(ews_total(&h, &who, "drafts").await, "1");
    let (ids, total) = listed(&h, &who, "drafts").await;
    assert_eq!((ids, total), (vec![id.clone()], "1".to_owned()));

    let r = h
        .ews(&app(), &soap(&who, &delete_item("HardDelete", &[&id])))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("<m:DeleteItemResponse xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\""),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<m:DeleteItemResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode></m:DeleteItemResponseMessage>"),
        "{}",
        r.body
    );
    assert_eq!(ews_total(&h, &who, "drafts").await, "0");
    assert_eq!(ews_total(&h, &who, "deleteditems").await, "0");
    let (ids, total) = listed(&h, &who, "drafts").await;
    assert!(ids.is_empty(), "{ids:?}");
    assert_eq!(total, "0");
    let get = format!(
        r#"<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#
    );
    let r = h.ews(&app(), &soap(&who, &get)).await;
    assert!(r.body.contains("ErrorItemNotFound"), "{}", r.body);
}

#[tokio::test]
async fn ews_deleting_an_unknown_or_already_deleted_id_is_item_not_found() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h.ews(&app(), &soap(&who, SAVE_DRAFT)).await;
    let id = attr(&r.body, "Id").expect("created id");
    let body = delete_item("SoftDelete", &[&id, &id]);
    let r = h.ews(&app(), &soap(&who, &body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let first = r.body.find("ResponseClass=\"Success\"").expect("first ok");
    let second = r
        .body
        .find("ResponseClass=\"Error\"")
        .expect("second error");
    assert!(first < second, "{}", r.body);
    assert!(
        r.body.contains("<m:DeleteItemResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified object was not found in the store.</m:MessageText><m:ResponseCode>ErrorItemNotFound</m:ResponseCode>"),
        "{}",
        r.body
    );
    // SoftDelete puts it in the dumpster (Recoverable Items\Deletions), out of Drafts.
    assert_eq!(ews_total(&h, &who, "drafts").await, "0");
    assert_eq!(ews_total(&h, &who, "recoverableitemsdeletions").await, "1");
    assert_eq!(ews_total(&h, &who, "deleteditems").await, "0");
    let r = h
        .ews(
            &app(),
            &soap(&who, &delete_item("HardDelete", &["AAMkbm90LWFuLWlk"])),
        )
        .await;
    assert!(r.body.contains("ErrorInvalidIdMalformed"), "{}", r.body);
}

#[tokio::test]
async fn ews_deleting_a_generated_inbox_message_leaves_the_other_ids_valid() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let (before, total) = listed(&h, &who, "inbox").await;
    assert_eq!((before.len(), total.as_str()), (12, "12"));
    let victim = before[4].clone();
    let r = h
        .ews(&app(), &soap(&who, &delete_item("HardDelete", &[&victim])))
        .await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let (after, total) = listed(&h, &who, "inbox").await;
    assert_eq!(total, "11");
    let expected: Vec<String> = before.into_iter().filter(|i| *i != victim).collect();
    assert_eq!(after, expected);
    assert_eq!(ews_total(&h, &who, "inbox").await, "11");
    // Paging skips the hole: offset 4 starts right after it.
    let page = r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="2" Offset="4" BasePoint="Beginning"/><m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>"#;
    let r = h.ews(&app(), &soap(&who, page)).await;
    let items = r.body.split("<t:Items>").nth(1).unwrap_or_default();
    assert_eq!(
        all_attrs(items, "Id"),
        expected[4..6].to_vec(),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn ews_move_to_deleted_items_moves_the_item() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h.ews(&app(), &soap(&who, SAVE_DRAFT)).await;
    let id = attr(&r.body, "Id").expect("created id");
    let r = h
        .ews(
            &app(),
            &soap(&who, &delete_item("MoveToDeletedItems", &[&id])),
        )
        .await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    assert_eq!(ews_total(&h, &who, "drafts").await, "0");
    assert_eq!(ews_total(&h, &who, "deleteditems").await, "1");
    // Deleting from Deleted Items removes it for good.
    let (ids, _) = listed(&h, &who, "deleteditems").await;
    let r = h
        .ews(
            &app(),
            &soap(&who, &delete_item("MoveToDeletedItems", &[&ids[0]])),
        )
        .await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    assert_eq!(ews_total(&h, &who, "deleteditems").await, "0");
}

#[tokio::test]
async fn ews_delete_item_follows_the_impersonation_and_schema_rules() {
    let h = Harness::new();
    let adele = imp("adele@contoso.com");
    let r = h.ews(&app(), &soap(&adele, SAVE_DRAFT)).await;
    let id = attr(&r.body, "Id").expect("created id");
    // App-only without impersonation: the header-must-be-present fault.
    let r = h
        .ews(&app(), &soap("", &delete_item("HardDelete", &[&id])))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.body
            .contains("ErrorInvalidExchangeImpersonationHeaderData"),
        "{}",
        r.body
    );
    // Adele's item while acting as Bob: access denied, item kept.
    let r = h
        .ews(
            &app(),
            &soap(&imp("bob@contoso.com"), &delete_item("HardDelete", &[&id])),
        )
        .await;
    assert!(r.body.contains("ErrorAccessDenied"), "{}", r.body);
    // An app scoped to another group may not impersonate Adele's colleague Bob.
    let scoped = bearer(&sign(&app_claims(
        TID,
        SCOPED_APP,
        EXO,
        &["full_access_as_app"],
    )));
    let r = h
        .ews(
            &scoped,
            &soap(&imp("bob@contoso.com"), &delete_item("HardDelete", &[&id])),
        )
        .await;
    assert!(r.body.contains("ErrorImpersonateUserDenied"), "{}", r.body);
    // Unlicensed mailbox.
    let r = h
        .ews(
            &app(),
            &soap(
                &imp("unlicensed@contoso.com"),
                &delete_item("HardDelete", &[&id]),
            ),
        )
        .await;
    assert!(r.body.contains("ErrorInvalidLicense"), "{}", r.body);
    // DeleteType is required and checked.
    let r = h
        .ews(
            &app(),
            &soap(
                &adele,
                &format!(
                    r#"<m:DeleteItem><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:DeleteItem>"#
                ),
            ),
        )
        .await;
    assert!(r.body.contains("ErrorSchemaValidation"), "{}", r.body);
    let r = h
        .ews(&app(), &soap(&adele, &delete_item("Shred", &[&id])))
        .await;
    assert!(r.body.contains("ErrorSchemaValidation"), "{}", r.body);
    assert_eq!(ews_total(&h, &adele, "drafts").await, "1");
}

async fn graph_delete(h: &Harness, path: &str, auth: &str) -> Resp {
    h.send(
        Request::delete(path)
            .header("host", "127.0.0.1:8443")
            .header("authorization", auth)
            .body(Body::empty())
            .expect("request"),
    )
    .await
}

async fn graph_total(h: &Harness, user: &str, folder: &str) -> Value {
    let r = h
        .get(
            &format!("/v1.0/users/{user}/mailFolders/{folder}"),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["totalItemCount"].clone()
}

fn probe() -> Value {
    json!({"subject": "exgate write probe", "body": {"contentType": "text", "content": "Created and deleted by exgate."}})
}

fn encode_path_id(id: &str) -> String {
    id.replace('=', "%3D")
}

#[tokio::test]
async fn graph_post_messages_creates_a_draft_in_drafts() {
    let h = Harness::new();
    let r = h
        .graph_post(
            "/v1.0/users/adele@contoso.com/messages",
            &writer(),
            &probe(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let v = r.json();
    assert_eq!(v["isDraft"], true);
    assert_eq!(v["subject"], "exgate write probe");
    let drafts = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/drafts",
            Some(&reader()),
        )
        .await
        .json();
    assert_eq!(v["parentFolderId"], drafts["id"]);
    assert_eq!(drafts["totalItemCount"], 1);
    let id = v["id"].as_str().expect("id").to_owned();
    let r = h
        .get(
            &format!(
                "/v1.0/users/adele@contoso.com/messages/{}",
                encode_path_id(&id)
            ),
            Some(&reader()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["body"]["content"]
            .as_str()
            .map(|s| s.contains("Created and deleted")),
        Some(true)
    );
    let r = h
        .send(
            Request::post("/v1.0/users/adele@contoso.com/messages")
                .header("authorization", writer())
                .body(Body::from("{not json"))
                .expect("req"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn graph_delete_message_moves_it_to_deleted_items_and_deleting_it_there_removes_it() {
    let h = Harness::new();
    let r = h
        .graph_post(
            "/v1.0/users/adele@contoso.com/messages",
            &writer(),
            &probe(),
        )
        .await;
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let path = format!(
        "/v1.0/users/adele@contoso.com/messages/{}",
        encode_path_id(&id)
    );
    let r = graph_delete(&h, &path, &writer()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(r.body.is_empty());
    assert_eq!(graph_total(&h, "adele@contoso.com", "drafts").await, 0);
    // Graph's DELETE moves the message to Deleted Items (permanentDelete removes it at once).
    assert_eq!(
        graph_total(&h, "adele@contoso.com", "deleteditems").await,
        1
    );
    let r = h.get(&path, Some(&reader())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The old id again: 404 ErrorItemNotFound in Graph's error shape.
    let r = graph_delete(&h, &path, &writer()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let e = r.json();
    assert_eq!(e["error"]["code"], "ErrorItemNotFound");
    assert_eq!(
        e["error"]["message"],
        "The specified object was not found in the store."
    );
    assert!(e["error"]["innerError"]["request-id"].is_string());
    // Deleting it from Deleted Items removes it.
    let r = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/deleteditems/messages",
            Some(&reader()),
        )
        .await;
    let moved = r.json()["value"][0]["id"]
        .as_str()
        .expect("the moved message")
        .to_owned();
    let path = format!(
        "/v1.0/users/adele@contoso.com/messages/{}",
        encode_path_id(&moved)
    );
    let r = graph_delete(&h, &path, &writer()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        graph_total(&h, "adele@contoso.com", "deleteditems").await,
        0
    );
}

#[tokio::test]
async fn graph_deleting_an_inbox_message_removes_it_from_counts_and_listings() {
    let h = Harness::new();
    let list = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages?$top=100&$select=id",
            Some(&reader()),
        )
        .await
        .json();
    let ids: Vec<String> = list["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 12);
    let victim = ids[3].clone();
    let r = graph_delete(
        &h,
        &format!(
            "/v1.0/users/adele@contoso.com/messages/{}",
            encode_path_id(&victim)
        ),
        &writer(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(graph_total(&h, "adele@contoso.com", "inbox").await, 11);
    let list = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages?$top=100&$select=id",
            Some(&reader()),
        )
        .await
        .json();
    let after: Vec<String> = list["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = ids.into_iter().filter(|i| *i != victim).collect();
    assert_eq!(after, expected);
    // An id that is not Adele's (Bob's item) is not found in her mailbox.
    let bob = h
        .get(
            "/v1.0/users/bob@contoso.com/mailFolders/inbox/messages?$top=1",
            Some(&reader()),
        )
        .await
        .json();
    let bob_id = bob["value"][0]["id"].as_str().expect("id").to_owned();
    let r = graph_delete(
        &h,
        &format!(
            "/v1.0/users/adele@contoso.com/messages/{}",
            encode_path_id(&bob_id)
        ),
        &writer(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "ErrorItemNotFound");
    assert_eq!(graph_total(&h, "bob@contoso.com", "inbox").await, 250);
}

#[tokio::test]
async fn graph_writes_need_mail_read_write() {
    let h = Harness::new();
    let denied = |r: &Resp| {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        let e = r.json();
        assert_eq!(e["error"]["code"], "ErrorAccessDenied");
        assert_eq!(
            e["error"]["message"],
            "Access is denied. Check credentials and try again."
        );
    };
    // App-only with Mail.Read (and even Mail.Send) only.
    let weak = bearer(&app_token(GRAPH, &["Mail.Read", "Mail.Send"]));
    let r = h
        .graph_post("/v1.0/users/adele@contoso.com/messages", &weak, &probe())
        .await;
    denied(&r);
    assert_eq!(graph_total(&h, "adele@contoso.com", "drafts").await, 0);
    let list = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages?$top=1",
            Some(&reader()),
        )
        .await
        .json();
    let id = list["value"][0]["id"].as_str().expect("id").to_owned();
    let path = format!(
        "/v1.0/users/adele@contoso.com/messages/{}",
        encode_path_id(&id)
    );
    denied(&graph_delete(&h, &path, &weak).await);
    assert_eq!(graph_total(&h, "adele@contoso.com", "inbox").await, 12);
    // Delegated: the Mail.Read scope is not enough; Mail.ReadWrite is.
    let user_read = bearer(&user_token(
        "adele@contoso.com",
        GRAPH,
        "Mail.Read User.Read",
    ));
    denied(
        &h.graph_post("/v1.0/me/messages", &user_read, &probe())
            .await,
    );
    denied(
        &graph_delete(
            &h,
            &path.replace("users/adele@contoso.com", "me"),
            &user_read,
        )
        .await,
    );
    let user_rw = bearer(&user_token(
        "adele@contoso.com",
        GRAPH,
        "Mail.ReadWrite User.Read",
    ));
    let r = h.graph_post("/v1.0/me/messages", &user_rw, &probe()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = graph_delete(&h, &path.replace("users/adele@contoso.com", "me"), &user_rw).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(graph_total(&h, "adele@contoso.com", "inbox").await, 11);
    // A delegated user may not write to someone else's mailbox.
    denied(
        &h.graph_post("/v1.0/users/bob@contoso.com/messages", &user_rw, &probe())
            .await,
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

        /// Any id to DeleteItem or Graph DELETE is a per-item error, never a panic or a deletion.
        #[test]
        fn arbitrary_ids_delete_nothing(id in "[A-Za-z0-9+/=_-]{0,40}") {
            let rt = runtime();
            let h = Harness::new();
            let who = imp("adele@contoso.com");
            let r = rt.block_on(h.ews(&app(), &soap(&who, &delete_item("HardDelete", &[&id]))));
            prop_assert_eq!(r.status, StatusCode::OK);
            prop_assert!(r.body.contains("ResponseClass=\"Error\""), "{}", r.body);
            let g = rt.block_on(graph_delete(
                &h,
                &format!("/v1.0/users/adele@contoso.com/messages/{}", encode_path_id(&id).replace('/', "%2F").replace('+', "%2B")),
                &writer(),
            ));
            prop_assert!(g.status == StatusCode::NOT_FOUND || g.status == StatusCode::BAD_REQUEST, "{} {}", g.status, g.body);
            prop_assert!(g.json()["error"]["code"].is_string());
            prop_assert_eq!(rt.block_on(graph_total(&h, "adele@contoso.com", "inbox")), json!(12));
        }

        /// Any body to `POST messages` is a 201 draft or a 400 in Graph's error shape.
        #[test]
        fn arbitrary_bodies_to_post_messages_are_answered(body in "[ -~]{0,80}") {
            let rt = runtime();
            let h = Harness::new();
            let r = rt.block_on(h.send(
                Request::post("/v1.0/users/adele@contoso.com/messages")
                    .header("authorization", writer())
                    .body(Body::from(body))
                    .expect("req"),
            ));
            if r.status == StatusCode::CREATED {
                prop_assert_eq!(&r.json()["isDraft"], &json!(true));
            } else {
                prop_assert_eq!(r.status, StatusCode::BAD_REQUEST);
                prop_assert!(r.json()["error"]["code"].is_string(), "{}", r.body);
            }
        }
    }
}

#[tokio::test]
async fn graph_permanent_delete_removes_the_message_and_needs_mail_read_write() {
    let h = Harness::new();
    let r = h
        .graph_post(
            "/v1.0/users/adele@contoso.com/messages",
            &writer(),
            &probe(),
        )
        .await;
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let path = format!(
        "/v1.0/users/adele@contoso.com/messages/{}/permanentDelete",
        encode_path_id(&id)
    );
    let r = h.graph_post(&path, &reader(), &json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(graph_total(&h, "adele@contoso.com", "drafts").await, 1);
    let r = h.graph_post(&path, &writer(), &json!({})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(graph_total(&h, "adele@contoso.com", "drafts").await, 0);
    assert_eq!(
        graph_total(&h, "adele@contoso.com", "deleteditems").await,
        0
    );
    let r = h.graph_post(&path, &writer(), &json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "ErrorItemNotFound");
}

#[tokio::test]
async fn graph_move_and_copy_give_new_ids_and_retire_a_moved_id() {
    let h = Harness::new();
    let w = writer();
    let list = h
        .get(
            "/v1.0/users/bob@contoso.com/mailFolders/inbox/messages?$top=2",
            Some(&w),
        )
        .await
        .json();
    let first = list["value"][0]["id"].as_str().expect("id").to_owned();
    let second = list["value"][1]["id"].as_str().expect("id").to_owned();
    let count = |f: &'static str| {
        let (h, w) = (&h, w.clone());
        async move {
            h.get(
                &format!("/v1.0/users/bob@contoso.com/mailFolders/{f}"),
                Some(&w),
            )
            .await
            .json()["totalItemCount"]
                .as_u64()
                .expect("count")
        }
    };
    let (inbox, archive) = (count("inbox").await, count("archive").await);
    // The Graph SDKs send DestinationId.
    let r = h
        .graph_post(
            &format!("/v1.0/users/bob@contoso.com/messages/{first}/move"),
            &w,
            &json!({"DestinationId": "archive"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let moved = r.json();
    assert_ne!(moved["id"].as_str(), Some(first.as_str()));
    let r = h
        .get(
            &format!("/v1.0/users/bob@contoso.com/messages/{first}"),
            Some(&w),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .get(
            &format!(
                "/v1.0/users/bob@contoso.com/messages/{}",
                moved["id"].as_str().expect("id")
            ),
            Some(&w),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(count("inbox").await, inbox - 1);
    assert_eq!(count("archive").await, archive + 1);
    // A copy leaves the original in place.
    let r = h
        .graph_post(
            &format!("/v1.0/users/bob@contoso.com/messages/{second}/copy"),
            &w,
            &json!({"destinationId": "archive"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_ne!(r.json()["id"].as_str(), Some(second.as_str()));
    let r = h
        .get(
            &format!("/v1.0/users/bob@contoso.com/messages/{second}"),
            Some(&w),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(count("archive").await, archive + 2);
    // Without a destination.
    let r = h
        .graph_post(
            &format!("/v1.0/users/bob@contoso.com/messages/{second}/move"),
            &w,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn ews_move_copy_and_mark_read_and_their_refusals() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h.ews(&app(), &soap(&who, SAVE_DRAFT)).await;
    let id = attr(&r.body, "Id").expect("created id");
    // Mark unread: UpdateItem of message:IsRead.
    let update = |id: &str, field: &str, value: &str| {
        format!(
            r#"<m:UpdateItem MessageDisposition="SaveOnly" ConflictResolution="AutoResolve"><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="{field}"/><t:Message><t:IsRead>{value}</t:IsRead></t:Message></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        )
    };
    let r = h
        .ews(&app(), &soap(&who, &update(&id, "message:IsRead", "false")))
        .await;
    assert!(
        r.body.contains("<m:UpdateItemResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message><t:ItemId")
            && r.body.contains("<m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>"),
        "{}",
        r.body
    );
    let r = h
        .ews(&app(), &soap(&who, &get_folder("drafts", None)))
        .await;
    assert_eq!(
        tag(&r.body, "UnreadCount").as_deref(),
        Some("1"),
        "{}",
        r.body
    );
    // Another field is refused, naming it.
    let r = h
        .ews(&app(), &soap(&who, &update(&id, "item:Subject", "x")))
        .await;
    assert!(
        r.body.contains("ErrorInvalidRequest") && r.body.contains("item:Subject"),
        "{}",
        r.body
    );
    // Move to Deleted Items: a new id there, gone from Drafts.
    let mv = |op: &str, id: &str, folder: &str| {
        format!(
            r#"<m:{op}><m:ToFolderId><t:DistinguishedFolderId Id="{folder}"/></m:ToFolderId><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:{op}>"#
        )
    };
    let r = h
        .ews(&app(), &soap(&who, &mv("MoveItem", &id, "deleteditems")))
        .await;
    assert!(
        r.body
            .contains("<m:MoveItemResponseMessage ResponseClass=\"Success\""),
        "{}",
        r.body
    );
    let moved = attr(r.body.split("<m:Items>").nth(1).unwrap_or_default(), "Id").expect("new id");
    assert_ne!(moved, id);
    assert_eq!(ews_total(&h, &who, "drafts").await, "0");
    assert_eq!(
        listed(&h, &who, "deleteditems").await.0,
        vec![moved.clone()]
    );
    // The old id is gone; a folder that does not exist is named.
    let r = h
        .ews(&app(), &soap(&who, &mv("MoveItem", &id, "inbox")))
        .await;
    assert!(r.body.contains("ErrorItemNotFound"), "{}", r.body);
    let r = h
        .ews(&app(), &soap(&who, &mv("CopyItem", &moved, "nosuchfolder")))
        .await;
    assert!(r.body.contains("ErrorFolderNotFound"), "{}", r.body);
    // Copy back to Drafts: both hold it.
    let r = h
        .ews(&app(), &soap(&who, &mv("CopyItem", &moved, "drafts")))
        .await;
    assert!(
        r.body
            .contains("<m:CopyItemResponseMessage ResponseClass=\"Success\""),
        "{}",
        r.body
    );
    assert_eq!(ews_total(&h, &who, "drafts").await, "1");
    assert_eq!(listed(&h, &who, "deleteditems").await.0, vec![moved]);
}

#[tokio::test]
async fn graph_immutable_ids_survive_a_move_and_copies_get_their_own() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h.ews(&app(), &soap(&who, SAVE_DRAFT)).await;
    let ews_id = attr(&r.body, "Id").expect("created id");
    let get = |path: String, immutable: bool| {
        let mut b = Request::get(path)
            .header("host", "127.0.0.1:8443")
            .header("authorization", reader());
        if immutable {
            b = b.header("prefer", "IdType=\"ImmutableId\"");
        }
        b.body(Body::empty()).expect("request")
    };
    let drafts = "/v1.0/users/adele@contoso.com/mailFolders/drafts/messages".to_owned();
    let r = h.send(get(drafts.clone(), true)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.headers
            .get("preference-applied")
            .and_then(|v| v.to_str().ok()),
        Some("IdType=\"ImmutableId\"")
    );
    let immutable = r.json()["value"][0]["id"].as_str().expect("id").to_owned();
    let usual = h.send(get(drafts, false)).await.json()["value"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_ne!(immutable, usual);
    // Moved to Deleted Items: the usual id changes, the immutable one finds it there.
    let r = h
        .ews(
            &app(),
            &soap(
                &who,
                &format!(
                    r#"<m:MoveItem><m:ToFolderId><t:DistinguishedFolderId Id="deleteditems"/></m:ToFolderId><m:ItemIds><t:ItemId Id="{ews_id}"/></m:ItemIds></m:MoveItem>"#
                ),
            ),
        )
        .await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let by_id = |id: &str| format!("/v1.0/users/adele@contoso.com/messages/{id}");
    let r = h.send(get(by_id(&usual), false)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = h.send(get(by_id(&immutable), true)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["id"].as_str(), Some(immutable.as_str()));
    assert_eq!(v["subject"], "exgate write probe");
    let deleted = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/deleteditems",
            Some(&reader()),
        )
        .await
        .json();
    assert_eq!(v["parentFolderId"], deleted["id"]);
    // A copy is another item with another immutable id.
    let (ids, _) = listed(&h, &who, "deleteditems").await;
    let r = h
        .ews(
            &app(),
            &soap(
                &who,
                &format!(
                    r#"<m:CopyItem><m:ToFolderId><t:DistinguishedFolderId Id="drafts"/></m:ToFolderId><m:ItemIds><t:ItemId Id="{}"/></m:ItemIds></m:CopyItem>"#,
                    ids[0]
                ),
            ),
        )
        .await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let copy = h
        .send(get(
            "/v1.0/users/adele@contoso.com/mailFolders/drafts/messages".to_owned(),
            true,
        ))
        .await
        .json();
    let copy_id = copy["value"][0]["id"].as_str().expect("copy id");
    assert_ne!(copy_id, immutable);
}

/// `POST /v1.0/{user}/translateExchangeIds` with a JSON body.
async fn translate_ids(
    h: &Harness,
    auth: &str,
    user: &str,
    source: &str,
    target: &str,
    ids: &[&str],
) -> Resp {
    let body = json!({"inputIds": ids, "sourceIdType": source, "targetIdType": target});
    h.send(
        Request::post(format!("/v1.0/{user}/translateExchangeIds"))
            .header("host", "127.0.0.1:8443")
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await
}

fn target_id(r: &Resp) -> String {
    r.json()["value"][0]["targetId"]
        .as_str()
        .expect("targetId")
        .to_owned()
}

/// `translateExchangeIds` (Graph's reference, user-translateexchangeids): restId to the
/// immutable and binary forms and back, delegated only, errors per id.
#[tokio::test]
async fn graph_translates_exchange_ids_between_formats() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h.ews(&app(), &soap(&who, SAVE_DRAFT)).await;
    let ews_id = attr(&r.body, "Id").expect("created id");
    let drafts = "/v1.0/users/adele@contoso.com/mailFolders/drafts/messages";
    let rest_id = h.get(drafts, Some(&reader())).await.json()["value"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let adele = bearer(&common::user_token(
        "adele@contoso.com",
        GRAPH,
        "User.Read Mail.Read",
    ));
    // restId -> ewsId is the EWS id; -> entryId is its bytes, URL-safe, padding count appended.
    let r = translate_ids(&h, &adele, "me", "restId", "ewsId", &[&rest_id]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(target_id(&r), ews_id);
    let entry_id =
        target_id(&translate_ids(&h, &adele, "me", "restId", "entryId", &[&rest_id]).await);
    assert!(
        entry_id.ends_with('1') && !entry_id.contains(['+', '/', '=']),
        "{entry_id}"
    );
    // restId -> restImmutableEntryId is the id `Prefer: IdType="ImmutableId"` gives.
    let immutable = target_id(
        &translate_ids(
            &h,
            &adele,
            "me",
            "restId",
            "restImmutableEntryId",
            &[&rest_id],
        )
        .await,
    );
    let preferred = h
        .send(
            Request::get(drafts)
                .header("host", "127.0.0.1:8443")
                .header("authorization", reader())
                .header("prefer", "IdType=\"ImmutableId\"")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .json();
    assert_eq!(
        preferred["value"][0]["id"].as_str(),
        Some(immutable.as_str())
    );
    // And back: entryId -> restId gives the rest id again; an unknown id answers in its entry.
    let r = translate_ids(
        &h,
        &adele,
        "me",
        "entryId",
        "restId",
        &[&entry_id, "AAAAnotanid0"],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["value"][0]["targetId"].as_str(), Some(rest_id.as_str()));
    assert!(v["value"][1]["errorDetails"]["code"].is_string(), "{v}");
    // A format Graph does not have, and an app-only token (not supported by Graph).
    let r = translate_ids(&h, &adele, "me", "restId", "owaId", &[&rest_id]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = translate_ids(
        &h,
        &writer(),
        "users/adele@contoso.com",
        "restId",
        "ewsId",
        &[&rest_id],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

fn import_mime(folder: &str, mime: &str, flags: Option<u32>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(mime);
    let flags = flags
        .map(|f| format!(r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x0E07" PropertyType="Integer"/><t:Value>{f}</t:Value></t:ExtendedProperty>"#))
        .unwrap_or_default();
    format!(
        r#"<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId><t:DistinguishedFolderId Id="{folder}"/></m:SavedItemFolderId><m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{b64}</t:MimeContent>{flags}</t:Message></m:Items></m:CreateItem>"#
    )
}

/// CreateItem with `t:MimeContent` imports a message: its fields from the MIME, read and draft
/// state from `PidTagMessageFlags` (0x0E07) when the importer sets it.
#[tokio::test]
async fn ews_create_item_imports_mime() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let mime = "From: Lee Gu <lee@fabrikam.com>\r\nTo: Adele <adele@contoso.com>\r\nSubject: Imported from the old server\r\nMessage-ID: <import-1@fabrikam.com>\r\n\r\nHello from 2019.\r\n";
    let r = h
        .ews(&app(), &soap(&who, &import_mime("inbox", mime, Some(1))))
        .await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let id = attr(&r.body, "Id").expect("created id");
    let get = format!(
        r#"<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#
    );
    let r = h.ews(&app(), &soap(&who, &get)).await;
    for want in [
        "<t:Subject>Imported from the old server</t:Subject>",
        "<t:IsDraft>false</t:IsDraft>",
        "<t:IsRead>true</t:IsRead>",
        "lee@fabrikam.com",
        "&lt;import-1@fabrikam.com&gt;",
    ] {
        assert!(r.body.contains(want), "{want} missing: {}", r.body);
    }
    // In the Inbox, as Graph sees it too.
    let inbox = h
        .get(
            "/v1.0/users/adele@contoso.com/mailFolders/inbox/messages?$top=100",
            Some(&reader()),
        )
        .await
        .json();
    assert!(
        inbox["value"]
            .as_array()
            .expect("value")
            .iter()
            .any(|m| m["subject"] == "Imported from the old server"),
        "{inbox}"
    );
    // Without the flags: an unsent draft. Not base64: the MIME error.
    let r = h
        .ews(&app(), &soap(&who, &import_mime("drafts", mime, None)))
        .await;
    let id = attr(&r.body, "Id").expect("created id");
    let get = get.replace(&attr(&get, "Id").unwrap_or_default(), &id);
    let r = h.ews(&app(), &soap(&who, &get)).await;
    assert!(r.body.contains("<t:IsDraft>true</t:IsDraft>"), "{}", r.body);
    let bad = import_mime("inbox", mime, None).replace(
        "<t:MimeContent CharacterSet=\"UTF-8\">",
        "<t:MimeContent CharacterSet=\"UTF-8\">!!",
    );
    let r = h.ews(&app(), &soap(&who, &bad)).await;
    assert!(
        r.body.contains("ErrorMimeContentInvalidBase64String"),
        "{}",
        r.body
    );
}
