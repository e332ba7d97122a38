//! EWS operations, impersonation rules, mailbox gates, throttling and fault shapes.

mod common;

use axum::http::StatusCode;
use base64::Engine;
use common::*;

fn app() -> String {
    bearer(&app_token(EXO, &["full_access_as_app"]))
}

fn app_as(id: &str, tid: &str) -> String {
    bearer(&sign(&app_claims(tid, id, EXO, &["full_access_as_app"])))
}

fn find_items(folder: &str, addr: &str, max: usize, offset: usize, extra: &str) -> String {
    format!(
        r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>{extra}</m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="{max}" Offset="{offset}" BasePoint="Beginning"/><m:SortOrder><t:FieldOrder Order="Descending"><t:FieldURI FieldURI="item:DateTimeReceived"/></t:FieldOrder></m:SortOrder><m:ParentFolderIds><t:DistinguishedFolderId Id="{folder}"><t:Mailbox><t:EmailAddress>{addr}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId></m:ParentFolderIds></m:FindItem>"#
    )
}

fn assert_fault(r: &Resp, code: &str, message: &str) {
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert!(r.body.starts_with("<?xml"), "{}", r.body);
    assert!(
        r.body.contains("<h:ServerVersionInfo MajorVersion=\"15\""),
        "{}",
        r.body
    );
    assert!(r.body.contains(&format!("<faultcode xmlns:a=\"http://schemas.microsoft.com/exchange/services/2006/types\">a:{code}</faultcode>")), "{}", r.body);
    assert!(r.body.contains(&format!("<e:ResponseCode xmlns:e=\"http://schemas.microsoft.com/exchange/services/2006/errors\">{code}</e:ResponseCode>")), "{}", r.body);
    assert!(r.body.contains(message), "{}", r.body);
}

#[tokio::test]
async fn app_only_call_without_impersonation_is_the_header_must_be_present_fault() {
    let h = Harness::new();
    let r = h.ews(&app(), &soap("", CONVERT_ID_PROBE)).await;
    assert_fault(
        &r,
        "ErrorInvalidExchangeImpersonationHeaderData",
        "ExchangeImpersonation SOAP header must be present for this type of OAuth token.",
    );
}

