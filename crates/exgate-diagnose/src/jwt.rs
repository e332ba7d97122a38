//! Decoding and linting of JSON Web Tokens (access tokens of Entra ID).
//!
//! Decode only: signatures of Microsoft tokens are never verified (Graph and Exchange tokens
//! carry a header `nonce` that makes them unverifiable by third parties anyway). The raw token is
//! never stored: [`DecodedJwt`] keeps the header and the claims, not the signature.
//!
//! [`lint`] checks the claims against the URL the token is (or will be) sent to: audience host and
//! scheme, `roles` versus `scp`, the permissions Exchange and Graph need, `exp`/`nbf` with clock
//! skew, `tid`, `appidacr`, `ver`. The caller passes "now"; this module reads no clock.

use serde::{Deserialize, Serialize};

pub use exgate_wire::ids::{EXCHANGE_APP_ID, GRAPH_APP_ID};
pub use exgate_wire::jwt::{DecodedJwt, JwtError, TokenClaims, decode, looks_like_jwt};
/// Default allowed clock skew in seconds.
pub const DEFAULT_SKEW_SECS: i64 = 300;

/// What kind of resource a URL or audience names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    ExchangeOnline,
    Graph,
    AadGraph,
    TokenEndpoint,
    /// Another host: an on-premises Exchange (or unknown) URL; `(scheme, host)`.
    Host(String, String),
    Unknown,
}

fn host_kind(host: &str) -> Option<Resource> {
    let h = host.to_ascii_lowercase();
    if h == "outlook.office365.com"
        || h == "outlook.office.com"
        || h.ends_with(".outlook.com")
        || h == "outlook.com"
        || h == "ps.outlook.com"
    {
        Some(Resource::ExchangeOnline)
    } else if h == "graph.microsoft.com" {
        Some(Resource::Graph)
    } else if h == "graph.windows.net" {
        Some(Resource::AadGraph)
    } else if h.starts_with("login.") || h == "sts.windows.net" {
        Some(Resource::TokenEndpoint)
    } else {
        None
    }
}

fn classify_audience(aud: &str) -> Resource {
    let a = aud.trim().to_ascii_lowercase();
    if a == EXCHANGE_APP_ID || a.starts_with("00000002-0000-0ff1-ce00-000000000000/") {
        return Resource::ExchangeOnline;
    }
    if a == GRAPH_APP_ID {
        return Resource::Graph;
    }
    if a == "00000002-0000-0000-c000-000000000000" {
        return Resource::AadGraph;
    }
    match url::Url::parse(&a) {
        Ok(u) => match u.host_str() {
            Some(h) => host_kind(h).unwrap_or_else(|| Resource::Host(u.scheme().into(), h.into())),
            None => Resource::Unknown,
        },
        Err(_) => Resource::Unknown,
    }
}

fn classify_url(u: &url::Url) -> Resource {
    match u.host_str() {
        Some(h) => host_kind(h).unwrap_or_else(|| Resource::Host(u.scheme().into(), h.into())),
        None => Resource::Unknown,
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Likely to cause failures in some set-ups.
    Warning,
    /// The token will be rejected for this target.
    Error,
}

/// One lint result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Stable finding id (`aud_scheme_mismatch`, `expired`, …).
    pub code: String,
    /// The cause id this points to, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Plain-words message.
    pub message: String,
}

fn finding(severity: Severity, code: &str, cause: Option<&str>, message: String) -> Finding {
    Finding {
        severity,
        code: code.into(),
        cause: cause.map(str::to_owned),
        message,
    }
}

/// What a token is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LintContext {
    /// The URL the token is sent to.
    pub url: Option<String>,
    /// "Now", in seconds since the epoch; expiry checks are skipped without it.
    pub now: Option<i64>,
    /// Allowed clock skew in seconds ([`DEFAULT_SKEW_SECS`] when `None`).
    pub skew_secs: Option<i64>,
    /// Whether the caller runs app-only (client credentials); `None` when unknown.
    pub app_only: Option<bool>,
    /// The expected tenant id.
    pub tenant: Option<String>,
    /// The mailbox the call targets.
    pub mailbox: Option<String>,
    /// The protocol the token is used with, when the URL does not tell (IMAP, POP, SMTP).
    #[serde(default)]
    pub protocol: Option<crate::Protocol>,
}

