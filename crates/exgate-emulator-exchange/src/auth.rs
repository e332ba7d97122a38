//! Authentication of EWS and Autodiscover requests the way Exchange does it: Basic, the empty
//! Bearer (HMA) probe, bearer JWTs with `x-ms-diagnostics` on rejection, and the
//! `WWW-Authenticate` challenge profiles of Exchange Online and on-premises servers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{AuthMethod, ServerConfig, VdirConfig};
use crate::directory::PasswordCheck;
use crate::state::{Counters, Inner, Site};
use crate::token::{Claims, TokenError};

/// Exchange's first-party application id.
pub const EXCHANGE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";
/// Microsoft Graph's application id.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// The ACS principal used in `trusted_issuers`.
const ACS_PRINCIPAL: &str = "00000001-0000-0000-c000-000000000000";
const TOKEN_TYPES: &str = "app_asserted_user_v1 service_asserted_app_v1";
const EXO_AUTHZ_URI: &str = "https://login.microsoftonline.com/common/oauth2/authorize";
const ONPREM_AUTHZ_URI: &str = "https://login.windows.net/common/oauth2/authorize";
/// Audiences Exchange Online accepts.
const EXO_AUDIENCES: &[&str] = &[
    "https://outlook.office365.com",
    "https://outlook.office.com",
    EXCHANGE_APP_ID,
];

/// Which virtual directory a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vdir {
    Ews,
    Autodiscover,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// App-only bearer token.
    App {
        app_id: String,
        tenant_id: String,
        roles: Vec<String>,
    },
    /// A user: delegated bearer token (`app_id` set) or Basic (`app_id` none).
    User {
        upn: String,
        tenant_id: String,
        app_id: Option<String>,
        scopes: Vec<String>,
    },
}

impl Principal {
    /// The throttling key: app id for app-only, UPN otherwise.
    pub fn budget_key(&self) -> &str {
        match self {
            Principal::App { app_id, .. } => app_id,
            Principal::User { upn, .. } => upn,
        }
    }

    pub fn tenant_id(&self) -> &str {
        match self {
            Principal::App { tenant_id, .. } | Principal::User { tenant_id, .. } => tenant_id,
        }
    }

    pub fn app_id(&self) -> Option<&str> {
        match self {
            Principal::App { app_id, .. } => Some(app_id),
            Principal::User { app_id, .. } => app_id.as_deref(),
        }
    }
}

/// An `x-ms-diagnostics` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diag {
    pub code: u32,
    pub reason: String,
    pub category: &'static str,
}

impl Diag {
    fn new(code: u32, reason: impl Into<String>, category: &'static str) -> Self {
        Self {
            code,
            reason: reason.into(),
            category,
        }
    }

    fn header(&self) -> HeaderValue {
        let reason: String = self
            .reason
            .chars()
            .map(|c| if c == '"' { '\'' } else { c })
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .collect();
        HeaderValue::from_str(&format!(
            "{};reason=\"{}\";error_category=\"{}\"",
            self.code, reason, self.category
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("2000001"))
    }
}

/// Parsed `Authorization` header. The password and token are held as secrets.
pub(crate) enum Credentials {
    None,
    Basic {
        user: String,
        password: SecretString,
    },
    EmptyBearer,
    Bearer(SecretString),
    Windows,
    Malformed,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, [REDACTED])"),
            Credentials::EmptyBearer => f.write_str("EmptyBearer"),
            Credentials::Bearer(_) => f.write_str("Bearer([REDACTED])"),
            Credentials::Windows => f.write_str("Windows"),
            Credentials::Malformed => f.write_str("Malformed"),
        }
    }
}

pub(crate) fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(v) = v.to_str() else {
        return Credentials::Malformed;
    };
    let v = v.trim();
    let (scheme, rest) = match v.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r.trim()),
        None => (v, ""),
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            Credentials::EmptyBearer
        } else {
            Credentials::Bearer(SecretString::from(rest.to_owned()))
        }
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = STANDARD.decode(rest.as_bytes()) else {
            return Credentials::Malformed;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return Credentials::Malformed;
        };
        match text.split_once(':') {
            Some((u, p)) => Credentials::Basic {
                user: u.to_owned(),
                password: SecretString::from(p.to_owned()),
            },
            None => Credentials::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("ntlm") || scheme.eq_ignore_ascii_case("negotiate") {
        Credentials::Windows
    } else {
        Credentials::Malformed
    }
}

