//! Scenario validation: every error names its field.

mod common;

use std::sync::Arc;

use common::*;
use exgate_emulator_exchange::{ConfigError, ExchangeConfig, ExchangeState};

fn check(toml_text: &str) -> Result<(), ConfigError> {
    let cfg = ExchangeConfig::from_toml_str(toml_text)?;
    ExchangeState::new(cfg, Arc::new(directory()), verifier()).map(|_| ())
}

fn field_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { field, .. } => field,
        ConfigError::Parse(p) => panic!("expected a field error, got parse error {p}"),
    }
}

#[test]
fn the_test_scenario_is_valid() {
    check(SCENARIO).expect("valid");
}

#[test]
fn unknown_fields_are_rejected_with_their_name_and_line() {
    let e =
        check("[[mailboxes]]\naddress = \"a@contoso.com\"\nlicenced = true\n").expect_err("typo");
    let text = e.to_string();
    assert!(
        text.contains("licenced") && text.contains("line 3"),
        "{text}"
    );
}

#[test]
fn unknown_tenant_names_the_field() {
    let e = check("[[mailboxes]]\naddress = \"a@nowhere.example\"\n").expect_err("tenant");
    assert_eq!(field_of(e), "exchange.mailboxes[0].tenant");
}

#[test]
fn address_domain_must_belong_to_the_tenant() {
    let e = check("[[mailboxes]]\naddress = \"a@fabrikam.com\"\ntenant = \"contoso.com\"\n")
        .expect_err("domain");
    assert_eq!(field_of(e), "exchange.mailboxes[0].address");
}

#[test]
fn unknown_server_names_the_field() {
    let e = check("[[mailboxes]]\naddress = \"a@contoso.com\"\nserver = \"nope\"\n")
        .expect_err("server");
    assert_eq!(field_of(e), "exchange.mailboxes[0].server");
}

#[test]
fn unknown_group_in_app_access_names_the_field() {
    let e = check("[[mailboxes]]\naddress = \"a@contoso.com\"\n[[app_access]]\ntenant = \"contoso.com\"\napp_id = \"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee\"\ngroup = \"ghosts\"\n").expect_err("group");
    assert_eq!(field_of(e), "exchange.app_access[0].group");
}

#[test]
fn bad_app_id_names_the_field() {
    let e =
        check("[[organizations]]\ntenant = \"contoso.com\"\news_allowed_apps = [\"not-a-guid\"]\n")
            .expect_err("guid");
    assert_eq!(field_of(e), "exchange.organizations[0].ews_allowed_apps[0]");
}

#[test]
fn duplicate_addresses_are_rejected() {
    let e = check("[[mailboxes]]\naddress = \"user1@contoso.com\"\n[[mailbox_sets]]\ndomain = \"contoso.com\"\ncount = 2\n").expect_err("dup");
    assert!(e.to_string().contains("user1@contoso.com"), "{e}");
}

#[test]
fn server_url_must_be_scheme_and_host() {
    let e = check("[[servers]]\nname = \"x\"\ntenant = \"contoso.com\"\npublic_url = \"mail.contoso.com/ews\"\n").expect_err("url");
    assert_eq!(field_of(e), "exchange.servers[0].public_url");
}

#[test]
fn impersonation_account_must_be_a_upn() {
    let e = check("[[impersonation]]\naccount = \"svc\"\n").expect_err("upn");
    assert_eq!(field_of(e), "exchange.impersonation[0].account");
}

#[test]
fn zero_window_is_rejected() {
    let e = check("[throttling]\nwindow_seconds = 0\n").expect_err("window");
    assert_eq!(field_of(e), "exchange.throttling.window_seconds");
}

#[test]
fn too_many_generated_folders_names_the_field() {
    let e = check("[[mailboxes]]\naddress = \"a@contoso.com\"\nextra_folders = 250\n")
        .expect_err("folders");
    assert_eq!(field_of(e), "exchange.mailboxes[0].extra_folders");
}

#[test]
fn state_reports_sizes_and_registered_spns() {
    let h = Harness::new();
    let s = h.state.stats();
    assert_eq!(s.mailboxes, 11);
    assert_eq!(s.servers, 5);
    assert_eq!(
        s.ews_requests + s.graph_requests + s.autodiscover_requests,
        0
    );
    let spns = h.state.onprem_spns();
    assert_eq!(
        spns.first(),
        Some(&(
            "ex01".to_owned(),
            vec!["https://mail.contoso.com".to_owned()]
        ))
    );
    assert!(spns.iter().skip(1).all(|(_, v)| v.is_empty()));
}

#[test]
fn ten_thousand_generated_mailboxes_load() {
    let cfg = ExchangeConfig::from_toml_str(
        "[[mailbox_sets]]\ndomain = \"contoso.com\"\ncount = 10000\n",
    )
    .expect("parse");
    let state = ExchangeState::new(cfg, Arc::new(directory()), verifier()).expect("state");
    assert_eq!(state.stats().mailboxes, 10_000);
}
