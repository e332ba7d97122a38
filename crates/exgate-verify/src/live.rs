//! The live prober: `exgate-auth` for tokens, `exgate-mail` for Autodiscover, EWS and Graph,
//! `exgate-diagnose` for the causes of every failure.
//!
//! - Token: one [`TokenProvider`] per endpoint (OAuth modes); the runner asks once per
//!   [`TokenKey`], and the credentials handed to the mail clients draw from the provider's
//!   single-flight cache, which renews tokens ahead of expiry during long runs.
//! - Basic: nothing to acquire; the credentials are checked by the first mailbox call.
//! - A failure is turned into diagnose evidence (status, headers, body excerpt, URL, mailbox,
//!   auth mode) and ranked. Token failures and causes that concern the whole app or tenant
//!   (bad secret, missing consent, missing permission, unreachable host, …) are endpoint-wide;
//!   the rest belong to the mailbox.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exgate_auth::{
    AssertionOptions, AuthError, Authority, ClientAuth, ClientCertificate, Credential,
    EndpointVersion, HttpOptions, PUBLIC_CLOUD_HOST, ProviderConfig, TokenProvider, TokenRequest,
};
use exgate_mail::autodiscover::AutodiscoverClient;
use exgate_mail::ews::ConnectingSid;
use exgate_mail::ntlm::NtlmCredentials;
use exgate_mail::{
    Anonymous, Basic, Bearer, BoxError, BoxFuture, Credentials, ErrorKind, HttpClient,
    HttpClientBuilder, MailEndpoint, MailError, open_mailbox,
};
use secrecy::SecretString;
use url::Url;

use crate::model::{Cause, Evidence, Side};
use crate::probe::{FailureScope, Prober, Resolved, StepFailure, StepOutput, Target, TokenKey};
use crate::project::{Api, AuthProfile, Discovery, Endpoint, EndpointKind, Project};

/// Settings of the live prober.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// An extra trusted root CA in PEM (an emulator's or a private CA).
    pub extra_root_pem: Option<Vec<u8>>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Accept plain-http Autodiscover redirects (test beds only).
    pub allow_http: bool,
    /// Requests in flight to one host at most. The runner's own limits (mailboxes at once, per
    /// tenant) decide the load; this only keeps the HTTP client from capping them lower.
    pub max_in_flight: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            extra_root_pem: None,
            timeout: Duration::from_secs(30),
            allow_http: false,
            max_in_flight: 64,
        }
    }
}

/// The live prober could not be set up (nothing was sent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// An endpoint's credentials could not be turned into a token provider.
    #[error("{side} endpoint: {message}")]
    Setup {
        /// Which side.
        side: Side,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The resource Graph tokens are requested for.
const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// The public client used for the sign-in check of a Basic failure (see
/// [`exgate_auth::signin_check`]).
pub use exgate_auth::SIGNIN_CHECK_CLIENT_ID;

struct SideLive {
    provider: Option<TokenProvider>,
}

/// Reaches real (or emulated) Entra ID and Exchange.
pub struct LiveProber {
    http: HttpClient,
    sides: [SideLive; 2],
    allow_http: bool,
    extra_root_pem: Option<Vec<u8>>,
    timeout: Duration,
}

impl std::fmt::Debug for LiveProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveProber")
            .field("source", &self.sides[0].provider)
            .field("destination", &self.sides[1].provider)
            .finish()
    }
}

fn idx(side: Side) -> usize {
    match side {
        Side::Source => 0,
        Side::Destination => 1,
    }
}

fn secret(s: &crate::Secret) -> SecretString {
    SecretString::from(s.expose().to_owned())
}

