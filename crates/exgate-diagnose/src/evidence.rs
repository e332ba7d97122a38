//! The evidence model: what was tried, what came back, and what is known around it.
//!
//! Fill it field by field (every field is public and optional), with the builder methods, or from
//! text with [`Evidence::from_text`]. Raw credentials are never stored: bearer tokens are reduced
//! to their claims ([`TokenClaims`]) and free text is redacted on the way in.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::jwt::{self, TokenClaims};
use crate::parse::diagnostics::{MsDiagnostic, parse_ms_diagnostics};
use crate::parse::http::{RawRequest, parse_raw_http};
use crate::parse::json::{EntraError, GraphError, entra_from_value, graph_from_value};
use crate::parse::mail::{MailReply, parse_replies};
use crate::parse::soap::{EwsError, parse_soap};
use crate::parse::www_authenticate::{Challenge, parse_challenges};
use crate::redact::{TokenMode, redact_text};

/// The protocol or endpoint that was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The Entra ID token (or authorize) endpoint.
    TokenEndpoint,
    /// Microsoft Graph.
    Graph,
    /// Exchange Web Services.
    Ews,
    /// Autodiscover (POX, SOAP or JSON).
    Autodiscover,
    /// IMAP.
    Imap,
    /// POP3.
    Pop,
    /// SMTP submission.
    Smtp,
    /// Anything else (REST, MAPI/HTTP, ActiveSync, …).
    Other,
}

/// Where the mailbox lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// Exchange Online (Microsoft 365).
    ExchangeOnline,
    /// Exchange Server on-premises.
    OnPremises,
    /// Exchange hybrid (on-premises with Exchange Online and Entra ID).
    Hybrid,
}

/// How the client authenticated (or tried to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No credentials sent.
    None,
    /// HTTP Basic / SASL PLAIN / LOGIN.
    Basic,
    /// NTLM.
    Ntlm,
    /// Negotiate (Kerberos/NTLM).
    Negotiate,
    /// An empty `Authorization: Bearer` probe (HMA).
    BearerProbe,
    /// A bearer token.
    Bearer,
    /// Token request with a client secret.
    ClientSecret,
    /// Token request with a client assertion (certificate).
    ClientAssertion,
    /// Resource owner password credentials (ROPC).
    Password,
    /// Device code grant.
    DeviceCode,
    /// Refresh token grant.
    RefreshToken,
    /// Authorization code grant.
    AuthorizationCode,
    /// SASL XOAUTH2 (IMAP/POP/SMTP).
    Xoauth2,
}

/// What was tried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attempt {
    /// The protocol called.
    pub protocol: Option<Protocol>,
    /// Exchange Online, on-premises or hybrid, when known.
    pub environment: Option<Environment>,
    /// HTTP method.
    pub method: Option<String>,
    /// Endpoint URL (query strings should be left out; they may hold secrets).
    pub url: Option<String>,
    /// How the client authenticated.
    pub auth: Option<AuthMode>,
    /// Whether the client runs app-only (client credentials); `None` when unknown.
    pub app_only: Option<bool>,
    /// The target mailbox.
    pub mailbox: Option<String>,
    /// Whether the EWS request carried an `ExchangeImpersonation` header.
    pub impersonation_header: Option<bool>,
    /// Whether the request carried `X-AnchorMailbox`.
    pub anchor_mailbox_header: Option<bool>,
    /// The requested scope or resource (token requests).
    pub scope: Option<String>,
    /// The tenant id or domain used.
    pub tenant: Option<String>,
    /// Whether Entra ID accepted the same user name and password when asked directly (the
    /// sign-in check after a password refusal); `None` when not asked.
    pub password_accepted: Option<bool>,
}

/// One HTTP header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    /// Header name as received.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// What came back over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpResponse {
    /// Status code.
    pub status: Option<u16>,
    /// Headers, multi-valued (one entry per header line).
    pub headers: Vec<HttpHeader>,
    /// Body text.
    pub body: String,
}

