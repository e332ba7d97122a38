//! Every check with a passing and a failing fixture: the healthy two-server organisation, each
//! fault planted into it by editing its text, the same text as UTF-16 with CRLF, and the cmdlet
//! output of Microsoft's HMA guide (the seed document).

use exgate_hma::{Report, Severity, Status, read_files};

const HEALTHY: &str = include_str!("fixtures/healthy-two-servers.txt");

fn now() -> time::PrimitiveDateTime {
    time::macros::datetime!(2026-12-07 12:00)
}

fn run(text: &str) -> Report {
    let org = read_files([("cmdlets.txt", text.as_bytes())]);
    exgate_hma::check(&org, now())
}

fn status(r: &Report, check: &str) -> Status {
    r.checks
        .iter()
        .find(|c| c.name == check)
        .map(|c| c.status.clone())
        .expect("check exists")
}

/// The errors' cause ids.
fn errors(r: &Report) -> Vec<&str> {
    r.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.id.as_str())
        .collect()
}

fn with(from: &str, to: &str) -> String {
    assert!(HEALTHY.contains(from), "fixture has {from:?}");
    HEALTHY.replacen(from, to, 1)
}

#[test]
fn a_healthy_organisation_is_ready() {
    let r = run(HEALTHY);
    assert!(r.ready, "{:#?}", r.findings);
    assert!(errors(&r).is_empty());
    assert!(r.unrecognised.is_empty(), "{:?}", r.unrecognised);
    for c in r
        .checks
        .iter()
        .filter(|c| c.name != "live_probe" && c.name != "signin_probe")
    {
        assert_eq!(c.status, Status::Pass, "{}: {:?}", c.name, c.findings);
    }
    assert!(matches!(status(&r, "live_probe"), Status::NotRun(_)));
    assert!(matches!(status(&r, "signin_probe"), Status::NotRun(_)));
}

#[test]
fn utf16_with_crlf_reads_the_same() {
    let mut bytes = vec![0xFF, 0xFE];
    for u in HEALTHY.replace('\n', "\r\n").encode_utf16() {
        bytes.extend(u.to_le_bytes());
    }
    let org = read_files([("cmdlets.txt", bytes.as_slice())]);
    let r = exgate_hma::check(&org, now());
    assert_eq!(r, run(HEALTHY));
    // A fault reads the same way too.
    let text = with(
        "OAuth2ClientProfileEnabled : True",
        "OAuth2ClientProfileEnabled : False",
    );
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.replace('\n', "\r\n").encode_utf16() {
        bytes.extend(u.to_le_bytes());
    }
    let r = exgate_hma::check(&read_files([("x", bytes.as_slice())]), now());
    assert_eq!(errors(&r), ["hma_client_profile_disabled"]);
}

#[test]
fn an_internal_namespace_missing_from_the_spns() {
    let text = with(
        "InternalUrl                   : https://mail.contoso.com/EWS/Exchange.asmx",
        "InternalUrl                   : https://mail.corp.contoso.com/EWS/Exchange.asmx",
    );
    let r = run(&text);
    assert!(!r.ready);
    assert_eq!(errors(&r), ["spn_missing"]);
    let f = &r.findings[0];
    assert_eq!(f.subject, "https://mail.corp.contoso.com/");
    assert!(
        f.fix.contains("Update-MgServicePrincipal")
            && f.fix.contains("https://mail.corp.contoso.com/")
    );
    assert!(
        f.evidence[0].starts_with("cmdlets.txt:"),
        "{:?}",
        f.evidence
    );
}

#[test]
fn oauth_off_on_one_servers_ews_is_named_with_its_server_and_line() {
    let text = with(
        "InternalAuthenticationMethods : {Ntlm, WindowsIntegrated, WSSecurity, OAuth}\nOAuthAuthentication           : True\n\nServer                        : EX2",
        "InternalAuthenticationMethods : {Ntlm, WindowsIntegrated, WSSecurity}\nOAuthAuthentication           : False\n\nServer                        : EX2",
    );
    let r = run(&text);
    assert_eq!(errors(&r), ["hma_vdir_oauth_disabled"]);
    let f = &r.findings[0];
    assert_eq!(f.subject, "EX1 EWS");
    assert!(f.fix.starts_with("Get-WebServicesVirtualDirectory | Set-WebServicesVirtualDirectory -OAuthAuthentication $true"));
    // And the servers disagree.
    assert_eq!(status(&r, "consistency"), Status::Warning);
    assert!(
        r.findings
            .iter()
            .any(|f| f.id == "hma_servers_inconsistent" && f.subject == "EWS virtual directories")
    );
}