/// The permission a mail protocol needs: the application role (app-only) and the delegated
/// scope, both of Office 365 Exchange Online.
pub fn protocol_permissions(p: crate::Protocol) -> Option<(&'static str, &'static str)> {
    match p {
        crate::Protocol::Smtp => Some(("SMTP.SendAsApp", "SMTP.Send")),
        crate::Protocol::Imap => Some(("IMAP.AccessAsApp", "IMAP.AccessAsUser.All")),
        crate::Protocol::Pop => Some(("POP.AccessAsApp", "POP.AccessAsUser.All")),
        crate::Protocol::Ews => Some(("full_access_as_app", "EWS.AccessAsUser.All")),
        _ => None,
    }
}

/// One check made on a token the caller holds, and what it showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCheck {
    /// What was checked: `audience`, `permissions`, `lifetime`, `user`, `tenant`.
    pub name: String,
    /// Whether the token passed it.
    pub ok: bool,
    /// What the token shows.
    pub detail: String,
}

/// The checks [`lint`] made on `c`, each with its outcome, for reports that say which checks
/// ran and what each showed.
pub fn checks(c: &TokenClaims, ctx: &LintContext, findings: &[Finding]) -> Vec<TokenCheck> {
    let failed = |codes: &[&str]| {
        findings
            .iter()
            .filter(|f| f.severity == Severity::Error || f.code == "user_mismatch")
            .find(|f| {
                codes.iter().any(|x| {
                    f.code == *x
                        || (x.ends_with('*') && f.code.starts_with(x.trim_end_matches('*')))
                })
            })
    };
    let mut out = Vec::new();
    let mut push = |name: &str, f: Option<&Finding>, ok_detail: String| {
        out.push(TokenCheck {
            name: name.into(),
            ok: f.is_none(),
            detail: f.map_or(ok_detail, |f| f.message.clone()),
        });
    };
    push(
        "audience",
        failed(&["aud_*"]),
        format!("aud={}", c.aud.as_deref().unwrap_or("-")),
    );
    push(
        "permissions",
        failed(&["no_permissions", "scp_without_roles", "missing_*"]),
        if c.roles.is_empty() {
            format!("scp={}", c.scp.join(" "))
        } else {
            format!("roles={}", c.roles.join(","))
        },
    );
    if let (Some(now), Some(exp)) = (ctx.now, c.exp) {
        push(
            "lifetime",
            failed(&["expired", "not_yet_valid"]),
            format!("valid for {} s more", exp.saturating_sub(now)),
        );
    }
    if ctx.mailbox.is_some() && c.upn.is_some() {
        push(
            "user",
            failed(&["user_mismatch"]),
            format!("upn={}", c.upn.as_deref().unwrap_or("-")),
        );
    }
    out
}

fn has_role(list: &[String], pred: impl Fn(&str) -> bool) -> bool {
    list.iter().any(|r| pred(r))
}

