//! The sign-in probe: what Outlook does after the empty Bearer. A token is asked of Entra ID for
//! the namespace itself (`https://<namespace>/.default`, or `/EWS.AccessAsUser.All` for a user),
//! then one authenticated EWS call (`GetFolder` of the inbox) is made with it ([HMA]
//! troubleshooting: the token request proves the namespace is a service principal name of
//! Exchange, the call proves Exchange accepts the token where it receives it).
//!
//! [`sign_in_namespace`] does the I/O; [`check_signins`] reads the outcomes (pure), and every
//! refusal is ranked by exgate-diagnose, so `exgate explain` on the same answer says the same.

use serde::Serialize;

use exgate_auth::{AuthError, EntraError, TokenProvider, TokenRequest, Url};
use exgate_wire::diagnostics::MsDiagnostic;
use exgate_wire::jwt::TokenClaims;

use crate::checks::{Check, Finding, Severity, Status};
use crate::model::EXCHANGE_ONLINE_APP;

/// The sign-in probe's check name and title.
pub const SIGNIN: &str = "signin_probe";
pub(crate) const SIGNIN_TITLE: &str =
    "A token for each namespace is issued by Entra ID and accepted by Exchange";

/// What Entra ID answered to the token request.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TokenStep {
    /// A token was issued; its claims (never the token).
    Issued {
        /// The token's claims.
        claims: Box<TokenClaims>,
    },
    /// Entra ID refused, with its error body.
    Refused {
        /// The parsed error body.
        error: Box<EntraError>,
    },
    /// No answer, or the request could not be made.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// What EWS answered to the call made with the token.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EwsStep {
    /// The call succeeded.
    Accepted {
        /// The folder read (display name).
        folder: String,
    },
    /// Exchange answered with an error.
    Refused {
        /// HTTP status.
        status: Option<u16>,
        /// `x-ms-diagnostics`, parsed.
        diagnostics: Option<MsDiagnostic>,
        /// Response headers (cookies redacted).
        headers: Vec<(String, String)>,
        /// The EWS or SOAP error code, when there was one.
        code: Option<String>,
        /// The error as text.
        message: String,
    },
    /// No answer (DNS, TCP, TLS, timeout).
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// One namespace's sign-in probe.
#[derive(Debug, Clone, Serialize)]
pub struct SigninAnswer {
    /// The namespace as given (`https://mail.contoso.com`).
    pub namespace: String,
    /// The resource the token was asked for (`https://mail.contoso.com`).
    pub resource: String,
    /// A user's token (delegated) rather than the application's.
    pub delegated: bool,
    /// The token request.
    pub token: TokenStep,
    /// The EWS call, when a token was issued.
    pub ews: Option<EwsStep>,
    /// The EWS URL called.
    pub ews_url: String,
}

/// The resource (scheme and host) of a namespace URL: the audience a client asks for.
pub fn resource_of(namespace: &Url) -> String {
    let host = namespace.host_str().unwrap_or_default();
    match namespace.port() {
        Some(p) => format!("{}://{host}:{p}", namespace.scheme()),
        None => format!("{}://{host}", namespace.scheme()),
    }
}

/// Asks `provider` for a token for `resource` (app-only `.default`, or `EWS.AccessAsUser.All`
/// when `delegated`), then calls `GetFolder` on `<namespace>/EWS/Exchange.asmx` with it. Never
/// retried: a probe reports what it met.
pub async fn sign_in_namespace(
    provider: &TokenProvider,
    http: &exgate_mail::HttpClient,
    namespace: &str,
    resource: &str,
    delegated: bool,
) -> SigninAnswer {
    let base = namespace.trim_end_matches('/');
    let ews_url = format!("{base}/EWS/Exchange.asmx");
    let resource = resource.trim_end_matches('/').to_owned();
    let scope = if delegated {
        format!("{resource}/EWS.AccessAsUser.All")
    } else {
        format!("{resource}/.default")
    };
    let mut answer = SigninAnswer {
        namespace: namespace.to_owned(),
        resource,
        delegated,
        token: TokenStep::Failed {
            error: String::new(),
        },
        ews: None,
        ews_url: ews_url.clone(),
    };
    let token = match provider.token(&TokenRequest::scopes([scope])).await {
        Ok(t) => t,
        Err(AuthError::Entra { body, .. }) => {
            answer.token = TokenStep::Refused { error: body };
            return answer;
        }
        Err(e) => {
            answer.token = TokenStep::Failed {
                error: e.to_string(),
            };
            return answer;
        }
    };
    let claims = TokenClaims::from_token(token.secret()).unwrap_or_default();
    answer.token = TokenStep::Issued {
        claims: Box::new(claims),
    };
    let Ok(url) = Url::parse(&ews_url) else {
        answer.ews = Some(EwsStep::Failed {
            error: format!("{ews_url} is not a URL"),
        });
        return answer;
    };
    let bearer =
        exgate_mail::Bearer::fixed(exgate_auth::SecretString::from(token.secret().to_owned()));
    let client = exgate_mail::ews::EwsClient::new(http.clone(), url, std::sync::Arc::new(bearer))
        .with_version_negotiation(false);
    let inbox = exgate_mail::ews::FolderRef::named("inbox", None);
    answer.ews = Some(
        match client
            .get_folder(&inbox, &exgate_mail::ews::CallOptions::default())
            .await
        {
            Ok(folder) => EwsStep::Accepted {
                folder: folder
                    .display_name
                    .clone()
                    .unwrap_or_else(|| "inbox".to_owned()),
            },
            Err(e) => {
                let ev = e.evidence();
                if ev.status.is_none() {
                    EwsStep::Failed {
                        error: e.to_string(),
                    }
                } else {
                    EwsStep::Refused {
                        status: ev.status,
                        diagnostics: ev.diagnostics.clone(),
                        headers: ev.headers.clone(),
                        code: ev.service_code().map(str::to_owned),
                        message: e.to_string(),
                    }
                }
            }
        },
    );
    answer
}

