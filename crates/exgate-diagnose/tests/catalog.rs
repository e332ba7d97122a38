//! The catalog validates, covers every cause, and rejects broken entries.

use exgate_diagnose::{CATALOG_SOURCES, Catalog, builtin_catalog};

/// The cause ids of the shared causes list (copied; the list never renames or drops ids).
const SHARED_CAUSE_IDS: &[&str] = &[
    "wrong_client_id",
    "app_not_in_tenant",
    "wrong_service_principal_object_id",
    "app_disabled",
    "invalid_client_secret",
    "expired_client_secret",
    "certificate_not_registered",
    "thumbprint_header_mismatch",
    "assertion_invalid",
    "clock_skew",
    "secret_instead_of_certificate",
    "client_not_authenticating",
    "public_client_flows_disabled",
    "redirect_uri_mismatch",
    "tenant_not_specified",
    "tenant_not_found",
    "malformed_authority_url",
    "personal_account_unsupported_endpoint",
    "invalid_scope",
    "resource_not_found",
    "missing_admin_consent",
    "wrong_credentials",
    "user_not_found",
    "account_locked",
    "account_disabled",
    "password_expired",
    "mfa_required",
    "sspr_registration_interrupt",
    "conditional_access_blocked",
    "federated_user_ropc",
    "grant_revoked_password_changed",
    "signin_frequency_expired",
    "refresh_token_expired",
    "token_user_mismatch",
    "basic_auth_disabled",
    "smtp_auth_disabled",
    "missing_application_permission",
    "missing_permission",
    "delegated_instead_of_application",
    "graph_permission_instead_of_ews",
    "wrong_audience",
    "ssl_offloading",
    "spn_missing",
    "user_not_in_aad",
    "oauth_not_enabled_onprem",
    "partner_app_apponly_permissions_missing",
    "tenant_restrictions_blocked",
    "token_expired",
    "token_near_expiry",
    "token_malformed",
    "missing_impersonation_header",
    "missing_x_anchormailbox",
    "impersonation_right_missing",
    "application_access_policy_denied",
    "ews_blocked",
    "ews_useragent_allowlist_block",
    "mailbox_not_found",
    "mailbox_not_provisioned",
    "mailbox_not_licensed",
    "send_as_permission_missing",
    "malformed_from_header",
    "throttled",
    "service_side_transient",
    "autodiscover_failed",
    "tls_untrusted",
    "network_unreachable",
    "local_token_store_key_mismatch",
    "library_regression",
    "user_home_tenant_mismatch",
    "auth_code_redeemed_at_other_tenant",
    "mailbox_permission_missing",
    "impersonation_header_with_delegated_token",
    "stale_item_id",
    "smtp_auth_not_attempted",
    "hma_unsupported_topology",
    "hma_evosts_missing",
    "hma_evosts_not_default",
    "hma_client_profile_disabled",
    "hma_vdir_oauth_disabled",
    "hma_servers_inconsistent",
    "hma_s2s_oauth_missing",
    "hma_auth_certificate_invalid",
    "publishing_name_mismatch",
    "bearer_challenge_stripped",
    "pop_xoauth2_two_step_required",
];

#[test]
fn builtin_catalog_is_valid_and_covers_every_cause() {
    let cat = builtin_catalog().unwrap_or_else(|e| panic!("{e}"));
    for id in SHARED_CAUSE_IDS {
        assert!(cat.cause(id).is_some(), "causes.toml lacks {id}");
    }
    assert_eq!(cat.uncovered_causes(), Vec::<&str>::new());
    assert!(cat.primary_entry("library_regression").is_none());
}

#[test]
fn shared_list_matches_when_present() {
    // The copy above must follow the shared list; checked when the shared file is available.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/causes.md");
    let Ok(md) = std::fs::read_to_string(path) else {
        return;
    };
    for line in md.lines() {
        if let Some(rest) = line.strip_prefix("| ")
            && let Some(id) = rest.split(' ').next()
            && id.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !id.is_empty()
            && id != "id"
        {
            assert!(
                SHARED_CAUSE_IDS.contains(&id),
                "causes.md has {id}, not in the copy"
            );
        }
    }
}

