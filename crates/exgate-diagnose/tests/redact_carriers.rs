//! `redact` leaves nothing behind: a canary placed in any carrier a capture can hold (HTTP headers
//! in any line ending and curl's `-v` form, form bodies, query strings, JSON keys in any case and
//! separator style, XML elements, SAML, SASL exchanges of SMTP/IMAP/POP, PEM blocks, settings
//! lines, URL credentials) never survives, and a redacted failure explains the same.

use exgate_diagnose::explain_text;
use exgate_diagnose::redact::{TokenMode, redact_text};
use proptest::prelude::*;

/// Every carrier, with `{C}` where the secret goes.
const CARRIERS: &[&str] = &[
    "POST /EWS/Exchange.asmx HTTP/1.1\nHost: mail.contoso.com\nAuthorization: Basic {C}\n\n",
    "GET / HTTP/1.1\nProxy-Authorization: Basic {C}\n\n",
    "GET / HTTP/1.1\nCookie: session={C}; other=1\n\n",
    "HTTP/1.1 200 OK\nSet-Cookie: X-OWA-CANARY={C}; path=/; secure\n\n",
    "> POST /token HTTP/1.1\n> Host: login.microsoftonline.com\n> Authorization: Basic {C}\n> Cookie: a={C}\n>\n< HTTP/1.1 400 Bad Request\n",
    "x-ms-refreshtokencredential: {C}\n",
    "x-api-key: {C}\n",
    "grant_type=client_credentials&client_secret={C}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
    "https://contoso.com/callback?code={C}&state=abc",
    "https://contoso.blob.core.windows.net/c/b?sv=2021-08-06&sig={C}",
    "SAMLResponse={C}&RelayState=x",
    "{\"refreshToken\":\"{C}\",\"expires_in\":3600}",
    "{\"client-secret\": \"{C}\"}",
    "{'clientSecret': '{C}'}",
    "{\"apiKey\": \"{C}\"}",
    "<s:Envelope><s:Header><saml:Assertion ID=\"_1\"><saml:Subject>{C}</saml:Subject><ds:SignatureValue>{C}</ds:SignatureValue></saml:Assertion></s:Header></s:Envelope>",
    "<wsse:BinarySecurityToken>{C}</wsse:BinarySecurityToken>",
    "<t:Password>{C}</t:Password>",
    "S: 220 mail.contoso.com ESMTP\nC: EHLO me\nC: AUTH XOAUTH2 {C}\nS: 235 2.7.0 Authentication successful\n",
    "C: AUTH PLAIN {C}\nS: 535 5.7.3 Authentication unsuccessful\n",
    "C: AUTH LOGIN\nS: 334 VXNlcm5hbWU6\nC: {C}\nS: 334 UGFzc3dvcmQ6\nC: {C}\nS: 535 5.7.3 Authentication unsuccessful\n",
    "a1 LOGIN user@contoso.com {C}\na1 NO LOGIN failed.\n",
    "a1 LOGIN \"user@contoso.com\" \"{C}\"\na1 NO LOGIN failed.\n",
    "a1 AUTHENTICATE XOAUTH2\n+ \n{C}\na1 NO AUTHENTICATE failed.\n",
    "a1 AUTHENTICATE PLAIN {C}\n",
    "USER user@contoso.com\nPASS {C}\n-ERR Logon failure: unknown user name or bad password.\n",
    "pwd: {C}\n",
    "app = msal.ConfidentialClientApplication(client_id, client_credential='{C}', authority=a)",
    "export AZURE_CLIENT_SECRET={C}\n",
    "EXGATE_TOKEN_STORE_KEY={C} exgate verify p.toml\n",
    "$pw = ConvertTo-SecureString '{C}' -AsPlainText -Force\n",
    "-----BEGIN PRIVATE KEY-----\n{C}\n-----END PRIVATE KEY-----\n",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{C}\n-----END ENCRYPTED PRIVATE KEY-----\n",
    "secret = \"{C}\"\n",
    "https://user:{C}@mail.contoso.com/EWS/Exchange.asmx",
];

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn check(carrier: &str, canary: &str) -> Result<(), String> {
    for text in [
        carrier.replace("{C}", canary),
        crlf(&carrier.replace("{C}", canary)),
    ] {
        for mode in [TokenMode::Summary, TokenMode::Remove] {
            let out = redact_text(&text, mode);
            if out.contains(canary) {
                return Err(format!(
                    "{canary} survived ({mode:?}) in:\n{text}\n->\n{out}"
                ));
            }
            // Redacting twice changes nothing more.
            let again = redact_text(&out, mode);
            if again != out {
                return Err(format!("not idempotent:\n{out}\n->\n{again}"));
            }
        }
    }
    Ok(())
}

#[test]
fn a_canary_in_any_carrier_never_survives() {
    let failures: Vec<String> = CARRIERS
        .iter()
        .filter_map(|c| check(c, "Zq9CANARYxY7w2Kp4m").err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} carrier(s) leaked:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_canary_survives_in_any_carrier(
        canary in "Zq[A-Za-z0-9]{10,30}",
        i in 0..CARRIERS.len(),
    ) {
        prop_assert!(check(CARRIERS[i], &canary).is_ok(), "{:?}", check(CARRIERS[i], &canary));
    }
}

/// A failure with secrets around it explains the same once redacted.
#[test]
fn redacted_failures_explain_the_same() {
    let failures = [
        "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Basic Zq9CANARY\r\n\r\nHTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\"\r\n\r\n",
        "C: AUTH LOGIN\r\nS: 334 VXNlcm5hbWU6\r\nC: dXNlckBjb250b3NvLmNvbQ==\r\nS: 334 UGFzc3dvcmQ6\r\nC: WnE5Q0FOQVJZ\r\nS: 535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.\r\n",
        "grant_type=client_credentials&client_secret=Zq9CANARY\n{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid client secret provided.\",\"error_codes\":[7000215]}",
        "a1 LOGIN user@contoso.com Zq9CANARY\r\na1 NO LOGIN failed.\r\n",
        "HTTP/1.1 401 Unauthorized\r\nx-ms-diagnostics: 2000003;reason=\"The hostname component of the audience claim value is invalid. Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.\";error_category=\"invalid_resource\"\r\nSet-Cookie: a=Zq9CANARY\r\n\r\n",
    ];
    for f in failures {
        let before: Vec<String> = explain_text(f, None)
            .causes
            .into_iter()
            .map(|c| c.id)
            .collect();
        let red = redact_text(f, TokenMode::Summary);
        assert!(
            !red.contains("Zq9CANARY") && !red.contains("WnE5Q0FOQVJZ"),
            "{red}"
        );
        let after: Vec<String> = explain_text(&red, None)
            .causes
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(before.first(), after.first(), "{f}\n->\n{red}");
        assert!(!before.is_empty(), "{f}");
    }
}
