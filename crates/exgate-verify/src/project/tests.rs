//! Project loader tests: good files, every error naming file, line, field and fix, secrets never
//! echoed, and property tests on arbitrary input.

use std::collections::HashMap;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::Side;

const GOOD: &str = r#"
name = "contoso-to-fabrikam"

[source]
kind = "exchange-onprem"
autodiscover = true
[source.auth]
mode = "basic"
username = "svc-migrate@contoso.com"
password = { env = "CONTOSO_PW" }
impersonation = true

[destination]
kind = "exchange-online"
api = "graph"
tenant = "fabrikam.onmicrosoft.com"
[destination.auth]
mode = "app-secret"
client_id = "11111111-2222-3333-4444-555555555555"
secret = "CANARY-SECRET-1f2e"

[[mailboxes]]
source = "alice@contoso.com"
destination = "alice@fabrikam.com"

[[mailboxes]]
source = "bob@contoso.com"
"#;

fn env() -> HashMap<String, String> {
    HashMap::from([("CONTOSO_PW".to_owned(), "CANARY-PW-9a8b".to_owned())])
}

fn parse_str(text: &str) -> Result<Project, ProjectError> {
    parse(text, Path::new("/p/project.toml"), &env())
}

#[track_caller]
fn check_err(text: &str, line: usize, field: &str, needle: &str) {
    match parse_str(text) {
        Ok(_) => panic!("expected an error"),
        Err(ProjectError::Invalid {
            file,
            line: l,
            field: f,
            message,
            fix,
        }) => {
            assert_eq!(file, Path::new("/p/project.toml"));
            assert_eq!((l, f.as_str()), (line, field), "message: {message}");
            let shown = format!("{message} {fix:?}");
            assert!(shown.contains(needle), "{shown}");
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn loads_a_good_project() {
    let p = parse_str(GOOD).unwrap();
    assert_eq!(p.name, "contoso-to-fabrikam");
    assert_eq!(p.source.kind, EndpointKind::ExchangeOnprem);
    assert_eq!(p.source.api, Api::Ews);
    assert_eq!(p.source.discovery, Discovery::Autodiscover(None));
    let destination = p.destination.as_ref().unwrap();
    assert_eq!(p.sides(), Side::BOTH);
    assert_eq!(destination.api, Api::Graph);
    assert_eq!(
        destination.discovery,
        Discovery::Explicit("https://graph.microsoft.com/v1.0".into())
    );
    match &p.source.auth {
        AuthProfile::Basic {
            password,
            impersonation,
            ..
        } => {
            assert_eq!(password.expose(), "CANARY-PW-9a8b");
            assert!(impersonation);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.mailboxes.len(), 2);
    assert_eq!(
        p.mailboxes[1].destination.as_deref(),
        Some("bob@contoso.com")
    );
    assert_eq!(p.mailboxes[0].origin.to_string(), "/p/project.toml:23");
    assert_ne!(p.mailboxes[0].id, p.mailboxes[1].id);
}

/// GOOD without its destination endpoint, and its mailboxes without destination addresses.
const ONE_SIDED: &str = r#"
name = "contoso-archive"

[source]
kind = "exchange-onprem"
autodiscover = true
[source.auth]
mode = "basic"
username = "svc-migrate@contoso.com"
password = { env = "CONTOSO_PW" }
impersonation = true

[[mailboxes]]
source = "alice@contoso.com"

[[mailboxes]]
source = "bob@contoso.com"
"#;

#[test]
fn a_project_without_destination_checks_the_source_alone() {
    let p = parse_str(ONE_SIDED).unwrap();
    assert!(p.destination.is_none());
    assert_eq!(p.sides(), [Side::Source]);
    assert!(p.endpoint(Side::Destination).is_none());
    assert_eq!(p.mailboxes.len(), 2);
    let alice = &p.mailboxes[0];
    assert_eq!(alice.destination, None);
    assert_eq!(alice.address(Side::Source), Some("alice@contoso.com"));
    assert_eq!(alice.address(Side::Destination), None);
    assert_eq!(alice.label(), "alice@contoso.com");
    // Not the id of the pair alice -> alice: the two kinds of project never share state rows.
    assert_ne!(
        alice.id,
        line_item_id("alice@contoso.com", Some("alice@contoso.com"))
    );
    assert_eq!(alice.id, line_item_id("alice@contoso.com", None));
}

#[test]
fn destination_fields_are_refused_when_there_is_no_destination() {
    let text = format!("{ONE_SIDED}destination = \"bob@fabrikam.com\"\n");
    check_err(
        &text,
        18,
        "mailboxes[1].destination",
        "no [destination] endpoint",
    );
    let text = format!(
        "{ONE_SIDED}\n[[mailboxes]]\nsource = \"carol@contoso.com\"\ndestination_username = \"x\"\ndestination_password = \"y\"\n"
    );
    check_err(
        &text,
        21,
        "mailboxes[2].destination_username",
        "add a [destination] endpoint",
    );
    match parse_csv(
        b"source,destination\na@contoso.com,a@fabrikam.com\n",
        Path::new("u.csv"),
        &env(),
        false,
    ) {
        Err(ProjectError::Invalid { line, field, .. }) => {
            assert_eq!((line, field.as_str()), (1, "destination"));
        }
        other => panic!("{other:?}"),
    }
    let items = parse_csv(
        b"source\na@contoso.com\n",
        Path::new("u.csv"),
        &env(),
        false,
    )
    .unwrap();
    assert_eq!(items[0].destination, None);
}

#[test]
fn ntlm_mode_is_a_password_sign_in_for_on_premises_only() {
    let text = ONE_SIDED.replace("mode = \"basic\"", "mode = \"ntlm\"");
    let p = parse_str(&text).unwrap();
    match &p.source.auth {
        AuthProfile::Basic {
            ntlm,
            impersonation,
            username,
            ..
        } => {
            assert!(*ntlm);
            assert!(*impersonation);
            assert_eq!(username, "svc-migrate@contoso.com");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.source.auth.mode(), "ntlm");
    // Exchange Online has no Windows authentication.
    let online = text.replace(
        "kind = \"exchange-onprem\"\nautodiscover = true",
        "kind = \"exchange-online\"\napi = \"ews\"",
    );
    check_err(
        &online,
        7,
        "source.auth.mode",
        "Exchange Online does not accept NTLM",
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let p = parse_str(GOOD).unwrap();
    let dbg = format!("{p:?}");
    assert!(!dbg.contains("CANARY-SECRET-1f2e"), "{dbg}");
    assert!(!dbg.contains("CANARY-PW-9a8b"), "{dbg}");
    assert!(dbg.contains("REDACTED"));
}

#[test]
fn errors_never_echo_secrets() {
    // A bad client id next to a secret: the error names the field, not the secret.
    let text = GOOD.replace("11111111-2222-3333-4444-555555555555", "CANARY-SECRET-1f2e");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.contains("destination.auth.client_id"), "{err}");
    // The client id is not a secret, but the secret value itself must never show up when the
    // env variable is missing.
    let err = parse(GOOD, Path::new("/p/project.toml"), &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("CONTOSO_PW is not set"), "{err}");
    assert!(!err.contains("CANARY"), "{err}");
}

#[test]
fn syntax_error_names_the_line() {
    // The line, and the key written on it.
    check_err(
        &GOOD.replace("impersonation = true", "impersonation = "),
        11,
        "impersonation",
        "",
    );
}

#[test]
fn missing_field_names_it() {
    check_err(
        &GOOD.replace("kind = \"exchange-online\"\n", ""),
        13,
        "kind",
        "missing field",
    );
}

#[test]
fn unknown_field_names_it_with_a_fix() {
    check_err(
        &GOOD.replace("autodiscover = true", "autodiscovery = true"),
        6,
        "autodiscovery",
        "check the spelling",
    );
}

#[test]
fn unknown_auth_mode_lists_the_modes() {
    check_err(
        &GOOD.replace("mode = \"app-secret\"", "mode = \"secret\""),
        18,
        "destination.auth.mode",
        "app-secret",
    );
}

#[test]
fn client_id_must_be_a_guid() {
    check_err(
        &GOOD.replace("11111111-2222-3333-4444-555555555555", "my-app"),
        19,
        "destination.auth.client_id",
        "Application (client) ID",
    );
}

#[test]
fn oauth_modes_need_a_specific_tenant() {
    check_err(
        &GOOD.replace(
            "tenant = \"fabrikam.onmicrosoft.com\"",
            "tenant = \"common\"",
        ),
        16,
        "destination.tenant",
        "specific tenant",
    );
    check_err(
        &GOOD.replace("tenant = \"fabrikam.onmicrosoft.com\"\n", ""),
        13,
        "destination.tenant",
        "needs the tenant",
    );
}

#[test]
fn graph_cannot_reach_onprem() {
    check_err(
        &GOOD.replace(
            "autodiscover = true",
            "autodiscover = true\napi = \"graph\"",
        ),
        7,
        "source.api",
        "exchange-onprem",
    );
}

#[test]
fn bad_addresses_are_named() {
    check_err(
        &GOOD.replace("alice@fabrikam.com", "alice at fabrikam"),
        24,
        "mailboxes[0].destination",
        "primary SMTP address",
    );
}

#[test]
fn duplicate_lines_are_refused() {
    let text = format!(
        "{GOOD}\n[[mailboxes]]\nsource = \"ALICE@contoso.com\"\ndestination = \"alice@fabrikam.com\"\n"
    );
    check_err(&text, 30, "source", "first defined at /p/project.toml:23");
}

#[test]
fn no_mailboxes_is_an_error() {
    let text = GOOD.split("[[mailboxes]]").next().unwrap();
    check_err(text, text.lines().count(), "mailboxes", "mailboxes_csv");
    // An empty file: line 1, and where to start.
    check_err("", 1, "source", "examples/projects/migration.toml");
    check_err("\n\n", 1, "source", "is empty");
}

#[test]
fn a_value_of_the_wrong_type_names_its_field() {
    let text = GOOD.replacen("kind = \"exchange-onprem\"", "kind = 5", 1);
    assert_ne!(text, GOOD, "the fixture changed");
    let line = text
        .lines()
        .position(|l| l.starts_with("kind = 5"))
        .unwrap()
        + 1;
    check_err(&text, line, "kind", "quoted string");
}

#[test]
fn a_control_character_in_an_address_is_shown_escaped() {
    match parse_csv(
        b"source
a\x00b@contoso.com
",
        Path::new("u.csv"),
        &env(),
        false,
    ) {
        Err(ProjectError::Invalid { message, line, .. }) => {
            assert_eq!(line, 2);
            assert!(!message.contains('\0'), "{message:?}");
            assert!(message.contains("\\0"), "{message:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn csv_mailboxes_with_per_user_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("users.csv");
    std::fs::write(
        &csv_path,
        "source,destination,source_username,source_password\n\
         carol@contoso.com,carol@fabrikam.com,CONTOSO\\carol,CANARY-CSV-77\n\
         dave@contoso.com,,,\n\
         erin@contoso.com,erin@fabrikam.com,erin,env:CONTOSO_PW\n",
    )
    .unwrap();
    let head = GOOD.split("[[mailboxes]]").next().unwrap();
    let text = format!("mailboxes_csv = \"users.csv\"\n{head}");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, &text).unwrap();
    let p = load_with_env(&path, &env()).unwrap();
    assert_eq!(p.mailboxes.len(), 3);
    let carol = &p.mailboxes[0];
    let creds = carol.source_credentials.as_ref().unwrap();
    assert_eq!(creds.username, "CONTOSO\\carol");
    assert_eq!(creds.password.expose(), "CANARY-CSV-77");
    assert!(
        carol.origin.to_string().ends_with("users.csv:2"),
        "{}",
        carol.origin
    );
    assert_eq!(
        p.mailboxes[1].destination.as_deref(),
        Some("dave@contoso.com")
    );
    assert!(p.mailboxes[1].source_credentials.is_none());
    assert_eq!(
        p.mailboxes[2]
            .source_credentials
            .as_ref()
            .unwrap()
            .password
            .expose(),
        "CANARY-PW-9a8b"
    );
    assert!(!format!("{p:?}").contains("CANARY-CSV-77"));
}

#[track_caller]
fn check_csv_err(csv: &str, line: usize, field: &str, needle: &str) {
    match parse_csv(csv.as_bytes(), Path::new("u.csv"), &env(), true) {
        Err(ProjectError::Invalid {
            line: l,
            field: f,
            message,
            fix,
            ..
        }) => {
            assert_eq!((l, f.as_str()), (line, field), "{message}");
            let shown = format!("{message} {fix:?}");
            assert!(shown.contains(needle), "{shown}");
            assert!(!shown.contains("CANARY"), "{shown}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn csv_errors_name_line_and_column() {
    check_csv_err("src,dst\na@b.c,d@e.f\n", 1, "src", "columns are");
    check_csv_err("destination\na@b.c\n", 1, "source", "no source column");
    check_csv_err(
        "source,destination\na@b.c,d@e.f\nbad,x@y.z\n",
        3,
        "source",
        "has no @",
    );
    check_csv_err(
        "source,destination\na@b.c,d@e.f,extra\n",
        2,
        "row",
        "3 cells",
    );
    check_csv_err(
        "source,source_username,source_password\na@b.c,,CANARY-X\n",
        2,
        "source_username",
        "without a username",
    );
    check_csv_err(
        "source,source_username,source_password\na@b.c,u,env:MISSING\n",
        2,
        "source_password",
        "MISSING is not set",
    );
}

#[test]
fn fingerprint_ignores_secrets_and_case_but_not_users() {
    let p = parse_str(GOOD).unwrap();
    let mut a = p.mailboxes[0].clone();
    let f0 = a.fingerprint();
    a.source = a.source.to_uppercase();
    assert_eq!(a.fingerprint(), f0);
    a.source_credentials = Some(Box::new(UserCredentials {
        username: "u".into(),
        password: Secret::new("one"),
    }));
    let f1 = a.fingerprint();
    assert_ne!(f1, f0);
    a.source_credentials = Some(Box::new(UserCredentials {
        username: "u".into(),
        password: Secret::new("two"),
    }));
    assert_eq!(a.fingerprint(), f1);
}

proptest! {
    #[test]
    fn project_parser_never_panics(text in "\\PC{0,400}") {
        let _ = parse(&text, Path::new("x.toml"), &HashMap::new());
    }

    #[test]
    fn project_parser_never_panics_on_near_valid_input(cut in 0usize..700, junk in "[\\[\\]=\"a-z@. \n{}]{0,12}") {
        let mut text = GOOD.to_owned();
        let at = cut.min(text.len());
        if text.is_char_boundary(at) {
            text.insert_str(at, &junk);
        }
        let _ = parse(&text, Path::new("x.toml"), &env());
    }

    #[test]
    fn csv_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut input = b"source,destination,source_username,source_password\n".to_vec();
        input.extend(bytes);
        let _ = parse_csv(&input, Path::new("u.csv"), &HashMap::new(), true);
    }

    #[test]
    fn address_check_never_panics(s in "\\PC{0,80}") {
        let _ = check_address(&s);
    }
}

#[test]
fn example_projects_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/projects");
    let env: HashMap<String, String> = [
        "CONTOSO_MIGRATION_PASSWORD",
        "FABRIKAM_PFX_PASSWORD",
        "DAVE_APP_PASSWORD",
        "CONTOSO_ARCHIVER_PFX_PASSWORD",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), "example".to_owned()))
    .collect();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let p = load_with_env(&path, &env).unwrap_or_else(|e| panic!("{e}"));
            assert!(!p.mailboxes.is_empty());
            seen += 1;
        }
    }
    assert!(seen >= 3);
}