fn provider_for(
    side: Side,
    ep: &Endpoint,
    options: &LiveOptions,
) -> Result<Option<TokenProvider>, LiveError> {
    let setup = |message: String| LiveError::Setup { side, message };
    let cert = |path: &PathBuf, key: &Option<PathBuf>, password: &Option<crate::Secret>| {
        ClientCertificate::from_file(path, key.as_deref(), password.as_ref().map(secret).as_ref())
            .map_err(|e| setup(format!("certificate {}: {e}", path.display())))
    };
    let (client_id, credential) = match &ep.auth {
        AuthProfile::Basic { .. } => return Ok(None),
        AuthProfile::AppSecret {
            client_id,
            secret: s,
        } => (client_id, Credential::ClientSecret(secret(s))),
        AuthProfile::AppCertificate {
            client_id,
            certificate,
            key,
            certificate_password,
        } => (
            client_id,
            Credential::Certificate {
                cert: cert(certificate, key, certificate_password)?,
                options: AssertionOptions::default(),
            },
        ),
        AuthProfile::DelegatedRefresh {
            client_id,
            refresh_token,
        } => (
            client_id,
            Credential::RefreshToken {
                client: ClientAuth::Public,
                refresh_token: secret(refresh_token),
            },
        ),
        AuthProfile::Hma {
            client_id,
            secret: s,
            certificate,
            key,
            certificate_password,
            ..
        } => match (s, certificate) {
            (Some(s), _) => (client_id, Credential::ClientSecret(secret(s))),
            (None, Some(c)) => (
                client_id,
                Credential::Certificate {
                    cert: cert(c, key, certificate_password)?,
                    options: AssertionOptions::default(),
                },
            ),
            (None, None) => return Err(setup("hma needs a secret or a certificate".into())),
        },
    };
    let tenant = ep
        .tenant
        .as_deref()
        .ok_or_else(|| setup("the tenant is missing".into()))?;
    let host = ep.authority_host.as_deref().unwrap_or(PUBLIC_CLOUD_HOST);
    let authority =
        Authority::new(host, tenant, EndpointVersion::V2).map_err(|e| setup(e.to_string()))?;
    let mut config = ProviderConfig::new(authority, client_id.clone(), credential);
    config.http = HttpOptions {
        extra_root_ca_pem: options.extra_root_pem.clone(),
        timeout: options.timeout,
    };
    if let Some(store) = &ep.store {
        config.store = Some(
            store
                .open(&format!("[{}.auth.store]", side.as_str()))
                .map_err(|e| setup(format!("token store: {e}")))?,
        );
    }
    TokenProvider::new(config)
        .map(Some)
        .map_err(|e| setup(e.to_string()))
}

impl LiveProber {
    /// Builds token providers and the shared HTTP client for both endpoints of `project`.
    pub fn new(project: &Project, options: &LiveOptions) -> Result<Self, LiveError> {
        let mut builder = HttpClientBuilder::new()
            .timeout(options.timeout)
            .per_host_limit(options.max_in_flight);
        if let Some(pem) = &options.extra_root_pem {
            builder = builder.extra_root_pem(pem.clone());
        }
        let http = builder.build().map_err(|e| LiveError::Setup {
            side: Side::Source,
            message: format!("HTTP client: {e}"),
        })?;
        let side = |s: Side| -> Result<SideLive, LiveError> {
            Ok(SideLive {
                provider: match project.endpoint(s) {
                    Some(ep) => provider_for(s, ep, options)?,
                    None => None,
                },
            })
        };
        Ok(Self {
            http,
            sides: [side(Side::Source)?, side(Side::Destination)?],
            allow_http: options.allow_http,
            extra_root_pem: options.extra_root_pem.clone(),
            timeout: options.timeout,
        })
    }

    fn side(&self, side: Side) -> &SideLive {
        &self.sides[idx(side)]
    }