/// The diagnosis engine's ranking of a refused token request.
pub fn diagnose_token(error: &EntraError) -> exgate_diagnose::Diagnosis {
    let mut ev = exgate_diagnose::Evidence::from_http_response(
        400,
        [("Content-Type", "application/json")],
        "",
    )
    .with_entra_error(error.clone())
    .with_environment(exgate_diagnose::Environment::OnPremises);
    ev.attempt.protocol = Some(exgate_diagnose::Protocol::TokenEndpoint);
    exgate_diagnose::diagnose(&ev)
}

/// The diagnosis engine's ranking of a refused EWS call, with the token's claims.
pub fn diagnose_ews(a: &SigninAnswer) -> Option<exgate_diagnose::Diagnosis> {
    let Some(EwsStep::Refused {
        status: Some(status),
        headers,
        code,
        message,
        ..
    }) = &a.ews
    else {
        return None;
    };
    let mut ev = exgate_diagnose::Evidence::from_http_response(*status, headers.clone(), "")
        .with_url(a.ews_url.clone())
        .with_auth(exgate_diagnose::AuthMode::Bearer)
        .with_environment(exgate_diagnose::Environment::OnPremises)
        .app_only(!a.delegated)
        .with_text(message);
    if let Some(c) = code {
        ev = ev.with_ews_error(c.clone(), message.clone());
    }
    if let TokenStep::Issued { claims } = &a.token {
        ev = ev.with_claims(claims.as_ref().clone());
    }
    Some(exgate_diagnose::diagnose(&ev))
}

