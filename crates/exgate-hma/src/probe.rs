//! The live probe: each virtual directory of a namespace asked with an empty `Bearer` header, as
//! Outlook does before it has a token ([HMA] troubleshooting; CSS-Exchange `Test-HMAEAS.ps1`).
//! [`probe_namespace`] does the HTTP; [`check_probes`] reads the answers (pure).

use serde::Serialize;

use exgate_wire::diagnostics::{MsDiagnostic, parse_ms_diagnostics};
use exgate_wire::www_authenticate::{Challenge, parse_all};

use crate::checks::{Check, Finding, Severity, Status};
use crate::model::{EXCHANGE_ONLINE_APP, Org, VdirKind};

/// The path probed for each virtual directory, and whether it is POSTed (EWS and the
/// Autodiscover XML endpoint answer POST).
pub const PATHS: [(VdirKind, &str, bool); 5] = [
    (VdirKind::Ews, "EWS/Exchange.asmx", true),
    (VdirKind::Mapi, "mapi/", false),
    (VdirKind::Oab, "OAB/", false),
    (
        VdirKind::Autodiscover,
        "Autodiscover/Autodiscover.xml",
        true,
    ),
    (VdirKind::ActiveSync, "Microsoft-Server-ActiveSync", false),
];

/// The live probe's check name and title.
pub const LIVE_PROBE: &str = "live_probe";
pub(crate) const LIVE_PROBE_TITLE: &str =
    "Every virtual directory answers an empty Bearer with a complete Bearer challenge";

/// What one virtual directory answered to the empty Bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeAnswer {
    /// The namespace as given (`https://mail.contoso.com`).
    pub namespace: String,
    /// Which directory.
    pub kind: VdirKind,
    /// The URL asked.
    pub url: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The `WWW-Authenticate` values as sent.
    pub www_authenticate: Vec<String>,
    /// `x-ms-diagnostics`, parsed.
    pub diagnostics: Option<MsDiagnostic>,
    /// The transport error (DNS, TCP, TLS), when no answer came.
    pub error: Option<String>,
}

impl ProbeAnswer {
    fn challenges(&self) -> Vec<Challenge> {
        parse_all(self.www_authenticate.iter().map(String::as_str))
    }
}

/// The namespace of a URL an administrator pastes: a virtual directory's path at its end
/// (`/EWS/Exchange.asmx`, `/mapi/`, `/owa`, ...) is taken off, a path prefix before it kept (the
/// emulator's `/onprem/<server>`). Returns the namespace and the part taken off, if any.
pub fn namespace_of(url: &str) -> (String, Option<String>) {
    const DIRS: [&str; 12] = [
        "/ews/exchange.asmx",
        "/ews/mrsproxy.svc",
        "/ews",
        "/mapi/emsmdb",
        "/mapi",
        "/oab",
        "/autodiscover/autodiscover.xml",
        "/autodiscover/autodiscover.svc",
        "/autodiscover",
        "/microsoft-server-activesync",
        "/owa",
        "/ecp",
    ];
    let trimmed = url.trim().trim_end_matches('/');
    let lower = trimmed.to_ascii_lowercase();
    for d in DIRS {
        if lower.ends_with(d) {
            let cut = trimmed.len() - d.len();
            // Only a whole path segment after the host counts.
            if trimmed[..cut].contains("://")
                && trimmed[..cut]
                    .split("://")
                    .nth(1)
                    .is_some_and(|h| !h.is_empty())
            {
                return (trimmed[..cut].to_owned(), Some(trimmed[cut..].to_owned()));
            }
        }
    }
    (trimmed.to_owned(), None)
}

/// Probes every directory of `namespace` (a base URL; a path prefix is kept, as the emulator's
/// `/onprem/<server>`), one request each, never retried.
pub async fn probe_namespace(http: &reqwest::Client, namespace: &str) -> Vec<ProbeAnswer> {
    let base = namespace.trim_end_matches('/');
    let mut out = Vec::new();
    for (kind, path, post) in PATHS {
        let url = format!("{base}/{path}");
        let req = if post {
            http.post(&url)
                .header("Content-Type", "text/xml; charset=utf-8")
                .body("")
        } else {
            http.get(&url)
        };
        let answer = match req.header("Authorization", "Bearer").send().await {
            Ok(resp) => ProbeAnswer {
                namespace: namespace.to_owned(),
                kind,
                url: url.clone(),
                status: Some(resp.status().as_u16()),
                www_authenticate: resp
                    .headers()
                    .get_all("www-authenticate")
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect(),
                diagnostics: resp
                    .headers()
                    .get("x-ms-diagnostics")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_ms_diagnostics),
                error: None,
            },
            Err(e) => ProbeAnswer {
                namespace: namespace.to_owned(),
                kind,
                url: url.clone(),
                status: None,
                www_authenticate: Vec::new(),
                diagnostics: None,
                error: Some(error_chain(&e)),
            },
        };
        out.push(answer);
    }
    out
}