#[tokio::test]
async fn delegated_call_with_impersonation_is_the_header_must_not_exist_fault() {
    let h = Harness::new();
    let t = bearer(&user_token(
        "adele@contoso.com",
        EXO,
        "EWS.AccessAsUser.All",
    ));
    let r = h
        .ews(
            &t,
            &soap(&imp("adele@contoso.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_fault(
        &r,
        "ErrorInvalidExchangeImpersonationHeaderData",
        "must not exist for this type of OAuth token.",
    );
}

#[tokio::test]
async fn empty_impersonation_header_is_invalid_header_data() {
    let h = Harness::new();
    let hdr = "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress></t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>";
    let r = h.ews(&app(), &soap(hdr, &get_folder("inbox", None))).await;
    assert_fault(
        &r,
        "ErrorInvalidExchangeImpersonationHeaderData",
        "must name a user",
    );
}

#[tokio::test]
async fn impersonating_a_mailbox_outside_the_apps_scope_is_denied() {
    let h = Harness::new();
    let scoped = app_as(SCOPED_APP, TID);
    let ok = h
        .ews(
            &scoped,
            &soap(&imp("adele@contoso.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let r = h
        .ews(
            &scoped,
            &soap(&imp("bob@contoso.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_fault(
        &r,
        "ErrorImpersonateUserDenied",
        "The account does not have permission to impersonate the requested user.",
    );
}

#[tokio::test]
async fn on_premises_service_account_needs_the_impersonation_right() {
    let h = Harness::new();
    let svc = basic("svc@contoso.com", PASSWORD);
    let ok = h
        .post(
            "/onprem/ex01/EWS/Exchange.asmx",
            Some(&svc),
            &soap(&imp("onprem@contoso.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let denied = h
        .post(
            "/onprem/ex01/EWS/Exchange.asmx",
            Some(&svc),
            &soap(&imp("onprem2@contoso.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_fault(&denied, "ErrorImpersonateUserDenied", "impersonate");
    // A user without the right cannot impersonate someone else either.
    let user = basic("onprem@contoso.com", PASSWORD);
    let r = h
        .post(
            "/onprem/ex01/EWS/Exchange.asmx",
            Some(&user),
            &soap(&imp("onprem2@contoso.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_fault(&r, "ErrorImpersonateUserDenied", "impersonate");
}

#[tokio::test]
async fn unknown_other_tenant_unprovisioned_and_remote_mailboxes_are_non_existent() {
    let h = Harness::new();
    for addr in [
        "nobody@contoso.com",
        "fred@fabrikam.com",
        "pending@contoso.com",
        "onprem@contoso.com",
    ] {
        let r = h
            .ews(&app(), &soap(&imp(addr), &get_folder("inbox", None)))
            .await;
        assert_fault(
            &r,
            "ErrorNonExistentMailbox",
            "The SMTP address has no mailbox associated with it.",
        );
    }
}

#[tokio::test]
async fn alias_and_principal_name_resolve_the_mailbox() {
    let h = Harness::new();
    let hdr = "<t:ExchangeImpersonation><t:ConnectingSID><t:SmtpAddress>a.vance@contoso.com</t:SmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>";
    let r = h.ews(&app(), &soap(hdr, &get_folder("inbox", None))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let hdr = "<t:ExchangeImpersonation><t:ConnectingSID><t:PrincipalName>ghost@contoso.com</t:PrincipalName></t:ConnectingSID></t:ExchangeImpersonation>";
    let r = h.ews(&app(), &soap(hdr, &get_folder("inbox", None))).await;
    assert_fault(&r, "ErrorInvalidUserPrincipalName", "principal name");
}

#[tokio::test]
async fn unlicensed_mailboxes_get_error_invalid_license() {
    let h = Harness::new();
    for addr in ["unlicensed@contoso.com", "kiosk@contoso.com"] {
        let r = h
            .ews(&app(), &soap(&imp(addr), &get_folder("inbox", None)))
            .await;
        assert_fault(&r, "ErrorInvalidLicense", "license");
    }
}

#[tokio::test]
async fn ews_disabled_for_the_mailbox_or_the_organisation_is_403() {
    let h = Harness::new();
    let r = h
        .ews(
            &app(),
            &soap(&imp("noews@contoso.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .ews(
            &app_as(APP, FAB_TID),
            &soap(&imp("fred@fabrikam.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn app_not_on_the_ews_allow_list_is_403() {
    let h = Harness::new();
    let r = h
        .ews(
            &app_as(APP, LIT_TID),
            &soap(&imp("lee@litware.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .ews(
            &app_as(ALLOWED_APP, LIT_TID),
            &soap(&imp("lee@litware.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn throttled_app_gets_error_server_busy_with_back_off() {
    let h = Harness::new();
    let t = app_as(THROTTLED_APP, TID);
    let body = soap(&imp("adele@contoso.com"), &get_folder("inbox", None));
    for _ in 0..2 {
        assert_eq!(h.ews(&t, &body).await.status, StatusCode::OK);
    }
    let r = h.ews(&t, &body).await;
    assert_fault(
        &r,
        "ErrorServerBusy",
        "The server cannot service this request right now. Try again later.",
    );
    let ms: u64 = r
        .body
        .split("<t:Value Name=\"BackOffMilliseconds\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|s| s.parse().ok())
        .expect("BackOffMilliseconds");
    assert!(ms > 500_000 && ms <= 600_000, "{ms}");
    // Another app keeps its own budget.
    assert_eq!(h.ews(&app(), &body).await.status, StatusCode::OK);
    assert_eq!(h.state.stats().throttled, 1);
}

#[tokio::test]
async fn get_folder_returns_root_and_inbox_with_counts_and_server_version() {
    let h = Harness::new();
    let r = h
        .ews(
            &app(),
            &soap(
                &imp("adele@contoso.com"),
                &get_folder("root", Some("adele@contoso.com")),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains("<h:ServerVersionInfo MajorVersion=\"15\" MinorVersion=\"20\"")
    );
    assert!(r.body.contains("ResponseClass=\"Success\""));
    assert_eq!(tag(&r.body, "DisplayName").as_deref(), Some("Root"));
    let r = h
        .ews(
            &app(),
            &soap(
                &imp("adele@contoso.com"),
                &get_folder("inbox", Some("adele@contoso.com")),
            ),
        )
        .await;
    assert_eq!(tag(&r.body, "TotalCount").as_deref(), Some("12"));
    assert_eq!(tag(&r.body, "DisplayName").as_deref(), Some("Inbox"));
    let unread: u32 = tag(&r.body, "UnreadCount")
        .and_then(|u| u.parse().ok())
        .expect("unread");
    assert!(unread <= 12);
    let r = h
        .ews(
            &app(),
            &soap(&imp("adele@contoso.com"), &get_folder("nosuchfolder", None)),
        )
        .await;
    assert!(
        r.body
            .contains("<m:ResponseCode>ErrorFolderNotFound</m:ResponseCode>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("ServerVersionInfo"));
}

#[tokio::test]
async fn naming_another_mailbox_without_rights_is_access_denied() {
    let h = Harness::new();
    let r = h
        .ews(
            &app(),
            &soap(
                &imp("adele@contoso.com"),
                &get_folder("inbox", Some("bob@contoso.com")),
            ),
        )
        .await;
    assert!(
        r.body
            .contains("<m:ResponseCode>ErrorAccessDenied</m:ResponseCode>"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn find_folder_lists_children_shallow_and_deep() {
    let h = Harness::new();
    let body = r#"<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:ParentFolderIds><t:DistinguishedFolderId Id="root"/></m:ParentFolderIds></m:FindFolder>"#;
    let r = h.ews(&app(), &soap(&imp("adele@contoso.com"), body)).await;
    assert_eq!(
        attr(&r.body, "TotalItemsInView").as_deref(),
        Some("1"),
        "{}",
        r.body
    );
    let r = h
        .ews(
            &app(),
            &soap(&imp("adele@contoso.com"), &body.replace("Shallow", "Deep")),
        )
        .await;
    assert_eq!(
        attr(&r.body, "TotalItemsInView").as_deref(),
        Some("11"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<t:CalendarFolder>"));
}

#[tokio::test]
async fn find_item_pages_through_the_inbox_newest_first() {
    let h = Harness::new();
    let mut ids = Vec::new();
    let mut offset = 0;
    let mut dates = Vec::new();
    loop {
        let r = h.ews(&app(), &soap(&imp("bob@contoso.com"), &find_items("inbox", "bob@contoso.com", 100, offset, r#"<t:AdditionalProperties><t:FieldURI FieldURI="item:DateTimeReceived"/></t:AdditionalProperties>"#))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(attr(&r.body, "TotalItemsInView").as_deref(), Some("250"));
        let page = all_attrs(&r.body, "Id");
        let next: usize = attr(&r.body, "IndexedPagingOffset")
            .and_then(|v| v.parse().ok())
            .expect("offset");
        assert_eq!(next, offset + page.len());
        ids.extend(page);
        dates.extend(
            r.body
                .split("<t:DateTimeReceived>")
                .skip(1)
                .filter_map(|s| s.split('<').next())
                .map(str::to_owned),
        );
        let last = attr(&r.body, "IncludesLastItemInRange").expect("last");
        offset = next;
        if last == "true" {
            break;
        }
        assert!(offset < 250, "paging must end");
    }
    assert_eq!(ids.len(), 250);
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 250);
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "descending by DateTimeReceived"
    );
}

#[tokio::test]
async fn get_item_returns_fields_and_mime_content_for_found_ids() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h
        .ews(
            &app(),
            &soap(&who, &find_items("inbox", "adele@contoso.com", 2, 0, "")),
        )
        .await;
    let ids = all_attrs(&r.body, "Id");
    let cks = all_attrs(&r.body, "ChangeKey");
    assert_eq!(ids.len(), 2);
    let item_ids: String = ids
        .iter()
        .zip(&cks)
        .map(|(i, c)| format!("<t:ItemId Id=\"{i}\" ChangeKey=\"{c}\"/>"))
        .collect();
    let body = format!(
        r#"<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/><t:FieldURI FieldURI="item:MimeContent"/><t:FieldURI FieldURI="calendar:Start"/><t:FieldURI FieldURI="message:From"/><t:FieldURI FieldURI="message:IsRead"/></t:AdditionalProperties></m:ItemShape><m:ItemIds>{item_ids}</m:ItemIds></m:GetItem>"#
    );
    let r = h.ews(&app(), &soap(&who, &body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body.matches("ResponseClass=\"Success\"").count(), 2);
    let subject = tag(&r.body, "Subject").expect("subject");
    let mime_b64 = r
        .body
        .split("<t:MimeContent CharacterSet=\"UTF-8\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("mime");
    let mime = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(mime_b64)
            .expect("base64"),
    )
    .expect("utf8");
    assert!(mime.contains(&format!("Subject: {subject}\r\n")), "{mime}");
    assert!(
        mime.contains("To: Adele Vance <adele@contoso.com>"),
        "{mime}"
    );
    assert!(r.body.contains("<t:From><t:Mailbox>"));
    assert!(
        !r.body.contains("calendar"),
        "calendar fields are ignored for messages"
    );
}

#[tokio::test]
async fn get_item_with_bad_or_foreign_ids_gives_per_item_errors() {
    let h = Harness::new();
    let r = h
        .ews(
            &app(),
            &soap(
                &imp("bob@contoso.com"),
                &find_items("inbox", "bob@contoso.com", 1, 0, ""),
            ),
        )
        .await;
    let bob_id = all_attrs(&r.body, "Id").remove(0);
    let body = format!(
        r#"<m:GetItem><m:ItemShape><t:BaseShape>Default</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="garbage"/><t:ItemId Id="{bob_id}"/></m:ItemIds></m:GetItem>"#
    );
    let r = h.ews(&app(), &soap(&imp("adele@contoso.com"), &body)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains("<m:ResponseCode>ErrorInvalidIdMalformed</m:ResponseCode>"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("<m:ResponseCode>ErrorAccessDenied</m:ResponseCode>"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn sync_folder_hierarchy_returns_folders_then_nothing_then_rejects_bad_state() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let req = |state: &str| {
        format!(
            "<m:SyncFolderHierarchy><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape>{state}</m:SyncFolderHierarchy>"
        )
    };
    let r = h.ews(&app(), &soap(&who, &req(""))).await;
    assert_eq!(r.body.matches("<t:Create>").count(), 11, "{}", r.body);
    let state = tag(&r.body, "SyncState").expect("state");
    let r = h
        .ews(
            &app(),
            &soap(&who, &req(&format!("<m:SyncState>{state}</m:SyncState>"))),
        )
        .await;
    assert_eq!(r.body.matches("<t:Create>").count(), 0);
    assert!(r.body.contains("ResponseClass=\"Success\""));
    let r = h
        .ews(
            &app(),
            &soap(&who, &req("<m:SyncState>bm90LWEtc3RhdGU</m:SyncState>")),
        )
        .await;
    assert!(r.body.contains("<m:ResponseCode>ErrorInvalidSyncStateData</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:SyncState/>"), "{}", r.body);
}

fn sync_items(state: &str, max: u32) -> String {
    format!(
        r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="inbox"/></m:SyncFolderId>{state}<m:MaxChangesReturned>{max}</m:MaxChangesReturned></m:SyncFolderItems>"#
    )
}

#[tokio::test]
async fn sync_folder_items_pages_with_sync_state_and_sees_new_items() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let mut state = String::new();
    let mut sizes = Vec::new();
    loop {
        let r = h.ews(&app(), &soap(&who, &sync_items(&state, 5))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        sizes.push(r.body.matches("<t:Create>").count());
        state = format!(
            "<m:SyncState>{}</m:SyncState>",
            tag(&r.body, "SyncState").expect("state")
        );
        if tag(&r.body, "IncludesLastItemInRange").as_deref() == Some("true") {
            break;
        }
    }
    assert_eq!(sizes, vec![5, 5, 2]);
    // A message sent to adele shows up in the next sync.
    let send = r#"<m:CreateItem MessageDisposition="SendOnly"><m:Items><t:Message><t:Subject>Hello Adele</t:Subject><t:Body BodyType="Text">hi</t:Body><t:ToRecipients><t:Mailbox><t:EmailAddress>adele@contoso.com</t:EmailAddress></t:Mailbox></t:ToRecipients></t:Message></m:Items></m:CreateItem>"#;
    let r = h.ews(&app(), &soap(&imp("bob@contoso.com"), send)).await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    let r = h.ews(&app(), &soap(&who, &sync_items(&state, 5))).await;
    assert_eq!(r.body.matches("<t:Create>").count(), 1, "{}", r.body);
    let r = h
        .ews(
            &app(),
            &soap(&who, &sync_items("<m:SyncState>AAAA</m:SyncState>", 5)),
        )
        .await;
    assert!(r.body.contains("ErrorInvalidSyncStateData"));
    let r = h.ews(&app(), &soap(&who, &sync_items("", 0))).await;
    assert_fault(&r, "ErrorSchemaValidation", "failed schema validation");
}

#[tokio::test]
async fn create_item_send_and_save_copy_delivers_and_keeps_a_copy() {
    let h = Harness::new();
    let body = r#"<m:CreateItem MessageDisposition="SendAndSaveCopy"><m:SavedItemFolderId><t:DistinguishedFolderId Id="sentitems"/></m:SavedItemFolderId><m:Items><t:Message><t:Subject>Report</t:Subject><t:Body BodyType="HTML">&lt;b&gt;numbers&lt;/b&gt;</t:Body><t:ToRecipients><t:Mailbox><t:EmailAddress>bob@contoso.com</t:EmailAddress></t:Mailbox></t:ToRecipients></t:Message></m:Items></m:CreateItem>"#;
    let r = h.ews(&app(), &soap(&imp("adele@contoso.com"), body)).await;
    assert!(r.body.contains("<m:Items/>"), "{}", r.body);
    let r = h
        .ews(
            &app(),
            &soap(&imp("bob@contoso.com"), &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(tag(&r.body, "TotalCount").as_deref(), Some("251"));
    let r = h
        .ews(
            &app(),
            &soap(&imp("adele@contoso.com"), &get_folder("sentitems", None)),
        )
        .await;
    assert_eq!(tag(&r.body, "TotalCount").as_deref(), Some("4"));
    let r = h.ews(&app(), &soap(&imp("bob@contoso.com"), &find_items("inbox", "bob@contoso.com", 1, 0, r#"<t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/></t:AdditionalProperties>"#))).await;
    assert_eq!(
        tag(&r.body, "Subject").as_deref(),
        Some("Report"),
        "newest first"
    );
    assert_eq!(h.state.stats().items_created, 2);
}

#[tokio::test]
async fn create_item_save_only_returns_an_id_that_get_item_reads() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let body = r#"<m:CreateItem MessageDisposition="SaveOnly"><m:Items><t:Message><t:Subject>Draft é</t:Subject><t:Body BodyType="Text">later</t:Body></t:Message></m:Items></m:CreateItem>"#;
    let r = h.ews(&app(), &soap(&who, body)).await;
    let id = attr(&r.body, "Id").expect("id");
    let get = format!(
        r#"<m:GetItem><m:ItemShape><t:BaseShape>Default</t:BaseShape></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#
    );
    let r = h.ews(&app(), &soap(&who, &get)).await;
    assert_eq!(tag(&r.body, "Subject").as_deref(), Some("Draft é"));
    assert_eq!(tag(&r.body, "IsDraft").as_deref(), Some("true"));
    let send = r#"<m:CreateItem MessageDisposition="SendOnly"><m:Items><t:Message><t:Subject>x</t:Subject></t:Message></m:Items></m:CreateItem>"#;
    let r = h.ews(&app(), &soap(&who, send)).await;
    assert!(r.body.contains("ErrorInvalidRecipients"), "{}", r.body);
}

#[tokio::test]
async fn convert_id_round_trips_and_rejects_dummy_ids() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let r = h
        .ews(
            &app(),
            &soap(&who, &find_items("inbox", "adele@contoso.com", 1, 0, "")),
        )
        .await;
    let id = all_attrs(&r.body, "Id").remove(0);
    let to_hex = format!(
        r#"<m:ConvertId DestinationFormat="HexEntryId"><m:SourceIds><t:AlternateId Id="{id}" Format="EwsId" Mailbox="adele@contoso.com"/></m:SourceIds></m:ConvertId>"#
    );
    let r = h.ews(&app(), &soap(&who, &to_hex)).await;
    let hex = attr(&r.body, "Id").expect("hex");
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{hex}");
    let back = format!(
        r#"<m:ConvertId DestinationFormat="EwsId"><m:SourceIds><t:AlternateId Id="{hex}" Format="HexEntryId" Mailbox="adele@contoso.com"/></m:SourceIds></m:ConvertId>"#
    );
    let r = h.ews(&app(), &soap(&who, &back)).await;
    assert_eq!(attr(&r.body, "Id"), Some(id));
    let r = h.ews(&app(), &soap(&who, CONVERT_ID_PROBE)).await;
    assert!(r.body.contains("<m:MessageText>Id is malformed.</m:MessageText><m:ResponseCode>ErrorInvalidIdMalformed</m:ResponseCode>"), "{}", r.body);
}

#[tokio::test]
async fn resolve_names_finds_one_several_or_none() {
    let h = Harness::new();
    let who = imp("adele@contoso.com");
    let q = |e: &str| {
        format!(
            r#"<m:ResolveNames ReturnFullContactData="true"><m:UnresolvedEntry>{e}</m:UnresolvedEntry></m:ResolveNames>"#
        )
    };
    let r = h.ews(&app(), &soap(&who, &q("bob@contoso.com"))).await;
    assert!(r.body.contains("ResponseClass=\"Success\""), "{}", r.body);
    assert_eq!(
        tag(&r.body, "EmailAddress").as_deref(),
        Some("bob@contoso.com")
    );
    let r = h.ews(&app(), &soap(&who, &q("onprem"))).await;
    assert!(r.body.contains("ResponseClass=\"Warning\""), "{}", r.body);
    assert!(r.body.contains("ErrorNameResolutionMultipleResults"));
    assert_eq!(attr(&r.body, "TotalItemsInView").as_deref(), Some("2"));
    let r = h.ews(&app(), &soap(&who, &q("zzz"))).await;
    assert!(r.body.contains("<m:MessageText>No results were found.</m:MessageText><m:ResponseCode>ErrorNameResolutionNoResults</m:ResponseCode>"), "{}", r.body);
}

#[tokio::test]
async fn malformed_xml_is_a_schema_validation_fault_with_position() {
    let h = Harness::new();
    let r = h
        .ews(
            &app(),
            "<?xml version='1.0'?>\n<s:Envelope><s:Body><m:GetFolder></s:Body>",
        )
        .await;
    assert_fault(
        &r,
        "ErrorSchemaValidation",
        "The request failed schema validation.",
    );
    assert_eq!(tag(&r.body, "LineNumber").as_deref(), Some("2"));
}

#[tokio::test]
async fn bad_server_version_and_unknown_operation_are_faults() {
    let h = Harness::new();
    let body = soap(&imp("adele@contoso.com"), &get_folder("inbox", None))
        .replace("Exchange2016", "Exchange2099");
    let r = h.ews(&app(), &body).await;
    assert_fault(
        &r,
        "ErrorInvalidServerVersion",
        "The specified server version is invalid.",
    );
    let r = h
        .ews(&app(), &soap(&imp("adele@contoso.com"), "<m:Frobnicate/>"))
        .await;
    assert_fault(&r, "ErrorInvalidRequest", "Frobnicate");
}

#[tokio::test]
async fn unread_count_matches_the_items_is_read_flags() {
    let h = Harness::new();
    let who = imp("bob@contoso.com");
    let r = h.ews(&app(), &soap(&who, &get_folder("inbox", None))).await;
    let unread: usize = tag(&r.body, "UnreadCount")
        .and_then(|u| u.parse().ok())
        .expect("unread");
    let r = h.ews(&app(), &soap(&who, &find_items("inbox", "bob@contoso.com", 1000, 0, r#"<t:AdditionalProperties><t:FieldURI FieldURI="message:IsRead"/></t:AdditionalProperties>"#))).await;
    let flags = r.body.matches("<t:IsRead>false</t:IsRead>").count();
    assert_eq!(r.body.matches("<t:IsRead>").count(), 250);
    assert_eq!(unread, flags);
    assert!(
        unread > 0 && unread < 250,
        "generated mail mixes read and unread"
    );
}

#[tokio::test]
async fn served_over_a_loopback_listener() {
    let h = Harness::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = h.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{addr}/EWS/Exchange.asmx"))
        .header("authorization", app())
        .header("content-type", "text/xml; charset=utf-8")
        .body(soap(&imp("adele@contoso.com"), &get_folder("inbox", None)))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/xml; charset=utf-8")
    );
    let body = r.text().await.expect("body");
    assert_eq!(tag(&body, "TotalCount").as_deref(), Some("12"));
    let j: serde_json::Value = client
        .get(format!(
            "http://{addr}/autodiscover/autodiscover.json/v1.0/adele@contoso.com?Protocol=EWS"
        ))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(j["Url"], format!("http://{addr}/EWS/Exchange.asmx"));
    server.abort();
}

#[tokio::test]
async fn generated_folders_under_the_inbox_are_found_listed_and_synced() {
    let h = Harness::new();
    let who = imp("carol@contoso.com");
    let shallow = r#"<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindFolder>"#;
    let r = h.ews(&app(), &soap(&who, shallow)).await;
    assert_eq!(
        attr(&r.body, "TotalItemsInView").as_deref(),
        Some("3"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<t:DisplayName>Project 2</t:DisplayName>"));
    assert_eq!(r.body.matches("<t:TotalCount>4</t:TotalCount>").count(), 3);
    let ids: Vec<String> = r
        .body
        .split("<t:FolderId Id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 3);
    let find = format!(
        r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:FolderId Id="{}"/></m:ParentFolderIds></m:FindItem>"#,
        ids[1]
    );
    let r = h.ews(&app(), &soap(&who, &find)).await;
    assert_eq!(
        attr(&r.body, "TotalItemsInView").as_deref(),
        Some("4"),
        "{}",
        r.body
    );
    let deep = shallow
        .replace("Shallow", "Deep")
        .replace("\"inbox\"", "\"root\"");
    let r = h.ews(&app(), &soap(&who, &deep)).await;
    assert_eq!(attr(&r.body, "TotalItemsInView").as_deref(), Some("14"));
    let sync = "<m:SyncFolderHierarchy><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape></m:SyncFolderHierarchy>";
    let r = h.ews(&app(), &soap(&who, sync)).await;
    assert_eq!(r.body.matches("<t:Create>").count(), 14);
    // Adele has no generated folders: Carol's folder id is not hers.
    let r = h.ews(&app(), &soap(&imp("adele@contoso.com"), &find)).await;
    assert!(r.body.contains("ErrorAccessDenied"), "{}", r.body);
}

#[tokio::test]
async fn sync_folder_hierarchy_is_limited_to_the_sync_folder() {
    let h = Harness::new();
    let body = r#"<m:SyncFolderHierarchy><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:SyncFolderId><t:DistinguishedFolderId Id="inbox"/></m:SyncFolderId></m:SyncFolderHierarchy>"#;
    let r = h.ews(&app(), &soap(&imp("carol@contoso.com"), body)).await;
    assert_eq!(r.body.matches("<t:Create>").count(), 3, "{}", r.body);
    let r = h.ews(&app(), &soap(&imp("adele@contoso.com"), body)).await;
    assert_eq!(r.body.matches("<t:Create>").count(), 0, "{}", r.body);
    assert!(r.body.contains("ResponseClass=\"Success\""));
}

#[tokio::test]
async fn find_item_returns_the_common_extended_mapi_properties() {
    let h = Harness::new();
    let extra = r#"<t:AdditionalProperties><t:FieldURI FieldURI="item:Size"/><t:ExtendedFieldURI PropertyTag="0x0E08" PropertyType="Integer"/><t:ExtendedFieldURI PropertyTag="0x1035" PropertyType="String"/><t:ExtendedFieldURI PropertyTag="0x0E23" PropertyType="Integer"/><t:ExtendedFieldURI PropertyTag="0x7FFF" PropertyType="Integer"/></t:AdditionalProperties>"#;
    let r = h
        .ews(
            &app(),
            &soap(
                &imp("bob@contoso.com"),
                &find_items("inbox", "bob@contoso.com", 1, 0, extra),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let size = tag(&r.body, "Size").expect("size");
    assert!(
        r.body.contains(&format!(
            "<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag=\"0xe08\" PropertyType=\"Integer\"/><t:Value>{size}</t:Value></t:ExtendedProperty>"
        )),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("PropertyTag=\"0x1035\" PropertyType=\"String\"/><t:Value>&lt;"),
        "{}",
        r.body
    );
    assert!(r.body.contains("PropertyTag=\"0xe23\""), "{}", r.body);
    // A property the item does not have is left out, as Exchange leaves it out.
    assert!(!r.body.contains("0x7fff"), "{}", r.body);
}
