//! The shared HTTP layer: `reqwest` clients with connection reuse, a per-host concurrency limit,
//! bounded body reads, the retry loop, and evidence capture.
//!
//! EWS and Autodiscover go over HTTP/1.1 keep-alive connections, as Exchange's own clients (EWS
//! Managed API, Outlook's EWS calls, exchangelib) use them: a pool of connections spreads the
//! work over every core, and no load balancer in front of an on-premises server is asked for a
//! protocol it may handle badly. Graph negotiates HTTP/2 (ALPN), as Microsoft's Graph SDKs do.
//! Measured in `benches/verify`: EWS over HTTP/1.1 took 20-35% less wall time than over one
//! multiplexed HTTP/2 connection per host, client and server CPU together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;
use url::Url;

use crate::credentials::{AuthHeader, Credentials, Protocol, Target};
use crate::error::MailError;
use crate::evidence::{ErrorEvidence, ErrorKind, TransportKind};
use crate::ntlm::NtlmCredentials;
use crate::retry::{RetryDecision, RetryPolicy};

/// Largest response body read (MIME content of large messages fits comfortably).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Builds an [`HttpClient`].
#[derive(Debug, Clone)]
pub struct HttpClientBuilder {
    extra_roots_pem: Vec<Vec<u8>>,
    per_host_limit: usize,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    ews_http1: bool,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        HttpClientBuilder {
            extra_roots_pem: Vec::new(),
            per_host_limit: 8,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(100),
            connect_timeout: Duration::from_secs(15),
            user_agent: concat!("exgate/", env!("CARGO_PKG_VERSION")).to_owned(),
            ews_http1: true,
        }
    }
}

impl HttpClientBuilder {
    /// Defaults: 8 concurrent requests per host, default retry policy, 100 s timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the certificates of this PEM bundle in addition to the system roots.
    pub fn extra_root_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots_pem.push(pem.into());
        self
    }

    /// At most `limit` requests in flight per host (at least 1).
    pub fn per_host_limit(mut self, limit: usize) -> Self {
        self.per_host_limit = limit.max(1);
        self
    }

    /// The retry policy every client built on this one uses.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whole-request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether EWS and Autodiscover requests use HTTP/1.1 connections (the default) rather than
    /// negotiating HTTP/2 like Graph requests.
    pub fn ews_http1(mut self, on: bool) -> Self {
        self.ews_http1 = on;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Builds the client. Fails if a PEM bundle holds no usable certificate.
    pub fn build(self) -> Result<HttpClient, MailError> {
        let client = self.client(false)?;
        let ews = if self.ews_http1 {
            self.client(true)?
        } else {
            client.clone()
        };
        Ok(HttpClient {
            inner: Arc::new(Inner {
                client,
                ews,
                limits: Mutex::new(HashMap::new()),
                per_host: self.per_host_limit,
                retry: self.retry.clone(),
                ntlm_slots: Mutex::new(HashMap::new()),
                builder: self,
            }),
        })
    }

    /// A client that keeps at most one idle connection per host, for an NTLM slot: requests on
    /// it run one at a time, so the handshake's messages share one connection.
    fn ntlm_client(&self) -> Result<reqwest::Client, MailError> {
        self.client_with(true, true)
    }

    fn client(&self, http1_only: bool) -> Result<reqwest::Client, MailError> {
        self.client_with(http1_only, false)
    }

    fn client_with(
        &self,
        http1_only: bool,
        single_connection: bool,
    ) -> Result<reqwest::Client, MailError> {
        let mut b = reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            // Redirects are followed (or refused) by the clients themselves: Autodiscover
            // validates every hop, and EWS/Graph never legitimately redirect a POST.
            .redirect(reqwest::redirect::Policy::none());
        for (i, pem) in self.extra_roots_pem.iter().enumerate() {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                MailError::config(format!(
                    "extra root CA bundle #{} is not valid PEM: {e}; pass a PEM file with BEGIN CERTIFICATE blocks",
                    i + 1
                ))
            })?;
            if certs.is_empty() {
                return Err(MailError::config(format!(
                    "extra root CA bundle #{} holds no certificate",
                    i + 1
                )));
            }
            b = b.tls_certs_merge(certs);
        }
        if http1_only {
            b = b.http1_only();
        }
        if single_connection {
            b = b.pool_max_idle_per_host(1);
        }
        b.build()
            .map_err(|e| MailError::config(format!("cannot build the HTTP client: {e}")))
    }
}

/// A client with at most one idle connection, and whether that connection is authenticated.
#[derive(Debug)]
struct NtlmSlot {
    client: reqwest::Client,
    authenticated: bool,
}