#[test]
fn every_catalog_file_is_compiled_in() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("catalog dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") && n != "causes.toml")
        .collect();
    on_disk.sort();
    let mut compiled: Vec<String> = CATALOG_SOURCES
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    compiled.sort();
    assert_eq!(on_disk, compiled);
    let cat = builtin_catalog().unwrap_or_else(|e| panic!("{e}"));
    assert!(cat.entries.len() > 60);
}

const CAUSES: &str = "[[cause]]\nid = \"a\"\ntitle = \"A\"\n";

fn err(entries: &str) -> String {
    match Catalog::from_sources(CAUSES, &[("t.toml", entries)]) {
        Ok(_) => panic!("accepted an invalid catalog"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_catalogs_are_rejected_with_location() {
    let ok = "[[entry]]\nid = \"x\"\ncause = \"a\"\ntitle = \"t\"\nexplanation = \"e\"\nfix = [\"f\"]\n[[entry.match]]\naadsts = [1]\n";
    assert!(Catalog::from_sources(CAUSES, &[("t.toml", ok)]).is_ok());

    let e = err(&ok.replace("cause = \"a\"", "cause = \"nope\""));
    assert!(
        e.contains("unknown cause id \"nope\"") && e.contains("entry \"x\""),
        "{e}"
    );

    let e = err(&ok.replace("aadsts = [1]", "text = \"(unclosed\""));
    assert!(
        e.contains("invalid regular expression") && e.contains("field \"text\""),
        "{e}"
    );

    let e = err(&format!("{ok}{ok}"));
    assert!(e.contains("duplicate entry id"), "{e}");

    let e = err(&ok.replace("[[entry.match]]\naadsts = [1]\n", ""));
    assert!(e.contains("no [[entry.match]]"), "{e}");

    let e = err(&ok.replace("aadsts = [1]", "status = [401]"));
    assert!(e.contains("no signal condition"), "{e}");

    let e = err(&ok.replace("aadsts = [1]", "colour = \"red\""));
    assert!(e.contains("t.toml") && e.contains("line"), "{e}");
}

/// Every cause id that code names (the ranking's rules, token findings, store errors, the demo's
/// expectations) is a cause of the catalog: a renamed or mistyped id fails here, not in a report.
#[test]
fn every_cause_id_named_in_code_exists() {
    use regex::Regex;
    let cat = builtin_catalog().unwrap_or_else(|e| panic!("{e}"));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    // The shapes in which code names a cause.
    let shapes = [
        r#"(?:suppress|direct)\(\s*acc,\s*"([a-z0-9_]+)""#,
        r#"\bentry\("([a-z0-9_]+)"\.into\(\)\)"#,
        r#"(?m)^\s*Some\("([a-z0-9_]+)"\),?$"#,
        r#"Some\(if [^{]*\{\s*"([a-z0-9_]+)"\s*\} else \{\s*"([a-z0-9_]+)"\s*\}\)"#,
        r#"\bcause: "([a-z0-9_]+)""#,
        r#"=> Some\("([a-z0-9_]+)"\)"#,
        r#"(?s)let out: &\[&str\] = if .*?\{(.*?)\};"#,
    ];
    let files = [
        "crates/exgate-diagnose/src/rank.rs",
        "crates/exgate-diagnose/src/jwt.rs",
        "crates/exgate-auth/src/error.rs",
        "crates/exgate/src/cmd/demo.rs",
    ];
    let quoted = Regex::new(r#""([a-z0-9_]+)""#).unwrap();
    let mut named = 0;
    for f in files {
        let src =
            std::fs::read_to_string(format!("{root}/{f}")).unwrap_or_else(|e| panic!("{f}: {e}"));
        for shape in shapes {
            let re = Regex::new(shape).unwrap();
            for c in re.captures_iter(&src) {
                for g in c.iter().skip(1).flatten() {
                    // A captured block (a list of ids) or one id.
                    let ids: Vec<&str> = if g.as_str().contains('"') {
                        quoted
                            .captures_iter(g.as_str())
                            .filter_map(|q| q.get(1).map(|m| m.as_str()))
                            .collect()
                    } else {
                        vec![g.as_str()]
                    };
                    for id in ids {
                        named += 1;
                        assert!(
                            cat.cause(id).is_some(),
                            "{f} names cause \"{id}\", which catalog/causes.toml lacks"
                        );
                    }
                }
            }
        }
    }
    assert!(
        named > 40,
        "only {named} cause ids found in code: the shapes above no longer match it"
    );
}