#[test]
fn mapi_without_oauth_in_its_iis_methods() {
    let text = with(
        "IISAuthenticationMethods      : {Ntlm, OAuth, Negotiate}",
        "IISAuthenticationMethods      : {Ntlm, Negotiate}",
    );
    let r = run(&text);
    assert!(errors(&r).contains(&"hma_vdir_oauth_disabled"));
    let f = r
        .findings
        .iter()
        .find(|f| f.id == "hma_vdir_oauth_disabled")
        .expect("finding");
    assert!(
        f.fix
            .contains("-IISAuthenticationMethods Ntlm, OAuth, Negotiate"),
        "{}",
        f.fix
    );
}

#[test]
fn evosts_missing_not_default_or_twice_default() {
    let text = with(
        "EvoSts - f31f3647-5d87-4b69-a0b6-73f62aeab14c AzureAD         True                           True\n",
        "",
    );
    assert_eq!(errors(&run(&text)), ["hma_evosts_missing"]);
    let text = with(
        "AzureAD         True                           True",
        "AzureAD         True                          False",
    );
    let r = run(&text);
    assert_eq!(errors(&r), ["hma_evosts_not_default"]);
    assert!(
        r.findings[0]
            .fix
            .starts_with("Set-AuthServer \"EvoSts - f31f3647")
    );
}

#[test]
fn client_profile_off() {
    let r = run(&with(
        "OAuth2ClientProfileEnabled : True",
        "OAuth2ClientProfileEnabled : False",
    ));
    assert_eq!(errors(&r), ["hma_client_profile_disabled"]);
    assert_eq!(
        r.findings[0].fix,
        "Set-OrganizationConfig -OAuth2ClientProfileEnabled $true"
    );
}

#[test]
fn server_to_server_oauth() {
    let r = run(&with(
        "ApplicationIdentifier : 00000002-0000-0ff1-ce00-000000000000\nEnabled               : True",
        "ApplicationIdentifier : 00000002-0000-0ff1-ce00-000000000000\nEnabled               : False",
    ));
    assert_eq!(errors(&r), ["hma_s2s_oauth_missing"]);
    let r = run(&with(
        "DiscoveryEndpoint    : https://autodiscover-s.outlook.com/autodiscover/autodiscover.svc\nEnabled              : True",
        "DiscoveryEndpoint    : https://autodiscover-s.outlook.com/autodiscover/autodiscover.svc\nEnabled              : False",
    ));
    assert_eq!(errors(&r), ["hma_s2s_oauth_missing"]);
}

#[test]
fn auth_certificate_expired_missing_or_not_on_every_server() {
    let expired = HEALTHY.replace(
        "NotAfter   : 3/28/2029 10:00:00 AM",
        "NotAfter   : 3/28/2026 10:00:00 AM",
    );
    let r = run(&expired);
    assert!(
        errors(&r)
            .iter()
            .all(|e| *e == "hma_auth_certificate_invalid")
            && !errors(&r).is_empty()
    );
    let r = run(&with(
        "CurrentCertificateThumbprint : 4C3A8F0E2B9D7C6A5B4E3F2A1D0C9B8A7F6E5D4C",
        "CurrentCertificateThumbprint : 0000000000000000000000000000000000000000",
    ));
    assert_eq!(errors(&r), ["hma_auth_certificate_invalid"]);
    let r = run(&with(
        "Identity   : EX2.contoso.com\\4C3A8F0E2B9D7C6A5B4E3F2A1D0C9B8A7F6E5D4C\nThumbprint : 4C3A8F0E2B9D7C6A5B4E3F2A1D0C9B8A7F6E5D4C",
        "Identity   : EX2.contoso.com\\1111111111111111111111111111111111111111\nThumbprint : 1111111111111111111111111111111111111111",
    ));
    assert_eq!(errors(&r), ["hma_auth_certificate_invalid"]);
    assert!(
        r.findings[0].subject.ends_with("on EX2"),
        "{:?}",
        r.findings[0]
    );
}

#[test]
fn versions() {
    let r = run(&with(
        "Name                : EX2\nAdminDisplayVersion : Version 15.2 (Build 1544.4)",
        "Name                : EX2\nAdminDisplayVersion : Version 14.3 (Build 123.4)",
    ));
    assert_eq!(errors(&r), ["hma_unsupported_topology"]);
    assert_eq!(r.findings[0].subject, "EX2");
    let r = run(&with(
        "Name                : EX2\nAdminDisplayVersion : Version 15.2 (Build 1544.4)",
        "Name                : EX2\nAdminDisplayVersion : Version 15.1 (Build 1261.35)",
    ));
    assert_eq!(
        errors(&r),
        ["hma_unsupported_topology"],
        "2016 CU7 is below CU8"
    );
}

#[test]
fn a_failed_oauth_test() {
    let r = run(&with(
        "ResultType : Success\nDetail     : The OAuth token was accepted.",
        "ResultType : Error\nDetail     : The remote server returned an error: (401) Unauthorized.",
    ));
    assert_eq!(errors(&r), ["spn_missing"]);
}

