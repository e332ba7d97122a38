//! Combining evidence: token claims against the request, challenges against credentials.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use exgate_diagnose::{AuthMode, Evidence, Protocol, diagnose};

fn token(claims: serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","x5t":"k"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{p}.c2ln")
}

fn top(ev: &Evidence) -> String {
    let d = diagnose(ev);
    d.causes.first().map(|c| c.id.clone()).unwrap_or_default()
}

const NOW: i64 = 1_700_000_000;

#[test]
fn app_only_token_with_scp_but_no_roles() {
    let t = token(
        serde_json::json!({"aud":"https://outlook.office365.com","scp":"EWS.AccessAsUser.All","exp":NOW+3000,"ver":"1.0"}),
    );
    let ev = Evidence::from_http_response(
        401,
        [("WWW-Authenticate", "Bearer error=\"invalid_token\"")],
        "",
    )
    .with_url("https://outlook.office365.com/EWS/Exchange.asmx")
    .app_only(true)
    .with_bearer_token(&t)
    .at(NOW);
    assert_eq!(top(&ev), "delegated_instead_of_application");
}

#[test]
fn https_audience_on_http_request_is_ssl_offloading() {
    let t = token(
        serde_json::json!({"aud":"https://mail.contoso.com","scp":"EWS.AccessAsUser.All","upn":"a@contoso.com","exp":NOW+3000}),
    );
    let ev = Evidence::from_http_response(
        401,
        [(
            "WWW-Authenticate",
            "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", error=\"invalid_token\"",
        )],
        "",
    )
    .with_url("http://mail.contoso.com/EWS/Exchange.asmx")
    .with_bearer_token(&t)
    .at(NOW);
    let d = diagnose(&ev);
    assert_eq!(d.causes[0].id, "ssl_offloading", "{:?}", d.causes);
    assert!(
        d.causes[0]
            .evidence
            .iter()
            .any(|e| e.contains("https://mail.contoso.com"))
    );
}

#[test]
fn graph_token_sent_to_ews() {
    let t = token(
        serde_json::json!({"aud":"https://graph.microsoft.com","roles":["Mail.Read"],"exp":NOW+3000,"idtyp":"app"}),
    );
    let ev = Evidence::from_http_response(
        401,
        [("WWW-Authenticate", "Bearer error=\"invalid_token\"")],
        "",
    )
    .with_url("https://outlook.office365.com/EWS/Exchange.asmx")
    .with_bearer_token(&t)
    .at(NOW);
    assert_eq!(top(&ev), "graph_permission_instead_of_ews");
}

#[test]
fn basic_with_only_bearer_challenge_beats_wrong_password() {
    let ev = Evidence::from_http_response(
        401,
        [("WWW-Authenticate", "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\"")],
        "",
    )
    .with_protocol(Protocol::Ews)
    .with_auth(AuthMode::Basic)
    .with_text("The remote server returned an error: (401) Unauthorized. Logon failure.");
    let d = diagnose(&ev);
    assert_eq!(d.causes[0].id, "basic_auth_disabled");
    let wrong = d.causes.iter().find(|c| c.id == "wrong_credentials");
    assert!(wrong.is_none_or(|w| w.confidence < d.causes[0].confidence / 2.0));
}

#[test]
fn expired_token_and_missing_full_access_as_app() {
    let t = token(
        serde_json::json!({"aud":"https://outlook.office365.com","roles":["full_access_as_app"],"exp":NOW-4000,"idtyp":"app"}),
    );
    let ev = Evidence::from_http_response(
        401,
        [("WWW-Authenticate", "Bearer error=\"invalid_token\"")],
        "",
    )
    .with_url("https://outlook.office365.com/EWS/Exchange.asmx")
    .with_bearer_token(&t)
    .at(NOW);
    assert_eq!(top(&ev), "token_expired");
    let t = token(
        serde_json::json!({"aud":"https://outlook.office365.com","roles":["Mail.Read"],"exp":NOW+3000,"idtyp":"app"}),
    );
    let ev = Evidence::from_http_response(403, Vec::<(String, String)>::new(), "")
        .with_url("https://outlook.office365.com/EWS/Exchange.asmx")
        .with_bearer_token(&t)
        .at(NOW);
    assert_eq!(top(&ev), "missing_application_permission");
}

