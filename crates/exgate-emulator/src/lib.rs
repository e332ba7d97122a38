//! Emulator of Entra ID (and, later, Exchange) that real clients accept unchanged.
//!
//! A [`Scenario`] (TOML, see `docs/scenarios.md`) declares tenants, applications, consent and
//! users. [`Emulator::start`] serves it on a loopback port, over HTTP or HTTPS (a private CA
//! whose PEM [`Emulator::ca_pem`] returns). The router is assembled from per-plane modules
//! (`entra` for the identity plane); token minting and validation live in [`tokens`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use exgate_emulator::{Emulator, EmulatorOptions, Scenario};
//! let scenario = Scenario::load(std::path::Path::new("scenarios/demo.toml"))?;
//! let emulator = Emulator::start(scenario, EmulatorOptions::default()).await?;
//! println!("token endpoint: {}/contoso.com/oauth2/v2.0/token", emulator.base_url());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

// Libraries never print: output belongs to the binary (see ARCHITECTURE.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod entra;
pub mod exchange;
pub mod faults;
mod idle;
pub mod scenario;
pub mod tls;
pub mod tokens;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use scenario::{Scenario, ScenarioError};
pub use tokens::SigningKey;

/// How to run the emulator.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Address to listen on; default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// Serve HTTPS with a generated CA; default false.
    pub tls: bool,
    /// `expires_in` of access tokens; `None` = the scenario's, else 3599 s.
    pub token_lifetime: Option<std::time::Duration>,
    /// Timeouts and the connection cap of the HTTP(S) listener.
    pub limits: ServerLimits,
    /// Address of SMTP submission (TLS with an `[exchange]` section); default a free port on
    /// 127.0.0.1.
    pub smtp_listen: Option<SocketAddr>,
    /// Address of IMAP4; default a free port on 127.0.0.1.
    pub imap_listen: Option<SocketAddr>,
    /// Address of POP3 (implicit TLS); default a free port on 127.0.0.1.
    pub pop_listen: Option<SocketAddr>,
    /// The certificate also names Microsoft's hosts ([`MICROSOFT_NAMES`]), for clients that
    /// hard-code them and are pointed at the emulator by a hosts-file line.
    pub microsoft_names: bool,
}

/// The Microsoft host names `microsoft_names` adds to the certificate. Their paths are the
/// emulator's own: `/{tenant}/oauth2/v2.0/token`, `/EWS/Exchange.asmx`, `/v1.0/...`.
pub const MICROSOFT_NAMES: &[&str] = &[
    "login.microsoftonline.com",
    "login.windows.net",
    "graph.microsoft.com",
    "outlook.office365.com",
    "outlook.office.com",
    "smtp.office365.com",
];

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: false,
            token_lifetime: None,
            limits: ServerLimits::default(),
            smtp_listen: None,
            imap_listen: None,
            pop_listen: None,
            microsoft_names: false,
        }
    }
}

/// How long the listener waits, and how many connections it serves at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// A TLS handshake not finished by then closes the connection.
    pub handshake_timeout: std::time::Duration,
    /// No byte from the client for this long closes the connection: before the TLS handshake,
    /// before or inside the request headers, or between requests (an idle keep-alive or HTTP/2
    /// connection).
    pub header_read_timeout: std::time::Duration,
    /// Connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// An SMTP session with no command for this long is ended with `421 4.4.2` (Exchange's
    /// receive connectors: `ConnectionInactivityTimeout`, five minutes by default).
    pub smtp_idle_timeout: std::time::Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            handshake_timeout: std::time::Duration::from_secs(10),
            header_read_timeout: std::time::Duration::from_secs(30),
            max_connections: 1024,
            smtp_idle_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// Counters of what the emulator served.
