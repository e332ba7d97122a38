//! Folders created, renamed, moved and deleted at run time: EWS CreateFolder, UpdateFolder,
//! MoveFolder and DeleteFolder, Graph's mailFolder writes, one tree every view reads.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};

fn ews_app() -> String {
    bearer(&app_token(EXO, &["full_access_as_app"]))
}

fn writer() -> String {
    bearer(&app_token(GRAPH, &["Mail.ReadWrite", "User.Read.All"]))
}

fn reader() -> String {
    bearer(&app_token(GRAPH, &["Mail.Read", "User.Read.All"]))
}

const USER: &str = "/v1.0/users/adele@contoso.com";

fn create(parent: &str, names: &[&str]) -> String {
    let folders: String = names
        .iter()
        .map(|n| format!("<t:Folder><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>{n}</t:DisplayName></t:Folder>"))
        .collect();
    format!(
        r#"<m:CreateFolder><m:ParentFolderId>{parent}</m:ParentFolderId><m:Folders>{folders}</m:Folders></m:CreateFolder>"#
    )
}

fn find_folders(parent: &str) -> String {
    format!(
        r#"<m:FindFolder Traversal="Deep"><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:ParentFolderIds>{parent}</m:ParentFolderIds></m:FindFolder>"#
    )
}

const INBOX: &str = r#"<t:DistinguishedFolderId Id="inbox"/>"#;