#[test]
fn ranking_is_stable_and_confidences_ordered() {
    let ev = Evidence::from_text(
        "401 Unauthorized: The credentials used to access the configured mailbox are invalid",
    );
    let a = diagnose(&ev);
    let b = diagnose(&ev);
    assert_eq!(a, b);
    for w in a.causes.windows(2) {
        assert!(w[0].confidence >= w[1].confidence);
    }
    assert!(a.causes.iter().all(|c| (0.0..=1.0).contains(&c.confidence)));
}

#[test]
fn evidence_roundtrips_through_json() {
    let ev = Evidence::from_http_response(401, [("x-ms-diagnostics", "2000005;reason=\"The user specified by the user-context in the token does not exist.\";error_category=\"invalid_user\"")], "")
        .with_url("https://mail.contoso.com/EWS/Exchange.asmx")
        .with_mailbox("a@contoso.com");
    let json = serde_json::to_string(&ev).expect("serialize");
    let back: Evidence = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, ev);
    assert_eq!(diagnose(&back).causes[0].id, "user_not_in_aad");
}

#[test]
fn graph_is_recognised_by_its_path_on_any_host() {
    use exgate_diagnose::protocol_of_url;
    for url in [
        "https://graph.microsoft.com/v1.0/users/a@b.c",
        "https://localhost:8443/v1.0/users/a@b.c/mailFolders/inbox",
        "https://graph.microsoft.us/beta/me",
        "http://127.0.0.1:9/v1.0?$top=1",
    ] {
        assert_eq!(protocol_of_url(url), Some(Protocol::Graph), "{url}");
    }
    assert_ne!(
        protocol_of_url("https://example.com/v1.0.html"),
        Some(Protocol::Graph)
    );
}

#[test]
fn graph_code_reported_by_a_mail_client_is_diagnosed_on_a_non_microsoft_host() {
    // What exgate verify builds from a Graph failure: status, the error code as a service code,
    // and the client's message, for a Graph root that is not graph.microsoft.com.
    let msg = "GET /users/{id}/mailFolders/{id} failed: HTTP 403, Graph ErrorInvalidLicense: \
               The mailbox does not have a valid license for this operation.";
    let ev = Evidence::from_http_response(403, Vec::<(String, String)>::new(), String::new())
        .with_url("https://localhost:8443/v1.0/users/u@fabrikam.com/mailFolders/inbox")
        .with_auth(AuthMode::Bearer)
        .app_only(true)
        .with_ews_error("ErrorInvalidLicense", msg)
        .with_text(msg);
    assert_eq!(top(&ev), "mailbox_not_licensed");
}

#[test]
fn audience_of_one_on_premises_name_received_as_another_is_a_publishing_rule() {
    let answer = |expected: &str, actual: &str| {
        Evidence::from_http_response(
            401,
            [
                ("WWW-Authenticate", "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\"".to_owned()),
                (
                    "x-ms-diagnostics",
                    format!(
                        "2000003;reason=\"The hostname component of the audience claim value is invalid. Expected '{expected}'. Actual '{actual}'.\";error_category=\"invalid_resource\""
                    ),
                ),
            ],
            "",
        )
        .with_url(format!("{actual}/EWS/Exchange.asmx"))
    };
    let d = diagnose(&answer(
        "https://autodiscover.contoso.com",
        "https://mail.contoso.com",
    ));
    assert_eq!(d.causes[0].id, "publishing_name_mismatch", "{d:?}");
    assert!(d.causes.iter().any(|c| c.id == "wrong_audience"));
    // A Microsoft resource on one side is a token for the wrong service, not a publishing rule.
    assert_eq!(
        top(&answer(
            "https://outlook.office365.com",
            "https://mail.contoso.com"
        )),
        "wrong_audience"
    );
    // Same host, http seen: TLS offloading.
    assert_eq!(
        top(&answer(
            "https://mail.contoso.com",
            "http://mail.contoso.com"
        )),
        "ssl_offloading"
    );
}

#[test]
fn a_publishing_rule_is_not_a_candidate_between_microsoft_hosts() {
    let d = diagnose(&Evidence::from_text(
        "The audience claim value is invalid for current resource. Audience claim is 'https://outlook.office.com/api/', request url is 'https://outlook.office365.com' and resource type is 'Exchange'.",
    ));
    assert_eq!(d.causes[0].id, "wrong_audience", "{d:?}");
    assert!(
        !d.causes.iter().any(|c| c.id == "publishing_name_mismatch"),
        "{d:?}"
    );
}
