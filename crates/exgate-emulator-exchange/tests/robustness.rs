//! Property tests: arbitrary request bodies never panic and get the protocol's own error shape;
//! secrets never come back in responses or Debug output.

mod common;

use axum::http::StatusCode;
use common::*;
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn xmlish() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("<".to_owned()),
        Just(">".to_owned()),
        Just("</".to_owned()),
        Just("/>".to_owned()),
        Just("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">".to_owned()),
        Just("<s:Body>".to_owned()),
        Just("</s:Body>".to_owned()),
        Just("<m:GetFolder>".to_owned()),
        Just("<m:FindItem Traversal=\"Shallow\">".to_owned()),
        Just(
            "<m:IndexedPageItemView MaxEntriesReturned=\"-1\" Offset=\"99999999999999999999\"/>"
                .to_owned()
        ),
        Just("<t:DistinguishedFolderId Id=\"inbox\"/>".to_owned()),
        Just("<m:ParentFolderIds>".to_owned()),
        Just("<t:ItemId Id=\"AAMkAAAA\"/>".to_owned()),
        Just("<m:SyncState>".to_owned()),
        Just("&amp;".to_owned()),
        Just("&#0;".to_owned()),
        Just("&bogus;".to_owned()),
        Just("<![CDATA[x]]>".to_owned()),
        Just("<!DOCTYPE x>".to_owned()),
        "[a-zA-Z0-9 =\"':]{0,8}".prop_map(|s| s),
    ];
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_to_ews_give_a_soap_answer(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let rt = runtime();
        let h = Harness::new();
        let auth = bearer(&app_token(EXO, &["full_access_as_app"]));
        let text = String::from_utf8_lossy(&body).into_owned();
        let r = rt.block_on(h.ews(&auth, &text));
        prop_assert!(r.status == StatusCode::OK || r.status == StatusCode::INTERNAL_SERVER_ERROR);
        prop_assert!(r.body.starts_with("<?xml"));
        prop_assert!(r.body.contains("ServerVersionInfo"));
    }

    #[test]
    fn xml_like_bodies_to_ews_give_a_soap_answer(body in xmlish()) {
        let rt = runtime();
        let h = Harness::new();
        let auth = bearer(&app_token(EXO, &["full_access_as_app"]));
        let doc = soap(&imp("adele@contoso.com"), &body);
        for b in [body.clone(), doc] {
            let r = rt.block_on(h.ews(&auth, &b));
            prop_assert!(r.status == StatusCode::OK || r.status == StatusCode::INTERNAL_SERVER_ERROR, "{}", r.status);
            prop_assert!(r.body.starts_with("<?xml"));
        }
    }

    #[test]
    fn arbitrary_bodies_to_autodiscover_never_fail_the_transport(body in xmlish()) {
        let rt = runtime();
        let h = Harness::new();
        let auth = bearer(&app_token(EXO, &["full_access_as_app"]));
        for path in ["/autodiscover/autodiscover.xml", "/autodiscover/autodiscover.svc"] {
            let r = rt.block_on(h.post(path, Some(&auth), &body));
            prop_assert_eq!(r.status, StatusCode::OK);
            prop_assert!(r.body.contains("ErrorCode"));
        }
    }

    #[test]
    fn arbitrary_authorization_headers_are_answered_with_401(value in "[ -~]{0,200}") {
        let rt = runtime();
        let h = Harness::new();
        let r = rt.block_on(h.ews(&value, "<x/>"));
        prop_assert!(r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::INTERNAL_SERVER_ERROR || r.status == StatusCode::OK || r.status == StatusCode::FORBIDDEN);
        let g = rt.block_on(h.get("/v1.0/users/adele@contoso.com/messages", Some(&value)));
        prop_assert!(g.status == StatusCode::UNAUTHORIZED || g.status == StatusCode::OK, "{}", g.status);
    }

    #[test]
    fn arbitrary_graph_paths_and_queries_are_answered_in_graph_shape(path in "[a-zA-Z0-9/()'$=&?%._-]{0,80}") {
        let rt = runtime();
        let h = Harness::new();
        let auth = bearer(&app_token(GRAPH, &["Mail.Read", "User.Read.All", "Mail.Send"]));
        let r = rt.block_on(h.get(&format!("/v1.0/users/adele@contoso.com/{path}"), Some(&auth)));
        if r.status != StatusCode::OK && r.status != StatusCode::NOT_FOUND {
            prop_assert!(r.json()["error"]["code"].is_string(), "{} {}", r.status, r.body);
        }
        let s = rt.block_on(h.graph_post("/v1.0/users/adele@contoso.com/sendMail", &auth, &serde_json::json!({"message": path})));
        prop_assert_eq!(s.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn arbitrary_sync_and_delta_tokens_are_rejected_cleanly(tok in "[A-Za-z0-9_=-]{0,120}") {
        let rt = runtime();
        let h = Harness::new();
        let auth = bearer(&app_token(GRAPH, &["Mail.Read"]));
        let r = rt.block_on(h.get(&format!("/v1.0/users/adele@contoso.com/mailFolders/inbox/messages/delta?$deltatoken={tok}"), Some(&auth)));
        prop_assert_eq!(r.status, StatusCode::GONE);
        let ews = bearer(&app_token(EXO, &["full_access_as_app"]));
        let body = format!("<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id=\"inbox\"/></m:SyncFolderId><m:SyncState>{tok}</m:SyncState><m:MaxChangesReturned>5</m:MaxChangesReturned></m:SyncFolderItems>");
        let r = rt.block_on(h.ews(&ews, &soap(&imp("adele@contoso.com"), &body)));
        prop_assert_eq!(r.status, StatusCode::OK);
        prop_assert!(tok.is_empty() || r.body.contains("ErrorInvalidSyncStateData"), "{}", r.body);
    }
}

#[tokio::test]
async fn passwords_and_tokens_never_come_back() {
    let h = Harness::new();
    let pw = "CANARY-PASSWORD-6f1d";
    let tok = "CANARY.TOKEN.7e2c";
    let mut seen = String::new();
    for (path, auth) in [
        ("/EWS/Exchange.asmx", basic("adele@contoso.com", pw)),
        ("/EWS/Exchange.asmx", format!("Bearer {tok}")),
        (
            "/onprem/ex01/EWS/Exchange.asmx",
            basic("onprem@contoso.com", pw),
        ),
        ("/onprem/legacy/EWS/Exchange.asmx", format!("Bearer {tok}")),
        ("/autodiscover/autodiscover.svc", format!("Bearer {tok}")),
    ] {
        let r = h.post(path, Some(&auth), "<x/>").await;
        seen.push_str(&r.body);
        for (k, v) in &r.headers {
            seen.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
        }
    }
    let g = h
        .get(
            "/v1.0/users/adele@contoso.com",
            Some(&format!("Bearer {tok}")),
        )
        .await;
    seen.push_str(&g.body);
    assert!(!seen.contains(pw) && !seen.contains("CANARY"), "{seen}");
    let dir = InMemoryDirectoryDebug::render();
    assert!(!dir.contains(PASSWORD), "{dir}");
    let v = format!("{:?}", verifier());
    assert!(v.contains(KID));
}

struct InMemoryDirectoryDebug;

impl InMemoryDirectoryDebug {
    fn render() -> String {
        format!("{:?}", directory())
    }
}

fn ntlm_token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|t| {
            let mut m = b"NTLMSSP\0\x03\0\0\0".to_vec();
            m.extend(t);
            m
        }),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|t| {
            let mut m = b"NTLMSSP\0\x01\0\0\0".to_vec();
            m.extend(t);
            m
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    /// NEGOTIATE then arbitrary tokens on the same connection: always a 401 with challenges,
    /// never a panic, never a success.
    #[test]
    fn arbitrary_ntlm_tokens_are_refused(token in ntlm_token(), negotiate in any::<bool>()) {
        use axum::body::Body;
        use axum::http::Request;
        use base64::Engine;
        let rt = runtime();
        let h = Harness::new();
        let scheme = if negotiate { "Negotiate" } else { "NTLM" };
        let first = format!("{scheme} TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGNFAAAADw==");
        let second = format!("{scheme} {}", base64::engine::general_purpose::STANDARD.encode(&token));
        for auth in [first, second] {
            let mut req = Request::post("/onprem/ex01/EWS/Exchange.asmx")
                .header("host", "mail.contoso.com")
                .header("authorization", auth)
                .body(Body::from(soap("", &get_folder("inbox", None))))
                .expect("request");
            req.extensions_mut().insert(exgate_emulator_exchange::ConnectionId(7));
            let r = rt.block_on(h.send(req));
            prop_assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            prop_assert!(!r.header("www-authenticate").is_empty());
        }
    }
}
