//! Exchange's authentication answers on EWS: challenges, Basic, the HMA probe and every
//! `x-ms-diagnostics` code.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

const EXO_CHALLENGE: &str = "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\"";

fn inbox_as(addr: &str) -> String {
    soap(&imp(addr), &get_folder("inbox", Some(addr)))
}

#[tokio::test]
async fn no_credentials_get_the_combined_exo_challenge_with_basic() {
    let h = Harness::new();
    let r = h
        .post("/EWS/Exchange.asmx", None, &inbox_as("adele@contoso.com"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        format!("{EXO_CHALLENGE},Basic Realm=\"\"")
    );
    assert!(r.header("x-ms-diagnostics").is_empty());
}

#[tokio::test]
async fn basic_against_a_tenant_with_basic_off_gets_the_bearer_only_challenge() {
    let h = Harness::new();
    let r = h
        .ews(
            &basic("fred@fabrikam.com", PASSWORD),
            &soap("", &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), EXO_CHALLENGE);
}

#[tokio::test]
async fn basic_with_a_wrong_password_or_mfa_is_401_with_basic_offered() {
    let h = Harness::new();
    for (user, pw) in [
        ("adele@contoso.com", "wrong"),
        ("mfa@contoso.com", PASSWORD),
        ("ghost@contoso.com", PASSWORD),
    ] {
        let r = h
            .ews(&basic(user, pw), &soap("", &get_folder("inbox", None)))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{user}");
        assert!(
            r.header("www-authenticate").ends_with(",Basic Realm=\"\""),
            "{user}"
        );
    }
}

#[tokio::test]
async fn basic_with_the_right_password_acts_as_the_user() {
    let h = Harness::new();
    let r = h
        .ews(
            &basic("adele@contoso.com", PASSWORD),
            &soap("", &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(tag(&r.body, "TotalCount").as_deref(), Some("12"));
}

async fn diag_for(h: &Harness, token: &str) -> (StatusCode, String, String) {
    let r = h.ews(&bearer(token), &inbox_as("adele@contoso.com")).await;
    (
        r.status,
        r.header("x-ms-diagnostics"),
        r.header("www-authenticate"),
    )
}

#[tokio::test]
async fn unparseable_token_is_2000001_with_error_invalid_token() {
    let h = Harness::new();
    let (s, d, c) = diag_for(&h, "not-a-jwt").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        d,
        "2000001;reason=\"OAuth token submitted with the request cannot be parsed.\";error_category=\"invalid_token\""
    );
    assert_eq!(
        c,
        format!("{EXO_CHALLENGE}, error=\"invalid_token\",Basic Realm=\"\"")
    );
}

#[tokio::test]
async fn expired_token_is_2000001_but_clock_skew_is_tolerated() {
    let h = Harness::new();
    let mut c = app_claims(TID, APP, EXO, &["full_access_as_app"]);
    c["exp"] = json!(now() - 3600);
    let (s, d, _) = diag_for(&h, &sign(&c)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        d,
        "2000001;reason=\"The token has expired.\";error_category=\"invalid_token\""
    );
    c["exp"] = json!(now() - 60);
    let (s, _, _) = diag_for(&h, &sign(&c)).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn not_yet_valid_token_is_2000001() {
    let h = Harness::new();
    let mut c = app_claims(TID, APP, EXO, &["full_access_as_app"]);
    c["nbf"] = json!(now() + 3600);
    let (_, d, _) = diag_for(&h, &sign(&c)).await;
    assert!(
        d.starts_with("2000001;reason=\"The token is not yet valid.\""),
        "{d}"
    );
}

#[tokio::test]
async fn token_signed_by_an_unknown_key_is_2000001() {
    let h = Harness::new();
    let t = sign_with(
        &app_claims(TID, APP, EXO, &["full_access_as_app"]),
        foreign_key(),
    );
    let (s, d, _) = diag_for(&h, &t).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(d.starts_with("2000001;"), "{d}");
    assert!(d.ends_with("error_category=\"invalid_token\""), "{d}");
}

#[tokio::test]
async fn token_of_an_unknown_tenant_is_rejected_as_invalid_tenant() {
    let h = Harness::new();
    let t = sign(&app_claims(
        "99999999-9999-9999-9999-999999999999",
        APP,
        EXO,
        &["full_access_as_app"],
    ));
    let (s, d, _) = diag_for(&h, &t).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        d,
        "2000001;reason=\"The tenant for tenant guid '99999999-9999-9999-9999-999999999999' does not exist.\";error_category=\"invalid_tenant\""
    );
}

#[tokio::test]
async fn issuer_not_matching_the_tenant_is_2000001() {
    let h = Harness::new();
    let mut c = app_claims(TID, APP, EXO, &["full_access_as_app"]);
    c["iss"] = json!(format!("https://sts.windows.net/{FAB_TID}/"));
    let (s, d, _) = diag_for(&h, &sign(&c)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(d.starts_with("2000001;"), "{d}");
}

#[tokio::test]
async fn graph_token_on_ews_is_2000003_invalid_resource() {
    let h = Harness::new();
    let (s, d, _) = diag_for(&h, &app_token(GRAPH, &["Mail.Read"])).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        d,
        "2000003;reason=\"The audience claim value is invalid 'https://graph.microsoft.com'.\";error_category=\"invalid_resource\""
    );
}

#[tokio::test]
async fn every_accepted_exo_audience_form_works() {
    let h = Harness::new();
    for aud in [
        "https://outlook.office365.com",
        "https://outlook.office365.com/",
        "00000002-0000-0ff1-ce00-000000000000",
    ] {
        let (s, _, _) = diag_for(&h, &app_token(aud, &["full_access_as_app"])).await;
        assert_eq!(s, StatusCode::OK, "{aud}");
    }
}

#[tokio::test]
async fn app_token_without_roles_is_401_2000008_no_permissions() {
    let h = Harness::new();
    let (s, d, _) = diag_for(&h, &app_token(EXO, &[])).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        d,
        "2000008;reason=\"The token contains no permissions, or permissions can not be understood.\";error_category=\"invalid_grant\""
    );
}

#[tokio::test]
async fn app_token_with_only_graph_style_roles_is_403_2000008_not_enough_scope() {
    let h = Harness::new();
    let (s, d, _) = diag_for(&h, &app_token(EXO, &["Mail.Read"])).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        d,
        "2000008;reason=\"The token contains not enough scope to make this call.\";error_category=\"invalid_grant\""
    );
}