/// Lints typed claims against a target.
pub fn lint(c: &TokenClaims, ctx: &LintContext) -> Vec<Finding> {
    use Severity::{Error, Info, Warning};
    let mut out = Vec::new();
    let target = ctx.url.as_deref().and_then(|u| url::Url::parse(u).ok());
    let target_kind = target.as_ref().map(classify_url);
    let path = target
        .as_ref()
        .map(|u| u.path().to_ascii_lowercase())
        .unwrap_or_default();
    let is_ews = path.contains("/ews/");
    let aud_kind = c.aud.as_deref().map(classify_audience);

    // Audience against the target.
    if let (Some(aud), Some(aud_kind), Some(tk)) = (c.aud.as_deref(), &aud_kind, &target_kind) {
        match (aud_kind, tk) {
            (
                Resource::Graph | Resource::AadGraph,
                Resource::ExchangeOnline | Resource::Host(..),
            ) => {
                out.push(finding(
                    Error,
                    "aud_graph_on_exchange",
                    Some("graph_permission_instead_of_ews"),
                    format!(
                        "the token is for Microsoft Graph (aud {aud}) but is sent to Exchange; EWS needs a token for https://outlook.office365.com with Office 365 Exchange Online permissions"
                    ),
                ));
            }
            (Resource::ExchangeOnline | Resource::Host(..), Resource::Graph) => {
                out.push(finding(
                    Error,
                    "aud_exchange_on_graph",
                    Some("wrong_audience"),
                    format!(
                        "the token is for Exchange (aud {aud}) but is sent to Microsoft Graph; request https://graph.microsoft.com/.default"
                    ),
                ));
            }
            (Resource::Host(as_, ah), Resource::Host(ts, th)) => {
                if ah.eq_ignore_ascii_case(th) {
                    if as_ != ts {
                        out.push(finding(
                            Error,
                            "aud_scheme_mismatch",
                            Some(if as_ == "https" && ts == "http" {
                                "ssl_offloading"
                            } else {
                                "wrong_audience"
                            }),
                            format!(
                                "the audience is {as_}://{ah} but the request goes to {ts}://{th}: Exchange compares scheme and host, so a TLS-offloading device in front of it breaks OAuth"
                            ),
                        ));
                    }
                } else {
                    out.push(finding(
                        Error,
                        "aud_host_mismatch",
                        Some("wrong_audience"),
                        format!(
                            "the audience host {ah} differs from the host the token is sent to ({th}); request the token for the exact URL clients call"
                        ),
                    ));
                }
            }
            (Resource::ExchangeOnline, Resource::ExchangeOnline)
            | (Resource::Graph, Resource::Graph)
            | (Resource::ExchangeOnline, Resource::Host(..)) => {}
            (_, Resource::TokenEndpoint | Resource::Unknown) => {}
            (_, _) => {
                out.push(finding(
                    Error,
                    "aud_other",
                    Some("wrong_audience"),
                    format!("the token audience {aud} is not the resource it is sent to"),
                ));
            }
        }
    }
    if c.aud.is_none() {
        out.push(finding(
            Error,
            "aud_missing",
            Some("token_malformed"),
            "the token has no aud claim".into(),
        ));
    }

    // Permissions.
    let app_only_token = c.is_app_only();
    let to_exchange = matches!(
        target_kind,
        Some(Resource::ExchangeOnline) | Some(Resource::Host(..))
    ) || (target_kind.is_none()
        && matches!(aud_kind, Some(Resource::ExchangeOnline)));
    let to_graph = matches!(target_kind, Some(Resource::Graph))
        || (target_kind.is_none() && matches!(aud_kind, Some(Resource::Graph)));
    let graph_mail = to_graph
        && (path.contains("/messages") || path.contains("/mail") || path.contains("sendmail"));
    let mail_protocol = ctx.protocol.filter(|p| {
        matches!(
            p,
            crate::Protocol::Smtp | crate::Protocol::Imap | crate::Protocol::Pop
        )
    });
    if let Some(p) = mail_protocol
        && let Some((role, scope)) = protocol_permissions(p)
    {
        let name = format!("{p:?}").to_ascii_uppercase();
        if matches!(aud_kind, Some(Resource::Graph) | Some(Resource::AadGraph)) {
            out.push(finding(
                Error,
                "aud_graph_on_mail",
                Some("wrong_audience"),
                format!(
                    "the token is for Microsoft Graph (aud {}) but {name} needs a token for https://outlook.office365.com/.default",
                    c.aud.as_deref().unwrap_or("-")
                ),
            ));
        }
        if app_only_token
            && !c.roles.is_empty()
            && !has_role(&c.roles, |r| r.eq_ignore_ascii_case(role))
        {
            out.push(finding(
                Error,
                "missing_protocol_role",
                Some("missing_application_permission"),
                format!(
                    "app-only {name} needs the {role} application permission of Office 365 Exchange Online; the token has roles={}",
                    c.roles.join(",")
                ),
            ));
        } else if !app_only_token
            && !c.scp.is_empty()
            && !has_role(&c.scp, |s| s.eq_ignore_ascii_case(scope))
        {
            out.push(finding(
                Error,
                "missing_protocol_scope",
                Some("missing_permission"),
                format!(
                    "delegated {name} needs the {scope} scope of Office 365 Exchange Online; the token has scp={}",
                    c.scp.join(" ")
                ),
            ));
        }
    }
    if c.roles.is_empty() && c.scp.is_empty() {
        out.push(finding(
            Error,
            "no_permissions",
            Some(if ctx.app_only == Some(false) {
                "missing_permission"
            } else {
                "missing_application_permission"
            }),
            "the token has neither roles (application permissions) nor scp (delegated permissions): grant the permission and admin consent, then get a new token".into(),
        ));
    } else if !c.scp.is_empty() && c.roles.is_empty() && ctx.app_only == Some(true) {
        out.push(finding(
            Error,
            "scp_without_roles",
            Some("delegated_instead_of_application"),
            format!(
                "the app runs app-only but the token carries delegated scopes (scp={}) and no roles: configure Application permissions, not Delegated ones",
                c.scp.join(" ")
            ),
        ));
    } else if !c.roles.is_empty() {
        let ews_ok = has_role(&c.roles, |r| r.eq_ignore_ascii_case("full_access_as_app"));
        let aud_exchange = matches!(
            aud_kind,
            Some(Resource::ExchangeOnline) | Some(Resource::Host(..))
        );
        if to_exchange
            && aud_exchange
            && (is_ews || (target_kind.is_none() && mail_protocol.is_none()))
            && !ews_ok
        {
            out.push(finding(
                Error,
                "missing_full_access_as_app",
                Some("missing_application_permission"),
                format!(
                    "app-only EWS needs the full_access_as_app role of Office 365 Exchange Online; the token has roles={}",
                    c.roles.join(",")
                ),
            ));
        }
        if graph_mail && !has_role(&c.roles, |r| r.starts_with("Mail.")) {
            out.push(finding(
                Error,
                "missing_mail_role",
                Some("missing_application_permission"),
                format!(
                    "Graph mail calls need a Mail.* application role; the token has roles={}",
                    c.roles.join(",")
                ),
            ));
        }
    } else {
        // Delegated token.
        if to_exchange
            && is_ews
            && !has_role(&c.scp, |s| {
                s.eq_ignore_ascii_case("EWS.AccessAsUser.All")
                    || s.eq_ignore_ascii_case("full_access_as_user")
            })
        {
            out.push(finding(
                Error,
                "missing_ews_scope",
                Some("missing_permission"),
                format!(
                    "delegated EWS needs the EWS.AccessAsUser.All scope; the token has scp={}",
                    c.scp.join(" ")
                ),
            ));
        }
        if graph_mail && !has_role(&c.scp, |s| s.starts_with("Mail.")) {
            out.push(finding(
                Error,
                "missing_mail_scope",
                Some("missing_permission"),
                format!(
                    "Graph mail calls need a Mail.* scope; the token has scp={}",
                    c.scp.join(" ")
                ),
            ));
        }
        if let (Some(mbx), Some(upn)) = (ctx.mailbox.as_deref(), c.upn.as_deref())
            && !mbx.eq_ignore_ascii_case(upn)
        {
            out.push(finding(
                Warning,
                "user_mismatch",
                Some("token_user_mismatch"),
                format!(
                    "the delegated token is for {upn} but the mailbox is {mbx}: a delegated token acts as its user"
                ),
            ));
        }
    }

    // Time window.
    let skew = ctx.skew_secs.unwrap_or(DEFAULT_SKEW_SECS);
    if let Some(now) = ctx.now {
        if let Some(exp) = c.exp {
            if now > exp.saturating_add(skew) {
                out.push(finding(
                    Error,
                    "expired",
                    Some("token_expired"),
                    format!(
                        "the token expired {} s before now; get a new one (tokens live about an hour)",
                        now.saturating_sub(exp)
                    ),
                ));
            } else if now > exp.saturating_sub(300) {
                out.push(finding(
                    Warning,
                    "expires_soon",
                    Some("token_near_expiry"),
                    format!(
                        "the token expires in {} s; refresh tokens minutes before expiry, not seconds",
                        exp.saturating_sub(now)
                    ),
                ));
            }
        }
        if let Some(nbf) = c.nbf
            && nbf > now.saturating_add(skew)
        {
            out.push(finding(
                Error,
                "not_yet_valid",
                Some("clock_skew"),
                format!(
                    "the token is valid only from {} s in the future: the clocks of this host and Entra ID differ; sync the clock (NTP)",
                    nbf.saturating_sub(now)
                ),
            ));
        }
    }
    if c.exp.is_none() {
        out.push(finding(
            Warning,
            "exp_missing",
            None,
            "the token has no exp claim".into(),
        ));
    }

    // Tenant, client authentication strength, version.
    if let (Some(want), Some(tid)) = (ctx.tenant.as_deref(), c.tid.as_deref())
        && want.len() == 36
        && !want.eq_ignore_ascii_case(tid)
    {
        out.push(finding(
            Warning,
            "tid_mismatch",
            None,
            format!("the token was issued by tenant {tid}, not by the expected tenant {want}"),
        ));
    }
    if app_only_token
        && c.appidacr.as_deref() == Some("1")
        && to_exchange
        && matches!(
            aud_kind,
            Some(Resource::ExchangeOnline) | Some(Resource::Host(..))
        )
    {
        out.push(finding(
            Info,
            "secret_strength",
            Some("secret_instead_of_certificate"),
            "the app authenticated with a client secret (appidacr=1); resources that require a certificate (strength 2) reject this token".into(),
        ));
    }
    if app_only_token && c.appidacr.as_deref() == Some("0") {
        out.push(finding(
            Warning,
            "public_client_app_only",
            None,
            "appidacr=0 (public client) on an app-only token is unusual".into(),
        ));
    }
    if c.ver.as_deref() == Some("2.0") && matches!(aud_kind, Some(Resource::ExchangeOnline)) {
        out.push(finding(
            Info,
            "v2_exchange",
            None,
            "Exchange Online tokens are normally v1.0; a v2.0 token for Exchange is unusual".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn token(claims: serde_json::Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","x5t":"abc"}"#);
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{h}.{p}.c2lnbmF0dXJl")
    }

    #[test]
    fn decodes_and_types_claims() {
        let t = token(
            serde_json::json!({"aud":"https://outlook.office365.com","roles":["full_access_as_app"],"appidacr":"2","exp":1700003900.0,"ver":"1.0","tid":"t"}),
        );
        assert!(looks_like_jwt(&t));
        let c = TokenClaims::from_token(&t).unwrap();
        assert_eq!(c.exp, Some(1700003900));
        assert!(c.is_app_only());
        assert!(
            lint(
                &c,
                &LintContext {
                    url: Some("https://outlook.office365.com/EWS/Exchange.asmx".into()),
                    now: Some(1700000000),
                    ..Default::default()
                }
            )
            .iter()
            .all(|f| f.severity != Severity::Error)
        );
    }

    #[test]
    fn decode_errors() {
        assert_eq!(decode("abc"), Err(JwtError::Shape { parts: 1 }));
        assert_eq!(decode("a.b.c.d.e"), Err(JwtError::Encrypted));
        assert_eq!(decode("!!.eyJ.x"), Err(JwtError::Base64 { part: "header" }));
    }

    fn codes(c: &TokenClaims, ctx: &LintContext) -> Vec<String> {
        lint(c, ctx).into_iter().map(|f| f.code).collect()
    }

    #[test]
    fn audience_scheme_and_graph() {
        let c = TokenClaims {
            aud: Some("https://mail.contoso.com".into()),
            scp: vec!["EWS.AccessAsUser.All".into()],
            upn: Some("a@contoso.com".into()),
            ..Default::default()
        };
        let ctx = LintContext {
            url: Some("http://mail.contoso.com/EWS/Exchange.asmx".into()),
            ..Default::default()
        };
        assert!(codes(&c, &ctx).contains(&"aud_scheme_mismatch".to_string()));
        let g = TokenClaims {
            aud: Some("https://graph.microsoft.com".into()),
            roles: vec!["Mail.Read".into()],
            ..Default::default()
        };
        let ctx = LintContext {
            url: Some("https://outlook.office365.com/EWS/Exchange.asmx".into()),
            ..Default::default()
        };
        let found = lint(&g, &ctx);
        assert!(
            found
                .iter()
                .any(|f| f.cause.as_deref() == Some("graph_permission_instead_of_ews"))
        );
    }

    #[test]
    fn roles_scp_and_time() {
        let c = TokenClaims {
            aud: Some("https://outlook.office365.com".into()),
            scp: vec!["Mail.Read".into()],
            exp: Some(1000),
            nbf: Some(5000),
            ..Default::default()
        };
        let ctx = LintContext {
            app_only: Some(true),
            now: Some(2000),
            ..Default::default()
        };
        let got = codes(&c, &ctx);
        assert!(got.contains(&"scp_without_roles".to_string()));
        assert!(got.contains(&"expired".to_string()));
        assert!(got.contains(&"not_yet_valid".to_string()));
        let near = TokenClaims {
            exp: Some(2100),
            ..c.clone()
        };
        assert!(codes(&near, &ctx).contains(&"expires_soon".to_string()));
    }

    #[test]
    fn debug_shows_no_signature() {
        let t = token(serde_json::json!({"aud":"x"}));
        let d = decode(&t).unwrap();
        assert!(!format!("{d:?}").contains("c2lnbmF0dXJl"));
    }
}
