//! `exgate-gateway`: devices and legacy apps that only know a password keep sending and reading
//! mail after Basic authentication ends. They sign in to the gateway with a local account; the
//! gateway signs in to Exchange with OAuth.
//!
//! - [`config`]: the TOML configuration (listeners, TLS, spool, upstream, profiles, accounts).
//! - [`accounts`]: argon2id passwords, source networks, protocols, lockout, audit lines.
//! - [`smtp`]: SMTP submission toward devices; a message is acknowledged once spooled.
//! - [`spool`]: the durable queue (fsync before `250`, handover markers, recovery).
//! - [`deliver`]: upstream submission with XOAUTH2, limits, retries, DSNs.
//! - [`imap`], [`pop`]: local LOGIN / USER-PASS, then upstream XOAUTH2 and a byte relay
//!   (`relay`: the line connection the three protocols share, the upstream opening, the relay).
//! - [`explain`]: every upstream refusal through exgate-diagnose.
//! - [`metrics`]: Prometheus counters and the health endpoint.
//!
//! [`Gateway::start`] binds every listener, recovers the spool and starts delivery;
//! [`Gateway::reload`] re-reads accounts and passwords; [`Gateway::shutdown`] stops accepting,
//! drains sessions and leaves undelivered mail in the spool.

// Libraries never print: output belongs to the binary (see ARCHITECTURE.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod accounts;
pub mod config;
pub mod deliver;
pub mod explain;
pub mod imap;
pub mod metrics;
pub mod pop;
mod relay;
pub mod smtp;
pub mod spool;
mod tls;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::accounts::{Authenticator, PasswordFile, PasswordFileError, Refusal};
use crate::config::{AccountConfig, ConfigError, GatewayConfig, Service};
use crate::deliver::Delivery;
use crate::metrics::Metrics;
use crate::spool::Spool;
use crate::upstream::Upstreams;

/// Why the gateway could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The password file.
    #[error(transparent)]
    Passwords(#[from] PasswordFileError),
    /// The certificate toward devices.
    #[error("{0}")]
    Tls(String),
    /// An auth profile.
    #[error("auth profile: {0}")]
    Auth(#[from] exgate_auth::AuthError),
    /// A listener, the spool.
    #[error("{what}: {error}\n  fix: {fix}")]
    Io {
        /// What failed (`listening on 127.0.0.1:587`).
        what: String,
        /// The system's error.
        error: std::io::Error,
        /// How to fix it.
        fix: String,
    },
}

/// What the sessions and the delivery share.
pub struct Shared {
    config: RwLock<Arc<GatewayConfig>>,
    authenticator: RwLock<Arc<Authenticator>>,
    pub(crate) spool: Spool,
    pub(crate) delivery: Delivery,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) upstreams: UpstreamsHandle,
    pub(crate) upstream_ca: Option<Vec<u8>>,
    /// The HTTP client toward Graph (one connection pool).
    pub(crate) http: Option<exgate_mail::HttpClient>,
}

/// The current [`Upstreams`] (replaced on reload).
pub(crate) struct UpstreamsHandle(Arc<RwLock<Arc<Upstreams>>>);

impl UpstreamsHandle {
    fn current(&self) -> Arc<Upstreams> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub(crate) async fn token(
        &self,
        account: &AccountConfig,
    ) -> Result<SecretString, exgate_auth::AuthError> {
        self.current().token(account).await
    }
    pub(crate) async fn graph_token(
        &self,
        account: &AccountConfig,
    ) -> Result<SecretString, exgate_auth::AuthError> {
        self.current().graph_token(account).await
    }
    pub(crate) fn invalidate(&self, account: &AccountConfig) {
        if account.upstream_basic.is_none() {
            self.current().invalidate(account);
        }
    }

    /// How the gateway signs in upstream as `account`: XOAUTH2 with a token from its profile,
    /// or a password for on-premises Exchange (`upstream_basic`). The token, when there is one,
    /// is returned too, for diagnosing a refusal.
    pub(crate) async fn sasl(
        &self,
        account: &AccountConfig,
    ) -> Result<(exgate_mail::sasl::SaslAuth, Option<SecretString>), exgate_auth::AuthError> {
        if let Some(b) = &account.upstream_basic {
            let password = b.password().map_err(|m| {
                exgate_auth::AuthError::Config(exgate_auth::ConfigError::new(
                    "gateway".to_owned(),
                    "upstream_basic",
                    m,
                    "set the variable or write the file".to_owned(),
                ))
            })?;
            let auth = match b.mechanism {
                crate::config::PasswordMechanism::Login => exgate_mail::sasl::SaslAuth::Login {
                    user: b.username.clone(),
                    password,
                },
                crate::config::PasswordMechanism::Ntlm => exgate_mail::sasl::SaslAuth::Ntlm(
                    exgate_mail::ntlm::NtlmCredentials::new(&b.username, password),
                ),
            };
            return Ok((auth, None));
        }
        let token = self.token(account).await?;
        Ok((
            exgate_mail::sasl::SaslAuth::Xoauth2 {
                user: account.mailbox.clone(),
                token: token.clone(),
            },
            Some(token),
        ))
    }
}