fn ranked(d: &exgate_diagnose::Diagnosis) -> String {
    d.causes
        .iter()
        .take(3)
        .map(|c| c.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Microsoft Graph PowerShell lines that add `resource` to the service principal names of
/// Exchange's first-party application.
pub fn add_spn_fix(resource: &str) -> String {
    format!(
        "Connect-MgGraph -Scopes Application.ReadWrite.All; $sp = Get-MgServicePrincipal -Filter \"AppId eq '{EXCHANGE_ONLINE_APP}'\"; Update-MgServicePrincipal -ServicePrincipalId $sp.Id -ServicePrincipalNames ($sp.ServicePrincipalNames + '{resource}')"
    )
}

/// Reads the sign-in probes' outcomes.
pub fn check_signins(answers: &[SigninAnswer]) -> Check {
    let mut check = Check {
        name: SIGNIN,
        title: SIGNIN_TITLE,
        status: Status::Pass,
        findings: Vec::new(),
        passed: Vec::new(),
    };
    if answers.is_empty() {
        check.status = Status::NotRun(
            "no credential given (--client-id, a profile or the Azure SDK variables)".to_owned(),
        );
        return check;
    }
    for a in answers {
        let who = if a.delegated { "user" } else { "app-only" };
        let asked = if a.delegated {
            format!("{}/EWS.AccessAsUser.All", a.resource)
        } else {
            format!("{}/.default", a.resource)
        };
        let mut find = |id: &str, severity: Severity, evidence: Vec<String>, fix: String| {
            check.findings.push(Finding {
                id: id.to_owned(),
                severity,
                subject: a.namespace.clone(),
                evidence,
                fix,
            });
        };
        let claims = match &a.token {
            TokenStep::Failed { error } => {
                find(
                    "network_unreachable",
                    Severity::Error,
                    vec![format!("token for {asked}: {error}")],
                    "Check that Entra ID (the authority host) is reachable from here, and the credential settings".to_owned(),
                );
                continue;
            }
            TokenStep::Refused { error } => {
                let codes: Vec<String> = error
                    .error_codes
                    .iter()
                    .map(|c| format!("AADSTS{c}"))
                    .collect();
                let first = error
                    .error_description
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let mut evidence = vec![format!(
                    "token for {asked} ({who}): {} {first}",
                    error.error
                )];
                let d = diagnose_token(error);
                evidence.push(format!("exgate explain ranks: {}", ranked(&d)));
                if error
                    .error_codes
                    .iter()
                    .any(|c| matches!(c, 50001 | 500011))
                {
                    find(
                        "spn_missing",
                        Severity::Error,
                        evidence,
                        add_spn_fix(&a.resource),
                    );
                } else if let Some(top) = d.causes.first() {
                    let fix = top.fix.first().cloned().unwrap_or_default();
                    find(&top.id, Severity::Error, evidence, fix);
                } else {
                    // The engine ranks every failure (never silent); should it not, the
                    // resource asked for is what this step is about.
                    find(
                        "resource_not_found",
                        Severity::Error,
                        evidence,
                        format!(
                            "Look up {} in the Entra ID error reference",
                            codes.join(", ")
                        ),
                    );
                }
                continue;
            }
            TokenStep::Issued { claims } => claims,
        };
        let aud = claims.aud.clone().unwrap_or_default();
        let user = claims.upn.clone();
        let token_line = format!(
            "token for {asked} issued: aud {aud}{}",
            user.as_deref()
                .map(|u| format!(", user {u}"))
                .unwrap_or_default()
        );
        match &a.ews {
            None => {}
            Some(EwsStep::Accepted { folder }) => check.passed.push(format!(
                "{}: {token_line}; GetFolder {folder} on {} succeeded",
                a.namespace, a.ews_url
            )),
            Some(EwsStep::Failed { error }) => {
                let id = if error.to_ascii_lowercase().contains("certificate") {
                    "tls_untrusted"
                } else {
                    "network_unreachable"
                };
                find(
                    id,
                    Severity::Error,
                    vec![token_line, format!("{}: {error}", a.ews_url)],
                    "Check DNS, the certificate and that the namespace is published on 443"
                        .to_owned(),
                );
            }
            Some(EwsStep::Refused {
                status,
                diagnostics,
                ..
            }) => {
                let mut evidence = vec![
                    token_line,
                    format!(
                        "{} -> {}",
                        a.ews_url,
                        status.map_or("no answer".to_owned(), |s| s.to_string())
                    ),
                ];
                if let Some(d) = diagnostics {
                    evidence.push(format!(
                        "x-ms-diagnostics: {};reason=\"{}\"",
                        d.code.as_deref().unwrap_or(""),
                        d.reason
                    ));
                }
                let d = diagnose_ews(a);
                if let Some(d) = &d {
                    evidence.push(format!("exgate explain ranks: {}", ranked(d)));
                }
                let code = diagnostics.as_ref().and_then(|d| d.code.as_deref());
                let mismatch = diagnostics
                    .as_ref()
                    .and_then(MsDiagnostic::audience_mismatch);
                let (id, severity, fix) = if let Some(m) = &mismatch
                    && m.is_tls_offloading()
                {
                    (
                        "ssl_offloading".to_owned(),
                        Severity::Error,
                        format!(
                            "Stop terminating TLS in front of Exchange for {}: re-encrypt to the servers (SSL bridging) or pass TLS through; Exchange must receive the https URL the token was issued for",
                            a.namespace
                        ),
                    )
                } else if let Some(m) = &mismatch
                    && m.is_other_host()
                {
                    let (aud, seen) = m.hosts();
                    (
                        "publishing_name_mismatch".to_owned(),
                        Severity::Error,
                        format!(
                            "Publish {aud} so that Exchange receives the host name {aud} (no host-name rewriting to {seen}), or let clients use {seen} and keep it in the SPNs: {}",
                            add_spn_fix(&format!("https://{seen}"))
                        ),
                    )
                } else if code == Some("2000005") {
                    (
                        "user_not_in_aad".to_owned(),
                        Severity::Error,
                        format!(
                            "The user {} is not known to on-premises Exchange: sign in as a user whose on-premises account is synchronised to Entra ID (Entra Connect; Get-Mailbox <user> | fl UserPrincipalName must match), not a cloud-only user",
                            user.as_deref().unwrap_or("in the token")
                        ),
                    )
                } else if !a.delegated && code == Some("2000008") {
                    (
                        "partner_app_apponly_permissions_missing".to_owned(),
                        Severity::Info,
                        "On-premises Exchange accepts app-only tokens only from a partner application with app-only rights; hybrid clients use user tokens. The token request above proved the SPN; give a user (--username, --password-env) to prove the EWS call".to_owned(),
                    )
                } else {
                    match d.as_ref().and_then(|d| d.causes.first()) {
                        Some(top) => (
                            top.id.clone(),
                            Severity::Error,
                            top.fix.first().cloned().unwrap_or_default(),
                        ),
                        // The engine ranks every failure; should it not, OAuth on this path
                        // is what this step is about.
                        None => (
                            "oauth_not_enabled_onprem".to_owned(),
                            Severity::Error,
                            "Run exgate explain on the answer".to_owned(),
                        ),
                    }
                };
                find(&id, severity, evidence, fix);
            }
        }
    }
    check.status = crate::checks::status_of(&check.findings);
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use exgate_wire::diagnostics::parse_ms_diagnostics;

    fn issued(user: bool) -> TokenStep {
        TokenStep::Issued {
            claims: Box::new(TokenClaims {
                aud: Some("https://mail.contoso.com".into()),
                upn: user.then(|| "alice@contoso.com".to_owned()),
                scp: if user {
                    vec!["EWS.AccessAsUser.All".into()]
                } else {
                    Vec::new()
                },
                ..TokenClaims::default()
            }),
        }
    }

    fn refused(diag: &str) -> Option<EwsStep> {
        Some(EwsStep::Refused {
            status: Some(401),
            diagnostics: parse_ms_diagnostics(diag),
            headers: vec![
                (
                    "WWW-Authenticate".into(),
                    "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\"".into(),
                ),
                ("x-ms-diagnostics".into(), diag.into()),
            ],
            code: None,
            message: "HTTP 401 Unauthorized".into(),
        })
    }

    fn answer(token: TokenStep, ews: Option<EwsStep>) -> SigninAnswer {
        SigninAnswer {
            namespace: "https://mail.contoso.com".into(),
            resource: "https://mail.contoso.com".into(),
            delegated: true,
            token,
            ews,
            ews_url: "https://mail.contoso.com/EWS/Exchange.asmx".into(),
        }
    }

    fn ids(c: &Check) -> Vec<(&str, Severity)> {
        c.findings
            .iter()
            .map(|f| (f.id.as_str(), f.severity))
            .collect()
    }

    #[test]
    fn the_guides_answers_give_their_causes() {
        // The HMA troubleshooting's offloading answer.
        let c = check_signins(&[answer(
            issued(true),
            refused(
                "2000003;reason=\"The hostname component of the audience claim value is invalid. Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.\";error_category=\"invalid_resource\"",
            ),
        )]);
        assert_eq!(ids(&c), [("ssl_offloading", Severity::Error)]);
        assert_eq!(c.status, Status::Fail);
        let c = check_signins(&[answer(
            issued(true),
            refused(
                "2000005;reason=\"The user specified by the user-context in the token does not exist.\";error_category=\"invalid_user\"",
            ),
        )]);
        assert_eq!(ids(&c), [("user_not_in_aad", Severity::Error)]);
        assert!(c.findings[0].fix.contains("alice@contoso.com"));
        // Entra ID: the namespace is not a service principal name.
        let body = br#"{"error":"invalid_resource","error_description":"AADSTS500011: The resource principal named https://mail.contoso.com was not found in the tenant named Contoso.","error_codes":[500011]}"#;
        let c = check_signins(&[answer(
            TokenStep::Refused {
                error: Box::new(EntraError::parse(body).unwrap()),
            },
            None,
        )]);
        assert_eq!(ids(&c), [("spn_missing", Severity::Error)]);
        assert!(c.findings[0].fix.contains("'https://mail.contoso.com'"));
        // Accepted: a pass naming the audience and the user.
        let c = check_signins(&[answer(
            issued(true),
            Some(EwsStep::Accepted {
                folder: "Inbox".into(),
            }),
        )]);
        assert_eq!(c.status, Status::Pass);
        assert!(c.passed[0].contains("aud https://mail.contoso.com, user alice@contoso.com"));
        // No answers: not run.
        assert!(matches!(check_signins(&[]).status, Status::NotRun(_)));
    }
}
