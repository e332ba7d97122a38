//! Autodiscover: JSON v2, SOAP and POX in order, redirects with a loop limit.

use std::sync::Arc;

use exgate_mail::ErrorKind;
use exgate_mail::autodiscover::{AutodiscoverClient, AutodiscoverMethod};
use url::Url;

use crate::fixture::{Canned, Ctx, Fixture, Recorded};
use crate::{bearer, http};

const EWS: &str = "https://mail.example.com/EWS/Exchange.asmx";

fn client(fx: &Fixture) -> AutodiscoverClient {
    AutodiscoverClient::new(http(), bearer("app-token"))
        .with_origins(vec![Url::parse(&fx.base).unwrap()])
}

fn soap_settings(smtp: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettingsResponse</a:Action><h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/2010/Autodiscover" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><h:MajorVersion>15</h:MajorVersion><h:MinorVersion>20</h:MinorVersion><h:MajorBuildNumber>8466</h:MajorBuildNumber><h:MinorBuildNumber>32</h:MinorBuildNumber><h:Version>Exchange2015</h:Version></h:ServerVersionInfo></s:Header><s:Body><GetUserSettingsResponseMessage xmlns="http://schemas.microsoft.com/exchange/2010/Autodiscover"><Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><ErrorCode>NoError</ErrorCode><ErrorMessage/><UserResponses><UserResponse><ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage><RedirectTarget i:nil="true"/><UserSettingErrors><UserSettingError><ErrorCode>InvalidSetting</ErrorCode><ErrorMessage>The requested setting is invalid.</ErrorMessage><SettingName>InternalEwsUrl</SettingName></UserSettingError></UserSettingErrors><UserSettings><UserSetting i:type="StringSetting"><Name>AutoDiscoverSMTPAddress</Name><Value>{smtp}</Value></UserSetting><UserSetting i:type="StringSetting"><Name>ExternalEwsUrl</Name><Value>{EWS}</Value></UserSetting><UserSetting i:type="StringSetting"><Name>EwsSupportedSchemas</Name><Value>Exchange2007, Exchange2010, Exchange2013_SP1, Exchange2015, Exchange2016</Value></UserSetting></UserSettings></UserResponse></UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>"#
    )
}

fn soap_user_error(code: &str, target: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetUserSettingsResponseMessage xmlns="http://schemas.microsoft.com/exchange/2010/Autodiscover"><Response><ErrorCode>NoError</ErrorCode><UserResponses><UserResponse><ErrorCode>{code}</ErrorCode><ErrorMessage>Redirection.</ErrorMessage><RedirectTarget>{target}</RedirectTarget></UserResponse></UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>"#
    )
}

fn pox(account: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"><User><DisplayName>User One</DisplayName><AutoDiscoverSMTPAddress>user@example.com</AutoDiscoverSMTPAddress></User><Account><AccountType>email</AccountType>{account}</Account></Response></Autodiscover>"#
    )
}

fn pox_settings() -> String {
    pox(&format!(
        "<Action>settings</Action><Protocol><Type>EXCH</Type><EwsUrl>{EWS}</EwsUrl></Protocol>"
    ))
}

fn route(
    f: impl Fn(&Ctx, &Recorded) -> Canned + Send + Sync + 'static,
) -> crate::fixture::Responder {
    Arc::new(f)
}