#[tokio::test]
async fn delegated_token_without_the_ews_scope_is_403_2000008() {
    let h = Harness::new();
    let t = user_token("adele@contoso.com", EXO, "Mail.Read User.Read");
    let r = h
        .ews(&bearer(&t), &soap("", &get_folder("inbox", None)))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("x-ms-diagnostics").starts_with("2000008;"));
}

#[tokio::test]
async fn delegated_token_for_a_user_exchange_does_not_know_is_2000005() {
    let h = Harness::new();
    let t = user_token("ghost@contoso.com", EXO, "EWS.AccessAsUser.All");
    let r = h
        .ews(&bearer(&t), &soap("", &get_folder("inbox", None)))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("x-ms-diagnostics"),
        "2000005;reason=\"The user specified by the user-context in the token does not exist.\";error_category=\"invalid_user\""
    );
}

#[tokio::test]
async fn delegated_token_acts_as_the_signed_in_user() {
    let h = Harness::new();
    let t = user_token("adele@contoso.com", EXO, "EWS.AccessAsUser.All");
    let r = h
        .ews(&bearer(&t), &soap("", &get_folder("inbox", None)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(tag(&r.body, "TotalCount").as_deref(), Some("12"));
}

const ONPREM_BEARER_HMA: &str = "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@11111111-2222-3333-4444-555555555555\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.windows.net/common/oauth2/authorize\"";

#[tokio::test]
async fn empty_bearer_on_an_hma_server_gets_the_challenge_with_authorization_uri() {
    let h = Harness::new();
    let r = h
        .post("/onprem/ex01/EWS/Exchange.asmx", Some("Bearer"), "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let all: Vec<String> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(all.first().map(String::as_str), Some(ONPREM_BEARER_HMA));
    assert!(
        all.contains(&"Basic realm=\"mail.contoso.com\"".to_owned()),
        "{all:?}"
    );
    assert!(
        all.contains(&"NTLM".to_owned()) && all.contains(&"Negotiate".to_owned()),
        "{all:?}"
    );
}

#[tokio::test]
async fn empty_bearer_without_hma_gets_the_challenge_without_authorization_uri() {
    let h = Harness::new();
    let r = h
        .post("/onprem/nohma/EWS/Exchange.asmx", Some("Bearer "), "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let c = r.header("www-authenticate");
    assert!(
        c.starts_with("Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\""),
        "{c}"
    );
    assert!(!c.contains("authorization_uri"), "{c}");
}

#[tokio::test]
async fn windows_auth_is_advertised_only_when_enabled_on_the_vdir() {
    let h = Harness::new();
    let r = h
        .post("/onprem/oauthonly/EWS/Exchange.asmx", None, "")
        .await;
    let c = r.header("www-authenticate");
    assert!(
        !c.contains("NTLM") && !c.contains("Negotiate") && !c.contains("Basic"),
        "{c}"
    );
    assert!(c.contains("authorization_uri"), "{c}");
}

#[tokio::test]
async fn bearer_on_a_vdir_without_oauth_is_4000000_oauth_not_available() {
    let h = Harness::new();
    let r = h
        .post("/onprem/legacy/EWS/Exchange.asmx", Some("Bearer"), "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("x-ms-diagnostics"),
        "4000000;reason=\"Flighting is not enabled for domain 'legacy.contoso.com'.\";error_category=\"oauth_not_available\""
    );
    assert!(!r.header("www-authenticate").contains("authorization_uri"));
}

#[tokio::test]
async fn entra_token_on_a_server_without_hma_is_4000000() {
    let h = Harness::new();
    let t = user_token(
        "onprem@contoso.com",
        "https://nohma.contoso.com",
        "EWS.AccessAsUser.All",
    );
    let r = h
        .post("/onprem/nohma/EWS/Exchange.asmx", Some(&bearer(&t)), "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("x-ms-diagnostics").starts_with("4000000;"));
}

#[tokio::test]
async fn tls_offloading_turns_an_https_audience_into_2000003() {
    let h = Harness::new();
    let t = user_token(
        "onprem@contoso.com",
        "https://mail2.contoso.com",
        "EWS.AccessAsUser.All",
    );
    let r = h
        .post(
            "/onprem/ex02/EWS/Exchange.asmx",
            Some(&bearer(&t)),
            &soap("", &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("x-ms-diagnostics"),
        "2000003;reason=\"The hostname component of the audience claim value is invalid. Expected 'https://mail2.contoso.com'. Actual 'http://mail2.contoso.com'.\";error_category=\"invalid_resource\""
    );
    assert!(
        r.header("www-authenticate")
            .contains("error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn hma_token_for_the_public_url_works_on_premises() {
    let h = Harness::new();
    let t = user_token(
        "onprem@contoso.com",
        "https://mail.contoso.com",
        "EWS.AccessAsUser.All",
    );
    let r = h
        .post(
            "/onprem/ex01/EWS/Exchange.asmx",
            Some(&bearer(&t)),
            &soap("", &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = user_token(
        "onprem@contoso.com",
        "https://other.contoso.com",
        "EWS.AccessAsUser.All",
    );
    let r = h
        .post(
            "/onprem/ex01/EWS/Exchange.asmx",
            Some(&bearer(&t)),
            &soap("", &get_folder("inbox", None)),
        )
        .await;
    assert!(
        r.header("x-ms-diagnostics")
            .contains("Expected 'https://other.contoso.com'. Actual 'https://mail.contoso.com'.")
    );
}

#[tokio::test]
async fn app_only_token_on_premises_is_2000008_partner_application() {
    let h = Harness::new();
    let t = app_token("https://mail.contoso.com", &["full_access_as_app"]);
    let r = h
        .post(
            "/onprem/ex01/EWS/Exchange.asmx",
            Some(&bearer(&t)),
            &inbox_as("onprem@contoso.com"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("x-ms-diagnostics"),
        format!(
            "2000008;reason=\"The token should have valid permissions or linked account associated with partner application '{APP}'.\";error_category=\"invalid_grant\""
        )
    );
}

#[tokio::test]
async fn basic_on_premises_checks_the_vdir_and_the_directory() {
    let h = Harness::new();
    let ok = h
        .post(
            "/onprem/ex01/EWS/Exchange.asmx",
            Some(&basic("onprem@contoso.com", PASSWORD)),
            &soap("", &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let off = h
        .post(
            "/onprem/oauthonly/EWS/Exchange.asmx",
            Some(&basic("onprem@contoso.com", PASSWORD)),
            &soap("", &get_folder("inbox", None)),
        )
        .await;
    assert_eq!(off.status, StatusCode::UNAUTHORIZED);
    let bad = h
        .post(
            "/onprem/ex01/EWS/Exchange.asmx",
            Some(&basic("onprem@contoso.com", "nope")),
            "",
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn auth_failures_are_counted() {
    let h = Harness::new();
    let _ = h.post("/EWS/Exchange.asmx", None, "").await;
    let _ = h.ews("Bearer x", "").await;
    let s = h.state.stats();
    assert_eq!(s.auth_failures, 2);
    assert_eq!(s.ews_requests, 2);
}

#[tokio::test]
async fn an_org_that_requires_certificates_refuses_secret_minted_app_tokens() {
    let h = Harness::with(
        r#"
[[organizations]]
tenant = "contoso.com"
app_only_requires_certificate = true

[[mailboxes]]
address = "adele@contoso.com"
"#,
    );
    let request = soap(&imp("adele@contoso.com"), &get_folder("inbox", None));
    let token_with = |acr: &str| {
        let mut claims = app_claims(TID, APP, EXO, &["full_access_as_app"]);
        claims["appidacr"] = serde_json::json!(acr);
        bearer(&sign(&claims))
    };

    let r = h.ews(&token_with("1"), &request).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(
        r.header("x-ms-diagnostics"),
        "2000001;reason=\"The access token is acquired using an authentication method that is too weak to allow access for this application. Presented auth strength was 1, required is 2.\";error_category=\"invalid_token\""
    );
    assert!(
        r.header("www-authenticate")
            .contains("error=\"invalid_token\"")
    );

    let r = h.ews(&token_with("2"), &request).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_get_of_ews_is_challenged_before_its_method_is_looked_at() {
    // IIS authenticates first: a GET without credentials gets the same 401 as a POST.
    let h = Harness::new();
    let r = h.get("/EWS/Exchange.asmx", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        h.post("/EWS/Exchange.asmx", None, "")
            .await
            .header("www-authenticate")
    );
    let r = h.get("/onprem/ex01/EWS/Exchange.asmx", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate").contains("Bearer"),
        "{}",
        r.header("www-authenticate")
    );
    // Authenticated, the method is refused.
    let token = bearer(&app_token(EXO, &["full_access_as_app"]));
    let r = h.get("/EWS/Exchange.asmx", Some(&token)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), "POST");
}