    /// The claims of the token this endpoint sends, for a refusal (401/403) of a bearer call: the
    /// provider's cache still holds it, so this makes no new request.
    async fn token_claims(
        &self,
        target: &Target,
        resolved: &Resolved,
        err: &MailError,
    ) -> Option<exgate_diagnose::jwt::TokenClaims> {
        if !matches!(err.kind(), ErrorKind::Unauthorized | ErrorKind::Forbidden)
            || auth_mode(target) != exgate_diagnose::AuthMode::Bearer
        {
            return None;
        }
        let provider = self.side(target.side).provider.as_ref()?;
        let request = Self::token_request(&target.endpoint, resolved);
        let token = provider.token(&request).await.ok()?;
        exgate_diagnose::jwt::TokenClaims::from_token(token.secret()).ok()
    }

    fn is_app_only(ep: &Endpoint) -> bool {
        matches!(
            ep.auth,
            AuthProfile::AppSecret { .. }
                | AuthProfile::AppCertificate { .. }
                | AuthProfile::Hma { .. }
        )
    }

    fn token_request(ep: &Endpoint, resolved: &Resolved) -> TokenRequest {
        match (ep.kind, ep.api) {
            (EndpointKind::ExchangeOnline, Api::Graph) => {
                TokenRequest::resource_default(GRAPH_RESOURCE)
            }
            (EndpointKind::ExchangeOnline, Api::Ews) => TokenRequest::exchange_online(),
            (EndpointKind::ExchangeOnprem, _) => match Url::parse(match &ep.auth {
                AuthProfile::Hma {
                    resource: Some(resource),
                    ..
                } => resource,
                _ => &resolved.url,
            }) {
                Ok(url) => exgate_auth::on_prem_request(
                    &url,
                    matches!(ep.auth, AuthProfile::DelegatedRefresh { .. }),
                ),
                Err(_) => TokenRequest::exchange_online(),
            },
        }
    }

    fn mail_endpoint(target: &Target, resolved: &Resolved) -> Result<MailEndpoint, StepFailure> {
        let ep = &target.endpoint;
        if ep.api == Api::Graph {
            return Ok(MailEndpoint::Graph {
                base: resolved.url.clone(),
            });
        }
        let url = Url::parse(&resolved.url).map_err(|e| {
            StepFailure::endpoint(
                format!("the EWS URL {} is not valid: {e}", resolved.url),
                Evidence {
                    url: Some(resolved.url.clone()),
                    message: e.to_string(),
                    ..Evidence::default()
                },
                Vec::new(),
            )
        })?;
        let impersonate = Self::is_app_only(ep)
            || matches!(
                ep.auth,
                AuthProfile::Basic {
                    impersonation: true,
                    ..
                }
            ) && target.credentials.is_none();
        Ok(MailEndpoint::Ews {
            url,
            impersonation: impersonate
                .then(|| ConnectingSid::PrimarySmtpAddress(target.address.clone())),
            server_version: None,
        })
    }

    /// Password credentials (the line's own, else the endpoint's): Basic, or NTLM when the
    /// endpoint's mode is `ntlm`.
    fn basic_credentials(target: &Target) -> Option<Arc<dyn Credentials>> {
        let ntlm = matches!(target.endpoint.auth, AuthProfile::Basic { ntlm: true, .. });
        let (username, password) = match (&target.credentials, &target.endpoint.auth) {
            (Some(c), _) => (&c.username, &c.password),
            (
                None,
                AuthProfile::Basic {
                    username, password, ..
                },
            ) => (username, password),
            _ => return None,
        };
        Some(if ntlm {
            Arc::new(NtlmCredentials::new(username, secret(password)))
        } else {
            Arc::new(Basic::new(username.clone(), secret(password)))
        })
    }
}

use exgate_auth::SigninCheck;