impl Shared {
    /// The current configuration.
    pub(crate) fn config(&self) -> Arc<GatewayConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) async fn sign_in(
        &self,
        name: &str,
        password: SecretString,
        source: IpAddr,
        service: Service,
    ) -> Result<Arc<AccountConfig>, Refusal> {
        let auth = self
            .authenticator
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let r = auth.sign_in(name, password, source, service).await;
        let account = r
            .as_ref()
            .map_or_else(|_| "(refused)".to_owned(), |a| a.name.clone());
        self.metrics.count(
            "auth",
            &account,
            match &r {
                Ok(_) => "accepted",
                Err(e) => e.name(),
            },
        );
        r
    }

    pub(crate) fn account(&self, name: &str) -> Option<AccountConfig> {
        self.config().account(name).cloned()
    }
}

/// The addresses the gateway listens on (ports resolved when `:0` was configured).
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    /// SMTP with STARTTLS.
    pub smtp: Vec<SocketAddr>,
    /// SMTP in TLS.
    pub smtps: Vec<SocketAddr>,
    /// SMTP without TLS.
    pub smtp_plain: Vec<SocketAddr>,
    /// IMAP with STARTTLS.
    pub imap: Vec<SocketAddr>,
    /// IMAP in TLS.
    pub imaps: Vec<SocketAddr>,
    /// POP3 with STLS.
    pub pop3: Vec<SocketAddr>,
    /// POP3 in TLS.
    pub pop3s: Vec<SocketAddr>,
    /// `/metrics` and `/health`.
    pub metrics: Option<SocketAddr>,
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    addresses: Addresses,
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
    sessions: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    delivery: Option<tokio::task::JoinHandle<()>>,
    warnings: Vec<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Smtp(smtp::Mode),
    Imap(imap::Mode),
    Pop(pop::Mode),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr).await.map_err(|error| GatewayError::Io {
        what: format!("listening on {addr}"),
        fix: if addr.port() < 1024 {
            "ports below 1024 need privileges: run under systemd with AmbientCapabilities=CAP_NET_BIND_SERVICE, or choose another port".into()
        } else {
            "choose a free port, or stop what listens there".into()
        },
        error,
    })
}

fn load_passwords(config: &GatewayConfig) -> Result<PasswordFile, GatewayError> {
    Ok(PasswordFile::load(&config.gateway.passwords)?)
}

