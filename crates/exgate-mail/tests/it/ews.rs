//! EWS client: request shape, impersonation, faults, per-item errors, retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use exgate_mail::ews::{CallOptions, ConnectingSid, EwsClient, FolderRef, ItemId, Traversal};
use exgate_mail::{EmptyBearer, ErrorKind};

use crate::fixture::{self, Canned, Fixture};
use crate::{bearer, http};

const USER: &str = "user@example.com";

async fn exchange() -> Fixture {
    Fixture::start(fixture::exchange()).await
}

fn client(fx: &Fixture, token: &str) -> EwsClient {
    EwsClient::new(http(), fx.url("/EWS/Exchange.asmx"), bearer(token))
}

fn smtp() -> ConnectingSid {
    ConnectingSid::PrimarySmtpAddress(USER.into())
}

#[tokio::test]
async fn get_folder_sends_impersonation_anchor_version_and_soap_11_headers() {
    let fx = exchange().await;
    let sid = smtp();
    let opts = CallOptions {
        impersonation: Some(&sid),
        anchor: None,
    };
    let f = client(&fx, "app-token")
        .get_folder(&FolderRef::named("inbox", Some(USER)), &opts)
        .await
        .unwrap();
    assert_eq!(f.display_name.as_deref(), Some("Inbox"));
    assert_eq!(f.total_count, Some(3));
    let reqs = fx.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/EWS/Exchange.asmx");
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    assert_eq!(r.header("x-anchormailbox"), Some(USER));
    assert_eq!(r.header("authorization"), Some("Bearer app-token"));
    assert_eq!(r.header("soapaction"), None, "EWS needs no SOAPAction");
    assert!(r.body.starts_with("<?xml"));
    assert!(r.body.contains(r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">"#));
    assert!(
        r.body
            .contains(r#"<t:RequestServerVersion Version="Exchange2016"/>"#)
    );
    assert!(r.body.contains("<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>user@example.com</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"));
    assert!(r.body.contains(r#"<t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>user@example.com</t:EmailAddress>"#));
}

#[tokio::test]
async fn impersonation_by_upn_and_sid_and_configurable_server_version() {
    let fx = exchange().await;
    let c = client(&fx, "app-token")
        .with_server_version("Exchange2013_SP1")
        .with_time_zone("UTC");
    let upn = ConnectingSid::PrincipalName("user.upn@example.com".into());
    c.get_folder(
        &FolderRef::named("msgfolderroot", None),
        &CallOptions {
            impersonation: Some(&upn),
            anchor: None,
        },
    )
    .await
    .unwrap();
    let sid = ConnectingSid::Sid("S-1-5-21-1-2-3-1001".into());
    c.get_folder(
        &FolderRef::named("msgfolderroot", None),
        &CallOptions {
            impersonation: Some(&sid),
            anchor: Some(USER),
        },
    )
    .await
    .unwrap();
    let reqs = fx.requests();
    assert!(
        reqs[0]
            .body
            .contains("<t:PrincipalName>user.upn@example.com</t:PrincipalName>")
    );
    assert_eq!(
        reqs[0].header("x-anchormailbox"),
        Some("user.upn@example.com")
    );
    assert!(
        reqs[0]
            .body
            .contains(r#"<t:RequestServerVersion Version="Exchange2013_SP1"/>"#)
    );
    assert!(reqs[0].body.contains(r#"<t:TimeZoneDefinition Id="UTC"/>"#));
    assert!(reqs[1].body.contains("<t:SID>S-1-5-21-1-2-3-1001</t:SID>"));
    assert_eq!(reqs[1].header("x-anchormailbox"), Some(USER));
}

#[tokio::test]
async fn app_token_without_impersonation_is_a_soap_fault_with_evidence_and_not_retried() {
    let fx = exchange().await;
    let e = client(&fx, "app-token")
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SoapFault);
    let ev = e.evidence();
    assert_eq!(ev.status, Some(500));
    let f = ev.soap_fault.as_ref().unwrap();
    assert_eq!(
        f.response_code.as_deref(),
        Some("ErrorInvalidExchangeImpersonationHeaderData")
    );
    assert_eq!(f.faultcode, "a:ErrorInvalidExchangeImpersonationHeaderData");
    assert!(f.faultstring.contains("must be present"));
    assert_eq!(ev.server_version.as_ref().unwrap().minor, Some(20));
    assert_eq!(ev.operation.as_deref(), Some("GetFolder"));
    assert_eq!(ev.attempts, 1);
    assert_eq!(fx.requests().len(), 1);
    assert!(
        e.to_string()
            .contains("ErrorInvalidExchangeImpersonationHeaderData")
    );
    // And the delegated variant.
    let sid = smtp();
    let e = client(&fx, "user-token")
        .get_folder(
            &FolderRef::named("inbox", None),
            &CallOptions {
                impersonation: Some(&sid),
                anchor: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        e.evidence()
            .soap_fault
            .as_ref()
            .unwrap()
            .faultstring
            .contains("must not exist")
    );
}

#[tokio::test]
async fn unauthorized_keeps_challenge_and_diagnostics_and_is_never_retried() {
    let fx = exchange().await;
    let sid = smtp();
    let e = client(&fx, "expired-token")
        .get_folder(
            &FolderRef::named("inbox", None),
            &CallOptions {
                impersonation: Some(&sid),
                anchor: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    let ev = e.evidence();
    assert_eq!(ev.status, Some(401));
    assert_eq!(ev.attempts, 1);
    assert_eq!(fx.requests().len(), 1, "401 must not be retried");
    let bearer = ev.challenges.iter().find(|c| c.scheme == "Bearer").unwrap();
    assert_eq!(
        bearer.param("client_id"),
        Some("00000002-0000-0ff1-ce00-000000000000")
    );
    assert_eq!(
        bearer.param("trusted_issuers"),
        Some("00000001-0000-0000-c000-000000000000@*")
    );
    assert_eq!(
        bearer.param("token_types"),
        Some("app_asserted_user_v1 service_asserted_app_v1")
    );
    assert_eq!(
        bearer.param("authorization_uri"),
        Some("https://login.microsoftonline.com/common/oauth2/authorize")
    );
    assert_eq!(bearer.param("error"), Some("invalid_token"));
    assert!(ev.challenges.iter().any(|c| c.scheme == "Basic"));
    let d = ev.diagnostics.as_ref().unwrap();
    assert_eq!(d.code.as_deref(), Some("2000001"));
    assert_eq!(d.category.as_deref(), Some("invalid_token"));
    assert!(
        ev.x_ms_diagnostics
            .as_deref()
            .unwrap()
            .starts_with("2000001;reason=")
    );
    assert_eq!(
        ev.header("request-id"),
        Some("5ca2c827-5147-474c-8457-63c4e5099c6e")
    );
}

#[tokio::test]
async fn empty_bearer_probe_sends_bare_bearer_and_gets_the_challenge() {
    let fx = exchange().await;
    let c = EwsClient::new(http(), fx.url("/EWS/Exchange.asmx"), Arc::new(EmptyBearer));
    let e = c.probe_version(&CallOptions::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert_eq!(fx.requests()[0].header("authorization"), Some("Bearer"));
    assert_eq!(e.evidence().auth_mode.as_deref(), Some("empty-bearer"));
    assert!(!e.evidence().challenges.is_empty());
}

fn counting(respond: impl Fn(usize) -> Canned + Send + Sync + 'static) -> fixture::Responder {
    let n = Arc::new(AtomicUsize::new(0));
    Arc::new(move |_, _| respond(n.fetch_add(1, Ordering::SeqCst)))
}

fn inbox_ok() -> Canned {
    fixture::ews_success(
        "GetFolder",
        r#"<m:Folders><t:Folder><t:FolderId Id="AAMkInbox"/><t:DisplayName>Inbox</t:DisplayName><t:TotalCount>3</t:TotalCount></t:Folder></m:Folders>"#,
    )
}

#[tokio::test]
async fn server_busy_back_off_is_honoured_then_the_call_succeeds() {
    let fx = Fixture::start(counting(|n| {
        if n == 0 {
            fixture::soap_fault(
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
                &fixture::back_off(40),
            )
        } else {
            inbox_ok()
        }
    }))
    .await;
    let started = std::time::Instant::now();
    let f = client(&fx, "app-token")
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap();
    assert_eq!(f.total_count, Some(3));
    assert_eq!(fx.requests().len(), 2);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(40),
        "BackOffMilliseconds must be waited out"
    );
}

#[tokio::test]
async fn server_busy_beyond_the_cap_is_reported_as_throttled_with_the_back_off() {
    let fx = Fixture::start(counting(|_| {
        fixture::soap_fault(
            "ErrorServerBusy",
            "The server cannot service this request right now. Try again later.",
            &fixture::back_off(297749),
        )
    }))
    .await;
    let e = client(&fx, "app-token")
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled);
    assert_eq!(
        e.evidence().message_xml_value("BackOffMilliseconds"),
        Some("297749")
    );
    assert_eq!(fx.requests().len(), 1);
}

#[tokio::test]
async fn transient_item_error_and_5xx_are_retried_permanent_ones_are_not() {
    let fx = Fixture::start(counting(|n| match n {
        0 => fixture::ews_item_error(
            "GetFolder",
            "Error",
            "ErrorInternalServerTransientError",
            "Transient.",
            "",
            "",
        ),
        1 => Canned::new(503, "busy").header("retry-after", "0"),
        _ => inbox_ok(),
    }))
    .await;
    client(&fx, "app-token")
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap();
    assert_eq!(fx.requests().len(), 3);

    let fx = Fixture::start(counting(|_| Canned::new(500, "<html>Runtime Error</html>"))).await;
    let e = client(&fx, "app-token")
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Http);
    assert_eq!(e.evidence().attempts, 3);
    assert_eq!(
        e.evidence().body_excerpt.as_deref(),
        Some("<html>Runtime Error</html>")
    );
    assert_eq!(fx.requests().len(), 3);
}

#[tokio::test]
async fn per_item_error_is_typed() {
    let fx = exchange().await;
    let sid = smtp();
    let e = client(&fx, "app-token")
        .get_folder(
            &FolderRef::named("junkemail", Some(USER)),
            &CallOptions {
                impersonation: Some(&sid),
                anchor: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EwsResponse);
    let r = e.evidence().ews_response.as_ref().unwrap();
    assert_eq!(r.response_class, "Error");
    assert_eq!(r.response_code, "ErrorFolderNotFound");
    assert_eq!(
        r.message_text.as_deref(),
        Some("The specified folder could not be found in the store.")
    );
    assert_eq!(fx.requests().len(), 1);
}

#[tokio::test]
async fn find_item_pages_and_get_item_returns_mime() {
    let fx = exchange().await;
    let sid = smtp();
    let opts = CallOptions {
        impersonation: Some(&sid),
        anchor: None,
    };
    let c = client(&fx, "app-token");
    let inbox = FolderRef::named("inbox", Some(USER));
    let (ids, p) = c.find_item(&inbox, 0, 2, &opts).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert!(!p.last);
    assert_eq!(p.next_offset, Some(2));
    assert_eq!(p.total, Some(3));
    let (ids2, p2) = c.find_item(&inbox, 2, 2, &opts).await.unwrap();
    assert_eq!(ids2.len(), 1);
    assert!(p2.last);
    let body = &fx.requests()[1].body;
    assert!(body.contains(
        r#"<m:IndexedPageItemView MaxEntriesReturned="2" Offset="2" BasePoint="Beginning"/>"#
    ));
    let mime = c.get_item_mime(&ids[0], &opts).await.unwrap();
    assert_eq!(mime, fixture::MIME);
    assert!(
        fx.requests()[2]
            .body
            .contains("<t:IncludeMimeContent>true</t:IncludeMimeContent>")
    );
    let missing = ItemId {
        id: "nope".into(),
        change_key: None,
    };
    let e = c.get_item_mime(&missing, &opts).await.unwrap_err();
    assert_eq!(
        e.evidence().ews_response.as_ref().unwrap().response_code,
        "ErrorItemNotFound"
    );
}

#[tokio::test]
async fn find_folder_and_sync_operations() {
    let fx = exchange().await;
    let sid = smtp();
    let opts = CallOptions {
        impersonation: Some(&sid),
        anchor: None,
    };
    let c = client(&fx, "app-token");
    let (folders, p) = c
        .find_folder(
            &FolderRef::named("msgfolderroot", Some(USER)),
            Traversal::Shallow,
            0,
            100,
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(folders.len(), 2);
    assert!(p.last);
    assert!(
        fx.requests()[0]
            .body
            .contains(r#"<m:FindFolder Traversal="Shallow">"#)
    );

    let h = c.sync_folder_hierarchy(None, &opts).await.unwrap();
    assert_eq!(h.sync_state, "H1");
    assert_eq!(h.changed[0].display_name.as_deref(), Some("Inbox"));

    let inbox = FolderRef::named("inbox", Some(USER));
    let s1 = c.sync_folder_items(&inbox, None, 100, &opts).await.unwrap();
    assert_eq!(s1.sync_state, "S1");
    assert_eq!(s1.created.len(), 2);
    let s2 = c
        .sync_folder_items(&inbox, Some(&s1.sync_state), 100, &opts)
        .await
        .unwrap();
    assert_eq!(s2.deleted[0].id, "AAMkItem1");
    assert_eq!(s2.read_flag.len(), 1);
    assert!(
        fx.requests()
            .last()
            .unwrap()
            .body
            .contains("<m:SyncState>S1</m:SyncState>")
    );
    let e = c
        .sync_folder_items(&inbox, Some("garbage"), 100, &opts)
        .await
        .unwrap_err();
    assert_eq!(
        e.evidence().ews_response.as_ref().unwrap().response_code,
        "ErrorInvalidSyncStateData"
    );
}

#[tokio::test]
async fn create_delete_convert_id_and_resolve_names() {
    let fx = exchange().await;
    let sid = smtp();
    let opts = CallOptions {
        impersonation: Some(&sid),
        anchor: None,
    };
    let c = client(&fx, "app-token");
    let id = c
        .create_item(
            &FolderRef::named("drafts", Some(USER)),
            "probe",
            "body",
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(id.id, "AAMkNew1");
    assert!(
        fx.requests()[0]
            .body
            .contains(r#"<m:CreateItem MessageDisposition="SaveOnly">"#)
    );
    c.delete_item(&id, &opts).await.unwrap();
    assert!(
        fx.requests()[1]
            .body
            .contains(r#"<m:DeleteItem DeleteType="HardDelete">"#)
    );

    // exchangelib's version probe: a per-item error, but the version header is what counts.
    let v = c.probe_version(&opts).await.unwrap().unwrap();
    assert_eq!((v.major, v.minor), (Some(15), Some(20)));
    let e = c
        .convert_id("DUMMY", "EwsId", "DUMMY", "EntryId", &opts)
        .await
        .unwrap_err();
    assert_eq!(
        e.evidence().ews_response.as_ref().unwrap().response_code,
        "ErrorInvalidIdMalformed"
    );

    let one = c.resolve_names("user", &opts).await.unwrap();
    assert_eq!(one[0].email_address.as_deref(), Some(USER));
    let two = c.resolve_names("us", &opts).await.unwrap();
    assert_eq!(
        two.len(),
        2,
        "Warning ErrorNameResolutionMultipleResults still returns the matches"
    );
    let e = c.resolve_names("nobody", &opts).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EwsResponse);
    assert_eq!(
        e.evidence().ews_response.as_ref().unwrap().response_code,
        "ErrorNameResolutionNoResults"
    );
}

#[tokio::test]
async fn onprem_challenges_in_two_headers_are_both_kept() {
    // Exchange Server with Hybrid Modern Auth: two WWW-Authenticate headers; without HMA the
    // Bearer challenge has no authorization_uri.
    let fx = Fixture::start(counting(|n| {
        let bearer = if n == 0 {
            r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@5de110f8-2e0f-4d45-891d-bcf2218e253d,00000004-0000-0ff1-ce00-000000000000@contoso.com", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="https://login.windows.net/common/oauth2/authorize""#
        } else {
            r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@5de110f8-2e0f-4d45-891d-bcf2218e253d", token_types="app_asserted_user_v1 service_asserted_app_v1""#
        };
        Canned::new(401, "")
            .header("www-authenticate", bearer)
            .header("www-authenticate", r#"Basic realm="mail.contoso.com""#)
    }))
    .await;
    let c = EwsClient::new(http(), fx.url("/EWS/Exchange.asmx"), Arc::new(EmptyBearer));
    let e = c.probe_version(&CallOptions::default()).await.unwrap_err();
    let ch = &e.evidence().challenges;
    assert_eq!(ch.len(), 2);
    assert_eq!(
        ch[0].param("authorization_uri"),
        Some("https://login.windows.net/common/oauth2/authorize")
    );
    assert!(
        ch[0]
            .param("trusted_issuers")
            .unwrap()
            .ends_with("@contoso.com")
    );
    assert_eq!(ch[1].scheme, "Basic");
    assert_eq!(ch[1].param("realm"), Some("mail.contoso.com"));
    assert_eq!(e.evidence().header_values("www-authenticate").count(), 2);
    let e = c.probe_version(&CallOptions::default()).await.unwrap_err();
    assert_eq!(
        e.evidence().challenges[0].param("authorization_uri"),
        None,
        "no HMA: no authorization_uri"
    );
}

#[tokio::test]
async fn generic_error_page_redirect_is_retried() {
    let fx = Fixture::start(counting(|n| {
        if n == 0 {
            Canned::new(302, "").header(
                "location",
                "/ews/genericerrorpage.htm?aspxerrorpath=/ews/exchange.asmx",
            )
        } else {
            inbox_ok()
        }
    }))
    .await;
    client(&fx, "app-token")
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap();
    assert_eq!(fx.requests().len(), 2);
}

#[tokio::test]
async fn rejected_schema_version_falls_back_and_is_remembered() {
    // An Exchange 2013 server: anything newer than Exchange2013_SP1 is refused.
    let fx = Fixture::start(Arc::new(|_, r| {
        if r.body.contains(r#"Version="Exchange2016""#)
            || r.body.contains(r#"Version="Exchange2015""#)
        {
            fixture::soap_fault(
                "ErrorInvalidServerVersion",
                "The specified server version is invalid.",
                "",
            )
        } else {
            inbox_ok()
        }
    }))
    .await;
    let c = client(&fx, "app-token");
    let copy = c.clone();
    c.get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap();
    assert_eq!(c.server_version(), "Exchange2013_SP1");
    copy.get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap();
    let versions: Vec<String> = fx
        .requests()
        .iter()
        .map(|r| {
            let root = exgate_mail::xml::parse(&r.body).unwrap();
            root.find("RequestServerVersion")
                .unwrap()
                .attr("Version")
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        versions,
        [
            "Exchange2016",
            "Exchange2015",
            "Exchange2013_SP1",
            "Exchange2013_SP1"
        ]
    );

    // With negotiation off the fault is reported as is.
    let fx = Fixture::start(Arc::new(|_, _| {
        fixture::soap_fault(
            "ErrorInvalidServerVersion",
            "The specified server version is invalid.",
            "",
        )
    }))
    .await;
    let e = client(&fx, "app-token")
        .with_version_negotiation(false)
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.evidence().service_code(),
        Some("ErrorInvalidServerVersion")
    );
    assert_eq!(fx.requests().len(), 1);
    // With negotiation on, every version is tried once, then the fault is reported.
    let e = client(&fx, "app-token")
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SoapFault);
    assert_eq!(
        fx.requests().len(),
        1 + exgate_mail::ews::SERVER_VERSIONS.len()
    );
}
