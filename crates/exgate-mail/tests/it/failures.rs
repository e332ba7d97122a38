//! Every failure path of the three clients, pinned whole: kind, message and the complete
//! evidence (status, headers, challenges, parsed bodies, excerpt, attempts, trail) are compared
//! with `tests/data/failures.json`. The fixture's address and the `date` header are normalised.
//!
//! After an intended change of what errors say, rewrite the file with
//! `EXGATE_BLESS=1 cargo test -p exgate-mail --test it failures` and review the diff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use exgate_mail::autodiscover::{AutodiscoverClient, AutodiscoverMethod};
use exgate_mail::ews::{CallOptions, ConnectingSid, EwsClient, FolderRef, ItemId};
use exgate_mail::graph::GraphClient;
use exgate_mail::{EmptyBearer, MailEndpoint, MailError, open_mailbox};
use serde_json::{Value, json};
use url::Url;

use crate::fixture::{self, Canned, Fixture};
use crate::{bearer, http};

const USER: &str = "user@example.com";
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/failures.json");

fn responder(f: impl Fn(usize) -> Canned + Send + Sync + 'static) -> fixture::Responder {
    let n = Arc::new(AtomicUsize::new(0));
    Arc::new(move |_, _| f(n.fetch_add(1, Ordering::SeqCst)))
}

/// The error as data, with the fixture's address replaced and `date` headers dropped.
fn pinned(fx: &Fixture, e: &MailError) -> Value {
    let mut ev = serde_json::to_value(e.evidence()).expect("evidence serialises");
    if let Some(headers) = ev.get_mut("headers").and_then(Value::as_array_mut) {
        headers.retain(|h| h.get(0).and_then(Value::as_str) != Some("date"));
    }
    let v = json!({
        "kind": format!("{:?}", e.kind()),
        "message": e.to_string(),
        "evidence": ev,
    });
    let text = serde_json::to_string(&v)
        .expect("serialises")
        .replace(&fx.base, "http://fixture");
    serde_json::from_str(&text).expect("still JSON")
}

fn soap_envelope_status(status: u16, body: &str) -> Canned {
    Canned::xml(status, fixture::ews_envelope(body))
}

fn ews(fx: &Fixture, token: &str) -> EwsClient {
    EwsClient::new(http(), fx.url("/EWS/Exchange.asmx"), bearer(token))
}

async fn get_inbox(fx: &Fixture) -> MailError {
    ews(fx, "app-token")
        .get_folder(&FolderRef::named("inbox", None), &CallOptions::default())
        .await
        .expect_err("the scenario fails")
}