impl HttpResponse {
    /// All values of header `name` (case-insensitive).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

/// Pieces already parsed out of the response or text. Callers that hold typed errors (an Entra
/// error body, an EWS response code) put them here; [`crate::diagnose`] adds what it parses itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parsed {
    /// `WWW-Authenticate` challenges.
    pub challenges: Vec<Challenge>,
    /// `x-ms-diagnostics` values.
    pub diagnostics: Vec<MsDiagnostic>,
    /// Entra ID error bodies.
    pub entra: Vec<EntraError>,
    /// AADSTS codes.
    pub aadsts: Vec<u32>,
    /// OAuth `error` values.
    pub oauth_errors: Vec<String>,
    /// EWS response codes.
    pub ews: Vec<EwsError>,
    /// Graph errors.
    pub graph: Vec<GraphError>,
    /// SMTP/IMAP/POP replies.
    pub replies: Vec<MailReply>,
    /// HTTP status codes named in free text.
    pub status_hints: Vec<u16>,
}

fn re(p: &str) -> Option<Regex> {
    Regex::new(p).ok()
}

static DIAG_START: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(r#"(?i)(\b\d{7}\s*;\s*reason\s*=|x-ms-diagnostics"?\s*(?::|→|=)?\s*"?\s*reason\s*=)"#)
});
static DIAG_END: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r#"(?i)error_category\s*=\s*["']?[A-Za-z_]+["']?"#));
/// `AADSTS` codes, also as users retype them (`ADSTS50059`).
static AADSTS: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"\bA?ADSTS(\d{4,8})"));
static OAUTH_ERROR: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r#"(?:"error"\s*:\s*"([a-z_]+)"|[?&#]error=([a-z_]+))"#));
static EWS_CODE: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"\b(Error[A-Z][A-Za-z]{3,})\b"));
static GRAPH_CODE: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r#""code"\s*:\s*"([A-Za-z_]{3,})""#));
static CHALLENGE_LINE: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"(?im)www-authenticate[ \t]*(?::|→)[ \t]*([^\r\n]+)"));
static STATUS_HINT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?i)(?:(?:\b|\()(400|401|403|404|429|500|502|503)\)?[\s:-]*(?:unauthorized|forbidden|not found|too many requests|internal server error|bad gateway|service unavailable|bad request)|\bstatus(?: code)?(?: of|:|=)?\s*(400|401|403|404|429|500|502|503)\b|\b(?:returned|error|http)\s*:?\s*(400|401|403|404|429|500|502|503)\b)",
    )
});
static JWT_IN_TEXT: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"));
static FIRST_URL: LazyLock<Option<Regex>> = LazyLock::new(|| re(r#"https?://[^\s"'<>]+"#));

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

impl Parsed {
    /// Adds everything in `other` not already present.
    pub fn merge(&mut self, other: Parsed) {
        for x in other.challenges {
            push_unique(&mut self.challenges, x);
        }
        for x in other.diagnostics {
            push_unique(&mut self.diagnostics, x);
        }
        for x in other.entra {
            push_unique(&mut self.entra, x);
        }
        for x in other.aadsts {
            push_unique(&mut self.aadsts, x);
        }
        for x in other.oauth_errors {
            push_unique(&mut self.oauth_errors, x);
        }
        for x in other.ews {
            if !self.ews.iter().any(|e| e.code == x.code) {
                self.ews.push(x);
            }
        }
        for x in other.graph {
            push_unique(&mut self.graph, x);
        }
        for x in other.replies {
            push_unique(&mut self.replies, x);
        }
        for x in other.status_hints {
            push_unique(&mut self.status_hints, x);
        }
    }

    fn add_entra(&mut self, e: EntraError) {
        for c in &e.error_codes {
            push_unique(&mut self.aadsts, *c);
        }
        self.add_aadsts_text(&e.error_description);
        if !e.error.is_empty() {
            push_unique(&mut self.oauth_errors, e.error.clone());
        }
        push_unique(&mut self.entra, e);
    }

    fn add_aadsts_text(&mut self, text: &str) {
        if let Some(r) = AADSTS.as_ref() {
            for c in r.captures_iter(text) {
                if let Some(n) = c.get(1).and_then(|m| m.as_str().parse().ok()) {
                    push_unique(&mut self.aadsts, n);
                }
            }
        }
    }

    /// Parses a response: challenges, `x-ms-diagnostics`, and the body (JSON, SOAP or text).
    pub fn from_response(resp: &HttpResponse) -> Parsed {
        let mut p = Parsed::default();
        for v in resp.header_values("www-authenticate") {
            for c in parse_challenges(v) {
                push_unique(&mut p.challenges, c);
            }
        }
        for v in resp.header_values("x-ms-diagnostics") {
            if let Some(d) = parse_ms_diagnostics(v) {
                push_unique(&mut p.diagnostics, d);
            }
        }
        for v in resp.header_values("location") {
            let decoded = percent_decode(v);
            p.merge(Parsed::from_text(&decoded));
        }
        p.merge(Parsed::from_body(&resp.body));
        p
    }

    /// Parses a body: Entra or Graph JSON, SOAP, or text.
    pub fn from_body(body: &str) -> Parsed {
        let mut p = Parsed::default();
        let t = body.trim();
        if t.is_empty() {
            return p;
        }
        if t.starts_with('{')
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(t)
        {
            if let Some(e) = entra_from_value(&v) {
                p.add_entra(e);
            }
            if let Some(g) = graph_from_value(&v) {
                push_unique(&mut p.graph, g);
            }
        }
        if crate::parse::soap::looks_like_soap(t) {
            for e in parse_soap(t) {
                if !p.ews.iter().any(|x| x.code == e.code) {
                    p.ews.push(e);
                }
            }
        }
        p.merge(Parsed::from_text(t));
        p
    }

    /// Finds every recognisable piece in free text (error lines, pasted headers, JSON fragments).
    pub fn from_text(text: &str) -> Parsed {
        let mut p = Parsed::default();
        if let (Some(start), Some(end)) = (DIAG_START.as_ref(), DIAG_END.as_ref()) {
            for m in start.find_iter(text) {
                let from = m.start();
                let rest = text.get(from..).unwrap_or("");
                let window_end = rest.char_indices().nth(800).map_or(rest.len(), |(i, _)| i);
                let window = rest.get(..window_end).unwrap_or(rest);
                let stop = end.find(window).map_or_else(
                    || window.find(['\r', '\n']).unwrap_or(window.len()),
                    |e| e.end(),
                );
                let slice = window.get(..stop).unwrap_or(window);
                let slice =
                    slice.trim_start_matches(|c: char| !c.is_ascii_digit() && c != 'r' && c != 'R');
                let slice = match slice.to_ascii_lowercase().find("reason") {
                    Some(i) if !slice.starts_with(|c: char| c.is_ascii_digit()) => {
                        slice.get(i..).unwrap_or(slice)
                    }
                    _ => slice,
                };
                if let Some(d) = parse_ms_diagnostics(slice) {
                    push_unique(&mut p.diagnostics, d);
                }
            }
        }
        p.add_aadsts_text(text);
        if let Some(r) = OAUTH_ERROR.as_ref() {
            for c in r.captures_iter(text) {
                if let Some(m) = c.get(1).or_else(|| c.get(2)) {
                    push_unique(&mut p.oauth_errors, m.as_str().to_owned());
                }
            }
        }
        if let Some(r) = EWS_CODE.as_ref() {
            for c in r.captures_iter(text) {
                if let Some(m) = c.get(1)
                    && !p.ews.iter().any(|e| e.code == m.as_str())
                {
                    p.ews.push(EwsError {
                        code: m.as_str().to_owned(),
                        ..EwsError::default()
                    });
                }
            }
        }
        if let Some(r) = GRAPH_CODE.as_ref() {
            for c in r.captures_iter(text) {
                if let Some(m) = c.get(1) {
                    push_unique(
                        &mut p.graph,
                        GraphError {
                            code: m.as_str().to_owned(),
                            ..GraphError::default()
                        },
                    );
                }
            }
        }
        if let Some(r) = CHALLENGE_LINE.as_ref() {
            for c in r.captures_iter(text) {
                if let Some(m) = c.get(1) {
                    for ch in parse_challenges(m.as_str()) {
                        push_unique(&mut p.challenges, ch);
                    }
                }
            }
        }
        for r in parse_replies(text) {
            push_unique(&mut p.replies, r);
        }
        if let Some(r) = STATUS_HINT.as_ref() {
            for c in r.captures_iter(text) {
                if let Some(n) = c
                    .get(1)
                    .or_else(|| c.get(2))
                    .or_else(|| c.get(3))
                    .and_then(|m| m.as_str().parse().ok())
                {
                    push_unique(&mut p.status_hints, n);
                }
            }
        }
        p
    }
}

/// Decodes `%XX` escapes and `+` (as found in redirect URLs). Invalid escapes are kept.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = ((*h as char).to_digit(16), (*l as char).to_digit(16))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything known about one failed attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// What was tried.
    pub attempt: Attempt,
    /// What came back over HTTP, when it was HTTP.
    pub response: Option<HttpResponse>,
    /// Pieces already parsed (merged with what diagnosis parses from `response` and `text`).
    pub parsed: Parsed,
    /// Claims of the bearer token that was sent (never the token itself).
    pub token: Option<TokenClaims>,
    /// Free text: an exception message, a tool's error line, a protocol transcript.
    pub text: String,
    /// "Now" in seconds since the epoch, for token expiry checks.
    pub now: Option<i64>,
}

/// Whether a (lower-case) URL's path is Microsoft Graph's (`/v1.0/...` or `/beta/...`), whatever
/// the host: national clouds, proxies and emulators serve Graph under other names.
fn graph_path(l: &str) -> bool {
    let path = match l.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => l,
    };
    ["/v1.0", "/beta"].iter().any(|v| {
        path == *v || path.starts_with(&format!("{v}/")) || path.starts_with(&format!("{v}?"))
    })
}