impl LiveProber {
    /// After Exchange Online answers 401 to Basic credentials, asks Entra ID to sign the same
    /// account in with the same password (ROPC with [`SIGNIN_CHECK_CLIENT_ID`]). A wrong password,
    /// MFA, a locked or disabled account all look alike at Exchange; Entra ID names them. Runs only
    /// for Basic against Exchange Online, never retries, and returns `None` when the check itself
    /// could not be made.
    async fn signin_check(&self, target: &Target, err: &MailError) -> Option<SigninCheck> {
        if target.endpoint.kind != EndpointKind::ExchangeOnline
            || err.evidence().status != Some(401)
        {
            return None;
        }
        let (username, password) = match (&target.credentials, &target.endpoint.auth) {
            (Some(c), _) => (c.username.clone(), secret(&c.password)),
            (
                None,
                AuthProfile::Basic {
                    username, password, ..
                },
            ) => (username.clone(), secret(password)),
            _ => return None,
        };
        let host = target
            .endpoint
            .authority_host
            .as_deref()
            .unwrap_or(PUBLIC_CLOUD_HOST);
        exgate_auth::signin_check(
            host,
            target.endpoint.tenant.as_deref(),
            &username,
            &password,
            HttpOptions {
                extra_root_ca_pem: self.extra_root_pem.clone(),
                timeout: self.timeout,
            },
        )
        .await
    }
}

/// Hands tokens from the provider's cache to the mail clients.
struct ProviderSource {
    provider: TokenProvider,
    request: TokenRequest,
}

impl std::fmt::Debug for ProviderSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSource")
            .field("provider", &self.provider)
            .field("scopes", &self.request.scopes)
            .finish()
    }
}

impl exgate_mail::TokenSource for ProviderSource {
    fn token<'a>(
        &'a self,
        _target: &'a exgate_mail::Target,
    ) -> BoxFuture<'a, Result<SecretString, BoxError>> {
        Box::pin(async move {
            let t = self.provider.token(&self.request).await?;
            Ok(SecretString::from(t.secret().to_owned()))
        })
    }
}

fn convert_causes(d: exgate_diagnose::Diagnosis) -> Vec<Cause> {
    d.causes
}

/// Headers worth keeping in a report.
const KEPT_HEADERS: &[&str] = &[
    "www-authenticate",
    "x-ms-diagnostics",
    "retry-after",
    "request-id",
    "client-request-id",
    "x-ms-ags-diagnostic",
    "x-feserver",
    "x-beserver",
];

fn scope_for(target: &Target, causes: &[Cause], transport: bool) -> FailureScope {
    if transport {
        return FailureScope::Endpoint;
    }
    if target.credentials.is_some() {
        return FailureScope::Mailbox;
    }
    match causes.first() {
        Some(c)
            if exgate_diagnose::builtin_catalog().is_ok_and(|cat| cat.is_endpoint_wide(&c.id)) =>
        {
            FailureScope::Endpoint
        }
        _ => FailureScope::Mailbox,
    }
}

fn mail_failure(err: &MailError, target: &Target, auth: exgate_diagnose::AuthMode) -> StepFailure {
    mail_failure_with(err, target, auth, None, None)
}

