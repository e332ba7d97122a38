//! Successful flows and the claims of the tokens they give, checked against the published JWKS.

mod common;

use std::time::Duration;

use common::*;
use exgate_emulator::EmulatorOptions;
use serde_json::Value;

async fn cc_with_assertion(emu: &exgate_emulator::Emulator, a: &str) -> (u16, Value) {
    post_form(
        &token_url(emu, CONTOSO),
        &[
            ("client_id", DAEMON),
            ("grant_type", "client_credentials"),
            ("client_info", "1"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", a),
            ("scope", EXO_DEFAULT),
        ],
    )
    .await
}

#[tokio::test]
async fn client_secret_gives_v1_exchange_app_token() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let (status, body) = post_form(
        &token_url(&emu, CONTOSO),
        &[
            ("client_id", DAEMON),
            ("grant_type", "client_credentials"),
            ("client_info", "1"),
            ("client_secret", SECRET),
            ("scope", EXO_DEFAULT),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("scope").is_none());
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["aud"], "https://outlook.office365.com");
    assert_eq!(c["iss"], format!("https://sts.windows.net/{CONTOSO}/"));
    assert_eq!(c["appid"], DAEMON);
    assert_eq!(c["appidacr"], "1");
    assert_eq!(c["roles"], serde_json::json!(["full_access_as_app"]));
    assert_eq!(c["tid"], CONTOSO);
    assert_eq!(c["idtyp"], "app");
    assert_eq!(c["ver"], "1.0");
    assert!(c["oid"].is_string() && c.get("scp").is_none() && c.get("upn").is_none());
    let iat = c["iat"].as_i64().unwrap_or(0);
    assert_eq!(c["exp"].as_i64().unwrap_or(0) - iat, 3900);
    let header =
        jsonwebtoken::decode_header(body["access_token"].as_str().unwrap_or("")).expect("header");
    assert!(header.x5t.is_some(), "v1 tokens carry x5t");
}

#[tokio::test]
async fn msal_shaped_rs256_assertion_is_accepted() {
    // Padded x5t, fractional exp/iat, no nbf, line-broken x5c: exactly what msal sends.
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let mut o = AssertionOpts::msal(token_url(&emu, CONTOSO));
    o.x5c = true;
    let a = assertion(&cert, &o);
    let (status, body) = cc_with_assertion(&emu, &a).await;
    assert_eq!(status, 200, "{body}");
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["appidacr"], "2");
    // msal reuses the same assertion (same jti) within its lifetime: accepted by default.
    let (again, body2) = cc_with_assertion(&emu, &a).await;
    assert_eq!(again, 200, "{body2}");
}

