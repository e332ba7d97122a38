//! One case per AADSTS code the emulator must produce: scenario + request -> HTTP status,
//! `error`, first `error_codes` entry, and the `AADSTS<code>:` description prefix.

mod common;

use common::*;
use exgate_emulator::EmulatorOptions;

struct Case {
    name: &'static str,
    tenant: &'static str,
    v1: bool,
    form: Vec<(&'static str, String)>,
    status: u16,
    error: &'static str,
    code: u64,
}

fn cc_secret(client: &str, secret: &str, scope: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", client.into()),
        ("client_secret", secret.into()),
        ("scope", scope.into()),
        ("client_info", "1".into()),
    ]
}

fn cc_assertion(assertion: String) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", DAEMON.into()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ),
        ("client_assertion", assertion),
        ("scope", EXO_DEFAULT.into()),
    ]
}

fn ropc(client: &str, user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "password".into()),
        ("client_id", client.into()),
        ("username", user.into()),
        ("password", password.into()),
        ("scope", EWS_DELEGATED.into()),
        ("client_info", "1".into()),
    ]
}

fn refresh(rt: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "refresh_token".into()),
        ("client_id", PUBLIC.into()),
        ("refresh_token", rt.into()),
        ("scope", EWS_DELEGATED.into()),
    ]
}