async fn ews_cases(out: &mut BTreeMap<String, Value>) {
    let sid = ConnectingSid::PrimarySmtpAddress(USER.into());
    let imp = CallOptions {
        impersonation: Some(&sid),
        anchor: None,
    };

    let fx = Fixture::start(fixture::exchange()).await;
    let e = get_inbox(&fx).await;
    out.insert("ews/fault_500_no_impersonation".into(), pinned(&fx, &e));
    let e = ews(&fx, "expired-token")
        .get_folder(&FolderRef::named("inbox", None), &imp)
        .await
        .unwrap_err();
    out.insert("ews/401_challenge_diagnostics".into(), pinned(&fx, &e));
    let e = EwsClient::new(http(), fx.url("/EWS/Exchange.asmx"), Arc::new(EmptyBearer))
        .probe_version(&CallOptions::default())
        .await
        .unwrap_err();
    out.insert("ews/401_empty_bearer_probe".into(), pinned(&fx, &e));
    let e = ews(&fx, "app-token")
        .get_folder(&FolderRef::named("junkemail", Some(USER)), &imp)
        .await
        .unwrap_err();
    out.insert("ews/item_error_folder_not_found".into(), pinned(&fx, &e));
    let e = ews(&fx, "app-token")
        .delete_item(
            &ItemId {
                id: "AAMkGone".into(),
                change_key: None,
            },
            &imp,
        )
        .await
        .unwrap_err();
    out.insert("ews/item_error_delete_item".into(), pinned(&fx, &e));
    let e = ews(&fx, "app-token")
        .convert_id("x", "EwsId", USER, "EntryId", &imp)
        .await
        .unwrap_err();
    out.insert("ews/item_error_convert_id".into(), pinned(&fx, &e));
    let e = ews(&fx, "app-token")
        .resolve_names("nobody", &imp)
        .await
        .unwrap_err();
    out.insert("ews/resolve_names_no_results".into(), pinned(&fx, &e));
    let e = ews(&fx, "app-token")
        .sync_folder_items(
            &FolderRef::named("inbox", Some(USER)),
            Some("bad"),
            10,
            &imp,
        )
        .await
        .unwrap_err();
    out.insert("ews/item_error_sync_state".into(), pinned(&fx, &e));
    // `call` leaves per-item errors in the reply.
    let reply = ews(&fx, "app-token")
        .call(
            "ConvertId",
            &exgate_mail::ews::ops::convert_id("x", "EwsId", USER, "EntryId"),
            &imp,
        )
        .await
        .unwrap();
    out.insert(
        "ews/call_keeps_item_errors".into(),
        json!({
            "server_version": reply.server_version,
            "response": reply.response.name,
            "messages": reply.messages.iter().map(|m| m.to_error()).collect::<Vec<_>>(),
        }),
    );

    let fx = Fixture::start(responder(|_| {
        fixture::soap_fault(
            "ErrorServerBusy",
            "The server cannot service this request right now. Try again later.",
            &fixture::back_off(297749),
        )
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/fault_server_busy".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        fixture::ews_item_error(
            "GetFolder",
            "Error",
            "ErrorServerBusy",
            "The server cannot service this request right now.",
            &fixture::back_off(297749),
            "",
        )
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/item_error_server_busy".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        fixture::ews_item_error(
            "GetFolder",
            "Error",
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
            "",
            "",
        )
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/item_error_access_denied".into(), pinned(&fx, &e));
    let mb = open_mailbox(
        &MailEndpoint::Ews {
            url: fx.url("/EWS/Exchange.asmx"),
            impersonation: Some(sid.clone()),
            server_version: None,
        },
        &http(),
        bearer("app-token"),
        USER,
    )
    .unwrap();
    let e = mb.open().await.unwrap_err();
    out.insert("ews/mailbox_open_access_denied".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|n| {
        Canned::new(500, format!("<html>Runtime Error {n}</html>"))
            .header("set-cookie", "X-BackEndCookie=secret-value; path=/")
            .header("set-cookie", "novalue")
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/html_500_retried_cookies".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        Canned::new(503, "Service Unavailable").header("retry-after", "0")
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/503_retry_after".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        Canned::new(302, "").header(
            "location",
            "/ews/genericerrorpage.htm?aspxerrorpath=/ews/exchange.asmx",
        )
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/302_error_page".into(), pinned(&fx, &e));

    // Longer than the excerpt, with multi-byte characters.
    let fx = Fixture::start(responder(|_| {
        Canned::new(200, format!("<html>{}</html>", "é€😀 ".repeat(900)))
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/200_not_soap_long_body".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        Canned::xml(200, "<s:Envelope xmlns:s='x'><s:Body/></s:Envelope>")
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/200_empty_body_element".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        let mut c = fixture::soap_fault("ErrorInternalServerError", "An internal error.", "");
        c.status = 200;
        c
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/fault_with_200".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        let mut c = fixture::soap_fault(
            "ErrorInvalidExchangeImpersonationHeaderData",
            "The token has expired.",
            "",
        );
        c.status = 401;
        c.header("www-authenticate", fixture::EXO_CHALLENGE)
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/fault_with_401".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        soap_envelope_status(
            403,
            r#"<m:GetFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:ResponseMessages/></m:GetFolderResponse>"#,
        )
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/soap_response_with_403".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        soap_envelope_status(
            200,
            r#"<m:GetFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:ResponseMessages/></m:GetFolderResponse>"#,
        )
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/no_response_message".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        fixture::ews_success("GetFolder", "<m:Folders/>")
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/no_folder".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        fixture::soap_fault(
            "ErrorInvalidServerVersion",
            "The specified server version is invalid.",
            "",
        )
    }))
    .await;
    let e = get_inbox(&fx).await;
    out.insert("ews/server_versions_exhausted".into(), pinned(&fx, &e));
}