///
/// Also served as JSON at `GET {base_url}/_exgate/stats`, for tests that run the emulator as a
/// separate process.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Requests to the token endpoints (v1 and v2).
    pub token_requests: u64,
    /// Token requests that were answered with tokens.
    pub tokens_issued: u64,
    /// Token requests that were answered with an error.
    pub token_errors: u64,
    /// `grant_type=client_credentials` requests.
    pub client_credentials: u64,
    /// `grant_type=refresh_token` requests.
    pub refresh_token: u64,
    /// Device-code polls.
    pub device_code: u64,
    /// `grant_type=authorization_code` requests.
    pub authorization_code: u64,
    /// `grant_type=password` requests.
    pub password: u64,
    /// OpenID configuration requests.
    pub discovery_requests: u64,
    /// Accepted client assertions signed with RS256/384/512.
    pub assertions_rs: u64,
    /// Accepted client assertions signed with PS256/384/512.
    pub assertions_ps: u64,
    /// Accepted client assertions that named their key with `x5t#S256`.
    pub assertions_x5t_s256: u64,
    /// Accepted client assertions that carried `x5c`.
    pub assertions_x5c: u64,
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS material could not be generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The signing key could not be generated.
    #[error(transparent)]
    Key(#[from] tokens::TokenError),
    /// The `[exchange]` section is not valid.
    #[error("the [exchange] section of the scenario is not valid: {0}")]
    Exchange(#[from] exgate_emulator_exchange::ConfigError),
}

/// A running emulator. Dropping it or calling [`Emulator::shutdown`] stops it.
pub struct Emulator {
    base_url: String,
    ca_pem: Option<String>,
    shared: Arc<entra::Shared>,
    exchange: Option<exgate_emulator_exchange::ExchangeState>,
    smtp: Option<LineListener>,
    imap: Option<LineListener>,
    pop: Option<LineListener>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Binds, and serves the scenario in a background task.
    pub async fn start(
        mut scenario: Scenario,
        options: EmulatorOptions,
    ) -> Result<Emulator, EmulatorError> {
        let key = SigningKey::shared()?;
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: options.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: options.listen,
                source,
            })?;
        // On-premises servers answer at their own host names too (a hosts-file line pointing
        // them at the emulator): the certificate names them, and requests are routed by Host.
        let onprem = Arc::new(onprem_hosts(&scenario));
        let (tls, ca_pem, smtp_tls) = if options.tls {
            let mut names: Vec<String> = onprem.keys().cloned().collect();
            names.sort();
            if options.microsoft_names {
                names.extend(MICROSOFT_NAMES.iter().map(|n| (*n).to_owned()));
            }
            let m = tls::generate_for(&names)?;
            // SMTP's STARTTLS and IMAP's implicit TLS present the same certificate; neither
            // client sends ALPN.
            let mut smtp = (*m.config).clone();
            smtp.alpn_protocols.clear();
            (
                Some(tokio_rustls::TlsAcceptor::from(m.config)),
                Some(m.ca_pem),
                Some(Arc::new(smtp)),
            )
        } else {
            (None, None, None)
        };
        let host = if options.tls {
            "localhost".to_string()
        } else if addr.ip().is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        // The default port is left out, as clients leave it out of `Host`.
        let scheme = if options.tls { "https" } else { "http" };
        let base_url = match (options.tls, addr.port()) {
            (true, 443) | (false, 80) => format!("{scheme}://{host}"),
            (_, port) => format!("{scheme}://{host}:{port}"),
        };
        let lifetime = options
            .token_lifetime
            .or(scenario.settings.token_lifetime)
            .map(|d| d.as_secs().max(1))
            .unwrap_or(3599);
        let exchange = exchange::plane(&mut scenario, &key, &base_url, options.tls)?;
        let injected = std::mem::take(&mut scenario.faults);
        let shared = Arc::new(entra::Shared::new(
            scenario,
            key,
            options.tls,
            base_url.clone(),
            lifetime,
        ));
        let (exchange_router, exchange) = match exchange {
            Some((r, s)) => (Some(r), Some(s)),
            None => (None, None),
        };
        let smtp = match (&exchange, smtp_tls.clone()) {
            (Some(state), Some(config)) => Some(
                start_line("SMTP submission", options.smtp_listen, |l, stop| {
                    exgate_emulator_exchange::serve_smtp(
                        state.clone(),
                        l,
                        config,
                        exgate_emulator_exchange::SmtpOptions {
                            on_connect: faults::connect_hook(
                                &injected,
                                faults::FaultEndpoint::Smtp,
                            ),
                            read_timeout: options.limits.smtp_idle_timeout,
                            ..Default::default()
                        },
                        stop,
                    )
                })
                .await?,
            ),
            _ => None,
        };
        let pop = match (&exchange, smtp_tls.clone()) {
            (Some(state), Some(config)) => Some(
                start_line("POP3", options.pop_listen, |l, stop| {
                    exgate_emulator_exchange::serve_pop(
                        state.clone(),
                        l,
                        config,
                        exgate_emulator_exchange::PopOptions {
                            on_connect: faults::connect_hook(&injected, faults::FaultEndpoint::Pop),
                            ..Default::default()
                        },
                        stop,
                    )
                })
                .await?,
            ),
            _ => None,
        };
        let imap = match (&exchange, smtp_tls) {
            (Some(state), Some(config)) => Some(
                start_line("IMAP4", options.imap_listen, |l, stop| {
                    exgate_emulator_exchange::serve_imap(
                        state.clone(),
                        l,
                        config,
                        exgate_emulator_exchange::ImapOptions {
                            on_connect: faults::connect_hook(
                                &injected,
                                faults::FaultEndpoint::Imap,
                            ),
                            ..Default::default()
                        },
                        stop,
                    )
                })
                .await?,
            ),
            _ => None,
        };
        let app = build_router(shared.clone(), exchange_router, injected);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, tls, app, onprem, options.limits, stop_rx));
        tracing::info!(%base_url, "emulator listening");
        Ok(Emulator {
            base_url,
            ca_pem,
            shared,
            exchange,
            smtp,
            imap,
            pop,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// e.g. `http://127.0.0.1:41234` or `https://localhost:41234` (no trailing slash). This is
    /// the authority host: token endpoint = `{base_url}/{tenant}/oauth2/v2.0/token`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// With TLS: the PEM of the CA clients must trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The SMTP submission endpoint (as `smtp.office365.com:587`: STARTTLS with the emulator's
    /// certificate, then `AUTH XOAUTH2` / `LOGIN` / `PLAIN`), always on 127.0.0.1. Present when
    /// the scenario has an `[exchange]` section and the emulator serves TLS.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp.as_ref().map(|s| s.addr)
    }

    /// The IMAP4 endpoint (as `outlook.office365.com:993`: implicit TLS with the emulator's
    /// certificate, then `AUTHENTICATE XOAUTH2` / `PLAIN` or `LOGIN`), always on 127.0.0.1.
    /// Present when the scenario has an `[exchange]` section and the emulator serves TLS.
    pub fn imap_addr(&self) -> Option<SocketAddr> {
        self.imap.as_ref().map(|s| s.addr)
    }

    /// The POP3 address (implicit TLS), when the scenario has an `[exchange]` section and TLS
    /// is on.
    pub fn pop_addr(&self) -> Option<SocketAddr> {
        self.pop.as_ref().map(|s| s.addr)
    }

    /// Where each service of the Exchange plane lives: `(service, URL)`, Exchange Online's
    /// first, then each on-premises server's under `/onprem/{name}`. Empty without `[exchange]`.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        let Some(state) = &self.exchange else {
            return Vec::new();
        };
        let base = &self.base_url;
        let mut out = vec![
            ("ews".to_owned(), format!("{base}/EWS/Exchange.asmx")),
            ("graph".to_owned(), format!("{base}/v1.0")),
            (
                "autodiscover".to_owned(),
                format!("{base}/autodiscover/autodiscover.json/v1.0/{{email}}"),
            ),
        ];
        for (name, public) in state.servers() {
            out.push((
                format!("onprem {name} ({public}) ews"),
                format!("{base}/onprem/{name}/EWS/Exchange.asmx"),
            ));
            out.push((
                format!("onprem {name} ({public}) autodiscover"),
                format!("{base}/onprem/{name}/autodiscover/autodiscover.xml"),
            ));
        }
        out
    }

    /// Counters of the Exchange plane, when the scenario has an `[exchange]` section.
    pub fn exchange_stats(&self) -> Option<exgate_emulator_exchange::ExchangeStats> {
        self.exchange.as_ref().map(|e| e.stats())
    }

    /// Puts every refresh token of `upn` (issued or seeded) into `state`, e.g.
    /// [`scenario::RefreshTokenState::Revoked`] to play a password reset (AADSTS50173 on the next
    /// refresh). Returns how many tokens changed.
    pub fn set_refresh_tokens_state(&self, upn: &str, state: scenario::RefreshTokenState) -> usize {
        let upn = upn.trim().to_ascii_lowercase();
        let mut rt = self.shared.runtime();
        let mut n = 0;
        for r in rt.refresh.values_mut().filter(|r| r.upn == upn) {
            r.state = state;
            n += 1;
        }
        n
    }

    /// The scenario being served.
    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    /// The key tokens are signed with (to validate them).
    pub fn signing_key(&self) -> &SigningKey {
        &self.shared.key
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        for mut listener in [self.smtp.take(), self.imap.take(), self.pop.take()]
            .into_iter()
            .flatten()
        {
            if let Some(stop) = listener.stop.take() {
                let _ = stop.send(());
            }
            if let Some(task) = listener.task.take() {
                let _ = task.await;
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for mut listener in [self.smtp.take(), self.imap.take(), self.pop.take()]
            .into_iter()
            .flatten()
        {
            if let Some(stop) = listener.stop.take() {
                let _ = stop.send(());
            }
            if let Some(task) = listener.task.take() {
                task.abort();
            }
        }
    }
}

/// A listener of its own that is running (SMTP submission, IMAP4).
struct LineListener {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Binds `listen` (default: 127.0.0.1 on a free port) and runs `serve` (SMTP submission, IMAP4)
/// on it until the listener is stopped.
async fn start_line<F, Fut>(
    name: &str,
    listen: Option<SocketAddr>,
    serve: F,
) -> Result<LineListener, EmulatorError>
where
    F: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let want = listen.unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let listener = TcpListener::bind(want)
        .await
        .map_err(|source| EmulatorError::Bind { addr: want, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind { addr: want, source })?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        Box::pin(async move {
            let _ = stop_rx.await;
        }),
    ));
    tracing::info!(%addr, "{name} listening");
    Ok(LineListener {
        addr,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

/// The router of a scenario, without a listener (for in-process use, e.g. benchmarks with
/// `tower::ServiceExt::oneshot`). `authority` is what requests without a `Host` header see.
pub fn router(mut scenario: Scenario, authority: &str, tls: bool) -> Result<Router, EmulatorError> {
    let key = SigningKey::shared()?;
    let authority = authority.trim_end_matches('/');
    let exchange = exchange::plane(&mut scenario, &key, authority, tls)?;
    let injected = std::mem::take(&mut scenario.faults);
    let lifetime = scenario
        .settings
        .token_lifetime
        .map(|d| d.as_secs().max(1))
        .unwrap_or(3599);
    let shared = Arc::new(entra::Shared::new(
        scenario,
        key,
        tls,
        authority.to_string(),
        lifetime,
    ));
    Ok(build_router(shared, exchange.map(|(r, _)| r), injected))
}

/// Merges the planes: Entra ID always, Exchange when the scenario has one.
fn build_router(
    shared: Arc<entra::Shared>,
    exchange: Option<Router>,
    injected: Vec<faults::Fault>,
) -> Router {
    let router = Router::new().merge(entra::router(shared));
    let router = match exchange {
        Some(e) => router.merge(e),
        None => router,
    };
    if injected.is_empty() {
        router
    } else {
        router.layer(axum::middleware::from_fn_with_state(
            Arc::new(injected),
            faults::layer,
        ))
    }
}

/// The on-premises servers' own host names (of `public_url` and `autodiscover_url`, lower
/// case) and the server each names, read from the scenario's `[[exchange.servers]]` (validated
/// later by the Exchange plane).
fn onprem_hosts(scenario: &Scenario) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let servers = scenario
        .exchange
        .as_ref()
        .and_then(|e| e.get("servers"))
        .and_then(toml::Value::as_array);
    for s in servers.into_iter().flatten() {
        let Some(name) = s.get("name").and_then(toml::Value::as_str) else {
            continue;
        };
        for key in ["public_url", "autodiscover_url"] {
            if let Some(host) = s
                .get(key)
                .and_then(toml::Value::as_str)
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .filter(|h| h != "localhost" && h != "127.0.0.1")
            {
                out.entry(host).or_insert_with(|| name.to_owned());
            }
        }
    }
    out
}

/// A request whose `Host` names an on-premises server goes to that server's routes
/// (`/onprem/{name}/...`), as if the server itself answered.
fn route_by_host(
    req: &mut axum::http::Request<axum::body::Body>,
    onprem: &std::collections::HashMap<String, String>,
) {
    if onprem.is_empty() {
        return;
    }
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().host().map(str::to_owned));
    let Some(host) = host else { return };
    let host = host.rsplit_once(':').map_or(host.as_str(), |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host.as_str()
        }
    });
    let Some(name) = onprem.get(&host.to_ascii_lowercase()) else {
        return;
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    if path_and_query.starts_with("/onprem/") {
        return;
    }
    if let Ok(uri) = format!("/onprem/{name}{path_and_query}").parse() {
        *req.uri_mut() = uri;
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    onprem: Arc<std::collections::HashMap<String, String>>,
    limits: ServerLimits,
    mut stop: oneshot::Receiver<()>,
) {
    // Every accepted connection gets an id, unique in the process, carried by each of its
    // requests: NTLM authenticates a connection, not a request.
    static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    // Accept errors (out of file descriptors, above all) back off instead of spinning.
    let mut backoff = std::time::Duration::ZERO;
    loop {
        // A free slot first: past the cap, connections wait in the kernel's backlog.
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => {
                        backoff = std::time::Duration::ZERO;
                        a
                    }
                    Err(e) => {
                        backoff = (backoff * 2).clamp(
                            std::time::Duration::from_millis(10),
                            std::time::Duration::from_secs(1),
                        );
                        tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                        drop(permit);
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                };
                let app = app.clone();
                let onprem = onprem.clone();
                let tls = tls.clone();
                let connection = exgate_emulator_exchange::ConnectionId(
                    NEXT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                );
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let app = app.clone();
                        let mut req = req.map(axum::body::Body::new);
                        route_by_host(&mut req, &onprem);
                        req.extensions_mut().insert(connection);
                        async move {
                            use tower::ServiceExt as _;
                            let resp = match app.oneshot(req).await {
                                Ok(r) => r,
                                Err(never) => match never {},
                            };
                            // An injected reset: drop the connection instead of answering.
                            if resp.extensions().get::<faults::InjectedReset>().is_some() {
                                return Err(std::io::Error::new(
                                    std::io::ErrorKind::ConnectionReset,
                                    "injected reset",
                                ));
                            }
                            Ok(resp)
                        }
                    });
                    let _permit = permit;
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(limits.header_read_timeout);
                    // No byte from the client for this long closes the connection: before
                    // the TLS handshake, before or inside the request headers, between requests.
                    let stream = idle::IdleTimeout::new(stream, limits.header_read_timeout);
                    match tls {
                        Some(acceptor) => {
                            let handshake = tokio::time::timeout(
                                limits.handshake_timeout,
                                acceptor.accept(stream),
                            );
                            let Ok(Ok(stream)) = handshake.await else { return };
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
                // Reap finished connections so the set does not grow without bound.
                while connections.try_join_next().is_some() {}
            }
        }
    }
    connections.shutdown().await;
}