#[tokio::test]
async fn every_listed_aadsts_code_is_produced_exactly() {
    let cert = TestCert::new("registered");
    let stranger = TestCert::new("not registered");
    let emu = start(&cert).await;
    let aud = token_url(&emu, CONTOSO);
    let signed = |c: &TestCert, f: &dyn Fn(&mut AssertionOpts<'static>)| {
        let mut o = AssertionOpts::msal(aud.clone());
        f(&mut o);
        assertion(c, &o)
    };
    let cases = vec![
        Case {
            name: "unknown tenant",
            tenant: "nosuch.example",
            v1: false,
            form: cc_secret(DAEMON, SECRET, EXO_DEFAULT),
            status: 400,
            error: "invalid_request",
            code: 90002,
        },
        Case {
            name: "client credentials on /common",
            tenant: "common",
            v1: false,
            form: cc_secret(DAEMON, SECRET, EXO_DEFAULT),
            status: 400,
            error: "invalid_request",
            code: 50059,
        },
        Case {
            name: "client credentials on /organizations",
            tenant: "organizations",
            v1: false,
            form: cc_secret(DAEMON, SECRET, EXO_DEFAULT),
            status: 400,
            error: "invalid_request",
            code: 50059,
        },
        Case {
            name: "unknown application",
            tenant: CONTOSO,
            v1: false,
            form: cc_secret("99999999-9999-9999-9999-999999999999", SECRET, EXO_DEFAULT),
            status: 400,
            error: "unauthorized_client",
            code: 700016,
        },
        Case {
            name: "single-tenant app in another tenant",
            tenant: FABRIKAM,
            v1: false,
            form: cc_secret(PUBLIC, SECRET, EXO_DEFAULT),
            status: 400,
            error: "unauthorized_client",
            code: 700016,
        },
        Case {
            name: "multi-tenant app without consent in the tenant",
            tenant: "fabrikam.com",
            v1: false,
            form: cc_secret(DAEMON, SECRET, EXO_DEFAULT),
            status: 400,
            error: "unauthorized_client",
            code: 700016,
        },
        Case {
            name: "disabled application",
            tenant: CONTOSO,
            v1: false,
            form: cc_secret(DISABLED_APP, SECRET, EXO_DEFAULT),
            status: 400,
            error: "unauthorized_client",
            code: 7000112,
        },
        Case {
            name: "wrong secret",
            tenant: CONTOSO,
            v1: false,
            form: cc_secret(DAEMON, "wrong", EXO_DEFAULT),
            status: 401,
            error: "invalid_client",
            code: 7000215,
        },
        Case {
            name: "expired secret",
            tenant: CONTOSO,
            v1: false,
            form: cc_secret(DAEMON, OLD_SECRET, EXO_DEFAULT),
            status: 401,
            error: "invalid_client",
            code: 7000222,
        },
        Case {
            name: "unregistered certificate",
            tenant: CONTOSO,
            v1: false,
            form: cc_assertion(signed(&stranger, &|_| {})),
            status: 401,
            error: "invalid_client",
            code: 700027,
        },
        Case {
            name: "signature by another key under the registered thumbprint",
            tenant: CONTOSO,
            v1: false,
            form: cc_assertion({
                // Header names the registered certificate, signature made with another key.
                let good = signed(&cert, &|_| {});
                let bad = signed(&stranger, &|_| {});
                let g: Vec<&str> = good.split('.').collect();
                let b: Vec<&str> = bad.split('.').collect();
                format!("{}.{}.{}", g[0], g[1], b[2])
            }),
            status: 401,
            error: "invalid_client",
            code: 700027,
        },
        Case {
            name: "malformed assertion",
            tenant: CONTOSO,
            v1: false,
            form: cc_assertion("not.a.jwt".into()),
            status: 401,
            error: "invalid_client",
            code: 50027,
        },
        Case {
            name: "assertion issuer is not the client",
            tenant: CONTOSO,
            v1: false,
            form: cc_assertion(signed(&cert, &|o| o.iss = PUBLIC)),
            status: 401,
            error: "invalid_client",
            code: 700021,
        },
        Case {
            name: "assertion audience is another host",
            tenant: CONTOSO,
            v1: false,
            form: cc_assertion(signed(&cert, &|o| {
                o.aud = format!("https://login.microsoftonline.com/{CONTOSO}/oauth2/v2.0/token")
            })),
            status: 401,
            error: "invalid_client",
            code: 700023,
        },
        Case {
            name: "assertion with two audience values",
            tenant: CONTOSO,
            v1: false,
            form: cc_assertion(signed(&cert, &|o| {
                o.extra_aud = Some(format!("https://login.microsoftonline.com/{CONTOSO}/v2.0"))
            })),
            status: 401,
            error: "invalid_client",
            code: 5002741,
        },
        Case {
            name: "assertion expired",
            tenant: CONTOSO,
            v1: false,
            form: cc_assertion(signed(&cert, &|o| o.exp_offset = -3600.0)),
            status: 401,
            error: "invalid_client",
            code: 700024,
        },
        Case {
            name: "assertion not yet valid",
            tenant: CONTOSO,
            v1: false,
            form: cc_assertion(signed(&cert, &|o| o.nbf = Some(now_f64() + 3600.0))),
            status: 401,
            error: "invalid_client",
            code: 700024,
        },
        Case {
            name: "resource with a path does not exist",
            tenant: CONTOSO,
            v1: false,
            form: cc_secret(
                DAEMON,
                SECRET,
                "https://outlook.office365.com/EWS/Exchange.asmx/.default",
            ),
            status: 400,
            error: "invalid_resource",
            code: 500011,
        },
        Case {
            name: "v1 unknown resource",
            tenant: CONTOSO,
            v1: true,
            form: vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", DAEMON.into()),
                ("client_secret", SECRET.into()),
                ("resource", "https://nosuch.example.com".into()),
            ],
            status: 400,
            error: "invalid_resource",
            code: 500011,
        },
        Case {
            name: "named scope in client credentials",
            tenant: CONTOSO,
            v1: false,
            form: cc_secret(
                DAEMON,
                SECRET,
                "https://outlook.office365.com/EWS.AccessAsUser.All",
            ),
            status: 400,
            error: "invalid_scope",
            code: 70011,
        },
        Case {
            name: "delegated scope without consent",
            tenant: CONTOSO,
            v1: false,
            form: ropc(NOCONSENT_APP, "alice@contoso.com", "alice-pw"),
            status: 400,
            error: "invalid_grant",
            code: 65001,
        },
        Case {
            name: "confidential app without credential on ROPC",
            tenant: CONTOSO,
            v1: false,
            form: ropc(DAEMON, "alice@contoso.com", "alice-pw"),
            status: 401,
            error: "invalid_client",
            code: 7000218,
        },
        Case {
            name: "wrong password",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "alice@contoso.com", "nope"),
            status: 400,
            error: "invalid_grant",
            code: 50126,
        },
        Case {
            name: "federated user on ROPC",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "federated@contoso.com", "federated-pw"),
            status: 400,
            error: "invalid_grant",
            code: 50126,
        },
        Case {
            name: "user does not exist",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "ghost@contoso.com", "ghost-pw"),
            status: 400,
            error: "invalid_grant",
            code: 50034,
        },
        Case {
            name: "user not declared at all",
            tenant: "contoso.com",
            v1: false,
            form: ropc(PUBLIC, "nobody@contoso.com", "x"),
            status: 400,
            error: "invalid_grant",
            code: 50034,
        },
        Case {
            name: "locked account",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "locked@contoso.com", "locked-pw"),
            status: 400,
            error: "invalid_grant",
            code: 50053,
        },
        Case {
            name: "password expired",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "expired@contoso.com", "expired-pw"),
            status: 400,
            error: "invalid_grant",
            code: 50055,
        },
        Case {
            name: "disabled account",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "disabled@contoso.com", "disabled-pw"),
            status: 400,
            error: "invalid_grant",
            code: 50057,
        },
        Case {
            name: "MFA required",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "mfa@contoso.com", "mfa-pw"),
            status: 400,
            error: "invalid_grant",
            code: 50076,
        },
        Case {
            name: "MFA registration pending",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "mfareg@contoso.com", "mfareg-pw"),
            status: 400,
            error: "interaction_required",
            code: 50079,
        },
        Case {
            name: "Conditional Access blocks the user",
            tenant: CONTOSO,
            v1: false,
            form: ropc(PUBLIC, "blocked@contoso.com", "blocked-pw"),
            status: 400,
            error: "invalid_grant",
            code: 53003,
        },
        Case {
            name: "Conditional Access blocks an app-only request",
            tenant: CONTOSO,
            v1: false,
            form: cc_secret(BLOCKED_APP, SECRET, EXO_DEFAULT),
            status: 400,
            error: "invalid_grant",
            code: 53003,
        },
        Case {
            name: "revoked refresh token",
            tenant: CONTOSO,
            v1: false,
            form: refresh("rt-seeded-revoked"),
            status: 400,
            error: "invalid_grant",
            code: 50173,
        },
        Case {
            name: "refresh token expired by sign-in frequency",
            tenant: CONTOSO,
            v1: false,
            form: refresh("rt-seeded-sif"),
            status: 400,
            error: "invalid_grant",
            code: 70043,
        },
        Case {
            name: "refresh token inactive for 90 days",
            tenant: CONTOSO,
            v1: false,
            form: refresh("rt-seeded-inactive"),
            status: 400,
            error: "invalid_grant",
            code: 700082,
        },
        Case {
            name: "refresh grant without refresh_token (exchangelib on expiry)",
            tenant: CONTOSO,
            v1: false,
            form: vec![
                ("grant_type", "refresh_token".into()),
                ("client_id", DAEMON.into()),
                ("client_secret", SECRET.into()),
            ],
            status: 400,
            error: "invalid_request",
            code: 900144,
        },
        Case {
            name: "unknown refresh token",
            tenant: CONTOSO,
            v1: false,
            form: refresh("0.never-issued"),
            status: 400,
            error: "invalid_grant",
            code: 70000,
        },
        Case {
            name: "unsupported grant",
            tenant: CONTOSO,
            v1: false,
            form: vec![("grant_type", "magic".into()), ("client_id", DAEMON.into())],
            status: 400,
            error: "unsupported_grant_type",
            code: 70003,
        },
        Case {
            name: "malformed tenant",
            tenant: "{{tenantid}}",
            v1: false,
            form: cc_secret(DAEMON, SECRET, EXO_DEFAULT),
            status: 400,
            error: "invalid_request",
            code: 900023,
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let path = if case.v1 {
            "oauth2/token"
        } else {
            "oauth2/v2.0/token"
        };
        let url = format!("{}/{}/{path}", emu.base_url(), case.tenant);
        let form: Vec<(&str, &str)> = case.form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = post_form(&url, &form).await;
        let desc = body["error_description"].as_str().unwrap_or("");
        let ok = status == case.status
            && body["error"] == case.error
            && code(&body) == case.code
            && desc.starts_with(&format!("AADSTS{}: ", case.code))
            && desc.contains("\r\nTrace ID: ")
            && desc.contains("\r\nCorrelation ID: 5e08d5c7-d3fc-48de-a1a1-9695d44763d1\r\n")
            && body["correlation_id"] == "5e08d5c7-d3fc-48de-a1a1-9695d44763d1"
            && body["trace_id"].is_string()
            && body["timestamp"].is_string()
            && body["error_uri"]
                == format!("https://login.microsoftonline.com/error?code={}", case.code);
        if !ok {
            failures.push(format!("{}: got {status} {body}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stats = emu.stats();
    assert_eq!(stats.token_requests, cases.len() as u64);
    assert_eq!(stats.token_errors, cases.len() as u64);
}

#[tokio::test]
async fn metadata_for_unknown_tenant_is_invalid_tenant() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let resp = client()
        .get(format!(
            "{}/nosuch.example/v2.0/.well-known/openid-configuration",
            emu.base_url()
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_tenant");
    assert_eq!(code(&body), 90002);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or("")
            .starts_with("AADSTS90002: Tenant 'nosuch.example' not found.")
    );
}

#[tokio::test]
async fn unregistered_redirect_uri_gives_50011() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let resp = client()
        .get(with_query(
            &format!("{}/{CONTOSO}/oauth2/v2.0/authorize", emu.base_url()),
            &[
                ("client_id", PUBLIC),
                ("response_type", "code"),
                ("redirect_uri", "https://evil.example/cb"),
                ("scope", "openid"),
            ],
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let html = resp.text().await.expect("text");
    assert!(
        html.contains("AADSTS50011: The redirect URI &#39;https://evil.example/cb&#39; specified in the request does not match"),
        "{html}"
    );
}

#[tokio::test]
async fn replayed_jti_is_refused_only_in_strict_mode() {
    let cert = TestCert::new("c");
    let emu = start_with(
        &scenario_toml(&cert, "reject_reused_jti = true", ""),
        EmulatorOptions::default(),
    )
    .await;
    let a = assertion(&cert, &AssertionOpts::msal(token_url(&emu, CONTOSO)));
    let form = cc_assertion(a);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s1, _) = post_form(&token_url(&emu, CONTOSO), &form).await;
    assert_eq!(s1, 200);
    let (s2, body) = post_form(&token_url(&emu, CONTOSO), &form).await;
    assert_eq!(s2, 401, "{body}");
    assert_eq!(code(&body), 50013);
}

#[tokio::test]
async fn errors_never_echo_the_presented_secret() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let canary = "canary-secret-7d1f9c";
    let (status, body) = post_form(
        &token_url(&emu, CONTOSO),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", canary),
            ("scope", EXO_DEFAULT),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert!(!body.to_string().contains(canary));
    assert!(!format!("{emu:?}").contains(SECRET));
    assert!(!format!("{:?}", emu.scenario()).contains(SECRET));
}