async fn graph_cases(out: &mut BTreeMap<String, Value>) {
    let fx = Fixture::start(fixture::exchange()).await;
    let graph = |token: &str| {
        GraphClient::new(http(), &format!("{}/v1.0", fx.base), bearer(token)).unwrap()
    };
    let e = graph("app-token")
        .user("nobody@example.com")
        .await
        .unwrap_err();
    out.insert("graph/404_error_body".into(), pinned(&fx, &e));
    let e = graph("app-token")
        .user("denied@example.com")
        .await
        .unwrap_err();
    out.insert("graph/403_error_body".into(), pinned(&fx, &e));
    let e = graph("").user(USER).await.unwrap_err();
    out.insert("graph/401_challenge".into(), pinned(&fx, &e));
    let e = graph("app-token")
        .delta_page(
            USER,
            "inbox",
            Some(&format!(
                "{}/v1.0/users/{USER}/mailFolders('inbox')/messages/delta?$deltatoken=expired",
                fx.base
            )),
            10,
        )
        .await
        .unwrap_err();
    out.insert("graph/410_sync_state".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| {
        Canned::json(
            429,
            r#"{"error":{"code":"TooManyRequests","message":"Please retry again later."}}"#,
        )
        .header("retry-after", "0")
    }))
    .await;
    let c = GraphClient::new(http(), &format!("{}/v1.0", fx.base), bearer("t")).unwrap();
    let e = c.user(USER).await.unwrap_err();
    out.insert("graph/429_retried".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| Canned::new(502, "<html>Bad Gateway</html>"))).await;
    let c = GraphClient::new(http(), &format!("{}/v1.0", fx.base), bearer("t")).unwrap();
    let e = c.user(USER).await.unwrap_err();
    out.insert("graph/502_html".into(), pinned(&fx, &e));

    let fx = Fixture::start(responder(|_| Canned::json(200, r#"{"id": 5"#))).await;
    let c = GraphClient::new(http(), &format!("{}/v1.0", fx.base), bearer("t")).unwrap();
    let e = c.user(USER).await.unwrap_err();
    out.insert("graph/200_bad_json".into(), pinned(&fx, &e));
}

async fn autodiscover_cases(out: &mut BTreeMap<String, Value>) {
    let client = |fx: &Fixture, methods: Vec<AutodiscoverMethod>| {
        AutodiscoverClient::new(http(), bearer("app-token"))
            .with_origins(vec![Url::parse(&fx.base).unwrap()])
            .with_methods(methods)
    };
    let fx = Fixture::start(Arc::new(|_, r| match r.path.as_str() {
        p if p.contains("autodiscover.json") => Canned::json(
            400,
            r#"{"ErrorCode":"InvalidProtocol","ErrorMessage":"The given protocol value 'EWS' is invalid."}"#,
        ),
        "/autodiscover/autodiscover.svc" => fixture::ews_401(
            "2000008;reason=\"no permission\";error_category=\"invalid_grant\"",
        ),
        _ => Canned::xml(
            200,
            r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Error Time="21:25:04.8897083" Id="4130155072"><ErrorCode>600</ErrorCode><Message>Invalid Request</Message><DebugData/></Error></Response></Autodiscover>"#,
        ),
    }))
    .await;
    for (name, methods) in [
        ("autodiscover/json_400", vec![AutodiscoverMethod::Json]),
        ("autodiscover/soap_401", vec![AutodiscoverMethod::Soap]),
        ("autodiscover/pox_error_600", vec![AutodiscoverMethod::Pox]),
        ("autodiscover/all_fail", AutodiscoverMethod::ORDER.to_vec()),
    ] {
        let e = client(&fx, methods).discover(USER).await.unwrap_err();
        out.insert(name.into(), pinned(&fx, &e));
    }

    let fx = Fixture::start(Arc::new(|_, r| match r.path.as_str() {
        p if p.contains("autodiscover.json") => Canned::new(302, ""),
        "/autodiscover/autodiscover.svc" => Canned::new(503, "busy").header("retry-after", "0"),
        _ => Canned::xml(200, "<html>not autodiscover</html>"),
    }))
    .await;
    for (name, methods) in [
        (
            "autodiscover/json_302_no_location",
            vec![AutodiscoverMethod::Json],
        ),
        (
            "autodiscover/soap_503_retried",
            vec![AutodiscoverMethod::Soap],
        ),
        ("autodiscover/pox_unusable", vec![AutodiscoverMethod::Pox]),
    ] {
        let e = client(&fx, methods).discover(USER).await.unwrap_err();
        out.insert(name.into(), pinned(&fx, &e));
    }

    let fx = Fixture::start(Arc::new(|_, _| Canned::json(200, r#"{"Protocol":"EWS"}"#))).await;
    let e = client(&fx, vec![AutodiscoverMethod::Json])
        .discover(USER)
        .await
        .unwrap_err();
    out.insert("autodiscover/json_unusable".into(), pinned(&fx, &e));
}

#[tokio::test]
async fn failures_are_reported_exactly_as_pinned() {
    let mut out = BTreeMap::new();
    ews_cases(&mut out).await;
    graph_cases(&mut out).await;
    autodiscover_cases(&mut out).await;
    let got = serde_json::to_string_pretty(&out).expect("serialises") + "\n";
    if std::env::var_os("EXGATE_BLESS").is_some() {
        std::fs::write(GOLDEN, &got).expect("write the pinned failures");
        return;
    }
    let want = std::fs::read_to_string(GOLDEN).expect("tests/data/failures.json");
    let want: BTreeMap<String, Value> = serde_json::from_str(&want).expect("pinned JSON");
    let got: BTreeMap<String, Value> = serde_json::from_str(&got).expect("JSON");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "scenarios"
    );
    for (name, w) in &want {
        assert_eq!(&got[name], w, "{name}");
    }
}