#[tokio::test]
async fn ps256_with_sha256_thumbprint_is_accepted_on_every_audience_form() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let base = emu.base_url().to_string();
    for aud in [
        format!("{base}/{CONTOSO}/oauth2/v2.0/token"),
        format!("{base}/{CONTOSO}/oauth2/token"),
        format!("{base}/contoso.com/oauth2/v2.0/token"),
        format!("{base}/oauth2/token"),
    ] {
        let mut o = AssertionOpts::msal(aud.clone());
        o.alg = jsonwebtoken::Algorithm::PS256;
        o.s256 = true;
        o.padded = false;
        o.nbf = Some(now_f64() - 10.0);
        let (status, body) = cc_with_assertion(&emu, &assertion(&cert, &o)).await;
        assert_eq!(status, 200, "{aud}: {body}");
    }
    let stats = emu.stats();
    assert_eq!((stats.assertions_ps, stats.assertions_rs), (4, 0));
    assert_eq!(stats.assertions_x5t_s256, 4);
    let served: serde_json::Value = client()
        .get(format!("{base}/_exgate/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(served["assertions_ps"], 4);
    assert_eq!(served["tokens_issued"], 4);
}

#[tokio::test]
async fn basic_auth_and_both_forms_at_once_are_accepted() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let url = token_url(&emu, CONTOSO);
    let resp = client()
        .post(&url)
        .basic_auth(DAEMON, Some(SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", EXO_DEFAULT)])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client()
        .post(&url)
        .basic_auth(DAEMON, Some(SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("scope", EXO_DEFAULT),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn v1_endpoint_answers_with_strings_and_resource() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let (status, body) = post_form(
        &format!("{}/{CONTOSO}/oauth2/token", emu.base_url()),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("resource", "https://outlook.office365.com/"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], "3599");
    assert_eq!(body["resource"], "https://outlook.office365.com/");
    let on: i64 = body["expires_on"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let nb: i64 = body["not_before"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert_eq!(on - nb, 3900);
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(
        c["aud"], "https://outlook.office365.com/",
        "aud as requested"
    );
}

/// The shape Entra ID gives an app-only Microsoft Graph token, as a decoded one shows (Microsoft
/// Q&A question 1603318, "Status 401 when requesting a list of users using the Graph HTTP API"):
/// a v1.0 token with `aud` `https://graph.microsoft.com`, the v1 issuer, `appid`/`appidacr`,
/// `idtyp` `app`.
#[tokio::test]
async fn graph_token_has_the_shape_entra_gives_it() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let (status, body) = post_form(
        &token_url(&emu, "contoso.onmicrosoft.com"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["ver"], "1.0");
    assert_eq!(c["aud"], "https://graph.microsoft.com");
    assert_eq!(c["appid"], DAEMON);
    assert_eq!(c["appidacr"], "1");
    assert_eq!(c["idtyp"], "app");
    assert_eq!(c["iss"], format!("https://sts.windows.net/{CONTOSO}/"));
    assert_eq!(c["roles"], serde_json::json!(["Mail.Read"]));
    assert!(c.get("azp").is_none(), "{c}");
}

#[tokio::test]
async fn token_lifetime_option_is_honoured() {
    let cert = TestCert::new("c");
    let emu = start_with(
        &scenario_toml(&cert, "", ""),
        EmulatorOptions {
            token_lifetime: Some(Duration::from_secs(120)),
            ..EmulatorOptions::default()
        },
    )
    .await;
    let (_, body) = post_form(
        &token_url(&emu, CONTOSO),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("scope", EXO_DEFAULT),
        ],
    )
    .await;
    assert_eq!(body["expires_in"], 120);
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(
        c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0),
        421
    );
}

#[tokio::test]
async fn openid_metadata_names_the_emulator_and_resolves_domains() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let base = emu.base_url();
    let v2: Value = client()
        .get(format!(
            "{base}/contoso.com/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        v2["token_endpoint"],
        format!("{base}/{CONTOSO}/oauth2/v2.0/token")
    );
    assert_eq!(v2["issuer"], format!("{base}/{CONTOSO}/v2.0"));
    assert_eq!(
        v2["device_authorization_endpoint"],
        format!("{base}/{CONTOSO}/oauth2/v2.0/devicecode")
    );
    let v1: Value = client()
        .get(format!(
            "{base}/contoso.com/.well-known/openid-configuration"
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v1["issuer"], format!("https://sts.windows.net/{CONTOSO}/"));
    assert_eq!(
        v1["token_endpoint"],
        format!("{base}/{CONTOSO}/oauth2/token")
    );
    let common: Value = client()
        .get(format!(
            "{base}/common/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(common["issuer"], format!("{base}/{{tenantid}}/v2.0"));
    let inst: Value = client()
        .get(with_query(
            &format!("{base}/common/discovery/instance"),
            &[
                ("api-version", "1.1"),
                (
                    "authorization_endpoint",
                    &format!("{base}/{CONTOSO}/oauth2/v2.0/authorize"),
                ),
            ],
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        inst["tenant_discovery_endpoint"],
        format!("{base}/{CONTOSO}/v2.0/.well-known/openid-configuration")
    );
    let realm: Value = client()
        .get(format!(
            "{base}/common/userrealm/alice@contoso.com?api-version=1.0"
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(realm["account_type"], "Managed");
    assert!(emu.stats().discovery_requests >= 3);
}

#[tokio::test]
async fn ropc_gives_delegated_tokens_and_refresh_rotates() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let url = token_url(&emu, CONTOSO);
    let (status, body) = post_form(
        &url,
        &[
            ("client_id", PUBLIC),
            ("grant_type", "password"),
            ("client_info", "1"),
            ("username", "Alice@contoso.com"),
            ("password", "alice-pw"),
            ("scope", EWS_DELEGATED),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], EWS_DELEGATED);
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["scp"], "EWS.AccessAsUser.All");
    assert_eq!(c["upn"], "alice@contoso.com");
    assert_eq!(c["appidacr"], "0");
    assert_eq!(c["idtyp"], "user");
    assert!(c.get("roles").is_none());
    let id = verified_claims(&emu, body["id_token"].as_str().unwrap_or("")).await;
    assert_eq!(id["aud"], PUBLIC);
    assert_eq!(id["tid"], CONTOSO);
    assert_eq!(id["preferred_username"], "alice@contoso.com");
    assert!(body["client_info"].is_string());

    let rt = body["refresh_token"].as_str().unwrap_or("").to_string();
    let refresh = |rt: String| {
        let url = url.clone();
        async move {
            post_form(
                &url,
                &[
                    ("client_id", PUBLIC),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("scope", EWS_DELEGATED),
                ],
            )
            .await
        }
    };
    let (s2, b2) = refresh(rt.clone()).await;
    assert_eq!(s2, 200, "{b2}");
    let rt2 = b2["refresh_token"].as_str().unwrap_or("").to_string();
    assert_ne!(rt2, rt, "rotated");
    let (s3, b3) = refresh(rt).await;
    assert_eq!(s3, 400, "old refresh token no longer works");
    assert_eq!(code(&b3), 70000);
    let (s4, _) = refresh(rt2).await;
    assert_eq!(s4, 200);
    let (s5, b5) = refresh("rt-seeded-valid".into()).await;
    assert_eq!(s5, 200, "{b5}");
}

#[tokio::test]
async fn device_flow_goes_slow_down_pending_then_token() {
    let cert = TestCert::new("c");
    let extra = "[device_flow]\nuser = \"mfa@contoso.com\"\npending_polls = 1\nslow_down = true\n";
    let emu = start_with(
        &scenario_toml(&cert, "device_code_interval_secs = 1", extra),
        EmulatorOptions::default(),
    )
    .await;
    let (status, dc) = post_form(
        &format!("{}/{CONTOSO}/oauth2/v2.0/devicecode", emu.base_url()),
        &[("client_id", PUBLIC), ("scope", EWS_DELEGATED)],
    )
    .await;
    assert_eq!(status, 200, "{dc}");
    assert_eq!(dc["interval"], 1);
    assert_eq!(dc["expires_in"], 900);
    let code_value = dc["device_code"].as_str().unwrap_or("").to_string();
    let user_code = dc["user_code"].as_str().unwrap_or("");
    assert!(dc["message"].as_str().unwrap_or("").contains(user_code));
    let poll = async || {
        post_form(
            &token_url(&emu, CONTOSO),
            &[
                ("client_id", PUBLIC),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_info", "1"),
                ("code", &code_value),
                ("device_code", &code_value),
            ],
        )
        .await
    };
    let (_, p1) = poll().await;
    assert_eq!(p1["error"], "slow_down");
    let (_, p2) = poll().await;
    assert_eq!(p2["error"], "authorization_pending");
    assert_eq!(code(&p2), 70016);
    let (s3, p3) = poll().await;
    assert_eq!(s3, 200, "{p3}");
    // MFA user: satisfied interactively.
    let c = verified_claims(&emu, p3["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["upn"], "mfa@contoso.com");
    assert!(p3["refresh_token"].is_string());
    let (_, p4) = poll().await;
    assert_eq!(
        p4["error"], "bad_verification_code",
        "a code is redeemed once"
    );
}

#[tokio::test]
async fn device_flow_declined_and_expired() {
    let cert = TestCert::new("c");
    for (outcome, error, code_expected) in [
        ("decline", "authorization_declined", 70000),
        ("expire", "expired_token", 70019),
    ] {
        let extra =
            format!("[device_flow]\nuser = \"alice@contoso.com\"\noutcome = \"{outcome}\"\n");
        let emu = start_with(
            &scenario_toml(&cert, "", &extra),
            EmulatorOptions::default(),
        )
        .await;
        let (_, dc) = post_form(
            &format!("{}/{CONTOSO}/oauth2/v2.0/devicecode", emu.base_url()),
            &[("client_id", PUBLIC), ("scope", EWS_DELEGATED)],
        )
        .await;
        let dcode = dc["device_code"].as_str().unwrap_or("");
        let (status, body) = post_form(
            &token_url(&emu, CONTOSO),
            &[
                ("client_id", PUBLIC),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", dcode),
            ],
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], error, "{outcome}");
        assert_eq!(code(&body), code_expected);
    }
}

#[tokio::test]
async fn device_login_page_signs_a_code_in() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let (_, dc) = post_form(
        &format!("{}/{CONTOSO}/oauth2/v2.0/devicecode", emu.base_url()),
        &[("client_id", PUBLIC), ("scope", EWS_DELEGATED)],
    )
    .await;
    let dcode = dc["device_code"].as_str().unwrap_or("").to_string();
    let poll = async || {
        post_form(
            &token_url(&emu, CONTOSO),
            &[
                ("client_id", PUBLIC),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &dcode),
            ],
        )
        .await
    };
    assert_eq!(poll().await.1["error"], "authorization_pending");
    let resp = client()
        .post(dc["verification_uri"].as_str().unwrap_or(""))
        .form(&[
            ("user_code", dc["user_code"].as_str().unwrap_or("")),
            ("username", "alice@contoso.com"),
            ("password", "alice-pw"),
            ("action", "approve"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let (status, body) = poll().await;
    assert_eq!(status, 200, "{body}");
}

fn b64_sha256(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref())
}

/// Runs authorize (sign-in form POST) and returns the code from the form_post page.
async fn authorize(emu: &exgate_emulator::Emulator, verifier: &str, nonce: &str) -> String {
    let authorize_url = format!("{}/{CONTOSO}/oauth2/v2.0/authorize", emu.base_url());
    let params = [
        ("client_id", DAEMON),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", EWS_DELEGATED),
        ("state", "xyzSTATE"),
        ("code_challenge", &b64_sha256(verifier)),
        ("code_challenge_method", "S256"),
        ("nonce", nonce),
        ("client_info", "1"),
        ("response_mode", "form_post"),
    ];
    let page = client()
        .get(with_query(&authorize_url, &params))
        .send()
        .await
        .expect("get");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap_or_default().contains("<form"));
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("username", "mfa@contoso.com"));
    form.push(("password", "mfa-pw"));
    let resp = client()
        .post(&authorize_url)
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.text().await.expect("html");
    assert!(html.contains(&format!("action=\"{REDIRECT}\"")), "{html}");
    assert!(html.contains("name=\"state\" value=\"xyzSTATE\""));
    let start = html.find("name=\"code\" value=\"").expect("code") + 19;
    let end = html[start..].find('"').expect("end") + start;
    html[start..end].to_string()
}

#[tokio::test]
async fn authorization_code_with_pkce_echoes_nonce() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let verifier = "IS8vQHEEiCKN~_ugDF6WQXPVyHtSCJ3Wp.30_0ywrJv";
    let code_value = authorize(&emu, verifier, "n0nce-64-hex").await;
    let redeem = |verifier: &'static str, code_value: String| {
        let url = token_url(&emu, CONTOSO);
        async move {
            post_form(
                &url,
                &[
                    ("client_id", DAEMON),
                    ("grant_type", "authorization_code"),
                    ("client_info", "1"),
                    ("client_secret", SECRET),
                    ("code_verifier", verifier),
                    ("code", &code_value),
                    ("redirect_uri", REDIRECT),
                    ("scope", EWS_DELEGATED),
                ],
            )
            .await
        }
    };
    let (status, body) = redeem(verifier, code_value.clone()).await;
    assert_eq!(status, 200, "{body}");
    let id = verified_claims(&emu, body["id_token"].as_str().unwrap_or("")).await;
    assert_eq!(id["nonce"], "n0nce-64-hex");
    assert_eq!(id["tid"], CONTOSO);
    let at = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(at["appidacr"], "1");
    assert_eq!(at["amr"], serde_json::json!(["pwd", "mfa"]));
    let (again, b2) = redeem(verifier, code_value).await;
    assert_eq!(again, 400);
    assert_eq!(code(&b2), 54005);

    let third = authorize(&emu, verifier, "n3").await;
    let (wrong_redirect, b4) = post_form(
        &token_url(&emu, CONTOSO),
        &[
            ("client_id", DAEMON),
            ("grant_type", "authorization_code"),
            ("client_secret", SECRET),
            ("code_verifier", verifier),
            ("code", &third),
            ("redirect_uri", "http://localhost:9999/other"),
            ("scope", EWS_DELEGATED),
        ],
    )
    .await;
    assert_eq!(wrong_redirect, 400);
    assert_eq!(code(&b4), 50011);

    let other = authorize(&emu, verifier, "n2").await;
    let (bad, b3) = redeem("wrong-verifier-wrong-verifier-wrong-verifier", other).await;
    assert_eq!(bad, 400);
    assert_eq!(code(&b3), 501481);
}

#[tokio::test]
async fn admin_consent_makes_a_multi_tenant_app_usable() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let cc = async || {
        post_form(
            &token_url(&emu, FABRIKAM),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DAEMON),
                ("client_secret", SECRET),
                ("scope", EXO_DEFAULT),
            ],
        )
        .await
    };
    assert_eq!(code(&cc().await.1), 700016);
    let consent_url = format!("{}/fabrikam.com/adminconsent", emu.base_url());
    let params = [
        ("client_id", DAEMON),
        ("redirect_uri", REDIRECT),
        ("state", "st8"),
    ];
    let page = client()
        .get(with_query(&consent_url, &params))
        .send()
        .await
        .expect("get");
    assert_eq!(page.status().as_u16(), 200);
    // A non-admin cannot consent.
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("exgate_flow", "admin_consent"));
    let mut user_form = form.clone();
    user_form.push(("username", "user@fabrikam.com"));
    user_form.push(("password", "fab-user-pw"));
    let denied = client()
        .post(&consent_url)
        .form(&user_form)
        .send()
        .await
        .expect("post");
    let loc = denied
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(loc.contains("error=access_denied"), "{loc}");
    form.push(("username", "admin@fabrikam.com"));
    form.push(("password", "fab-admin-pw"));
    let resp = client()
        .post(&consent_url)
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 302);
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(
        loc,
        format!("{REDIRECT}?admin_consent=True&tenant={FABRIKAM}&state=st8")
    );
    let (status, body) = cc().await;
    assert_eq!(status, 200, "{body}");
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["tid"], FABRIKAM);
    assert_eq!(c["roles"], serde_json::json!(["full_access_as_app"]));
}

