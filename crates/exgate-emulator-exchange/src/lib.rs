//! The Exchange plane of the exgate emulator: EWS, Microsoft Graph mail and Autodiscover for
//! Exchange Online and on-premises servers, with Exchange's own authentication answers
//! (`WWW-Authenticate` challenges, `x-ms-diagnostics`), access scoping, impersonation rights,
//! licences and throttling.
//!
//! The seam is narrow: an [`ExchangeConfig`] (the `[exchange]` part of a scenario), a
//! [`Directory`] (what the identity side knows), a [`TokenVerifier`] (the emulator's signing
//! keys), an [`ExchangeState`] and [`router`]; [`serve_smtp`] adds SMTP client submission (as
//! `smtp.office365.com:587`) and [`serve_imap`] IMAP4 (as `outlook.office365.com:993`), each on
//! a listener of its own. See `docs/exchange-emulator.md`.

// Libraries never print: output belongs to the binary (see ARCHITECTURE.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod accept;
mod auth;
mod autodiscover;
pub mod config;
pub mod directory;
mod ews;
mod graph;
mod graph_upload;
mod imap;
mod imap_search;
mod line_auth;
mod line_faults;
mod ntlm;
mod odata;
mod pop;
mod smtp;
mod state;
mod store;
mod token;
mod xml;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

pub use auth::{EXCHANGE_APP_ID, GRAPH_APP_ID};
pub use config::{ConfigError, ExchangeConfig};
pub use directory::{Directory, InMemoryDirectory, PasswordCheck, TenantInfo};
pub use imap::{
    CAPABILITIES as IMAP_CAPABILITIES, ImapOptions,
    ONPREM_CAPABILITIES as IMAP_ONPREM_CAPABILITIES, serve_imap,
};
pub use line_faults::{ConnectAction, ConnectFault, ConnectHook, OnConnect};
/// The secret type of [`Directory::windows_password`].
pub use pop::{
    CAPABILITIES as POP_CAPABILITIES, LOGON_FAILURE as POP_LOGON_FAILURE,
    ONPREM_CAPABILITIES as POP_ONPREM_CAPABILITIES, PopOptions, serve_pop,
};
pub use secrecy::SecretString;
pub use smtp::{ADVERTISED_SIZE as SMTP_ADVERTISED_SIZE, SmtpOptions, serve_smtp};
pub use state::{ExchangeState, ExchangeStats};
pub use token::{CLOCK_SKEW_SECONDS, TokenVerifier};

use state::Site;

/// The scheme the emulator serves on. Insert it as a request extension when serving TLS
/// (`axum::Extension(ServedScheme::Https)`); without it the plane assumes plain http unless an
/// `X-Forwarded-Proto` header says otherwise. URLs handed out (Autodiscover, `@odata.nextLink`)
/// use this scheme and the request's `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedScheme {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

/// The TCP connection a request came on. The server inserts it as a request extension; NTLM
/// authenticates connections, so without it NTLM handshakes cannot complete (each request is
/// then a new connection). Ids must be unique for the life of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

fn connection_of(ext: &axum::http::Extensions) -> Option<ConnectionId> {
    ext.get::<ConnectionId>().copied()
}

fn origin(headers: &HeaderMap, scheme: Option<ServedScheme>) -> String {
    let scheme = match scheme {
        Some(ServedScheme::Https) => "https",
        Some(ServedScheme::Http) => "http",
        None => match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        },
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("127.0.0.1");
    format!("{scheme}://{host}")
}

fn scheme_of(ext: &axum::http::Extensions) -> Option<ServedScheme> {
    ext.get::<ServedScheme>().copied()
}

fn onprem_site(st: &state::Inner, name: &str) -> Option<Site> {
    st.servers
        .iter()
        .position(|s| s.cfg.name.eq_ignore_ascii_case(name))
        .map(Site::OnPrem)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "").into_response()
}

async fn ews_online(
    State(s): State<ExchangeState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    ews::handle(&s.inner, Site::Online, &headers, connection_of(&ext), &body)
}