/// Infers the protocol from a URL.
pub fn protocol_of_url(u: &str) -> Option<Protocol> {
    let l = u.to_ascii_lowercase();
    if l.contains("/ews/") || l.ends_with("/ews") || l.contains("exchange.asmx") {
        Some(Protocol::Ews)
    } else if l.contains("autodiscover") {
        Some(Protocol::Autodiscover)
    } else if l.contains("graph.microsoft.com") || graph_path(&l) {
        Some(Protocol::Graph)
    } else if l.contains("/oauth2/")
        || l.contains("login.microsoftonline.")
        || l.contains("login.windows.net")
    {
        Some(Protocol::TokenEndpoint)
    } else if l.starts_with("imap") {
        Some(Protocol::Imap)
    } else if l.starts_with("smtp") {
        Some(Protocol::Smtp)
    } else if l.starts_with("http") {
        Some(Protocol::Other)
    } else {
        None
    }
}

/// A protocol named unambiguously in free text. Text mentions are weak evidence, so only
/// endpoint paths count; everything else is left unknown.
fn protocol_of_text(t: &str) -> Option<Protocol> {
    let l = t.to_ascii_lowercase();
    if l.contains("/ews/exchange.asmx") {
        Some(Protocol::Ews)
    } else if l.contains("/oauth2/token") || l.contains("/oauth2/v2.0/token") {
        Some(Protocol::TokenEndpoint)
    } else {
        None
    }
}

