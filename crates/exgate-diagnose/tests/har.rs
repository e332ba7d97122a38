//! HAR explanation (handshake following, token lint) and redaction with canary secrets.

use exgate_diagnose::har::{HarOptions, explain_har, redact_har};
use exgate_diagnose::redact::TokenMode;

const OK: &str = include_str!("fixtures/hma_success.har");
const OFFLOAD: &str = include_str!("fixtures/ssl_offloading.har");

/// Every secret placed in the fixtures, literally or as the base64 that carries it.
const CANARIES: &[&str] = &[
    "CANARY",
    "Q0FOQVJZLVNJR05BVFVSRS1kOGUx", // bearer token signature
    "Q0FOQVJZSUQ",                  // id token signature
    "Q0FOQVJZLVBST1hZ",             // Proxy-Authorization Basic credential
];

fn ids(r: &exgate_diagnose::har::HarReport) -> Vec<String> {
    r.causes.iter().map(|c| c.id.clone()).collect()
}

#[test]
fn successful_hma_handshake_reports_no_failure() {
    let r = explain_har(OK.as_bytes(), HarOptions::default()).expect("har");
    assert_eq!(r.entries, 4);
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert!(r.causes.is_empty());
    assert_eq!(r.handshake_challenges, 1);
    assert_eq!(r.handshakes_completed, 1);
}

#[test]
fn ssl_offloading_401_is_explained_first() {
    let r = explain_har(OFFLOAD.as_bytes(), HarOptions::default()).expect("har");
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    let f = &r.failures[0];
    assert_eq!(f.index, 3);
    assert_eq!(f.status, 401);
    assert_eq!(f.diagnosis.causes[0].id, "ssl_offloading");
    assert_eq!(r.causes[0].id, "ssl_offloading");
    assert!(
        f.token
            .as_deref()
            .is_some_and(|t| t.contains("aud=https://mail.contoso.com"))
    );
}

fn redacted(input: &str, mode: TokenMode) -> String {
    let mut out = Vec::new();
    redact_har(input.as_bytes(), &mut out, mode).expect("redact");
    String::from_utf8(out).expect("utf8")
}

#[test]
fn redaction_removes_every_canary_and_explains_the_same() {
    for src in [OK, OFFLOAD] {
        for mode in [TokenMode::Summary, TokenMode::Remove] {
            let out = redacted(src, mode);
            for c in CANARIES {
                assert!(
                    !out.contains(c),
                    "{c} survived redaction ({mode:?}):\n{out}"
                );
            }
            // Still a HAR, same entries.
            let v: serde_json::Value = serde_json::from_str(&out).expect("json");
            assert_eq!(v["log"]["entries"].as_array().map(Vec::len), Some(4));
            assert_eq!(v["log"]["creator"]["name"], "Fiddler");
        }
        let before = explain_har(src.as_bytes(), HarOptions::default()).expect("har");
        let after_summary = explain_har(
            redacted(src, TokenMode::Summary).as_bytes(),
            HarOptions::default(),
        )
        .expect("har");
        assert_eq!(ids(&before), ids(&after_summary));
        assert_eq!(before.failures.len(), after_summary.failures.len());
        assert_eq!(
            before.handshakes_completed,
            after_summary.handshakes_completed
        );
        let after_remove = explain_har(
            redacted(src, TokenMode::Remove).as_bytes(),
            HarOptions::default(),
        )
        .expect("har");
        assert_eq!(ids(&before), ids(&after_remove));
    }
}

#[test]
fn redaction_keeps_probe_and_scheme() {
    let out = redacted(OFFLOAD, TokenMode::Remove);
    assert!(
        out.contains(r#""value":"Bearer""#),
        "empty Bearer probe must stay"
    );
    assert!(out.contains("Bearer [REDACTED]"));
    assert!(out.contains("grant_type=refresh_token"));
    assert!(out.contains("x-ms-diagnostics"));
}

#[test]
fn unreadable_har_is_an_error_with_position() {
    let e = explain_har(
        &b"{\"log\": {\"entries\": [ {\"request\": "[..],
        HarOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn lenient_entries_with_odd_types_and_base64_bodies() {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .encode(r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#);
    let har = format!(
        r#"{{"log":{{"entries":[{{"request":{{"url":"https://login.microsoftonline.com/t/oauth2/v2.0/token","method":"POST","headers":"oops"}},"response":{{"status":"401","content":{{"encoding":"base64","text":"{body}"}}}}}},{{}},{{"response":{{"status":null}}}}]}}}}"#
    );
    let r = explain_har(har.as_bytes(), HarOptions::default()).expect("har");
    assert_eq!(r.entries, 3);
    assert_eq!(
        r.failures[0].diagnosis.causes[0].id,
        "invalid_client_secret"
    );
}

#[test]
fn ntlm_round_trip_is_a_step_but_a_rejected_ntlm_login_is_a_failure() {
    let entry = |auth: &str, challenge: &str, status: u16| {
        format!(
            r#"{{"request":{{"method":"POST","url":"https://mail.contoso.com/EWS/Exchange.asmx","headers":[{{"name":"Authorization","value":"{auth}"}}]}},"response":{{"status":{status},"headers":[{{"name":"WWW-Authenticate","value":"{challenge}"}}]}}}}"#
        )
    };
    let har = format!(
        r#"{{"log":{{"entries":[{},{},{}]}}}}"#,
        entry(
            "NTLM TlRMTVNTUAABAAAAB4IIog==",
            "NTLM TlRMTVNTUAACAAAADAAMADgAAAA=",
            401
        ),
        entry("NTLM TlRMTVNTUAADAAAAGAAYAEgAAAA=", "NTLM", 401),
        entry("NTLM TlRMTVNTUAADAAAAGAAYAEgAAAA=", "NTLM", 200),
    );
    let r = explain_har(har.as_bytes(), HarOptions::default()).expect("har");
    assert_eq!(r.handshake_challenges, 1);
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].index, 1);
    assert_eq!(r.failures[0].diagnosis.causes[0].id, "wrong_credentials");
}

#[test]
fn malformed_header_shapes_are_still_redacted() {
    let har = r#"{"log":{"entries":[{"request":{"url":"https://x/","headers":"Authorization: Basic Q0FOQVJZLUJBU0lD","postData":{"params":"client_secret=CANARY-P"}},"response":{"status":200,"headers":{"Set-Cookie":"a=CANARY-C"}}}]}}"#;
    let out = redacted(har, TokenMode::Summary);
    for c in ["Q0FOQVJZLUJBU0lD", "CANARY-P", "CANARY-C"] {
        assert!(!out.contains(c), "{c} survived: {out}");
    }
}