#[tokio::test]
async fn tls_endpoint_is_trusted_with_the_published_ca() {
    let cert = TestCert::new("c");
    let emu = start_with(
        &scenario_toml(&cert, "", ""),
        EmulatorOptions {
            tls: true,
            ..EmulatorOptions::default()
        },
    )
    .await;
    assert!(emu.base_url().starts_with("https://localhost:"));
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().unwrap_or("").as_bytes()).expect("ca");
    let tls_client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let resp = tls_client
        .get(format!(
            "{}/{CONTOSO}/v2.0/.well-known/openid-configuration",
            emu.base_url()
        ))
        .send()
        .await
        .expect("https request");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.expect("json");
    assert!(
        v["token_endpoint"]
            .as_str()
            .unwrap_or("")
            .starts_with("https://localhost:")
    );
    // An untrusting client must fail: the CA really is private.
    let plain = reqwest::Client::new();
    assert!(plain.get(emu.base_url()).send().await.is_err());
    emu.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let base = emu.base_url().to_string();
    emu.shutdown().await;
    assert!(
        client()
            .get(format!("{base}/common/discovery/keys"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn hybrid_exchange_url_gets_an_exchange_token_with_that_audience() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let (status, body) = post_form(
        &token_url(&emu, CONTOSO),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("scope", "https://mail.contoso.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["aud"], "https://mail.contoso.com");
    assert_eq!(c["ver"], "1.0");
    assert_eq!(c["roles"], serde_json::json!(["full_access_as_app"]));
    // Not registered in the other tenant: the resource does not exist there.
    let (_, other) = post_form(
        &token_url(&emu, CONTOSO),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("scope", "https://mail.fabrikam.com/.default"),
        ],
    )
    .await;
    assert_eq!(code(&other), 500011);
}

#[tokio::test]
async fn prompt_admin_consent_on_authorize_grants_and_returns_a_code_in_the_query() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let authorize_url = format!("{}/fabrikam.com/oauth2/v2.0/authorize", emu.base_url());
    let form = [
        ("client_id", DAEMON),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile"),
        ("state", "s1"),
        ("prompt", "admin_consent"),
        ("username", "admin@fabrikam.com"),
        ("password", "fab-admin-pw"),
    ];
    let resp = client()
        .post(&authorize_url)
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 302);
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(loc.starts_with(&format!("{REDIRECT}?code=0.")), "{loc}");
    assert!(loc.contains("&state=s1&"), "{loc}");
    let (status, body) = post_form(
        &token_url(&emu, FABRIKAM),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DAEMON),
            ("client_secret", SECRET),
            ("scope", EXO_DEFAULT),
        ],
    )
    .await;
    assert_eq!(status, 200, "consent recorded: {body}");
}