async fn ews_onprem(
    State(s): State<ExchangeState>,
    Path(server): Path<String>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match onprem_site(&s.inner, &server) {
        Some(site) => ews::handle(&s.inner, site, &headers, connection_of(&ext), &body),
        None => not_found(),
    }
}

/// A request of another method than POST to EWS: IIS authenticates before the method is looked
/// at, so an unauthenticated one gets the 401 and its challenges like a POST; an authenticated
/// one gets `405` with `Allow: POST` (what the EWS handler answers an authenticated browser is
/// not reproduced).
fn ews_other_method(
    st: &state::Inner,
    site: Site,
    headers: &HeaderMap,
    conn: Option<ConnectionId>,
) -> Response {
    match auth::authenticate(st, site, auth::Vdir::Ews, headers, conn) {
        Err(r) => *r,
        Ok(_) => {
            let mut r = (StatusCode::METHOD_NOT_ALLOWED, "").into_response();
            r.headers_mut().insert(
                axum::http::header::ALLOW,
                axum::http::HeaderValue::from_static("POST"),
            );
            r
        }
    }
}

async fn ews_other_online(
    State(s): State<ExchangeState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    ews_other_method(&s.inner, Site::Online, &headers, connection_of(&ext))
}

async fn ews_other_onprem(
    State(s): State<ExchangeState>,
    Path(server): Path<String>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    match onprem_site(&s.inner, &server) {
        Some(site) => ews_other_method(&s.inner, site, &headers, connection_of(&ext)),
        None => not_found(),
    }
}

/// Autodiscover flavours.
#[derive(Clone, Copy)]
enum Ad {
    Pox,
    Soap,
}

fn autodiscover(
    s: &ExchangeState,
    site: Site,
    kind: Ad,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    body: &[u8],
) -> Response {
    let o = origin(headers, scheme_of(ext));
    match kind {
        Ad::Pox => autodiscover::pox(&s.inner, site, &o, headers, connection_of(ext), body),
        Ad::Soap => autodiscover::soap(&s.inner, site, &o, headers, connection_of(ext), body),
    }
}

async fn handle_request(
    s: ExchangeState,
    server: Option<String>,
    kind: Ad,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 * 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "").into_response();
    };
    let site = match server {
        None => Site::Online,
        Some(name) => match onprem_site(&s.inner, &name) {
            Some(site) => site,
            None => return not_found(),
        },
    };
    autodiscover(&s, site, kind, &parts.headers, &parts.extensions, &bytes)
}

async fn pox_online(State(s): State<ExchangeState>, req: axum::extract::Request) -> Response {
    handle_request(s, None, Ad::Pox, req).await
}
async fn soap_online(State(s): State<ExchangeState>, req: axum::extract::Request) -> Response {
    handle_request(s, None, Ad::Soap, req).await
}
async fn pox_onprem(
    State(s): State<ExchangeState>,
    Path(server): Path<String>,
    req: axum::extract::Request,
) -> Response {
    handle_request(s, Some(server), Ad::Pox, req).await
}
async fn soap_onprem(
    State(s): State<ExchangeState>,
    Path(server): Path<String>,
    req: axum::extract::Request,
) -> Response {
    handle_request(s, Some(server), Ad::Soap, req).await
}

fn json_common(
    s: &ExchangeState,
    server: Option<&str>,
    email: Option<&str>,
    query: Option<&str>,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
) -> Response {
    let site = match server {
        None => Site::Online,
        Some(name) => match onprem_site(&s.inner, name) {
            Some(site) => site,
            None => return not_found(),
        },
    };
    autodiscover::json_v2(
        &s.inner,
        site,
        &origin(headers, scheme_of(ext)),
        email,
        query,
    )
}