/// [`mail_failure`], with Entra ID's answer to a sign-in check with the same credentials.
fn mail_failure_with(
    err: &MailError,
    target: &Target,
    auth: exgate_diagnose::AuthMode,
    signin: Option<SigninCheck>,
    claims: Option<exgate_diagnose::jwt::TokenClaims>,
) -> StepFailure {
    let ev = err.evidence();
    let message = err.to_string();
    let mut d = match ev.status {
        Some(status) => exgate_diagnose::Evidence::from_http_response(
            status,
            ev.headers.iter().map(|(k, v)| (k.clone(), v.clone())),
            ev.body_excerpt.clone().unwrap_or_default(),
        ),
        None => exgate_diagnose::Evidence::from_text(&message),
    };
    if let Some(url) = &ev.url {
        d = d.with_url(url.clone());
    }
    d = d
        .with_mailbox(target.address.clone())
        .with_auth(auth)
        .app_only(LiveProber::is_app_only(&target.endpoint))
        .with_environment(match target.endpoint.kind {
            EndpointKind::ExchangeOnline => exgate_diagnose::Environment::ExchangeOnline,
            EndpointKind::ExchangeOnprem => exgate_diagnose::Environment::OnPremises,
        });
    if let Some(code) = ev.service_code() {
        d = d.with_ews_error(code, message.clone());
    }
    // The token this endpoint sent: its claims are checked against what the call needs.
    if let Some(c) = claims {
        d = d.with_claims(c).at(now_secs());
    }
    if ev.status.is_some() {
        d = d.with_text(&message);
    }
    let mut signin_fact = None;
    if let Some(check) = signin {
        signin_fact = Some(check.summary());
        if check.password_accepted() {
            d.attempt.password_accepted = Some(true);
        }
        if let Some(e) = check.evidence() {
            d = d.with_entra_error(e.clone());
        }
    }
    let causes = convert_causes(exgate_diagnose::diagnose(&d));
    let mut headers = BTreeMap::new();
    for (k, v) in &ev.headers {
        let lk = k.to_ascii_lowercase();
        if KEPT_HEADERS.contains(&lk.as_str()) {
            headers.insert(lk, v.clone());
        }
    }
    let mut facts = BTreeMap::new();
    if let Some(fact) = signin_fact {
        facts.insert("signin_check".to_owned(), fact);
    }
    if let Some(op) = &ev.operation {
        facts.insert("operation".to_owned(), op.clone());
    }
    if let Some(mode) = &ev.auth_mode {
        facts.insert("auth_mode".to_owned(), mode.clone());
    }
    if let Some(t) = &ev.transport_message {
        facts.insert("transport".to_owned(), t.clone());
    }
    if ev.attempts > 1 {
        facts.insert("attempts".to_owned(), ev.attempts.to_string());
    }
    // No HTTP answer, or an HTTP 404 without any EWS/Graph error body: the service URL itself
    // is wrong or unreachable, whichever mailbox is asked for.
    let wrong_url = ev.status == Some(404) && ev.service_code().is_none();
    let transport = matches!(err.kind(), ErrorKind::Transport) || wrong_url;
    let scope = scope_for(target, &causes, transport);
    let failure = StepFailure {
        error: message.clone(),
        evidence: Box::new(Evidence {
            url: ev.url.clone(),
            status: ev.status,
            code: ev.service_code().map(str::to_owned),
            message,
            headers,
            facts,
        }),
        causes,
        scope,
        retry_after: None,
    };
    if matches!(err.kind(), ErrorKind::Throttled) {
        let wait = ev
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(5));
        failure.throttled(wait)
    } else {
        failure
    }
}

fn auth_failure(err: &AuthError, target: &Target, key: &TokenKey) -> StepFailure {
    let message = err.to_string();
    let mut facts = BTreeMap::new();
    let (d, status, code) = match err {
        AuthError::Entra { status, body } => {
            if !body.trace_id.is_empty() {
                facts.insert("trace_id".to_owned(), body.trace_id.clone());
            }
            if !body.correlation_id.is_empty() {
                facts.insert("correlation_id".to_owned(), body.correlation_id.clone());
            }
            // The typed body goes to diagnosis as it is: one type from the wire to the report.
            let mut d = exgate_diagnose::Evidence::from_http_response(
                *status,
                [("Content-Type", "application/json")],
                "",
            );
            d.attempt.protocol = Some(exgate_diagnose::Protocol::TokenEndpoint);
            (
                d.with_entra_error(body.as_ref().clone()),
                Some(*status),
                body.error_codes.first().map(|c| format!("AADSTS{c}")),
            )
        }
        AuthError::Http { status, .. } => (
            exgate_diagnose::Evidence::from_text(&message),
            Some(*status),
            None,
        ),
        _ => (exgate_diagnose::Evidence::from_text(&message), None, None),
    };
    let d = d
        .with_mailbox(target.address.clone())
        .app_only(LiveProber::is_app_only(&target.endpoint));
    let d = match &target.endpoint.tenant {
        Some(t) => {
            let mut d = d;
            d.attempt.tenant = Some(t.clone());
            d
        }
        None => d,
    };
    let causes = convert_causes(exgate_diagnose::diagnose(&d));
    facts.insert("resource".to_owned(), key.resource.clone());
    // The auth client has already retried a transient failure with back-off (honouring
    // Retry-After); only explicit throttling (429) is worth the runner's pause-and-retry too.
    let throttled = matches!(
        err,
        AuthError::Entra { status: 429, .. } | AuthError::Http { status: 429, .. }
    );
    let evidence = Evidence {
        url: None,
        status,
        code,
        message: message.clone(),
        headers: BTreeMap::new(),
        facts,
    };
    let failure = if target.credentials.is_some() {
        StepFailure::mailbox(message, evidence, causes)
    } else {
        StepFailure::endpoint(message, evidence, causes)
    };
    if throttled {
        failure.throttled(Duration::from_secs(2))
    } else {
        failure
    }
}