fn auth_of_header(value: &str) -> (AuthMode, Option<TokenClaims>) {
    let v = value.trim();
    let (scheme, cred) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
    let cred = cred.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" if cred.is_empty() => (AuthMode::BearerProbe, None),
        "bearer" => (AuthMode::Bearer, TokenClaims::from_token(cred).ok()),
        "basic" => (AuthMode::Basic, None),
        "ntlm" => (AuthMode::Ntlm, None),
        "negotiate" => (AuthMode::Negotiate, None),
        _ => (AuthMode::None, None),
    }
}

/// How a mail-protocol client signed in (the token is read for its claims, never kept).
#[derive(Debug, Clone, Copy)]
pub enum SignedIn<'a> {
    /// SASL XOAUTH2 (or OAUTHBEARER) with this token, as this user.
    Token {
        /// The user name sent.
        user: &'a str,
        /// The access token sent.
        token: &'a str,
    },
    /// A password (AUTH LOGIN/PLAIN, IMAP LOGIN, POP USER/PASS).
    Password {
        /// The user name sent.
        user: &'a str,
    },
    /// Windows authentication (SMTP `AUTH NTLM`, IMAP `AUTHENTICATE NTLM`, POP `AUTH NTLM`).
    Windows {
        /// The account (`DOMAIN\user` or a UPN).
        user: &'a str,
    },
}

impl Evidence {
    /// Empty evidence; fill it with the builder methods or field by field.
    pub fn new() -> Self {
        Self::default()
    }

    /// Evidence from an HTTP response. `headers` may repeat names (one item per header line).
    /// Cookie values are dropped and secrets in the body are redacted before they are stored.
    pub fn from_http_response<N: Into<String>, V: Into<String>>(
        status: u16,
        headers: impl IntoIterator<Item = (N, V)>,
        body: impl Into<String>,
    ) -> Self {
        let body: String = body.into();
        Evidence {
            response: Some(HttpResponse {
                status: Some(status),
                headers: headers
                    .into_iter()
                    .map(|(n, v)| {
                        let name: String = n.into();
                        let secret = ["set-cookie", "cookie", "authorization"]
                            .iter()
                            .any(|s| name.eq_ignore_ascii_case(s));
                        HttpHeader {
                            value: if secret {
                                crate::redact::REDACTED.to_owned()
                            } else {
                                v.into()
                            },
                            name,
                        }
                    })
                    .collect(),
                body: redact_text(&body, TokenMode::Remove),
            }),
            ..Self::default()
        }
    }