impl Gateway {
    /// Starts the gateway: spool recovery, listeners, metrics, delivery.
    pub async fn start(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        let passwords = load_passwords(&config)?;
        let authenticator = Authenticator::new(&config, passwords);
        let mut warnings = Vec::new();
        for name in authenticator.without_password() {
            warnings.push(format!(
                "account `{name}` has no password yet: it cannot sign in until `exgate gateway passwd {name}` sets one"
            ));
        }
        let tls = match &config.tls {
            Some(files) => Some(tls::acceptor(files).map_err(GatewayError::Tls)?),
            None => None,
        };
        let upstream_ca = match &config.upstream.ca_pem {
            Some(p) => Some(std::fs::read(p).map_err(|error| GatewayError::Io {
                what: format!("reading {}", p.display()),
                error,
                fix: "point [upstream] ca_pem at a PEM file, or remove it".into(),
            })?),
            None => None,
        };
        let spool = Spool::open(&config.spool.path).map_err(|error| GatewayError::Io {
            what: format!("opening the spool {}", config.spool.path.display()),
            error,
            fix: "set [spool] path to a directory the gateway may write".into(),
        })?;
        let upstreams = Arc::new(RwLock::new(Arc::new(Upstreams::new(&config)?)));
        let metrics = Arc::new(Metrics::new());
        let http = {
            let mut b = exgate_mail::HttpClientBuilder::new()
                .timeout(Duration::from_secs(config.upstream.timeout_secs.max(1)));
            if let Some(pem) = &upstream_ca {
                b = b.extra_root_pem(pem.clone());
            }
            b.build().ok()
        };
        let listen = config.listen.clone();
        let max_connections = config.gateway.max_connections.max(1);
        for a in listen
            .smtp
            .iter()
            .chain(&listen.smtps)
            .chain(&listen.smtp_plain)
            .chain(&listen.imap)
            .chain(&listen.imaps)
            .chain(&listen.pop3)
            .chain(&listen.pop3s)
        {
            if !a.ip().is_loopback() {
                tracing::info!(address = %a, "listening beyond this machine (configured)");
            }
        }
        if !listen.smtp_plain.is_empty() {
            warnings.push(
                "SMTP without TLS is on (allow_plain): passwords cross the device network in the clear"
                    .into(),
            );
        }
        let shared = Arc::new(Shared {
            config: RwLock::new(Arc::new(config)),
            authenticator: RwLock::new(Arc::new(authenticator)),
            spool: spool.clone(),
            delivery: Delivery::default(),
            metrics: metrics.clone(),
            tls,
            upstreams: UpstreamsHandle(upstreams),
            upstream_ca,
            http,
        });
        let (found, problems) = spool.recover().map_err(|error| GatewayError::Io {
            what: format!("reading the spool {}", spool.dir().display()),
            error,
            fix: "check the spool directory's permissions".into(),
        })?;
        for p in problems {
            warnings.push(format!("unreadable spool entry left in place: {p}"));
        }
        let recovered = found.len();
        for env in found {
            shared.delivery.enqueue(env);
        }
        if recovered > 0 {
            tracing::info!(messages = recovered, "recovered messages from the spool");
        }

        let (stop, stop_rx) = watch::channel(false);
        let mut addresses = Addresses::default();
        let mut listeners = JoinSet::new();
        let sessions = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let limit = Arc::new(Semaphore::new(max_connections));
        let groups: [(&Vec<SocketAddr>, Kind, &mut Vec<SocketAddr>); 7] = [
            (
                &listen.smtp,
                Kind::Smtp(smtp::Mode::StartTls),
                &mut addresses.smtp,
            ),
            (
                &listen.smtps,
                Kind::Smtp(smtp::Mode::Tls),
                &mut addresses.smtps,
            ),
            (
                &listen.smtp_plain,
                Kind::Smtp(smtp::Mode::Plain),
                &mut addresses.smtp_plain,
            ),
            (
                &listen.imap,
                Kind::Imap(imap::Mode::StartTls),
                &mut addresses.imap,
            ),
            (
                &listen.imaps,
                Kind::Imap(imap::Mode::Tls),
                &mut addresses.imaps,
            ),
            (
                &listen.pop3,
                Kind::Pop(pop::Mode::StartTls),
                &mut addresses.pop3,
            ),
            (
                &listen.pop3s,
                Kind::Pop(pop::Mode::Tls),
                &mut addresses.pop3s,
            ),
        ];
        for (addrs, kind, out) in groups {
            for addr in addrs {
                let listener = bind(*addr).await?;
                out.push(listener.local_addr().unwrap_or(*addr));
                listeners.spawn(accept_loop(
                    listener,
                    kind,
                    shared.clone(),
                    limit.clone(),
                    sessions.clone(),
                    stop_rx.clone(),
                ));
            }
        }
        if let Some(addr) = listen.metrics {
            let listener = bind(addr).await?;
            addresses.metrics = Some(listener.local_addr().unwrap_or(addr));
            let router = metrics::router(metrics.clone());
            let mut rx = stop_rx.clone();
            listeners.spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        let delivery = tokio::spawn(deliver::run(shared.clone(), stop_rx));
        Ok(Gateway {
            shared,
            addresses,
            stop,
            listeners,
            sessions,
            delivery: Some(delivery),
            warnings,
        })
    }

    /// Where the gateway listens.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// Warnings found at start (accounts without a password, plain SMTP, unreadable spool
    /// entries).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Messages waiting for delivery.
    pub fn queue_depth(&self) -> usize {
        self.shared.delivery.depth()
    }

    /// Re-reads the configuration file and the password file: accounts, passwords, profiles
    /// and limits change; listeners and TLS stay as started. On an error nothing changes.
    pub fn reload(&self) -> Result<(), GatewayError> {
        let path = self.shared.config().source.clone();
        let config = GatewayConfig::load(Path::new(&path))?;
        let passwords = load_passwords(&config)?;
        let upstreams = Upstreams::new(&config)?;
        let authenticator = Authenticator::new(&config, passwords);
        *self
            .shared
            .authenticator
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(authenticator);
        *self
            .shared
            .upstreams
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(upstreams);
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Stops accepting connections, lets open sessions finish for up to `grace`, waits for
    /// deliveries in flight; undelivered messages stay in the spool for the next start.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        self.listeners.abort_all();
        while self.listeners.join_next().await.is_some() {}
        let sessions = self.sessions.clone();
        let drained = tokio::time::timeout(grace, async {
            let mut s = sessions.lock().await;
            while s.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            sessions.lock().await.abort_all();
        }
        if let Some(d) = self.delivery.take() {
            let _ = d.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    kind: Kind,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    sessions: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((tcp, peer)) = accepted else {
            // Out of file descriptors and the like: back off briefly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            let mut tcp = tcp;
            let busy: &[u8] = match kind {
                Kind::Smtp(_) => b"421 4.3.2 Too many connections, try again later\r\n",
                Kind::Imap(_) => b"* BYE Too many connections, try again later\r\n",
                Kind::Pop(_) => b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
            };
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let _ = tcp.write_all(busy).await;
            });
            continue;
        };
        let s = shared.clone();
        let mut set = sessions.lock().await;
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            s.metrics.connection_opened();
            match kind {
                Kind::Smtp(mode) => smtp::serve(s.clone(), tcp, peer, mode).await,
                Kind::Imap(mode) => imap::serve(s.clone(), tcp, peer, mode).await,
                Kind::Pop(mode) => pop::serve(s.clone(), tcp, peer, mode).await,
            }
            s.metrics.connection_closed();
            drop(permit);
        });
    }
}
