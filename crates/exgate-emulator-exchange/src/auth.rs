//! Authentication of EWS and Autodiscover requests the way Exchange does it: Basic, the empty
//! Bearer (HMA) probe, bearer JWTs with `x-ms-diagnostics` on rejection, and the
//! `WWW-Authenticate` challenge profiles of Exchange Online and on-premises servers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

use crate::ConnectionId;
use crate::config::{AuthMethod, ServerConfig, VdirConfig};
use crate::directory::PasswordCheck;
use crate::ntlm;
use crate::state::{Counters, Inner, Server, Site};
use crate::token::{Claims, TokenError};

/// Exchange's first-party application id.
pub use exgate_wire::ids::EXCHANGE_APP_ID;
/// Microsoft Graph's application id.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// The ACS principal used in `trusted_issuers`.
const ACS_PRINCIPAL: &str = "00000001-0000-0000-c000-000000000000";
const TOKEN_TYPES: &str = "app_asserted_user_v1 service_asserted_app_v1";
const EXO_AUTHZ_URI: &str = "https://login.microsoftonline.com/common/oauth2/authorize";
const ONPREM_AUTHZ_URI: &str = "https://login.windows.net/common/oauth2/authorize";
/// Audiences Exchange Online accepts.
pub(crate) const EXO_AUDIENCES: &[&str] = &[
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
    pub(crate) fn budget_key(&self) -> &str {
        match self {
            Principal::App { app_id, .. } => app_id,
            Principal::User { upn, .. } => upn,
        }
    }

    pub(crate) fn tenant_id(&self) -> &str {
        match self {
            Principal::App { tenant_id, .. } | Principal::User { tenant_id, .. } => tenant_id,
        }
    }

    pub(crate) fn app_id(&self) -> Option<&str> {
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
    /// `NTLM` or `Negotiate` with its decoded token (empty when absent or not base64).
    Windows {
        negotiate: bool,
        token: Vec<u8>,
    },
    Malformed,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, [REDACTED])"),
            Credentials::EmptyBearer => f.write_str("EmptyBearer"),
            Credentials::Bearer(_) => f.write_str("Bearer([REDACTED])"),
            Credentials::Windows { negotiate, token } => write!(
                f,
                "Windows({}, type {})",
                if *negotiate { "Negotiate" } else { "NTLM" },
                ntlm::message_type(token).unwrap_or(0)
            ),
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
        Credentials::Windows {
            negotiate: scheme.eq_ignore_ascii_case("negotiate"),
            token: STANDARD.decode(rest.as_bytes()).unwrap_or_default(),
        }
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
            if (oauth || o.bearer_without_uri) && !s.cfg.strip_bearer_challenge {
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
pub(crate) fn norm(s: &str) -> String {
    s.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Authenticates an EWS or Autodiscover request. `Err` is the complete 401/403 response.
/// `conn` identifies the TCP connection (NTLM authenticates connections); without it NTLM
/// cannot complete.
pub(crate) fn authenticate(
    st: &Inner,
    site: Site,
    vdir: Vdir,
    headers: &HeaderMap,
    conn: Option<ConnectionId>,
) -> Result<Principal, Box<Response>> {
    let onprem = match site {
        Site::OnPrem(i) => st.servers.get(i),
        Site::Online => None,
    };
    let unauthorized = |opts: ChallengeOpts, diag: Option<Diag>| {
        reject(st, StatusCode::UNAUTHORIZED, site, vdir, opts, diag)
    };
    let windows =
        onprem.is_some_and(|s| ServerConfig::allows(vdir_of(&s.cfg, vdir), AuthMethod::Ntlm));
    match credentials(headers) {
        Credentials::None if windows => {
            // IIS keeps Windows authentication per connection.
            match conn.and_then(|c| st.ntlm.authenticated(c.0, site)) {
                Some(p) => Ok(p),
                None => Err(unauthorized(PLAIN, None)),
            }
        }
        Credentials::Windows { negotiate, token } if windows => {
            windows_auth(st, site, vdir, conn, negotiate, &token)
        }
        Credentials::None | Credentials::Malformed | Credentials::Windows { .. } => {
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
            password_principal(st, onprem, user, password.expose_secret())
                .ok_or_else(|| unauthorized(PLAIN, None))
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
            Some(s) if s.cfg.hma && !s.cfg.client_profile_enabled => {
                Err(unauthorized(PLAIN, Some(oauth_not_available(&s.host))))
            }
            _ => Err(unauthorized(PLAIN, None)),
        },
        Credentials::Bearer(token) => {
            if let Some(s) = onprem
                && s.cfg.hma
                && !s.cfg.client_profile_enabled
            {
                return Err(unauthorized(TOKEN_ERR, Some(oauth_not_available(&s.host))));
            }
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
                    // A publishing rule forwards both names to another one.
                    let served = match (&s.forwarded_origin, vdir) {
                        (Some(f), _) => f,
                        (None, Vdir::Ews) => &s.origin,
                        (None, Vdir::Autodiscover) => &s.autodiscover_origin,
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

/// The user a right password of `upn` signs in, as Basic does it: the directory's verdict
/// (disabled, locked, expired, ... refuse), and on-premises only users of the server's tenant.
fn password_principal(
    st: &Inner,
    onprem: Option<&Server>,
    upn: String,
    password: &str,
) -> Option<Principal> {
    if st.directory.check_password(&upn, password) != PasswordCheck::Ok {
        return None;
    }
    let domain = upn.rsplit('@').next().unwrap_or_default();
    let tenant_id = st
        .directory
        .tenant(domain)
        .map(|t| t.id.to_ascii_lowercase())
        .unwrap_or_default();
    if let Some(s) = onprem
        && s.tenant_id != tenant_id
    {
        return None;
    }
    Some(Principal::User {
        upn,
        tenant_id,
        app_id: None,
        scopes: Vec::new(),
    })
}

/// The names an on-premises server gives in its NTLM challenge: NetBIOS and DNS names of its
/// tenant's first domain and of the server.
pub(crate) fn server_names(st: &Inner, s: &Server) -> ntlm::ServerNames {
    // The tenant's first domain that is not its initial *.onmicrosoft.com one.
    let domains = st
        .directory
        .tenant(&s.tenant_id)
        .map(|t| t.domains)
        .unwrap_or_default();
    let dns_domain = domains
        .iter()
        .find(|d| !d.ends_with(".onmicrosoft.com"))
        .or(domains.first())
        .cloned()
        .unwrap_or_else(|| s.host.clone());
    let nb_domain = dns_domain
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let nb_computer: String = s.cfg.name.to_ascii_uppercase().chars().take(15).collect();
    let dns_computer = format!("{}.{dns_domain}", s.cfg.name.to_ascii_lowercase());
    ntlm::ServerNames {
        nb_domain,
        nb_computer,
        dns_domain,
        dns_computer,
    }
}

/// The UPNs an NTLM user and domain name may stand for, best first: `user@domain` as is;
/// `DOMAIN\user` or `user` with a DNS or NetBIOS domain of the server's tenant (exact DNS
/// matches first); a bare `user` in each of the tenant's domains.
pub(crate) fn ntlm_upns(st: &Inner, s: &Server, user: &str, domain: &str) -> Vec<String> {
    let (domain, user) = match user.split_once('\\') {
        Some((d, u)) => (d, u),
        None => (domain, user),
    };
    let user = user.trim().to_ascii_lowercase();
    if user.is_empty() {
        return Vec::new();
    }
    if user.contains('@') {
        return vec![user];
    }
    let Some(tenant) = st.directory.tenant(&s.tenant_id) else {
        return Vec::new();
    };
    let domain = domain.trim();
    let exact = tenant
        .domains
        .iter()
        .filter(|d| domain.is_empty() || d.eq_ignore_ascii_case(domain));
    let netbios = tenant.domains.iter().filter(|d| {
        !domain.is_empty()
            && !d.eq_ignore_ascii_case(domain)
            && d.split('.')
                .next()
                .is_some_and(|l| l.eq_ignore_ascii_case(domain))
    });
    exact
        .chain(netbios)
        .map(|d| format!("{user}@{d}"))
        .collect()
}

/// One step of the NTLM handshake on an on-premises vdir with Windows authentication: a
/// NEGOTIATE_MESSAGE is answered with a CHALLENGE_MESSAGE (401), an AUTHENTICATE_MESSAGE on the
/// same connection is verified and authenticates the connection. Anything else is a 401 with
/// the vdir's challenges.
fn windows_auth(
    st: &Inner,
    site: Site,
    vdir: Vdir,
    conn: Option<ConnectionId>,
    negotiate: bool,
    token: &[u8],
) -> Result<Principal, Box<Response>> {
    let fail = || {
        if let Some(c) = conn {
            st.ntlm.forget(c.0);
        }
        reject(st, StatusCode::UNAUTHORIZED, site, vdir, PLAIN, None)
    };
    let Site::OnPrem(i) = site else {
        return Err(fail());
    };
    let Some(server) = st.servers.get(i) else {
        return Err(fail());
    };
    match ntlm::message_type(token) {
        Some(1) => {
            let Some(msg) = ntlm::parse_negotiate(token) else {
                return Err(fail());
            };
            let server_challenge = ntlm::server_challenge();
            let challenge = ntlm::challenge_message(
                msg.flags,
                server_challenge,
                &server_names(st, server),
                ntlm::filetime_now(),
            );
            if let Some(c) = conn {
                st.ntlm.set(
                    c.0,
                    ntlm::ConnState::Challenged {
                        site,
                        vdir,
                        negotiate: token.to_vec(),
                        challenge: challenge.clone(),
                        server_challenge,
                        at: std::time::Instant::now(),
                    },
                );
            }
            let scheme = if negotiate { "Negotiate" } else { "NTLM" };
            let mut resp = (StatusCode::UNAUTHORIZED, "").into_response();
            let h = resp.headers_mut();
            if let Ok(v) =
                HeaderValue::from_str(&format!("{scheme} {}", STANDARD.encode(&challenge)))
            {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
            h.insert(
                "request-id",
                HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("0")),
            );
            Err(Box::new(resp))
        }
        Some(3) => {
            let pending = conn.and_then(|c| st.ntlm.take_challenge(c.0));
            let Some(ntlm::ConnState::Challenged {
                site: csite,
                vdir: cvdir,
                negotiate: type1,
                challenge: type2,
                server_challenge,
                ..
            }) = pending
            else {
                return Err(fail());
            };
            if csite != site || cvdir != vdir {
                return Err(fail());
            }
            let Some(msg) = ntlm::parse_authenticate(token) else {
                return Err(fail());
            };
            let Some((upn, password)) = ntlm_upns(st, server, &msg.user, &msg.domain)
                .into_iter()
                .find_map(|u| st.directory.windows_password(&u).map(|p| (u, p)))
            else {
                return Err(fail());
            };
            let password = password.expose_secret();
            if ntlm::verify(&msg, password, &server_challenge, [&type1, &type2, token]).is_err() {
                return Err(fail());
            }
            let Some(principal) = password_principal(st, Some(server), upn, password) else {
                return Err(fail());
            };
            if let Some(c) = conn {
                st.ntlm.set(
                    c.0,
                    ntlm::ConnState::Authenticated {
                        site,
                        principal: principal.clone(),
                    },
                );
            }
            Ok(principal)
        }
        _ => Err(fail()),
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

/// The mailbox an XOAUTH2 sign-in (SMTP, IMAP) names, when its token passes the checks every
/// Exchange Online protocol makes: signature and times, the tenant's issuer, an Exchange Online
/// audience, and `user=` an Exchange Online mailbox of that tenant. `None` is a refusal.
pub(crate) fn xoauth2_mailbox<'a>(
    st: &'a Inner,
    user: &str,
    token: &SecretString,
) -> Option<(crate::token::Claims, u32, &'a crate::store::Mailbox)> {
    let claims = st.verifier.verify(token.expose_secret()).ok()?;
    let tid = claims.tid.clone().unwrap_or_default().to_ascii_lowercase();
    let iss = claims.iss.clone().unwrap_or_default();
    if !st.verifier.issuer_ok(&iss, &tid) {
        return None;
    }
    let tenant = st.directory.tenant(&tid)?;
    let aud = norm(&claims.audience());
    if !EXO_AUDIENCES.iter().any(|a| norm(a) == aud) {
        return None;
    }
    let i = st.find(user)?;
    let m = st.mailbox(i)?;
    (m.tenant_id.eq_ignore_ascii_case(&tenant.id) && m.provisioned && m.server.is_none())
        .then_some((claims, i, m))
}

/// Whether `claims` give the right to use a protocol on mailbox `i`: delegated with
/// `delegated_scope` and signed in as that mailbox, or app-only with `app_role` and reaching it
/// under the app access rules.
pub(crate) fn protocol_right(
    st: &Inner,
    claims: &crate::token::Claims,
    i: u32,
    m: &crate::store::Mailbox,
    delegated_scope: &str,
    app_role: &str,
) -> bool {
    match claims.scopes() {
        Some(scopes) if !scopes.is_empty() => {
            scopes
                .iter()
                .any(|s| s.eq_ignore_ascii_case(delegated_scope))
                && claims
                    .user_name()
                    .and_then(|u| st.find(&u))
                    .is_some_and(|j| j == i)
        }
        _ => {
            claims
                .roles()
                .iter()
                .any(|r| r.eq_ignore_ascii_case(app_role))
                && st.app_may_reach(&claims.app_id(), m).is_ok()
        }
    }
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
            ("NTLM TlRMTVNTUAAB", "Windows(NTLM, type 0)"),
            ("NTLM TlRMTVNTUAABAAAA", "Windows(NTLM, type 1)"),
            ("Negotiate abc", "Windows(Negotiate, type 0)"),
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