    /// Evidence from anything pasted: free error text, a raw HTTP response or request/response
    /// pair, an Entra or Graph error JSON body, a SOAP body, or a JWT. Secrets in the text are
    /// redacted before it is stored; a bearer token is kept only as its claims.
    pub fn from_text(text: &str) -> Self {
        let mut ev = Evidence::default();
        let t = text.trim();
        if jwt::looks_like_jwt(t) {
            ev.token = TokenClaims::from_token(t).ok();
            return ev;
        }
        let raw = parse_raw_http(t);
        if let Some(req) = &raw.request {
            ev.apply_request(req);
        }
        if let Some(resp) = raw.response {
            let headers: Vec<HttpHeader> = resp
                .headers
                .into_iter()
                .filter(|(n, _)| {
                    !n.eq_ignore_ascii_case("authorization")
                        && !n.eq_ignore_ascii_case("set-cookie")
                        && !n.eq_ignore_ascii_case("cookie")
                })
                .map(|(name, value)| HttpHeader { name, value })
                .collect();
            ev.response = Some(HttpResponse {
                status: resp.status,
                headers,
                body: redact_text(&resp.body, TokenMode::Remove),
            });
        }
        if ev.token.is_none()
            && let Some(m) = JWT_IN_TEXT.as_ref().and_then(|r| r.find(t))
        {
            ev.token = TokenClaims::from_token(m.as_str()).ok();
        }
        if ev.attempt.protocol.is_none() {
            ev.attempt.protocol = protocol_of_text(t);
        }
        if ev.response.is_none() {
            ev.text = redact_text(t, TokenMode::Remove);
        } else if raw.request.is_none() {
            // Keep surrounding prose too (e.g. an explanation around pasted headers).
            ev.text = redact_text(t, TokenMode::Remove);
        }
        ev
    }