/// The diagnosis engine's ranking of an answer, as `exgate explain` gives it: the answer to an
/// empty Bearer, on premises.
pub fn diagnose_answer(a: &ProbeAnswer) -> Option<exgate_diagnose::Diagnosis> {
    let status = a.status?;
    let mut headers: Vec<(String, String)> = a
        .www_authenticate
        .iter()
        .map(|v| ("WWW-Authenticate".to_owned(), v.clone()))
        .collect();
    if let Some(d) = &a.diagnostics {
        let mut v = format!(
            "{};reason=\"{}\"",
            d.code.as_deref().unwrap_or(""),
            d.reason
        );
        if let Some(c) = &d.category {
            v.push_str(&format!(";error_category=\"{c}\""));
        }
        headers.push(("x-ms-diagnostics".to_owned(), v));
    }
    let ev = exgate_diagnose::Evidence::from_http_response(status, headers, "")
        .with_url(a.url.clone())
        .with_auth(exgate_diagnose::AuthMode::BearerProbe)
        .with_environment(exgate_diagnose::Environment::OnPremises);
    Some(exgate_diagnose::diagnose(&ev))
}

fn explain(a: &ProbeAnswer) -> Option<String> {
    let d = diagnose_answer(a)?;
    let ids: Vec<String> = d.causes.iter().take(3).map(|c| c.id.clone()).collect();
    (!ids.is_empty()).then(|| ids.join(", "))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// Reads the answers. `org` (from cmdlets, possibly empty) tells a device stripping the
/// challenge from a directory without OAuth.
pub fn check_probes(answers: &[ProbeAnswer], org: &Org) -> Check {
    let mut check = Check {
        name: LIVE_PROBE,
        title: LIVE_PROBE_TITLE,
        status: Status::Pass,
        findings: Vec::new(),
        passed: Vec::new(),
    };
    if answers.is_empty() {
        check.status = Status::NotRun("no --url namespace to probe".to_owned());
        return check;
    }
    let mut find = |id: &str, severity: Severity, a: &ProbeAnswer, what: String, fix: &str| {
        let mut evidence = vec![format!(
            "{} -> {}",
            a.url,
            a.status.map_or("no answer".to_owned(), |s| s.to_string())
        )];
        evidence.extend(
            a.www_authenticate
                .iter()
                .map(|v| format!("WWW-Authenticate: {v}")),
        );
        if let Some(d) = &a.diagnostics {
            evidence.push(format!(
                "x-ms-diagnostics: {};reason=\"{}\"",
                d.code.as_deref().unwrap_or(""),
                d.reason
            ));
        }
        evidence.push(what);
        if let Some(ranked) = explain(a) {
            evidence.push(format!("exgate explain ranks: {ranked}"));
        }
        check.findings.push(Finding {
            id: id.to_owned(),
            severity,
            subject: format!("{} {}", a.namespace, a.kind),
            evidence,
            fix: fix.to_owned(),
        });
    };
    let mut not_published = Vec::new();
    for a in answers {
        if let Some(e) = &a.error {
            let (id, fix) = if e.to_ascii_lowercase().contains("certificate") {
                (
                    "tls_untrusted",
                    "Serve a certificate whose names include this namespace, from a CA the clients trust",
                )
            } else {
                (
                    "network_unreachable",
                    "Check DNS and that the namespace is published on 443",
                )
            };
            find(id, Severity::Error, a, e.clone(), fix);
            continue;
        }
        let Some(status) = a.status else { continue };
        if status == 404 {
            // Not published at this namespace: nothing to probe, nothing wrong by itself.
            not_published.push(format!(
                "{} {}: not published here (404)",
                a.namespace, a.kind
            ));
            continue;
        }
        if status != 401 {
            find(
                "bearer_challenge_stripped",
                Severity::Warning,
                a,
                format!(
                    "{status} instead of 401 to an empty Bearer: something in front of Exchange answers"
                ),
                "Check the load balancer / reverse proxy rules for this path: it must pass the request to Exchange unchanged",
            );
            continue;
        }
        let challenges = a.challenges();
        let bearer = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
        let code = a.diagnostics.as_ref().and_then(|d| d.code.clone());
        let Some(bearer) = bearer else {
            let oauth_per_cmdlets = org
                .vdirs
                .iter()
                .any(|v| v.kind == a.kind && v.oauth == Some(true));
            if challenges.is_empty() || oauth_per_cmdlets {
                find(
                    "bearer_challenge_stripped",
                    Severity::Error,
                    a,
                    if challenges.is_empty() {
                        "401 without any WWW-Authenticate: a device in front of Exchange answers or strips them".to_owned()
                    } else {
                        "no Bearer challenge although the cmdlets show OAuth on this directory"
                            .to_owned()
                    },
                    "Let the load balancer / WAF pass WWW-Authenticate: Bearer through (SSL bridging, no rewriting of authentication headers)",
                );
            } else {
                find(
                    "hma_vdir_oauth_disabled",
                    Severity::Error,
                    a,
                    "no Bearer challenge among the schemes offered".to_owned(),
                    a.kind.oauth_fix(),
                );
            }
            continue;
        };
        // 4000000 beside a complete challenge: OAuth is on, but not yet for clients (the guide's
        // answer). Without authorization_uri the missing URI is the matter (below).
        if code.as_deref() == Some("4000000") && bearer.param("authorization_uri").is_some() {
            find(
                "hma_client_profile_disabled",
                Severity::Error,
                a,
                "4000000: Exchange offers Bearer but says OAuth is not available to clients yet"
                    .to_owned(),
                "Set-OrganizationConfig -OAuth2ClientProfileEnabled $true (and allow time, or IISReset, for it to apply)",
            );
            continue;
        }
        if bearer.param("authorization_uri").is_none() {
            // No authorization_uri: EvoSts is not the default, or OAuth is off on this directory
            // ([HMA] troubleshooting names both). The cmdlets, when given, tell which.
            let vdir_off = org
                .vdirs
                .iter()
                .any(|v| v.kind == a.kind && v.oauth == Some(false));
            let evosts_default = org
                .auth_servers
                .iter()
                .any(|s| s.is_evosts() && s.is_default == Some(true) && s.enabled != Some(false));
            let evosts_listed_not_default =
                !evosts_default && org.auth_servers.iter().any(|s| s.is_evosts());
            if evosts_listed_not_default {
                find(
                    "hma_evosts_not_default",
                    Severity::Error,
                    a,
                    "the Bearer challenge has no authorization_uri, and the cmdlets show EvoSts is not the default authorization endpoint".to_owned(),
                    "Set-AuthServer EvoSts -IsDefaultAuthorizationEndpoint $true",
                );
            } else if vdir_off || evosts_default {
                find(
                    "hma_vdir_oauth_disabled",
                    Severity::Error,
                    a,
                    "the Bearer challenge has no authorization_uri, and the cmdlets show EvoSts as the default or OAuth off on this directory".to_owned(),
                    a.kind.oauth_fix(),
                );
            } else {
                // What `exgate explain` says of the same answer.
                find(
                    "oauth_not_enabled_onprem",
                    Severity::Error,
                    a,
                    "the Bearer challenge has no authorization_uri: EvoSts is not the default authorization endpoint, or OAuth is off on this directory (Get-AuthServer and the directory's cmdlet tell which)".to_owned(),
                    &format!("Set-AuthServer EvoSts -IsDefaultAuthorizationEndpoint $true; or: {}", a.kind.oauth_fix()),
                );
            }
            continue;
        }
        if bearer
            .param("client_id")
            .is_some_and(|c| !c.eq_ignore_ascii_case(EXCHANGE_ONLINE_APP))
        {
            find(
                "oauth_not_enabled_onprem",
                Severity::Warning,
                a,
                format!(
                    "client_id {} is not {EXCHANGE_ONLINE_APP}",
                    bearer.param("client_id").unwrap_or("")
                ),
                "Re-run the Hybrid Configuration Wizard",
            );
            continue;
        }
        check.passed.push(format!(
            "{} {}: Bearer with authorization_uri {}",
            a.namespace,
            a.kind,
            bearer.param("authorization_uri").unwrap_or("")
        ));
    }
    // A namespace where every directory is missing is not an Exchange namespace (or not this
    // one): nothing was proven there.
    let mut namespaces: Vec<&str> = answers.iter().map(|a| a.namespace.as_str()).collect();
    namespaces.dedup();
    for ns in namespaces {
        let of: Vec<&ProbeAnswer> = answers.iter().filter(|a| a.namespace == ns).collect();
        if !of.is_empty() && of.iter().all(|a| a.status == Some(404)) {
            check.findings.push(Finding {
                id: "wrong_endpoint_url".to_owned(),
                severity: Severity::Error,
                subject: ns.to_owned(),
                evidence: of
                    .iter()
                    .map(|a| format!("{} -> 404", a.url))
                    .collect(),
                fix: "Give the namespace clients use for Exchange (https://mail.contoso.com), where /EWS/Exchange.asmx answers 401".to_owned(),
            });
        }
    }
    check.passed.extend(not_published);
    check.status = crate::checks::status_of(&check.findings);
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_directory_urls_become_namespaces() {
        assert_eq!(
            namespace_of("https://mail.contoso.com/EWS/Exchange.asmx"),
            (
                "https://mail.contoso.com".to_owned(),
                Some("/EWS/Exchange.asmx".to_owned())
            )
        );
        assert_eq!(
            namespace_of("https://localhost:8443/onprem/ex01/mapi/"),
            (
                "https://localhost:8443/onprem/ex01".to_owned(),
                Some("/mapi".to_owned())
            )
        );
        assert_eq!(
            namespace_of("https://mail.contoso.com/"),
            ("https://mail.contoso.com".to_owned(), None)
        );
        // A host named like a directory is not cut.
        assert_eq!(namespace_of("https://owa").0, "https://owa");
    }

    fn answer(status: u16, www: &[&str], diag: Option<&str>) -> ProbeAnswer {
        ProbeAnswer {
            namespace: "https://mail.contoso.com".into(),
            kind: VdirKind::Autodiscover,
            url: "https://mail.contoso.com/Autodiscover/Autodiscover.xml".into(),
            status: Some(status),
            www_authenticate: www.iter().map(|s| (*s).to_owned()).collect(),
            diagnostics: diag.and_then(parse_ms_diagnostics),
            error: None,
        }
    }

    const GOOD: &str = "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@f31f3647-5d87-4b69-a0b6-73f62aeab14c\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.windows.net/common/oauth2/authorize\"";

    fn ids(c: &Check) -> Vec<&str> {
        c.findings.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn the_seed_documents_4000000_answer() {
        // The 401 of the guide: Negotiate, NTLM, Basic, the full Bearer challenge, and 4000000.
        let a = answer(
            401,
            &[
                "Negotiate",
                "NTLM",
                "Basic realm=\"autodiscover.contoso.com\"",
                GOOD,
            ],
            Some(
                "4000000;reason=\"Flighting is not enabled for domain 'gregt@contoso.com'.\";error_category=\"oauth_not_available\"",
            ),
        );
        let c = check_probes(&[a], &Org::default());
        assert_eq!(ids(&c), ["hma_client_profile_disabled"]);
    }

    #[test]
    fn without_cmdlets_the_probe_says_what_explain_says() {
        let no_uri = GOOD.replace(
            ", authorization_uri=\"https://login.windows.net/common/oauth2/authorize\"",
            "",
        );
        let cases = [
            answer(401, &[&no_uri, "NTLM"], None),
            answer(
                401,
                &["NTLM", GOOD],
                Some(
                    "4000000;reason=\"Flighting is not enabled for domain 'gregt@contoso.com'.\";error_category=\"oauth_not_available\"",
                ),
            ),
        ];
        for a in cases {
            let c = check_probes(std::slice::from_ref(&a), &Org::default());
            let top = diagnose_answer(&a).and_then(|d| d.causes.first().map(|c| c.id.clone()));
            assert_eq!(
                Some(c.findings[0].id.clone()),
                top,
                "{:?}",
                a.www_authenticate
            );
            assert!(
                c.findings[0]
                    .evidence
                    .iter()
                    .any(|e| e.starts_with("exgate explain ranks: "))
            );
        }
    }

    #[test]
    fn a_namespace_where_every_directory_is_missing_proves_nothing() {
        let answers: Vec<ProbeAnswer> = PATHS
            .iter()
            .map(|(kind, path, _)| ProbeAnswer {
                namespace: "https://www.contoso.com".into(),
                kind: *kind,
                url: format!("https://www.contoso.com/{path}"),
                status: Some(404),
                www_authenticate: Vec::new(),
                diagnostics: None,
                error: None,
            })
            .collect();
        let c = check_probes(&answers, &Org::default());
        assert_eq!(c.status, Status::Fail);
        assert_eq!(ids(&c), ["wrong_endpoint_url"]);
    }

    #[test]
    fn a_complete_challenge_passes_and_each_gap_is_named() {
        let c = check_probes(&[answer(401, &[GOOD, "NTLM"], None)], &Org::default());
        assert_eq!(c.status, Status::Pass);
        let no_uri = GOOD.replace(
            ", authorization_uri=\"https://login.windows.net/common/oauth2/authorize\"",
            "",
        );
        let c = check_probes(&[answer(401, &[&no_uri], None)], &Org::default());
        assert_eq!(ids(&c), ["oauth_not_enabled_onprem"]);
        let c = check_probes(
            &[answer(401, &["NTLM", "Negotiate"], None)],
            &Org::default(),
        );
        assert_eq!(ids(&c), ["hma_vdir_oauth_disabled"]);
        let c = check_probes(&[answer(401, &[], None)], &Org::default());
        assert_eq!(ids(&c), ["bearer_challenge_stripped"]);
    }
}