async fn json_query(
    State(s): State<ExchangeState>,
    RawQuery(q): RawQuery,
    req: axum::extract::Request,
) -> Response {
    json_common(
        &s,
        None,
        None,
        q.as_deref(),
        req.headers(),
        req.extensions(),
    )
}
async fn json_path(
    State(s): State<ExchangeState>,
    Path(email): Path<String>,
    RawQuery(q): RawQuery,
    req: axum::extract::Request,
) -> Response {
    json_common(
        &s,
        None,
        Some(&email),
        q.as_deref(),
        req.headers(),
        req.extensions(),
    )
}
async fn json_query_onprem(
    State(s): State<ExchangeState>,
    Path(server): Path<String>,
    RawQuery(q): RawQuery,
    req: axum::extract::Request,
) -> Response {
    json_common(
        &s,
        Some(&server),
        None,
        q.as_deref(),
        req.headers(),
        req.extensions(),
    )
}
async fn json_path_onprem(
    State(s): State<ExchangeState>,
    Path((server, email)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    req: axum::extract::Request,
) -> Response {
    json_common(
        &s,
        Some(&server),
        Some(&email),
        q.as_deref(),
        req.headers(),
        req.extensions(),
    )
}

async fn graph_handler(
    State(s): State<ExchangeState>,
    RawQuery(q): RawQuery,
    method: Method,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 * 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "").into_response();
    };
    let o = origin(&parts.headers, scheme_of(&parts.extensions));
    // The raw path: segments are percent-decoded by the Graph module (leniently, as Graph does).
    let path = parts.uri.path().strip_prefix("/v1.0/").unwrap_or_default();
    graph::handle(
        &s.inner,
        &o,
        &method,
        path,
        q.as_deref(),
        &parts.headers,
        &bytes,
    )
}

/// `PUT` of one part of a Graph attachment upload session (the URL is its authority).
async fn upload_put(
    State(s): State<ExchangeState>,
    axum::extract::Path(token): axum::extract::Path<String>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, graph_upload::MAX_PART + 1).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "").into_response();
    };
    graph_upload::put(&s.inner, &token, &parts.headers, &bytes)
}

/// `DELETE` of a Graph attachment upload session.
async fn upload_delete(
    State(s): State<ExchangeState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    if s.inner.uploads.cancel(&token) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// All Exchange routes, relative to the emulator's base URL:
///
/// - `POST /EWS/Exchange.asmx` (Exchange Online) and `/onprem/{server}/EWS/Exchange.asmx`
/// - `POST /autodiscover/autodiscover.xml` (POX), `POST /autodiscover/autodiscover.svc` (SOAP),
///   `GET /autodiscover/autodiscover.json[/v1.0/{email}]` (JSON v2), also under `/onprem/{server}`
/// - `/v1.0/...` (Microsoft Graph mail)
pub fn router(state: ExchangeState) -> Router {
    let mut r = Router::new();
    for p in [
        "/EWS/Exchange.asmx",
        "/ews/exchange.asmx",
        "/EWS/exchange.asmx",
    ] {
        r = r.route(p, post(ews_online).fallback(ews_other_online));
        r = r.route(
            &format!("/onprem/{{server}}{p}"),
            post(ews_onprem).fallback(ews_other_onprem),
        );
    }
    for base in ["/autodiscover", "/Autodiscover"] {
        for (file, pox) in [
            ("autodiscover.xml", true),
            ("Autodiscover.xml", true),
            ("autodiscover.svc", false),
            ("Autodiscover.svc", false),
        ] {
            let online = format!("{base}/{file}");
            let onprem = format!("/onprem/{{server}}{base}/{file}");
            if pox {
                r = r.route(&online, post(pox_online));
                r = r.route(&onprem, post(pox_onprem));
            } else {
                r = r.route(&online, post(soap_online));
                r = r.route(&onprem, post(soap_onprem));
            }
        }
        r = r.route(&format!("{base}/autodiscover.json"), get(json_query));
        r = r.route(
            &format!("{base}/autodiscover.json/v1.0/{{email}}"),
            get(json_path),
        );
        r = r.route(
            &format!("/onprem/{{server}}{base}/autodiscover.json"),
            get(json_query_onprem),
        );
        r = r.route(
            &format!("/onprem/{{server}}{base}/autodiscover.json/v1.0/{{email}}"),
            get(json_path_onprem),
        );
    }
    r.route(
        "/api/gv2.0/attachmentSessions/{token}",
        axum::routing::put(upload_put).delete(upload_delete),
    )
    .route("/v1.0/{*path}", any(graph_handler))
    .with_state(state)
}