#[test]
fn checks_without_their_cmdlet_say_why_they_did_not_run() {
    let r = run(
        "[PS] C:\\> Get-OrganizationConfig | fl OAuth2ClientProfileEnabled\nOAuth2ClientProfileEnabled : True\n",
    );
    assert!(!r.ready, "nothing proves the rest");
    assert_eq!(status(&r, "client_profile"), Status::Pass);
    match status(&r, "evosts") {
        Status::NotRun(why) => assert!(why.contains("Get-AuthServer"), "{why}"),
        s => panic!("{s:?}"),
    }
}

#[test]
fn unknown_text_is_reported_not_guessed() {
    let r = run("Hello : world\nsomething else entirely\n");
    assert_eq!(r.unrecognised.len(), 2, "{:?}", r.unrecognised);
    assert!(r.unrecognised[0].starts_with("cmdlets.txt:1"));
}

#[test]
fn the_seed_documents_cmdlet_output() {
    // The guide's SPN list (after adding the namespaces) and its virtual directories.
    let text = include_str!("fixtures/seed-spns-after-and-vdirs.txt");
    let r = run(text);
    assert_eq!(status(&r, "spns"), Status::Pass, "{:?}", r.checks);
    let oauth = r
        .checks
        .iter()
        .find(|c| c.name == "vdir_oauth")
        .expect("check");
    // MAPI, EWS, OAB, Autodiscover of EX1 have OAuth; ActiveSync was not pasted.
    assert_eq!(oauth.passed.len(), 4, "{:?}", oauth);
    assert_eq!(oauth.status, Status::Warning);
    assert!(errors(&r).is_empty(), "{:?}", r.findings);
    // The same vdirs with an internal namespace the first SPN list lacks.
    let text = include_str!("fixtures/seed-spns-before-and-vdirs.txt").replace(
        "InternalUrl : https://mail.contoso.com/mapi",
        "InternalUrl : https://mail.corp.contoso.com/mapi",
    );
    let r = run(&text);
    assert_eq!(errors(&r), ["spn_missing"]);
}

#[test]
fn every_finding_names_a_cause_of_the_catalog() {
    let catalog = exgate_diagnose::builtin_catalog().expect("catalog");
    let mut texts = vec![HEALTHY.replace("True", "False")];
    texts.push(HEALTHY.replace("Version 15.2", "Version 14.3"));
    texts.push(HEALTHY.replace("https://mail.contoso.com/", "https://other.contoso.com/"));
    for t in texts {
        for f in run(&t).findings {
            assert!(catalog.cause(&f.id).is_some(), "{} is not a cause id", f.id);
        }
    }
}

#[test]
fn a_disabled_evosts_is_one_finding_and_connectors_alone_are_checked() {
    let r = run(&with(
        "AzureAD         True                           True",
        "AzureAD        False                           True",
    ));
    assert_eq!(errors(&r), ["hma_evosts_missing"], "{:#?}", r.findings);
    let r = run(
        "[PS] C:\\> Get-IntraOrganizationConnector | fl\n\nName : HybridIOC\nDiscoveryEndpoint : https://autodiscover-s.outlook.com/autodiscover/autodiscover.svc\nEnabled : False\n",
    );
    assert_eq!(status(&r, "s2s_oauth"), Status::Fail);
}

#[test]
fn missing_directory_kinds_are_reported_beside_other_findings() {
    let a = HEALTHY
        .find("[PS] exgate> Get-ActiveSyncVirtualDirectory")
        .expect("EAS");
    let b = HEALTHY
        .find("[PS] exgate> Get-ClientAccessService")
        .expect("CAS");
    let without_eas = format!("{}{}", &HEALTHY[..a], &HEALTHY[b..]);
    let text = without_eas.replace(
        "InternalAuthenticationMethods : {Ntlm, WindowsIntegrated, WSSecurity, OAuth}\nOAuthAuthentication           : True",
        "InternalAuthenticationMethods : {Ntlm, WindowsIntegrated, WSSecurity}\nOAuthAuthentication           : False",
    );
    let r = run(&text);
    let oauth = r
        .checks
        .iter()
        .find(|c| c.name == "vdir_oauth")
        .expect("check");
    assert!(oauth.findings.iter().any(|f| f.severity == Severity::Error));
    assert!(
        oauth
            .findings
            .iter()
            .any(|f| f.subject == "virtual directories not given"),
        "{:?}",
        oauth.findings
    );
}

#[test]
fn unread_pasted_text_is_shown_redacted() {
    let r = run(
        "Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln\nclient_secret=CANARY-s3cret\n",
    );
    let all = r.unrecognised.join("\n");
    assert!(
        !all.contains("CANARY-s3cret") && !all.contains("eyJzdWIiOiJ4In0"),
        "{all}"
    );
}