/// `Authorization: NTLM <base64>`, never indexed by HPACK nor shown by `Debug`.
fn ntlm_header(message: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    let value = format!(
        "NTLM {}",
        base64::engine::general_purpose::STANDARD.encode(message)
    );
    // Base64 and a scheme word are always a valid header value.
    let mut hv = HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("NTLM"));
    hv.set_sensitive(true);
    hv
}

#[derive(Debug)]
struct Inner {
    /// Graph and anything else: HTTP/2 when the server offers it.
    client: reqwest::Client,
    /// EWS and Autodiscover (HTTP/1.1 unless the builder said otherwise).
    ews: reqwest::Client,
    /// Idle NTLM-authenticated connections, by origin and account.
    ntlm_slots: Mutex<HashMap<String, Vec<NtlmSlot>>>,
    /// The settings, for NTLM slots made on demand.
    builder: HttpClientBuilder,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_host: usize,
    retry: RetryPolicy,
}

/// A cheap-to-clone HTTP client shared by all mail clients.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

/// One request, ready to send (possibly several times).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Option<Vec<u8>>,
    pub target: Target,
    pub operation: String,
}

/// A response with its body read.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpClient {
    /// A client with default settings.
    pub fn new() -> Result<Self, MailError> {
        HttpClientBuilder::new().build()
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    fn semaphore(&self, url: &Url) -> Arc<Semaphore> {
        let key = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut map = match self.inner.limits.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.per_host)))
            .clone()
    }

    /// Evidence describing the request line, before any answer.
    pub(crate) fn base_evidence(req: &Prepared, creds: &dyn Credentials) -> ErrorEvidence {
        ErrorEvidence {
            protocol: Some(req.target.protocol),
            operation: Some(req.operation.clone()),
            auth_mode: Some(creds.mode().to_owned()),
            method: Some(req.method.to_string()),
            url: Some(req.url.to_string()),
            ..ErrorEvidence::default()
        }
    }

    /// Evidence from an answer (status, headers, body excerpt).
    pub(crate) fn answer_evidence(
        req: &Prepared,
        creds: &dyn Credentials,
        a: &Answer,
    ) -> ErrorEvidence {
        let mut ev = Self::base_evidence(req, creds);
        ev.status = Some(a.status.as_u16());
        ev.set_headers(&a.headers);
        ev.set_body(&a.body);
        ev
    }

    /// Sends once; transport failures become [`ErrorKind::Transport`] errors. Any status is
    /// returned as an [`Answer`]. NTLM credentials run their handshake here, on a connection of
    /// their own (see [`HttpClient::send_ntlm`]).
    pub(crate) async fn send_once(
        &self,
        req: &Prepared,
        creds: &dyn Credentials,
    ) -> Result<Answer, MailError> {
        if let Some(ntlm) = creds.ntlm() {
            let _permit = self.semaphore(&req.url).acquire_owned().await;
            return self.send_ntlm(req, creds, ntlm).await;
        }
        let auth = creds.authorization(&req.target).await.map_err(|e| {
            let msg = format!("the credential source failed: {e}");
            MailError::with_message(ErrorKind::Credentials, msg, Self::base_evidence(req, creds))
                .with_source(e)
        })?;
        let client = match req.target.protocol {
            Protocol::Ews | Protocol::Autodiscover => &self.inner.ews,
            Protocol::Graph => &self.inner.client,
        };
        let auth = match &auth {
            AuthHeader::Value(v) => {
                let mut hv = HeaderValue::from_str(v.expose_secret()).map_err(|_| {
                    MailError::with_message(
                        ErrorKind::Credentials,
                        "the credential source produced a value that is not a valid HTTP header",
                        Self::base_evidence(req, creds),
                    )
                })?;
                hv.set_sensitive(true);
                Some(hv)
            }
            AuthHeader::None => None,
        };
        let _permit = self.semaphore(&req.url).acquire_owned().await;
        self.exchange(client, req, creds, auth).await
    }

    /// One request and its whole answer on `client`.
    async fn exchange(
        &self,
        client: &reqwest::Client,
        req: &Prepared,
        creds: &dyn Credentials,
        auth: Option<HeaderValue>,
    ) -> Result<Answer, MailError> {
        let mut rb = client.request(req.method.clone(), req.url.clone());
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(hv) = auth {
            rb = rb.header(reqwest::header::AUTHORIZATION, hv);
        }
        if let Some(body) = &req.body {
            rb = rb.body(body.clone());
        }
        let result = async {
            let mut resp = rb.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Ok(Err((status, headers)));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok(Answer {
                status,
                headers,
                body,
            }))
        }
        .await;
        match result {
            Ok(Ok(a)) => Ok(a),
            Ok(Err((status, headers))) => {
                let mut ev = Self::base_evidence(req, creds);
                ev.status = Some(status.as_u16());
                ev.set_headers(&headers);
                ev.transport = Some(TransportKind::TooLarge);
                ev.transport_message = Some(format!("body larger than {MAX_BODY_BYTES} bytes"));
                Err(MailError::from_evidence(ErrorKind::Transport, ev))
            }
            Err(e) => {
                let mut ev = Self::base_evidence(req, creds);
                ev.transport = Some(classify_transport(&e));
                ev.transport_message = Some(error_chain(&e));
                Err(MailError::from_evidence(ErrorKind::Transport, ev))
            }
        }
    }

    /// Sends with NTLM on a slot: a client holding one keep-alive connection, used by one
    /// request at a time, so that NEGOTIATE, the server's CHALLENGE and AUTHENTICATE share the
    /// connection and later requests reuse its authentication. Slots are kept per origin and
    /// account, at most the per-host limit of them.
    async fn send_ntlm(
        &self,
        req: &Prepared,
        creds: &dyn Credentials,
        ntlm: &NtlmCredentials,
    ) -> Result<Answer, MailError> {
        let key = format!(
            "{}|{}",
            req.url.origin().ascii_serialization(),
            ntlm.account().to_lowercase()
        );
        let idle = {
            let mut slots = self
                .inner
                .ntlm_slots
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            slots.get_mut(&key).and_then(Vec::pop)
        };
        let mut slot = match idle {
            Some(slot) => slot,
            None => NtlmSlot {
                client: self.inner.builder.ntlm_client()?,
                authenticated: false,
            },
        };
        let result = self.ntlm_exchange(&mut slot, req, creds, ntlm).await;
        if result.is_ok() {
            let mut slots = self
                .inner
                .ntlm_slots
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let idle = slots.entry(key).or_default();
            if idle.len() < self.inner.per_host {
                idle.push(slot);
            }
        }
        result
    }

    async fn ntlm_exchange(
        &self,
        slot: &mut NtlmSlot,
        req: &Prepared,
        creds: &dyn Credentials,
        ntlm: &NtlmCredentials,
    ) -> Result<Answer, MailError> {
        if slot.authenticated {
            let a = self.exchange(&slot.client, req, creds, None).await?;
            if a.status != StatusCode::UNAUTHORIZED {
                return Ok(a);
            }
            // The connection was closed or its authentication dropped: shake hands again.
            slot.authenticated = false;
        }
        let negotiate = crate::ntlm::negotiate_message();
        let a = self
            .exchange(&slot.client, req, creds, Some(ntlm_header(&negotiate)))
            .await?;
        if a.status != StatusCode::UNAUTHORIZED {
            return Ok(a);
        }
        let offered = a
            .headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(crate::ntlm::challenge_token);
        let Some(challenge_bytes) = offered else {
            // No NTLM challenge: the server does not offer NTLM here; the 401 and its
            // challenges go to the caller as they are.
            return Ok(a);
        };
        let Some(challenge) = crate::ntlm::parse_challenge(&challenge_bytes) else {
            return Err(MailError::with_message(
                ErrorKind::InvalidResponse,
                "the server's NTLM challenge is not a CHALLENGE_MESSAGE",
                Self::answer_evidence(req, creds, &a),
            ));
        };
        let authenticate = crate::ntlm::authenticate_message(
            ntlm,
            &negotiate,
            &challenge_bytes,
            &challenge,
            crate::ntlm::client_challenge(),
            crate::ntlm::file_time_now(),
        );
        let a = self
            .exchange(&slot.client, req, creds, Some(ntlm_header(&authenticate)))
            .await?;
        slot.authenticated = a.status != StatusCode::UNAUTHORIZED;
        Ok(a)
    }

    /// Runs `attempt` until it succeeds or the retry policy says stop. The final error records
    /// how many attempts were made.
    pub(crate) async fn with_retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, MailError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, MailError>>,
    {
        let mut n = 0u32;
        loop {
            n += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(mut e) => {
                    let decision = self.inner.retry.decide(
                        n,
                        e.evidence(),
                        SystemTime::now(),
                        fastrand::f64(),
                    );
                    match decision {
                        RetryDecision::Retry { after, reason } => {
                            tracing::debug!(attempt = n, ?after, reason, error = %e, "retrying");
                            tokio::time::sleep(after).await;
                        }
                        RetryDecision::Stop { reason } => {
                            tracing::debug!(attempt = n, reason, "not retrying");
                            e.set_attempts(n);
                            return Err(e);
                        }
                    }
                }
            }
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn classify_transport(e: &reqwest::Error) -> TransportKind {
    let chain = error_chain(e).to_ascii_lowercase();
    if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_dns()
        || chain.contains("dns error")
        || chain.contains("failed to lookup address")
    {
        TransportKind::Dns
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake")
    {
        TransportKind::Tls
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Io
    }
}

/// The error class an HTTP status implies before the body is looked at.
pub(crate) fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        429 | 503 => ErrorKind::Throttled,
        _ => ErrorKind::Http,
    }
}
