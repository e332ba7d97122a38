//! Parsers of external input never panic, whatever the input.

use exgate_diagnose::parse::{diagnostics, http, json, mail, soap, www_authenticate};
use exgate_diagnose::{Evidence, diagnose, explain_text, jwt, redact};
use proptest::prelude::*;

fn interesting() -> impl Strategy<Value = String> {
    // Arbitrary text mixed with the tokens the parsers key on.
    let pieces = prop::sample::select(vec![
        "Bearer ",
        "Basic realm=\"",
        "\"",
        ",",
        "=",
        "==",
        "\\",
        ";reason=",
        "error_category=",
        "2000003",
        "AADSTS",
        "x-ms-diagnostics: ",
        "WWW-Authenticate: ",
        "HTTP/1.1 401 X\n",
        "POST / HTTP/1.1\n",
        "\n\n",
        "<faultcode>",
        "</faultcode>",
        "<m:ResponseCode>",
        "{\"error\":",
        "eyJ",
        ".",
        "535 5.7.3 ",
        "A1 NO ",
        "-ERR ",
        "→",
        "é",
        "\u{0}",
        "%",
        "%3a",
        "+",
    ]);
    prop::collection::vec(
        prop_oneof![pieces.prop_map(str::to_owned), ".{0,12}"],
        0..40,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn www_authenticate(s in interesting()) {
        let _ = www_authenticate::parse_challenges(&s);
    }

    #[test]
    fn ms_diagnostics(s in interesting()) {
        let _ = diagnostics::parse_ms_diagnostics(&s);
    }

    #[test]
    fn raw_http(s in interesting()) {
        let _ = http::parse_raw_http(&s);
    }

    #[test]
    fn json_soap_mail(s in interesting()) {
        let _ = json::parse_entra_error(&s);
        let _ = json::parse_graph_error(&s);
        let _ = soap::parse_soap(&s);
        let _ = mail::parse_replies(&s);
    }

    #[test]
    fn jwt_decode_and_lint(s in interesting(), now in any::<i64>()) {
        if let Ok(d) = jwt::decode(&s) {
            let c = jwt::TokenClaims::from_map(&d.claims);
            let _ = jwt::lint(&c, &jwt::LintContext { now: Some(now), url: Some(s.clone()), ..Default::default() });
        }
    }

    #[test]
    fn redaction(s in interesting()) {
        let _ = redact::redact_text(&s, redact::TokenMode::Summary);
        let _ = redact::redact_authorization(&s, redact::TokenMode::Summary);
    }

    #[test]
    fn whole_pipeline(s in interesting(), now in any::<i64>()) {
        let d = explain_text(&s, Some(now));
        for c in d.causes {
            prop_assert!((0.0..=1.0).contains(&c.confidence));
        }
        let _ = diagnose(&Evidence::from_http_response(401, [("WWW-Authenticate", s.as_str()), ("x-ms-diagnostics", s.as_str())], s.as_str()));
        let _ = exgate_diagnose::har::explain_har(s.as_bytes(), Default::default());
    }

    #[test]
    fn catalog_loader(s in interesting(), field in prop::sample::select(vec!["text", "diag_reason", "aadsts", "status", "cause", "weight"])) {
        let src = format!("[[entry]]\nid = \"x\"\ncause = \"mfa_required\"\ntitle = \"t\"\nexplanation = \"e\"\nfix = [\"f\"]\n[[entry.match]]\n{field} = {s:?}\n");
        let _ = exgate_diagnose::Catalog::from_sources(exgate_diagnose::CAUSES_SOURCE, &[("x.toml", &src)]);
        let _ = exgate_diagnose::Catalog::from_sources(exgate_diagnose::CAUSES_SOURCE, &[("y.toml", &s)]);
    }

    #[test]
    fn arbitrary_json_entries_in_har(v in prop::collection::vec(any::<(u16, String, String)>(), 0..6)) {
        let entries: Vec<serde_json::Value> = v.iter().map(|(st, a, b)| serde_json::json!({
            "request": {"url": a, "headers": [{"name": "Authorization", "value": b}], "postData": {"text": b}},
            "response": {"status": st, "headers": [{"name": "WWW-Authenticate", "value": a}], "content": {"text": b, "encoding": a}}
        })).collect();
        let har = serde_json::json!({"log": {"entries": entries}}).to_string();
        prop_assert!(exgate_diagnose::har::explain_har(har.as_bytes(), Default::default()).is_ok());
        let mut out = Vec::new();
        prop_assert!(exgate_diagnose::har::redact_har(har.as_bytes(), &mut out, redact::TokenMode::Summary).is_ok());
    }
}

#[test]
fn canary_secrets_never_reach_evidence_or_diagnosis() {
    let text = "POST /common/oauth2/v2.0/token HTTP/1.1\nHost: login.microsoftonline.com\nAuthorization: Basic Q0FOQVJZMQ==\n\ngrant_type=password&username=a%40b.c&password=CANARY2&client_secret=CANARY3\nHTTP/1.1 400 Bad Request\nSet-Cookie: x=CANARY4\n\n{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS50126: Error validating credentials due to invalid username or password.\",\"error_codes\":[50126],\"refresh_token\":\"CANARY5\"}";
    let ev = Evidence::from_text(text);
    let d = diagnose(&ev);
    assert_eq!(d.causes[0].id, "wrong_credentials");
    let dump = format!(
        "{ev:?} {} {d:?} {}",
        serde_json::to_string(&ev).unwrap_or_default(),
        serde_json::to_string(&d).unwrap_or_default()
    );
    for c in ["Q0FOQVJZMQ", "CANARY2", "CANARY3", "CANARY4", "CANARY5"] {
        assert!(!dump.contains(c), "{c} leaked");
    }
}

#[test]
fn canary_secrets_never_stored_from_http_response() {
    let ev = Evidence::from_http_response(
        200,
        [
            ("Set-Cookie", "esctx=CANARY6"),
            ("Content-Type", "application/json"),
        ],
        "{\"access_token\":\"CANARY7\",\"refresh_token\":\"CANARY8\"}",
    );
    let dump = format!("{ev:?} {}", serde_json::to_string(&ev).unwrap_or_default());
    for c in ["CANARY6", "CANARY7", "CANARY8"] {
        assert!(!dump.contains(c), "{c} leaked");
    }
}