#[tokio::test]
async fn json_v2_is_tried_first_and_anonymously() {
    let fx = Fixture::start(route(|_, r| {
        if r.path.starts_with("/autodiscover/autodiscover.json/v1.0/") {
            Canned::json(200, format!(r#"{{"Protocol":"EWS","Url":"{EWS}"}}"#))
        } else {
            Canned::new(500, "")
        }
    }))
    .await;
    let r = client(&fx).discover("user@example.com").await.unwrap();
    assert_eq!(r.method, AutodiscoverMethod::Json);
    assert_eq!(r.ews_url, EWS);
    let reqs = fx.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(
        reqs[0].path,
        "/autodiscover/autodiscover.json/v1.0/user@example.com"
    );
    assert_eq!(reqs[0].query, "Protocol=EWS");
    assert_eq!(reqs[0].header("authorization"), None);
}

#[tokio::test]
async fn falls_back_json_then_soap_then_pox_and_records_the_trail() {
    let fx = Fixture::start(route(|_, r| match r.path.as_str() {
        p if p.contains("autodiscover.json") => Canned::json(
            400,
            r#"{"ErrorCode":"InvalidProtocol","ErrorMessage":"The given protocol value 'EWS' is invalid."}"#,
        ),
        "/autodiscover/autodiscover.svc" => crate::fixture::ews_401("2000008;reason=\"no permission\";error_category=\"invalid_grant\""),
        "/autodiscover/autodiscover.xml" => Canned::xml(200, pox_settings()),
        _ => Canned::new(404, ""),
    }))
    .await;
    let r = client(&fx).discover("user@example.com").await.unwrap();
    assert_eq!(r.method, AutodiscoverMethod::Pox);
    assert_eq!(r.ews_url, EWS);
    let outcomes: Vec<(&str, &str, Option<u16>)> = r
        .trail
        .iter()
        .map(|t| (t.method.as_str(), t.outcome.as_str(), t.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("json", "error", Some(400)),
            ("soap", "error", Some(401)),
            ("pox", "found", Some(200))
        ]
    );
    assert_eq!(r.trail[0].detail.as_deref(), Some("InvalidProtocol"));
    let reqs = fx.requests();
    assert_eq!(reqs.len(), 3, "the 401 is not retried");
    let soap = &reqs[1];
    assert_eq!(soap.method, "POST");
    assert_eq!(soap.header("authorization"), Some("Bearer app-token"));
    assert_eq!(soap.header("content-type"), Some("text/xml; charset=utf-8"));
    assert!(
        soap.body
            .contains("<a:Mailbox>user@example.com</a:Mailbox>")
    );
    assert!(soap.body.contains("<a:Setting>ExternalEwsUrl</a:Setting>"));
    assert!(soap.body.contains("<wsa:Action>http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings</wsa:Action>"));
    assert!(
        reqs[2]
            .body
            .contains("<EMailAddress>user@example.com</EMailAddress>")
    );
}

#[tokio::test]
async fn soap_settings_and_redirect_address() {
    let fx = Fixture::start(route(|_, r| {
        if r.body.contains("<a:Mailbox>alias@example.com</a:Mailbox>") {
            Canned::xml(
                200,
                soap_user_error("RedirectAddress", "primary@example.org"),
            )
        } else {
            Canned::xml(200, soap_settings("primary@example.org"))
        }
    }))
    .await;
    let r = client(&fx)
        .with_methods(vec![AutodiscoverMethod::Soap])
        .discover("alias@example.com")
        .await
        .unwrap();
    assert_eq!(r.smtp_address, "primary@example.org");
    assert_eq!(r.ews_url, EWS);
    assert_eq!(
        r.ews_supported_schemas.as_deref(),
        Some("Exchange2007, Exchange2010, Exchange2013_SP1, Exchange2015, Exchange2016")
    );
    assert_eq!(
        r.server_version.as_ref().unwrap().version.as_deref(),
        Some("Exchange2015")
    );
    assert_eq!(r.trail[0].outcome, "redirect-address");
    assert_eq!(fx.requests().len(), 2);
}

#[tokio::test]
async fn redirect_url_is_followed_and_loops_are_cut_at_the_limit() {
    // Every POX answer redirects to a new URL: the hop limit must stop it.
    let fx = Fixture::start(route(|ctx, _| {
        Canned::xml(
            200,
            pox(&format!(
                "<Action>redirectUrl</Action><RedirectUrl>{}/autodiscover/autodiscover.xml?hop={}</RedirectUrl>",
                ctx.base, ctx.call
            )),
        )
    }))
    .await;
    let e = client(&fx)
        .with_methods(vec![AutodiscoverMethod::Pox])
        .allow_http(true)
        .with_max_redirects(3)
        .discover("user@example.com")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Autodiscover);
    assert!(e.to_string().contains("redirect limit"), "{e}");
    assert_eq!(fx.requests().len(), 4);
    assert_eq!(e.evidence().trail.len(), 4);

    // A redirect back to an already visited URL is not followed twice.
    let fx = Fixture::start(route(|ctx, _| {
        Canned::xml(200, pox(&format!("<Action>redirectUrl</Action><RedirectUrl>{}/autodiscover/autodiscover.xml</RedirectUrl>", ctx.base)))
    }))
    .await;
    let e = client(&fx)
        .with_methods(vec![AutodiscoverMethod::Pox])
        .allow_http(true)
        .discover("user@example.com")
        .await
        .unwrap_err();
    assert_eq!(fx.requests().len(), 1);
    assert_eq!(
        e.evidence().trail.last().unwrap().outcome,
        "skipped-visited"
    );
}

#[tokio::test]
async fn redirects_must_be_https_unless_allowed_and_json_302_is_followed() {
    let responder = route(|ctx, r| {
        if r.query.contains("RedirectCount=1") {
            Canned::json(200, format!(r#"{{"Protocol":"EWS","Url":"{EWS}"}}"#))
        } else if r.path.contains("autodiscover.json") {
            Canned::new(302, "<html>Object moved</html>").header(
                "location",
                &format!("{}/autodiscover/autodiscover.json?Email=user%40example.com&Protocol=EWS&RedirectCount=1", ctx.base),
            )
        } else {
            Canned::new(404, "")
        }
    });
    let fx = Fixture::start(responder.clone()).await;
    let e = client(&fx)
        .with_methods(vec![AutodiscoverMethod::Json])
        .discover("user@example.com")
        .await
        .unwrap_err();
    assert_eq!(
        e.evidence().trail.last().unwrap().outcome,
        "refused-redirect"
    );
    assert_eq!(
        fx.requests().len(),
        1,
        "an http redirect target is not contacted"
    );

    let fx = Fixture::start(responder).await;
    let r = client(&fx)
        .with_methods(vec![AutodiscoverMethod::Json])
        .allow_http(true)
        .discover("user@example.com")
        .await
        .unwrap();
    assert_eq!(r.ews_url, EWS);
    assert_eq!(r.trail[0].outcome, "redirect-url");
    assert_eq!(fx.requests().len(), 2);
}

#[tokio::test]
async fn redirect_to_the_same_address_is_refused_and_pox_errors_are_typed() {
    let fx = Fixture::start(route(|_, r| {
        if r.path.ends_with(".svc") {
            Canned::xml(200, soap_user_error("RedirectAddress", "User@Example.com"))
        } else {
            Canned::xml(
                200,
                r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Error Time="21:25:04.8897083" Id="4130155072"><ErrorCode>600</ErrorCode><Message>Invalid Request</Message><DebugData/></Error></Response></Autodiscover>"#,
            )
        }
    }))
    .await;
    let e = client(&fx)
        .with_methods(vec![AutodiscoverMethod::Soap, AutodiscoverMethod::Pox])
        .discover("user@example.com")
        .await
        .unwrap_err();
    let trail = &e.evidence().trail;
    assert_eq!(trail[1].outcome, "refused-redirect");
    assert_eq!(trail[2].method, "pox");
    assert_eq!(trail[2].detail.as_deref(), Some("600"));
    assert_eq!(
        e.evidence()
            .autodiscover_error
            .as_ref()
            .unwrap()
            .message
            .as_deref(),
        Some("Invalid Request")
    );
}

#[tokio::test]
async fn default_candidates_come_from_the_domain() {
    let c = AutodiscoverClient::new(http(), bearer("t"));
    let e = c.discover("no-domain").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn soap_redirect_url_is_followed_to_the_new_endpoint() {
    let fx = Fixture::start(route(|ctx, r| {
        if r.path == "/other/autodiscover.svc" {
            Canned::xml(200, soap_settings("user@example.com"))
        } else {
            Canned::xml(
                200,
                soap_user_error(
                    "RedirectUrl",
                    &format!("{}/other/autodiscover.svc", ctx.base),
                ),
            )
        }
    }))
    .await;
    let r = client(&fx)
        .with_methods(vec![AutodiscoverMethod::Soap])
        .allow_http(true)
        .discover("user@example.com")
        .await
        .unwrap();
    assert_eq!(r.ews_url, EWS);
    let reqs = fx.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].path, "/other/autodiscover.svc");
    assert!(reqs[1].body.contains(&format!(
        "<wsa:To>{}/other/autodiscover.svc</wsa:To>",
        fx.base
    )));
}