/// What to put in a challenge.
#[derive(Debug, Clone, Copy)]
struct ChallengeOpts {
    /// `error="invalid_token"`.
    error: bool,
    /// Offer Basic (when the endpoint allows it).
    basic: bool,
    /// Force a Bearer challenge without `authorization_uri` (the 4000000 answer).
    bearer_without_uri: bool,
}

fn vdir_of(s: &ServerConfig, vdir: Vdir) -> &VdirConfig {
    match vdir {
        Vdir::Ews => &s.ews,
        Vdir::Autodiscover => &s.autodiscover,
    }
}

fn challenges(st: &Inner, site: Site, vdir: Vdir, o: ChallengeOpts) -> Vec<HeaderValue> {
    let err = if o.error {
        ", error=\"invalid_token\""
    } else {
        ""
    };
    match site {
        Site::Online => {
            let basic = if o.basic { ",Basic Realm=\"\"" } else { "" };
            let v = format!(
                "Bearer client_id=\"{EXCHANGE_APP_ID}\", trusted_issuers=\"{ACS_PRINCIPAL}@*\", token_types=\"{TOKEN_TYPES}\", authorization_uri=\"{EXO_AUTHZ_URI}\"{err}{basic}"
            );
            HeaderValue::from_str(&v).into_iter().collect()
        }
        Site::OnPrem(i) => {
            let Some(s) = st.servers.get(i) else {
                return Vec::new();
            };
            let vd = vdir_of(&s.cfg, vdir);
            let mut out = Vec::new();
            let oauth = ServerConfig::allows(vd, AuthMethod::Oauth);
            if oauth || o.bearer_without_uri {
                let uri = if s.cfg.hma && oauth && !o.bearer_without_uri {
                    format!(", authorization_uri=\"{ONPREM_AUTHZ_URI}\"")
                } else {
                    String::new()
                };
                let v = format!(
                    "Bearer client_id=\"{EXCHANGE_APP_ID}\", trusted_issuers=\"{ACS_PRINCIPAL}@{}\", token_types=\"{TOKEN_TYPES}\"{uri}{err}",
                    s.tenant_id
                );
                out.extend(HeaderValue::from_str(&v));
            }
            if ServerConfig::allows(vd, AuthMethod::Basic) && o.basic {
                out.extend(HeaderValue::from_str(&format!(
                    "Basic realm=\"{}\"",
                    s.host
                )));
            }
            if ServerConfig::allows(vd, AuthMethod::Ntlm) {
                out.push(HeaderValue::from_static("Negotiate"));
                out.push(HeaderValue::from_static("NTLM"));
            }
            out
        }
    }
}

/// An HTTP 401/403 from the authentication layer.
fn reject(
    st: &Inner,
    status: StatusCode,
    site: Site,
    vdir: Vdir,
    opts: ChallengeOpts,
    diag: Option<Diag>,
) -> Box<Response> {
    Counters::bump(&st.counters.auth_failures);
    let mut resp = (status, "").into_response();
    let h = resp.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        for v in challenges(st, site, vdir, opts) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Some(d) = diag {
        h.insert("x-ms-diagnostics", d.header());
    }
    h.insert(
        "request-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("0")),
    );
    h.insert(
        "X-BackEndHttpStatus",
        HeaderValue::from_str(status.as_str()).unwrap_or_else(|_| HeaderValue::from_static("401")),
    );
    Box::new(resp)
}

const PLAIN: ChallengeOpts = ChallengeOpts {
    error: false,
    basic: true,
    bearer_without_uri: false,
};
const TOKEN_ERR: ChallengeOpts = ChallengeOpts {
    error: true,
    basic: true,
    bearer_without_uri: false,
};