async fn graph_names(h: &Harness, path: &str) -> Vec<String> {
    let v = h
        .get(&format!("{USER}/{path}"), Some(&reader()))
        .await
        .json();
    v["value"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["displayName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn ews_create_update_move_and_delete_folder() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h
        .ews(
            &ews_app(),
            &soap(&who, &create(INBOX, &["Receipts", "Travel"])),
        )
        .await;
    assert_eq!(
        r.body.matches("ResponseClass=\"Success\"").count(),
        2,
        "{}",
        r.body
    );
    let ids = all_attrs(&r.body, "Id");
    let (receipts, travel) = (ids[0].clone(), ids[1].clone());
    // Same name again (any case): ErrorFolderExists.
    let r = h
        .ews(&ews_app(), &soap(&who, &create(INBOX, &["receipts"])))
        .await;
    assert!(r.body.contains("ErrorFolderExists"), "{}", r.body);
    // Listed by FindFolder and by Graph.
    let r = h.ews(&ews_app(), &soap(&who, &find_folders(INBOX))).await;
    assert!(
        r.body.contains("<t:DisplayName>Receipts</t:DisplayName>"),
        "{}",
        r.body
    );
    assert!(
        graph_names(&h, "mailFolders/inbox/childFolders")
            .await
            .contains(&"Travel".to_owned())
    );

    // Renamed with UpdateFolder; the id stays.
    let update = format!(
        r#"<m:UpdateFolder><m:FolderChanges><t:FolderChange><t:FolderId Id="{receipts}"/><t:Updates><t:SetFolderField><t:FieldURI FieldURI="folder:DisplayName"/><t:Folder><t:DisplayName>Expenses</t:DisplayName></t:Folder></t:SetFolderField></t:Updates></t:FolderChange></m:FolderChanges></m:UpdateFolder>"#
    );
    let r = h.ews(&ews_app(), &soap(&who, &update)).await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let get = format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds><t:FolderId Id="{receipts}"/></m:FolderIds></m:GetFolder>"#
    );
    let r = h.ews(&ews_app(), &soap(&who, &get)).await;
    assert!(
        r.body.contains("<t:DisplayName>Expenses</t:DisplayName>"),
        "{}",
        r.body
    );

    // Moved under Travel: its parent changes, Graph sees it there.
    let mv = format!(
        r#"<m:MoveFolder><m:ToFolderId><t:FolderId Id="{travel}"/></m:ToFolderId><m:FolderIds><t:FolderId Id="{receipts}"/></m:FolderIds></m:MoveFolder>"#
    );
    let r = h.ews(&ews_app(), &soap(&who, &mv)).await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let r = h.ews(&ews_app(), &soap(&who, &get)).await;
    assert!(
        r.body
            .contains(&format!("<t:ParentFolderId Id=\"{travel}\"")),
        "{}",
        r.body
    );
    let travel_graph = travel
        .replace('+', "-")
        .replace('/', "_")
        .replace('=', "%3D");
    assert_eq!(
        graph_names(&h, &format!("mailFolders/{travel_graph}/childFolders")).await,
        ["Expenses"]
    );
    // A folder cannot move under itself; well-known folders neither move nor go.
    let loop_mv = format!(
        r#"<m:MoveFolder><m:ToFolderId><t:FolderId Id="{receipts}"/></m:ToFolderId><m:FolderIds><t:FolderId Id="{travel}"/></m:FolderIds></m:MoveFolder>"#
    );
    let r = h.ews(&ews_app(), &soap(&who, &loop_mv)).await;
    assert!(r.body.contains("ErrorParentFolderNotFound"), "{}", r.body);
    let r = h
        .ews(
            &ews_app(),
            &soap(
                &who,
                r#"<m:DeleteFolder DeleteType="HardDelete"><m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:DeleteFolder>"#,
            ),
        )
        .await;
    assert!(
        r.body.contains("ErrorDeleteDistinguishedFolder"),
        "{}",
        r.body
    );

    // HardDelete of Travel takes Expenses with it.
    let delete = format!(
        r#"<m:DeleteFolder DeleteType="HardDelete"><m:FolderIds><t:FolderId Id="{travel}"/></m:FolderIds></m:DeleteFolder>"#
    );
    let r = h.ews(&ews_app(), &soap(&who, &delete)).await;
    assert!(
        r.body
            .contains("DeleteFolderResponseMessage ResponseClass=\"Success\""),
        "{}",
        r.body
    );
    let r = h.ews(&ews_app(), &soap(&who, &get)).await;
    assert!(r.body.contains("ErrorFolderNotFound"), "{}", r.body);
    assert!(
        graph_names(&h, "mailFolders/inbox/childFolders")
            .await
            .is_empty()
    );
}

async fn graph(h: &Harness, method: &str, path: &str, body: Value) -> Resp {
    h.send(
        Request::builder()
            .method(method)
            .uri(format!("{USER}/{path}"))
            .header("authorization", writer())
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await
}

fn key(id: &Value) -> String {
    id.as_str().unwrap_or_default().replace('=', "%3D")
}

#[tokio::test]
async fn graph_creates_renames_moves_and_deletes_mail_folders() {
    let h = Harness::new();
    let r = graph(
        &h,
        "POST",
        "mailFolders",
        json!({"displayName": "Projects"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let projects = r.json();
    assert_eq!(projects["displayName"], "Projects");
    assert_eq!(projects["totalItemCount"], 0);
    let r = graph(
        &h,
        "POST",
        &format!("mailFolders/{}/childFolders", key(&projects["id"])),
        json!({"displayName": "Falcon"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let falcon = r.json();
    assert_eq!(falcon["parentFolderId"], projects["id"]);
    // Same name again: 409 ErrorFolderExists; no name: 400.
    let r = graph(
        &h,
        "POST",
        "mailFolders",
        json!({"displayName": "projects"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "ErrorFolderExists");
    let r = graph(&h, "POST", "mailFolders", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // Mail.Read cannot write.
    let r = h
        .send(
            Request::post(format!("{USER}/mailFolders"))
                .header("authorization", reader())
                .body(Body::from(r#"{"displayName":"No"}"#))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // PATCH renames; move puts it under the Inbox.
    let r = graph(
        &h,
        "PATCH",
        &format!("mailFolders/{}", key(&falcon["id"])),
        json!({"displayName": "Falcon 2"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["displayName"], "Falcon 2");
    let r = graph(
        &h,
        "POST",
        &format!("mailFolders/{}/move", key(&falcon["id"])),
        json!({"destinationId": "inbox"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(
        graph_names(&h, "mailFolders/inbox/childFolders")
            .await
            .contains(&"Falcon 2".to_owned())
    );

    // DELETE moves to Deleted Items; deleting it there removes it; well-known folders stay.
    let path = format!("mailFolders/{}", key(&projects["id"]));
    let r = graph(&h, "DELETE", &path, Value::Null).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        graph_names(&h, "mailFolders/deleteditems/childFolders").await,
        ["Projects"]
    );
    let r = graph(&h, "DELETE", &path, Value::Null).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = h.get(&format!("{USER}/{path}"), Some(&reader())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = graph(&h, "DELETE", "mailFolders/inbox", Value::Null).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

fn sync_hierarchy(state: Option<&str>) -> String {
    let state = state
        .map(|s| format!("<m:SyncState>{s}</m:SyncState>"))
        .unwrap_or_default();
    format!(
        r#"<m:SyncFolderHierarchy><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>{state}</m:SyncFolderHierarchy>"#
    )
}

/// SyncFolderHierarchy reports what changed in the tree since its state: created, renamed or
/// moved (`t:Update`) and deleted folders; nothing when nothing changed.
#[tokio::test]
async fn ews_hierarchy_sync_reports_created_changed_and_deleted_folders() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h.ews(&ews_app(), &soap(&who, &sync_hierarchy(None))).await;
    let first = tag(&r.body, "SyncState").expect("state");
    assert!(r.body.contains("<t:Create>"), "{}", r.body);
    let r = h
        .ews(&ews_app(), &soap(&who, &sync_hierarchy(Some(&first))))
        .await;
    assert!(
        r.body.contains("<m:Changes></m:Changes>") || r.body.contains("<m:Changes/>"),
        "{}",
        r.body
    );

    let r = h
        .ews(&ews_app(), &soap(&who, &create(INBOX, &["Alpha", "Beta"])))
        .await;
    let ids = all_attrs(&r.body, "Id");
    let r = h
        .ews(&ews_app(), &soap(&who, &sync_hierarchy(Some(&first))))
        .await;
    assert_eq!(r.body.matches("<t:Create>").count(), 2, "{}", r.body);
    assert!(
        !r.body.contains("<t:Update>") && !r.body.contains("<t:Delete><t:FolderId"),
        "{}",
        r.body
    );
    let second = tag(&r.body, "SyncState").expect("state");

    // Rename Alpha, delete Beta.
    let update = format!(
        r#"<m:UpdateFolder><m:FolderChanges><t:FolderChange><t:FolderId Id="{}"/><t:Updates><t:SetFolderField><t:FieldURI FieldURI="folder:DisplayName"/><t:Folder><t:DisplayName>Gamma</t:DisplayName></t:Folder></t:SetFolderField></t:Updates></t:FolderChange></m:FolderChanges></m:UpdateFolder>"#,
        ids[0]
    );
    h.ews(&ews_app(), &soap(&who, &update)).await;
    let delete = format!(
        r#"<m:DeleteFolder DeleteType="HardDelete"><m:FolderIds><t:FolderId Id="{}"/></m:FolderIds></m:DeleteFolder>"#,
        ids[1]
    );
    h.ews(&ews_app(), &soap(&who, &delete)).await;
    let r = h
        .ews(&ews_app(), &soap(&who, &sync_hierarchy(Some(&second))))
        .await;
    assert_eq!(r.body.matches("<t:Update>").count(), 1, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("<t:Delete><t:FolderId Id=\"{}\"", ids[1])),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<t:Create>"), "{}", r.body);
    // A state that was tampered with is refused.
    let r = h
        .ews(&ews_app(), &soap(&who, &sync_hierarchy(Some("AAAA"))))
        .await;
    assert!(r.body.contains("ErrorInvalidSyncStateData"), "{}", r.body);
}

/// The items of a deleted folder are gone by any id that named them.
#[tokio::test]
async fn items_of_a_deleted_folder_are_gone_by_id() {
    let h = Harness::new();
    let r = graph(&h, "POST", "mailFolders", json!({"displayName": "Doomed"})).await;
    let folder = r.json();
    let r = graph(
        &h,
        "POST",
        "messages",
        json!({"subject": "to be copied", "body": {"contentType": "text", "content": "x"}}),
    )
    .await;
    let draft = r.json();
    let r = graph(
        &h,
        "POST",
        &format!("messages/{}/copy", key(&draft["id"])),
        json!({"destinationId": folder["id"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let copy = r.json()["id"].clone();
    let r = h
        .get(&format!("{USER}/messages/{}", key(&copy)), Some(&reader()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = graph(
        &h,
        "POST",
        &format!("mailFolders/{}/permanentDelete", key(&folder["id"])),
        Value::Null,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = h
        .get(&format!("{USER}/messages/{}", key(&copy)), Some(&reader()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}
