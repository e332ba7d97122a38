//! Autodiscover: POX with redirects, SOAP GetUserSettings, JSON v2.

mod common;

use axum::http::StatusCode;
use common::*;

fn pox(email: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>{email}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#
    )
}

fn soap_settings(emails: &[&str], settings: &[&str]) -> String {
    let users: String = emails
        .iter()
        .map(|e| format!("<a:User><a:Mailbox>{e}</a:Mailbox></a:User>"))
        .collect();
    let sets: String = settings
        .iter()
        .map(|s| format!("<a:Setting>{s}</a:Setting>"))
        .collect();
    format!(
        r#"<?xml version='1.0' encoding='utf-8'?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:a="http://schemas.microsoft.com/exchange/2010/Autodiscover" xmlns:wsa="http://www.w3.org/2005/08/addressing"><s:Header><a:RequestedServerVersion>Exchange2016</a:RequestedServerVersion><wsa:Action>http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings</wsa:Action></s:Header><s:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users>{users}</a:Users><a:RequestedSettings>{sets}</a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></s:Body></s:Envelope>"#
    )
}

fn app() -> String {
    bearer(&app_token(EXO, &["full_access_as_app"]))
}

#[tokio::test]
async fn pox_returns_settings_with_ews_url_under_the_served_origin() {
    let h = Harness::new();
    let r = h
        .post(
            "/autodiscover/autodiscover.xml",
            Some(&basic("adele@contoso.com", PASSWORD)),
            &pox("a.vance@contoso.com"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("<Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">"));
    assert_eq!(
        tag(&r.body, "EwsUrl").as_deref(),
        Some("http://127.0.0.1:8443/EWS/Exchange.asmx")
    );
    assert_eq!(
        tag(&r.body, "AutoDiscoverSMTPAddress").as_deref(),
        Some("adele@contoso.com")
    );
    assert_eq!(tag(&r.body, "Action").as_deref(), Some("settings"));
}

#[tokio::test]
async fn pox_redirects_between_online_and_on_premises() {
    let h = Harness::new();
    let r = h
        .post(
            "/autodiscover/autodiscover.xml",
            Some(&app()),
            &pox("onprem@contoso.com"),
        )
        .await;
    assert_eq!(
        tag(&r.body, "Action").as_deref(),
        Some("redirectUrl"),
        "{}",
        r.body
    );
    assert_eq!(
        tag(&r.body, "RedirectUrl").as_deref(),
        Some("http://127.0.0.1:8443/onprem/ex01/autodiscover/autodiscover.xml")
    );
    let svc = basic("svc@contoso.com", PASSWORD);
    let r = h
        .post(
            "/onprem/ex01/autodiscover/autodiscover.xml",
            Some(&svc),
            &pox("adele@contoso.com"),
        )
        .await;
    assert_eq!(
        tag(&r.body, "Action").as_deref(),
        Some("redirectAddr"),
        "{}",
        r.body
    );
    assert_eq!(
        tag(&r.body, "RedirectAddr").as_deref(),
        Some("adele@contoso.mail.onmicrosoft.com")
    );
    let r = h
        .post(
            "/onprem/ex01/autodiscover/autodiscover.xml",
            Some(&svc),
            &pox("onprem@contoso.com"),
        )
        .await;
    assert_eq!(
        tag(&r.body, "EwsUrl").as_deref(),
        Some("http://127.0.0.1:8443/onprem/ex01/EWS/Exchange.asmx")
    );
}

#[tokio::test]
async fn pox_errors_use_the_error_schema() {
    let h = Harness::new();
    let r = h
        .post(
            "/autodiscover/autodiscover.xml",
            Some(&app()),
            &pox("ghost@contoso.com"),
        )
        .await;
    assert_eq!(
        tag(&r.body, "ErrorCode").as_deref(),
        Some("500"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">"));
    let r = h
        .post("/autodiscover/autodiscover.xml", Some(&app()), "<not xml")
        .await;
    assert_eq!(tag(&r.body, "ErrorCode").as_deref(), Some("600"));
    let r = h
        .post(
            "/autodiscover/autodiscover.xml",
            Some(&app()),
            &pox("adele@contoso.com").replace("2006a", "2099"),
        )
        .await;
    assert_eq!(tag(&r.body, "ErrorCode").as_deref(), Some("601"));
}

#[tokio::test]
async fn autodiscover_requires_authentication() {
    let h = Harness::new();
    let r = h
        .post(
            "/autodiscover/autodiscover.xml",
            None,
            &pox("adele@contoso.com"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .starts_with("Bearer client_id=")
    );
    let r = h
        .post(
            "/autodiscover/autodiscover.svc",
            Some("Bearer junk"),
            &soap_settings(&["adele@contoso.com"], &["ExternalEwsUrl"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("x-ms-diagnostics").starts_with("2000001;"));
}

#[tokio::test]
async fn soap_get_user_settings_returns_requested_settings_only() {
    let h = Harness::new();
    let r = h
        .post(
            "/autodiscover/autodiscover.svc",
            Some(&app()),
            &soap_settings(
                &["adele@contoso.com"],
                &[
                    "ExternalEwsUrl",
                    "AutoDiscoverSMTPAddress",
                    "EwsSupportedSchemas",
                    "UserMSOnline",
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(
        "<h:ServerVersionInfo xmlns:h=\"http://schemas.microsoft.com/exchange/2010/Autodiscover\""
    ));
    assert!(
        r.body.contains(
            "<Name>ExternalEwsUrl</Name><Value>http://127.0.0.1:8443/EWS/Exchange.asmx</Value>"
        ),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("<Name>EwsSupportedSchemas</Name><Value>Exchange2007, ")
    );
    assert!(r.body.contains("<SettingName>UserMSOnline</SettingName>"));
    assert!(!r.body.contains("UserDisplayName"));
    assert_eq!(r.body.matches("<ErrorCode>NoError</ErrorCode>").count(), 2);
}

#[tokio::test]
async fn soap_reports_invalid_user_and_redirects() {
    let h = Harness::new();
    let r = h
        .post(
            "/autodiscover/autodiscover.svc",
            Some(&app()),
            &soap_settings(
                &["ghost@contoso.com", "onprem@contoso.com"],
                &["ExternalEwsUrl"],
            ),
        )
        .await;
    assert!(
        r.body.contains("<ErrorCode>InvalidUser</ErrorCode>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<ErrorCode>RedirectUrl</ErrorCode><ErrorMessage>Redirection URL.</ErrorMessage><RedirectTarget>http://127.0.0.1:8443/onprem/ex01/autodiscover/autodiscover.svc</RedirectTarget>"), "{}", r.body);
    let r = h
        .post("/autodiscover/autodiscover.svc", Some(&app()), "<x/>")
        .await;
    assert!(r.body.contains("<ErrorCode>InvalidRequest</ErrorCode>"));
}

#[tokio::test]
async fn json_v2_answers_known_users_and_redirects_unknown_ones() {
    let h = Harness::new();
    let r = h
        .get(
            "/autodiscover/autodiscover.json/v1.0/adele@contoso.com?Protocol=EWS",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        serde_json::json!({"Protocol": "EWS", "Url": "http://127.0.0.1:8443/EWS/Exchange.asmx"})
    );
    let r = h
        .get(
            "/autodiscover/autodiscover.json/v1.0/ghost@contoso.com?Protocol=AutodiscoverV1",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.header("location"),
        "http://127.0.0.1:8443/autodiscover/autodiscover.json?Email=ghost%40contoso.com&Protocol=AutodiscoverV1&RedirectCount=1"
    );
    let r = h
        .get(
            "/autodiscover/autodiscover.json/v1.0/onprem@contoso.com?Protocol=EWS",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.header("location").starts_with("http://127.0.0.1:8443/onprem/ex01/autodiscover/autodiscover.json?Email=onprem%40contoso.com"));
    let r = h.get("/onprem/ex01/autodiscover/autodiscover.json?Email=onprem%40contoso.com&Protocol=EWS&RedirectCount=1", None).await;
    assert_eq!(
        r.json()["Url"],
        "http://127.0.0.1:8443/onprem/ex01/EWS/Exchange.asmx"
    );
    let r = h
        .get(
            "/autodiscover/autodiscover.json/v1.0/adele@contoso.com?Protocol=Gopher",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["ErrorCode"], "InvalidProtocol");
}

#[tokio::test]
async fn served_scheme_comes_from_forwarded_proto() {
    let h = Harness::new();
    let req = axum::http::Request::get(
        "/autodiscover/autodiscover.json/v1.0/adele@contoso.com?Protocol=EWS",
    )
    .header("host", "emulator.test:9443")
    .header("x-forwarded-proto", "https")
    .body(axum::body::Body::empty())
    .expect("req");
    let r = h.send(req).await;
    assert_eq!(
        r.json()["Url"],
        "https://emulator.test:9443/EWS/Exchange.asmx"
    );
}