#[tokio::test]
async fn v1_password_grant_with_resource_gives_consented_scopes() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let (status, body) = post_form(
        &format!("{}/{CONTOSO}/oauth2/token", emu.base_url()),
        &[
            ("grant_type", "password"),
            ("client_id", PUBLIC),
            ("username", "alice@contoso.com"),
            ("password", "alice-pw"),
            ("resource", "https://outlook.office365.com"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], "3599");
    assert_eq!(body["scope"], "EWS.AccessAsUser.All");
    assert_eq!(body["resource"], "https://outlook.office365.com");
    assert!(body["refresh_token"].is_string() && body["id_token"].is_string());
    let c = verified_claims(&emu, body["access_token"].as_str().unwrap_or("")).await;
    assert_eq!(c["aud"], "https://outlook.office365.com");
    assert_eq!(c["scp"], "EWS.AccessAsUser.All");
}

#[tokio::test]
async fn revoking_a_users_refresh_tokens_gives_50173() {
    let cert = TestCert::new("c");
    let emu = start(&cert).await;
    let url = token_url(&emu, CONTOSO);
    let (_, body) = post_form(
        &url,
        &[
            ("client_id", PUBLIC),
            ("grant_type", "password"),
            ("username", "alice@contoso.com"),
            ("password", "alice-pw"),
            ("scope", EWS_DELEGATED),
        ],
    )
    .await;
    let rt = body["refresh_token"].as_str().unwrap_or("").to_string();
    let changed = emu.set_refresh_tokens_state(
        "Alice@contoso.com",
        exgate_emulator::scenario::RefreshTokenState::Revoked,
    );
    assert!(
        changed >= 2,
        "issued and seeded tokens of the user: {changed}"
    );
    let (status, err) = post_form(
        &url,
        &[
            ("client_id", PUBLIC),
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", EWS_DELEGATED),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(code(&err), 50173);
}