/// Normalises an audience or origin for comparison.
fn norm(s: &str) -> String {
    s.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Authenticates an EWS or Autodiscover request. `Err` is the complete 401/403 response.
pub(crate) fn authenticate(
    st: &Inner,
    site: Site,
    vdir: Vdir,
    headers: &HeaderMap,
) -> Result<Principal, Box<Response>> {
    let onprem = match site {
        Site::OnPrem(i) => st.servers.get(i),
        Site::Online => None,
    };
    let unauthorized = |opts: ChallengeOpts, diag: Option<Diag>| {
        reject(st, StatusCode::UNAUTHORIZED, site, vdir, opts, diag)
    };
    match credentials(headers) {
        Credentials::None | Credentials::Malformed | Credentials::Windows => {
            Err(unauthorized(PLAIN, None))
        }
        Credentials::Basic { user, password } => {
            let user = user.trim().to_ascii_lowercase();
            if let Some(s) = onprem {
                if !ServerConfig::allows(vdir_of(&s.cfg, vdir), AuthMethod::Basic) {
                    return Err(unauthorized(PLAIN, None));
                }
            } else {
                let domain = user.rsplit('@').next().unwrap_or_default();
                match st.directory.tenant(domain) {
                    Some(t) if !t.basic_auth => {
                        // Basic is off for the organisation: only the Bearer challenge.
                        return Err(unauthorized(
                            ChallengeOpts {
                                basic: false,
                                ..PLAIN
                            },
                            None,
                        ));
                    }
                    Some(_) => {}
                    None => return Err(unauthorized(PLAIN, None)),
                }
            }
            match st.directory.check_password(&user, password.expose_secret()) {
                PasswordCheck::Ok => {
                    let domain = user.rsplit('@').next().unwrap_or_default();
                    let tenant_id = st
                        .directory
                        .tenant(domain)
                        .map(|t| t.id.to_ascii_lowercase())
                        .unwrap_or_default();
                    if let Some(s) = onprem
                        && s.tenant_id != tenant_id
                    {
                        return Err(unauthorized(PLAIN, None));
                    }
                    Ok(Principal::User {
                        upn: user,
                        tenant_id,
                        app_id: None,
                        scopes: Vec::new(),
                    })
                }
                _ => Err(unauthorized(PLAIN, None)),
            }
        }
        Credentials::EmptyBearer => match onprem {
            Some(s) if !ServerConfig::allows(vdir_of(&s.cfg, vdir), AuthMethod::Oauth) => {
                Err(unauthorized(
                    ChallengeOpts {
                        bearer_without_uri: true,
                        ..PLAIN
                    },
                    Some(oauth_not_available(&s.host)),
                ))
            }
            _ => Err(unauthorized(PLAIN, None)),
        },
        Credentials::Bearer(token) => {
            if let Some(s) = onprem
                && (!s.cfg.hma || !ServerConfig::allows(vdir_of(&s.cfg, vdir), AuthMethod::Oauth))
            {
                return Err(unauthorized(
                    ChallengeOpts {
                        bearer_without_uri: true,
                        ..TOKEN_ERR
                    },
                    Some(oauth_not_available(&s.host)),
                ));
            }
            let claims = match st.verifier.verify(token.expose_secret()) {
                Ok(c) => c,
                Err(e) => return Err(unauthorized(TOKEN_ERR, Some(token_error_diag(e)))),
            };
            let tid = claims.tid.clone().unwrap_or_default().to_ascii_lowercase();
            let iss = claims.iss.clone().unwrap_or_default();
            if !st.verifier.issuer_ok(&iss, &tid) {
                return Err(unauthorized(
                    TOKEN_ERR,
                    Some(Diag::new(
                        2000001,
                        format!("The token has an invalid issuer '{iss}'."),
                        "invalid_token",
                    )),
                ));
            }
            let tenant = st.directory.tenant(&tid);
            let tenant_ok = match (tenant, onprem) {
                (None, _) => false,
                (Some(t), Some(s)) => t.id.eq_ignore_ascii_case(&s.tenant_id),
                (Some(_), None) => true,
            };
            if !tenant_ok {
                return Err(unauthorized(
                    TOKEN_ERR,
                    Some(Diag::new(
                        2000001,
                        format!("The tenant for tenant guid '{tid}' does not exist."),
                        "invalid_tenant",
                    )),
                ));
            }
            let aud = claims.audience();
            match onprem {
                None => {
                    if !EXO_AUDIENCES.iter().any(|a| norm(a) == norm(&aud)) {
                        return Err(unauthorized(
                            TOKEN_ERR,
                            Some(Diag::new(
                                2000003,
                                format!("The audience claim value is invalid '{aud}'."),
                                "invalid_resource",
                            )),
                        ));
                    }
                }
                Some(s) => {
                    let served = match vdir {
                        Vdir::Ews => &s.origin,
                        Vdir::Autodiscover => &s.autodiscover_origin,
                    };
                    // Behind TLS offloading the server sees plain http.
                    let seen = if s.cfg.tls_offload {
                        served.replacen("https://", "http://", 1)
                    } else {
                        served.clone()
                    };
                    if norm(&aud) != norm(&seen) {
                        return Err(unauthorized(
                            TOKEN_ERR,
                            Some(Diag::new(
                                2000003,
                                format!(
                                    "The hostname component of the audience claim value is invalid. Expected '{}'. Actual '{}'.",
                                    aud.trim_end_matches('/'),
                                    seen
                                ),
                                "invalid_resource",
                            )),
                        ));
                    }
                }
            }
            permissions(st, site, vdir, &claims, tid, onprem.is_some())
        }
    }
}

fn permissions(
    st: &Inner,
    site: Site,
    vdir: Vdir,
    claims: &Claims,
    tid: String,
    onprem: bool,
) -> Result<Principal, Box<Response>> {
    let app_id = claims.app_id();
    let no_perms = || {
        reject(
            st,
            StatusCode::UNAUTHORIZED,
            site,
            vdir,
            TOKEN_ERR,
            Some(Diag::new(
                2000008,
                "The token contains no permissions, or permissions can not be understood.",
                "invalid_grant",
            )),
        )
    };
    let not_enough = || {
        reject(
            st,
            StatusCode::FORBIDDEN,
            site,
            vdir,
            TOKEN_ERR,
            Some(Diag::new(
                2000008,
                "The token contains not enough scope to make this call.",
                "invalid_grant",
            )),
        )
    };
    match claims.scopes() {
        Some(scopes) => {
            if scopes.is_empty() {
                return Err(no_perms());
            }
            if !scopes.iter().any(|s| s == "EWS.AccessAsUser.All") {
                return Err(not_enough());
            }
            let upn = claims.user_name().unwrap_or_default();
            let known = st
                .find(&upn)
                .and_then(|i| st.mailbox(i))
                .is_some_and(|m| m.tenant_id == tid);
            if !known {
                return Err(reject(
                    st,
                    StatusCode::UNAUTHORIZED,
                    site,
                    vdir,
                    TOKEN_ERR,
                    Some(Diag::new(
                        2000005,
                        "The user specified by the user-context in the token does not exist.",
                        "invalid_user",
                    )),
                ));
            }
            Ok(Principal::User {
                upn,
                tenant_id: tid,
                app_id: Some(app_id),
                scopes,
            })
        }
        None => {
            let roles = claims.roles();
            if onprem {
                // App-only tokens reach on-premises Exchange only through a partner application
                // with app-only permissions, which hybrid setups do not have.
                return Err(reject(
                    st,
                    StatusCode::UNAUTHORIZED,
                    site,
                    vdir,
                    TOKEN_ERR,
                    Some(Diag::new(
                        2000008,
                        format!(
                            "The token should have valid permissions or linked account associated with partner application '{app_id}'."
                        ),
                        "invalid_grant",
                    )),
                ));
            }
            if st.org(&tid).app_only_requires_certificate {
                let presented = claims.app_auth_strength().unwrap_or(0);
                if presented < 2 {
                    return Err(reject(
                        st,
                        StatusCode::UNAUTHORIZED,
                        site,
                        vdir,
                        TOKEN_ERR,
                        Some(Diag::new(
                            2000001,
                            format!(
                                "The access token is acquired using an authentication method that is too weak to allow access for this application. Presented auth strength was {presented}, required is 2."
                            ),
                            "invalid_token",
                        )),
                    ));
                }
            }
            if roles.is_empty() {
                return Err(no_perms());
            }
            if !roles.iter().any(|r| r == "full_access_as_app") {
                return Err(not_enough());
            }
            Ok(Principal::App {
                app_id,
                tenant_id: tid,
                roles,
            })
        }
    }
}

fn oauth_not_available(host: &str) -> Diag {
    Diag::new(
        4000000,
        format!("Flighting is not enabled for domain '{host}'."),
        "oauth_not_available",
    )
}

fn token_error_diag(e: TokenError) -> Diag {
    match e {
        TokenError::Malformed => Diag::new(
            2000001,
            "OAuth token submitted with the request cannot be parsed.",
            "invalid_token",
        ),
        TokenError::BadSignature => Diag::new(
            2000001,
            "The token signature is invalid or the signing key is unknown.",
            "invalid_token",
        ),
        TokenError::Expired => Diag::new(2000001, "The token has expired.", "invalid_token"),
        TokenError::NotYetValid => {
            Diag::new(2000001, "The token is not yet valid.", "invalid_token")
        }
    }
}

/// Outcome of Graph token checks.
#[derive(Debug)]
pub(crate) enum GraphAuthError {
    /// 401 InvalidAuthenticationToken with this message.
    Invalid(&'static str),
    /// 401 NoPermissionsInAccessToken.
    NoPermissions,
}

/// Authenticates a Graph request: returns the principal, or the Graph error to answer.
pub(crate) fn authenticate_graph(
    st: &Inner,
    headers: &HeaderMap,
) -> Result<Principal, GraphAuthError> {
    let token = match credentials(headers) {
        Credentials::Bearer(t) => t,
        _ => return Err(GraphAuthError::Invalid("Access token is empty.")),
    };
    let claims = st.verifier.verify(token.expose_secret()).map_err(|e| {
        GraphAuthError::Invalid(match e {
            TokenError::Malformed => "CompactToken parsing failed with error code: 80049217",
            TokenError::BadSignature => "Access token validation failure.",
            TokenError::Expired | TokenError::NotYetValid => {
                "Access token has expired or is not yet valid."
            }
        })
    })?;
    let aud = norm(&claims.audience());
    if aud != "https://graph.microsoft.com" && aud != GRAPH_APP_ID {
        return Err(GraphAuthError::Invalid(
            "Access token validation failure. Invalid audience.",
        ));
    }
    let tid = claims.tid.clone().unwrap_or_default().to_ascii_lowercase();
    let iss = claims.iss.clone().unwrap_or_default();
    if !st.verifier.issuer_ok(&iss, &tid) || st.directory.tenant(&tid).is_none() {
        return Err(GraphAuthError::Invalid(
            "Access token validation failure. Invalid issuer.",
        ));
    }
    let app_id = claims.app_id();
    match claims.scopes() {
        Some(scopes) if !scopes.is_empty() => Ok(Principal::User {
            upn: claims.user_name().unwrap_or_default(),
            tenant_id: tid,
            app_id: Some(app_id),
            scopes,
        }),
        _ => {
            let roles = claims.roles();
            if roles.is_empty() {
                return Err(GraphAuthError::NoPermissions);
            }
            Ok(Principal::App {
                app_id,
                tenant_id: tid,
                roles,
            })
        }
    }
}

/// Graph's 401 challenge header.
pub(crate) fn graph_challenge() -> HeaderValue {
    HeaderValue::from_static(
        "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
    )
}

/// Counts a Graph authentication failure.
pub(crate) fn count_failure(st: &Inner) {
    Counters::bump(&st.counters.auth_failures);
}

/// A 403 from the EWS front door (EWS disabled, app not allow-listed).
pub(crate) fn forbidden(st: &Inner) -> Response {
    Counters::bump(&st.counters.auth_failures);
    let mut r = (StatusCode::FORBIDDEN, "").into_response();
    r.headers_mut().insert(
        "request-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("0")),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_redacts_password_and_token() {
        let mut h = HeaderMap::new();
        let basic = STANDARD.encode("adele@contoso.com:CANARY-PW-91");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).expect("header"),
        );
        let c = credentials(&h);
        let text = format!("{c:?}");
        assert!(
            text.contains("adele@contoso.com") && !text.contains("CANARY"),
            "{text}"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer CANARY.TOKEN.91"),
        );
        let text = format!("{:?}", credentials(&h));
        assert!(
            text.starts_with("Bearer(") && !text.contains("CANARY"),
            "{text}"
        );
    }

    #[test]
    fn authorization_schemes_are_recognised_case_insensitively() {
        let mut h = HeaderMap::new();
        for (v, want) in [
            ("bearer", "EmptyBearer"),
            ("BEARER   ", "EmptyBearer"),
            ("NTLM TlRMTVNTUAAB", "Windows"),
            ("Negotiate abc", "Windows"),
            ("Basic !!!", "Malformed"),
            ("Digest x", "Malformed"),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            assert_eq!(format!("{:?}", credentials(&h)), want, "{v}");
        }
    }

    #[test]
    fn diagnostics_header_survives_hostile_reasons() {
        let d = Diag::new(2000003, "aud \"x\"\r\n\u{7f}é", "invalid_resource");
        let v = d.header();
        assert_eq!(
            v.to_str().expect("ascii"),
            "2000003;reason=\"aud 'x'\";error_category=\"invalid_resource\""
        );
    }
}