    fn apply_request(&mut self, req: &RawRequest) {
        self.attempt.method = Some(req.method.clone());
        let host = req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone());
        let url = if req.target.starts_with("http") {
            Some(req.target.clone())
        } else {
            host.map(|h| format!("https://{h}{}", req.target))
        };
        if let Some(u) = url {
            let no_query = u.split('?').next().unwrap_or(&u).to_owned();
            self.attempt.protocol = protocol_of_url(&no_query);
            self.attempt.url = Some(no_query);
        }
        for (n, v) in &req.headers {
            if n.eq_ignore_ascii_case("authorization") {
                let (mode, claims) = auth_of_header(v);
                self.attempt.auth = Some(mode);
                if claims.is_some() {
                    self.token = claims;
                }
            } else if n.eq_ignore_ascii_case("x-anchormailbox") {
                self.attempt.anchor_mailbox_header = Some(true);
                self.attempt.mailbox = Some(v.clone());
            }
        }
        if self.attempt.protocol == Some(Protocol::Ews) && !req.body.is_empty() {
            self.attempt.impersonation_header = Some(req.body.contains("ExchangeImpersonation"));
        }
        if self.attempt.protocol == Some(Protocol::TokenEndpoint) {
            self.apply_token_form(&req.body);
        }
    }

    /// Reads a token request form body: grant type, client credential kind, scope. Values of
    /// secrets are never stored.
    pub fn apply_token_form(&mut self, body: &str) {
        let mut grant = None;
        let mut has_secret = false;
        let mut has_assertion = false;
        for pair in body.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k.trim() {
                "grant_type" => grant = Some(percent_decode(v)),
                "client_secret" => has_secret = true,
                "client_assertion" => has_assertion = true,
                "scope" | "resource" => self.attempt.scope = Some(percent_decode(v)),
                _ => {}
            }
        }
        let mode = match grant.as_deref() {
            Some("client_credentials") => {
                self.attempt.app_only = Some(true);
                if has_assertion {
                    AuthMode::ClientAssertion
                } else {
                    AuthMode::ClientSecret
                }
            }
            Some("password") => AuthMode::Password,
            Some("refresh_token") => AuthMode::RefreshToken,
            Some("authorization_code") => AuthMode::AuthorizationCode,
            Some(g) if g.contains("device_code") => AuthMode::DeviceCode,
            _ if has_assertion => AuthMode::ClientAssertion,
            _ if has_secret => AuthMode::ClientSecret,
            _ => return,
        };
        self.attempt.auth = Some(mode);
    }

    /// The evidence of a mail-protocol refusal (an SMTP, IMAP or POP answer, or the text of an
    /// exception around it) with how the client signed in: a token's claims are checked against
    /// what the protocol needs, a password rules token causes out.
    pub fn mail_refusal(protocol: Protocol, text: &str, signed_in: Option<SignedIn<'_>>) -> Self {
        let mut ev = Evidence::from_text(text).with_protocol(protocol);
        match signed_in {
            Some(SignedIn::Token { user, token }) => {
                ev = ev
                    .with_bearer_token(token)
                    .with_auth(AuthMode::Xoauth2)
                    .with_mailbox(user.to_owned());
                ev.attempt.app_only = ev.token.as_ref().map(TokenClaims::is_app_only);
            }
            Some(SignedIn::Password { user }) => {
                ev = ev.with_auth(AuthMode::Basic).with_mailbox(user.to_owned());
            }
            Some(SignedIn::Windows { user }) => {
                ev = ev.with_auth(AuthMode::Ntlm).with_mailbox(user.to_owned());
            }
            None => {}
        }
        ev
    }

    /// Sets the protocol.
    pub fn with_protocol(mut self, p: Protocol) -> Self {
        self.attempt.protocol = Some(p);
        self
    }
    /// Sets the environment.
    pub fn with_environment(mut self, e: Environment) -> Self {
        self.attempt.environment = Some(e);
        self
    }
    /// Sets the endpoint URL (and the protocol when not set yet).
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        let u: String = url.into();
        if self.attempt.protocol.is_none() {
            self.attempt.protocol = protocol_of_url(&u);
        }
        self.attempt.url = Some(u);
        self
    }
    /// Sets the authentication mode.
    pub fn with_auth(mut self, a: AuthMode) -> Self {
        self.attempt.auth = Some(a);
        self
    }
    /// Says whether the client runs app-only.
    pub fn app_only(mut self, yes: bool) -> Self {
        self.attempt.app_only = Some(yes);
        self
    }
    /// Sets the target mailbox.
    pub fn with_mailbox(mut self, m: impl Into<String>) -> Self {
        self.attempt.mailbox = Some(m.into());
        self
    }
    /// Sets the tenant id or domain the attempt used (checked against the token's `tid`).
    pub fn with_tenant(mut self, t: impl Into<String>) -> Self {
        self.attempt.tenant = Some(t.into());
        self
    }
    /// Decodes a bearer token and keeps its claims (the token itself is not kept).
    pub fn with_bearer_token(mut self, token: &str) -> Self {
        self.token = TokenClaims::from_token(token).ok();
        if self.attempt.auth.is_none() {
            self.attempt.auth = Some(AuthMode::Bearer);
        }
        self
    }
    /// Sets the token claims.
    pub fn with_claims(mut self, c: TokenClaims) -> Self {
        self.token = Some(c);
        self
    }
    /// Adds an Entra error body.
    pub fn with_entra_error(mut self, e: EntraError) -> Self {
        self.parsed.add_entra(e);
        self
    }
    /// Adds an EWS response code.
    pub fn with_ews_error(mut self, code: impl Into<String>, message: impl Into<String>) -> Self {
        self.parsed.ews.push(EwsError {
            code: code.into(),
            message: message.into(),
            ..EwsError::default()
        });
        self
    }
    /// Adds free text (redacted before it is stored).
    pub fn with_text(mut self, t: &str) -> Self {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(&redact_text(t, TokenMode::Remove));
        self
    }
    /// Sets "now" (seconds since the epoch) for expiry checks.
    pub fn at(mut self, now: i64) -> Self {
        self.now = Some(now);
        self
    }

    /// The URL found in the text, when the attempt has none (used for token linting).
    pub(crate) fn url_hint(&self) -> Option<String> {
        self.attempt.url.clone().or_else(|| {
            FIRST_URL
                .as_ref()
                .and_then(|r| r.find(&self.text))
                .map(|m| m.as_str().to_owned())
                .filter(|u| protocol_of_url(u).is_some_and(|p| p != Protocol::TokenEndpoint))
        })
    }
}