/// What creating (and deleting) a draft needs, by API and kind of access.
fn write_permission(ep: &Endpoint) -> &'static str {
    let app_only = LiveProber::is_app_only(ep);
    match (ep.api, app_only) {
        (Api::Graph, true) => {
            "the Mail.ReadWrite application permission of Microsoft Graph (Mail.Read only reads)"
        }
        (Api::Graph, false) => "the Mail.ReadWrite delegated permission of Microsoft Graph",
        (Api::Ews, true) => {
            "full_access_as_app of Office 365 Exchange Online (or ApplicationImpersonation on premises)"
        }
        (Api::Ews, false) => {
            "FullAccess on the mailbox for the signed-in account (Add-MailboxPermission)"
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn auth_mode(target: &Target) -> exgate_diagnose::AuthMode {
    if matches!(target.endpoint.auth, AuthProfile::Basic { ntlm: true, .. }) {
        exgate_diagnose::AuthMode::Ntlm
    } else if target.credentials.is_some()
        || matches!(target.endpoint.auth, AuthProfile::Basic { .. })
    {
        exgate_diagnose::AuthMode::Basic
    } else {
        exgate_diagnose::AuthMode::Bearer
    }
}

impl Prober for LiveProber {
    type Token = Arc<dyn Credentials>;

    async fn resolve(&self, target: &Target) -> Result<Resolved, StepFailure> {
        let origin = match &target.endpoint.discovery {
            Discovery::Explicit(url) => return Ok(Resolved { url: url.clone() }),
            Discovery::Autodiscover(origin) => origin.clone(),
        };
        let creds: Arc<dyn Credentials> =
            Self::basic_credentials(target).unwrap_or_else(|| Arc::new(Anonymous));
        let mut client =
            AutodiscoverClient::new(self.http.clone(), creds).allow_http(self.allow_http);
        if let Some(o) = origin {
            match Url::parse(&o) {
                Ok(u) => client = client.with_origins(vec![u]),
                Err(e) => {
                    return Err(StepFailure::endpoint(
                        format!("the Autodiscover URL {o} is not valid: {e}"),
                        Evidence::default(),
                        Vec::new(),
                    ));
                }
            }
        }
        match client.discover(&target.address).await {
            Ok(found) => Ok(Resolved { url: found.ews_url }),
            Err(e) => {
                let mut f = mail_failure(&e, target, auth_mode(target));
                // Autodiscover answers per address; an unreachable host is still endpoint-wide.
                if !matches!(e.kind(), ErrorKind::Transport) {
                    f.scope = FailureScope::Mailbox;
                }
                Err(f)
            }
        }
    }

    fn token_key(&self, target: &Target, resolved: &Resolved) -> TokenKey {
        let ep = &target.endpoint;
        let request = Self::token_request(ep, resolved);
        TokenKey {
            side: target.side,
            tenant: ep.tenant.clone().unwrap_or_default().to_ascii_lowercase(),
            resource: request.scopes.join(" "),
            principal: target.credentials.as_ref().map(|c| c.username.clone()),
        }
    }

    async fn acquire_token(
        &self,
        target: &Target,
        key: &TokenKey,
    ) -> Result<Arc<dyn Credentials>, StepFailure> {
        if let Some(basic) = Self::basic_credentials(target) {
            return Ok(basic);
        }
        let Some(provider) = &self.side(target.side).provider else {
            return Err(StepFailure::endpoint(
                "no credentials for this endpoint",
                Evidence::default(),
                Vec::new(),
            ));
        };
        let request = TokenRequest::scopes(key.resource.split(' ').map(str::to_owned));
        match provider.token(&request).await {
            Ok(_) => Ok(Arc::new(Bearer::new(Arc::new(ProviderSource {
                provider: provider.clone(),
                request,
            })))),
            Err(e) => Err(auth_failure(&e, target, key)),
        }
    }

    async fn open(
        &self,
        target: &Target,
        resolved: &Resolved,
        token: &Arc<dyn Credentials>,
    ) -> Result<StepOutput, StepFailure> {
        let ep = Self::mail_endpoint(target, resolved)?;
        let mb = open_mailbox(&ep, &self.http, token.clone(), &target.address)
            .map_err(|e| mail_failure(&e, target, auth_mode(target)))?;
        let info = match mb.open().await {
            Ok(info) => info,
            Err(e) => {
                let signin = self.signin_check(target, &e).await;
                let claims = self.token_claims(target, resolved, &e).await;
                return Err(mail_failure_with(
                    &e,
                    target,
                    auth_mode(target),
                    signin,
                    claims,
                ));
            }
        };
        let mut detail = info.display_name.unwrap_or_else(|| info.address.clone());
        if let Some(v) = info.server_version {
            detail.push_str(&format!(" (Exchange {v})"));
        }
        Ok(StepOutput::detail(detail))
    }

    async fn inbox_count(
        &self,
        target: &Target,
        resolved: &Resolved,
        token: &Arc<dyn Credentials>,
    ) -> Result<StepOutput, StepFailure> {
        let ep = Self::mail_endpoint(target, resolved)?;
        let mb = open_mailbox(&ep, &self.http, token.clone(), &target.address)
            .map_err(|e| mail_failure(&e, target, auth_mode(target)))?;
        let n = mb
            .inbox_count()
            .await
            .map_err(|e| mail_failure(&e, target, auth_mode(target)))?;
        Ok(StepOutput {
            detail: Some(format!("Inbox: {n} items")),
            item_count: Some(n),
        })
    }

    async fn write_probe(
        &self,
        target: &Target,
        resolved: &Resolved,
        token: &Arc<dyn Credentials>,
    ) -> Result<StepOutput, StepFailure> {
        let ep = Self::mail_endpoint(target, resolved)?;
        let mb = open_mailbox(&ep, &self.http, token.clone(), &target.address)
            .map_err(|e| mail_failure(&e, target, auth_mode(target)))?;
        mb.write_probe().await.map_err(|e| {
            let mut f = mail_failure(&e, target, auth_mode(target));
            if matches!(e.kind(), ErrorKind::Forbidden) {
                // Reading worked; writing is refused: name what writing needs.
                let needs = write_permission(&target.endpoint);
                f.error = format!("{}; the write check needs {needs}", f.error);
                f.evidence
                    .facts
                    .insert("needs".to_owned(), needs.to_owned());
                if let Some(first) = f.causes.first_mut() {
                    first
                        .fix
                        .insert(0, format!("Grant {needs}, then run the write check again."));
                    first.evidence.push(format!(
                        "reading works, creating a draft is refused: it needs {needs}"
                    ));
                }
            }
            f
        })?;
        Ok(StepOutput::detail("created and deleted a draft in Drafts"))
    }
}
