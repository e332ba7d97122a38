//! The failure texts users meet most, each with the ranking it must get: never silent on a
//! failure, every real cause of a shared signature listed with the check that tells it apart,
//! the specific AADSTS code before its umbrella, and no token advice for a password refusal.

use exgate_diagnose::{AuthMode, Evidence, Protocol, diagnose, explain_text};

fn ids(text: &str) -> Vec<String> {
    explain_text(text, None)
        .causes
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// `text` gets ranked causes, `first` leads, and every id of `listed` is among them.
fn ranks(text: &str, first: &str, listed: &[&str]) {
    let got = ids(text);
    assert_eq!(
        got.first().map(String::as_str),
        Some(first),
        "{text}: {got:?}"
    );
    for l in listed {
        assert!(
            got.iter().any(|g| g == l),
            "{text}: {l} missing from {got:?}"
        );
    }
    assert!(got.len() <= 5, "{text}: more than five causes: {got:?}");
}

#[test]
fn bare_windows_auth_401_is_explained() {
    ranks(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"mail.contoso.com\"\r\nWWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM\r\n\r\n",
        "wrong_credentials",
        &["account_locked", "password_expired"],
    );
}

#[test]
fn texts_that_used_to_get_silence() {
    for (text, first, listed) in [
        (
            "The remote server returned an error: (401) Unauthorized.",
            "wrong_credentials",
            &["basic_auth_disabled", "missing_application_permission"][..],
        ),
        (
            "535 5.7.3 Authentication unsuccessful [BN0PR04CA0123.namprd04.prod.outlook.com]",
            "wrong_credentials",
            &["smtp_auth_disabled", "token_user_mismatch"][..],
        ),
        (
            "smtplib.SMTPAuthenticationError: (535, b'5.7.3 Authentication unsuccessful [SN4PR0201CA0036.namprd02.prod.outlook.com]')",
            "wrong_credentials",
            &["smtp_auth_disabled"][..],
        ),
        (
            "imaplib.IMAP4.error: b'AUTHENTICATE failed.'",
            "wrong_service_principal_object_id",
            &["wrong_audience", "missing_application_permission"][..],
        ),
        (
            "POST https://mail.contoso.com/EWS/Exchange.asmx/ HTTP/1.1\nHost: mail.contoso.com\n\nHTTP/1.1 404 Not Found\nContent-Length: 0\n",
            "wrong_endpoint_url",
            &[][..],
        ),
        (
            "error sending request for url (https://localhost:8443/EWS/Exchange.asmx): client error (SendRequest): invalid HTTP version parsed",
            "wrong_url_scheme",
            &[][..],
        ),
    ] {
        ranks(text, first, listed);
    }
}

#[test]
fn shared_signatures_list_every_real_cause_with_its_check() {
    for (text, listed) in [
        (
            r#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied. Check credentials and try again."}}"#,
            &[
                "missing_application_permission",
                "missing_permission",
                "mailbox_permission_missing",
            ][..],
        ),
        (
            "A3 BAD User is authenticated but not connected.",
            &["token_user_mismatch", "mailbox_permission_missing"][..],
        ),
        (
            r#"{"error":{"code":"MailboxNotEnabledForRESTAPI","message":"The mailbox is either inactive, soft-deleted, or is hosted on-premise."}}"#,
            &[
                "mailbox_not_provisioned",
                "mailbox_not_found",
                "mailbox_not_licensed",
            ][..],
        ),
        (
            "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            &["client_not_authenticating", "public_client_flows_disabled"][..],
        ),
        (
            "530 5.7.57 Client not authenticated to send mail. [AM0PR02CA0001.eurprd02.prod.outlook.com]",
            &[
                "smtp_auth_not_attempted",
                "smtp_auth_disabled",
                "conditional_access_blocked",
            ][..],
        ),
        (
            "A1 NO AUTHENTICATE failed.",
            &[
                "wrong_service_principal_object_id",
                "wrong_audience",
                "missing_application_permission",
            ][..],
        ),
        (
            "535 5.7.3 Authentication unsuccessful",
            &[
                "wrong_credentials",
                "smtp_auth_disabled",
                "token_user_mismatch",
            ][..],
        ),
    ] {
        let d = explain_text(text, None);
        let got: Vec<&str> = d.causes.iter().map(|c| c.id.as_str()).collect();
        for l in listed {
            assert!(got.contains(l), "{text}: {l} missing from {got:?}");
        }
        for c in &d.causes {
            assert!(
                c.check.is_some(),
                "{text}: {} has no discriminating check",
                c.id
            );
        }
        assert!(
            !d.decisive_questions.is_empty(),
            "{text}: several causes fit but no decisive question: {got:?}"
        );
        let sum: f32 = d.causes.iter().map(|c| c.confidence).sum();
        assert!(sum <= 1.01, "{text}: confidences add up to {sum}");
    }
}

#[test]
fn the_specific_aadsts_code_decides_over_its_umbrella() {
    ranks(
        "AADSTS70002: Error validating credentials. AADSTS50012: Client assertion is not within its valid time range.",
        "clock_skew",
        &[],
    );
    ranks(
        "AADSTS70002: Error validating credentials. AADSTS50053: You've tried to sign in too many times with an incorrect user ID or password.",
        "account_locked",
        &[],
    );
    // Alone, the umbrella still names the client credential.
    ranks(
        "AADSTS70002: Error validating credentials. AADSTS50064: Credential validation failed.",
        "invalid_client_secret",
        &[],
    );
}

#[test]
fn a_password_refusal_never_gets_token_advice() {
    let token_causes = [
        "wrong_audience",
        "token_expired",
        "token_malformed",
        "missing_application_permission",
        "delegated_instead_of_application",
        "graph_permission_instead_of_ews",
    ];
    for (status, challenges) in [
        (
            401,
            vec![("WWW-Authenticate", "Basic realm=\"mail.contoso.com\"")],
        ),
        (
            401,
            vec![
                ("WWW-Authenticate", "NTLM"),
                ("WWW-Authenticate", "Negotiate"),
            ],
        ),
        (401, vec![]),
    ] {
        for auth in [AuthMode::Basic, AuthMode::Ntlm] {
            let ev = Evidence::from_http_response(status, challenges.clone(), "")
                .with_url("https://mail.contoso.com/EWS/Exchange.asmx")
                .with_auth(auth);
            let d = diagnose(&ev);
            assert!(!d.causes.is_empty(), "{auth:?} {challenges:?}: silent");
            for c in &d.causes {
                assert!(
                    !token_causes.contains(&c.id.as_str()),
                    "{auth:?} {challenges:?}: token advice {} for a password refusal",
                    c.id
                );
            }
        }
    }
    // The same for a mail protocol refusal of a password.
    let ev = Evidence::from_text("535 5.7.3 Authentication unsuccessful")
        .with_protocol(Protocol::Smtp)
        .with_auth(AuthMode::Basic);
    let d = diagnose(&ev);
    assert_eq!(
        d.causes.first().map(|c| c.id.as_str()),
        Some("wrong_credentials")
    );
    assert!(
        d.causes
            .iter()
            .all(|c| !token_causes.contains(&c.id.as_str())),
        "{:?}",
        d.causes
    );
}

#[test]
fn never_silent_on_a_failure_and_silent_on_success() {
    for text in [
        "HTTP/1.1 403 Forbidden",
        "System.Net.WebException: The remote server returned an error: (500) Internal Server Error.",
        "MailKit.Security.AuthenticationException: Authentication failed.",
        "-ERR Authentication failure: unknown user name or bad password.",
        "com.microsoft.aad.msal4j.MsalServiceException: something unexpected happened",
        "Error: connect ECONNREFUSED 127.0.0.1:993",
        "exchangelib.errors.TransportError: something broke",
    ] {
        assert!(!ids(text).is_empty(), "silent on {text}");
    }
    for text in [
        "HTTP/1.1 200 OK\nContent-Type: text/xml\n\n<ok/>",
        "250 2.0.0 OK queued as 12345",
        "A1 OK LOGIN completed.",
    ] {
        assert!(ids(text).is_empty(), "{text}: {:?}", ids(text));
    }
}

/// EWS answers most request errors with 500 and a SOAP fault: the fault's code decides, not the
/// status.
#[test]
fn a_soap_fault_code_outranks_its_500() {
    ranks(
        "GetFolder to https://outlook.office365.com/EWS/Exchange.asmx failed: HTTP 500, SOAP fault ErrorNonExistentMailbox: The SMTP address has no mailbox associated with it.",
        "mailbox_not_found",
        &[],
    );
    ranks(
        "HTTP 500, SOAP fault ErrorInternalServerTransientError: An internal server error occurred. Try again later.",
        "service_side_transient",
        &[],
    );
}

#[test]
fn a_graph_token_on_a_mail_protocol_is_named() {
    // A Graph scope in the request, IMAP's bare refusal: the audience first.
    ranks(
        "$data = ['grant_type' => 'client_credentials', 'scope' => 'https://graph.microsoft.com/.default'];\nA1 NO AUTHENTICATE failed.",
        "wrong_audience",
        &["wrong_service_principal_object_id"],
    );
    // A bare delegated scope resolves to Microsoft Graph.
    ranks(
        "scopes = new[] { \"IMAP.AccessAsUser.All\", \"offline_access\" };\nA1 NO AUTHENTICATE failed.",
        "wrong_audience",
        &[],
    );
    // The Outlook-prefixed scope is right: no audience finding from the scope.
    let ids = ids(
        "scope https://outlook.office.com/IMAP.AccessAsUser.All offline_access\nA1 NO AUTHENTICATE failed.",
    );
    assert_ne!(
        ids.first().map(String::as_str),
        Some("wrong_audience"),
        "{ids:?}"
    );
}

#[test]
fn pop_with_oauth_lists_the_two_step_exchange() {
    // No server reply quoted: the POP-specific cause first.
    ranks(
        "POP3 with OAuth2 against outlook.office365.com is rejected, IMAP with the same token works",
        "pop_xoauth2_two_step_required",
        &[
            "missing_application_permission",
            "mailbox_permission_missing",
        ],
    );
    // Exchange's answer to a token it read: the permission first, the two-step form listed.
    ranks(
        "Connecting to outlook.office365.com via POP3S with XOAUTH2: -ERR Authentication failure: unknown user name or bad password.",
        "missing_application_permission",
        &[
            "pop_xoauth2_two_step_required",
            "mailbox_permission_missing",
        ],
    );
}
