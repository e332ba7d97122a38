//! `TokenProvider`: the shareable token source. It owns the HTTP client, resolves the tenant,
//! runs the configured flow, and serves tokens from the single-flight cache, keeping rotated
//! refresh tokens (in memory and in the encrypted store when one is configured).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::assertion::AssertionOptions;
use crate::authority::Authority;
use crate::cache::{CacheKey, CachePolicy, Clock, TokenCache, system_clock};
use crate::certificate::ClientCertificate;
use crate::client::{
    ClientAuth, Grant, HttpOptions, RetryPolicy, Target, TokenClient, TokenResponse,
    build_http_client,
};
use crate::error::{AuthError, ConfigError};
use crate::flows::{AuthCodeOptions, DeviceCodeOptions, auth_code_flow, device_code_flow};
use crate::store::{StoredToken, TokenStore};
use crate::token::{AccessToken, TokenRequest};

/// How the provider gets its tokens.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Credential {
    /// App-only with a client secret.
    ClientSecret(SecretString),
    /// App-only with a certificate (client assertion).
    Certificate {
        /// Key and certificate.
        cert: ClientCertificate,
        /// Assertion algorithm, `x5c`, lifetime.
        options: AssertionOptions,
    },
    /// Delegated, starting from a refresh token (rotated tokens are kept).
    RefreshToken {
        /// Client authentication (public or confidential).
        client: ClientAuth,
        /// The initial refresh token; a stored, newer one takes precedence.
        refresh_token: SecretString,
    },
    /// Delegated with username and password (ROPC), for on-premises and legacy set-ups.
    Password {
        /// Client authentication.
        client: ClientAuth,
        /// User principal name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// Delegated with the device-code flow.
    DeviceCode {
        /// Client authentication.
        client: ClientAuth,
        /// Prompt and polling settings.
        options: DeviceCodeOptions,
    },
    /// Delegated with authorization code + PKCE and a loopback redirect.
    AuthorizationCode {
        /// Client authentication.
        client: ClientAuth,
        /// Browser and listener settings.
        options: AuthCodeOptions,
    },
}

impl Credential {
    /// Whether the credential gets app-only tokens.
    pub fn is_app_only(&self) -> bool {
        matches!(
            self,
            Credential::ClientSecret(_) | Credential::Certificate { .. }
        )
    }

    /// A short name of the flow.
    pub fn flow_name(&self) -> &'static str {
        match self {
            Credential::ClientSecret(_) => "client_secret",
            Credential::Certificate { .. } => "certificate",
            Credential::RefreshToken { .. } => "refresh_token",
            Credential::Password { .. } => "password",
            Credential::DeviceCode { .. } => "device_code",
            Credential::AuthorizationCode { .. } => "authorization_code",
        }
    }

    fn client_auth(&self) -> ClientAuth {
        match self {
            Credential::ClientSecret(s) => ClientAuth::Secret(s.clone()),
            Credential::Certificate { cert, options } => ClientAuth::Certificate {
                cert: cert.clone(),
                options: *options,
            },
            Credential::RefreshToken { client, .. }
            | Credential::Password { client, .. }
            | Credential::DeviceCode { client, .. }
            | Credential::AuthorizationCode { client, .. } => client.clone(),
        }
    }

    fn default_user(&self) -> Option<&str> {
        match self {
            Credential::Password { username, .. } => Some(username),
            _ => None,
        }
    }
}

/// Everything a provider needs.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Authority (host, tenant, version).
    pub authority: Authority,
    /// Application (client) id.
    pub client_id: String,
    /// The credential and flow.
    pub credential: Credential,
    /// HTTP settings (extra root CA, timeout).
    pub http: HttpOptions,
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
    /// Cache renewal policy.
    pub cache: CachePolicy,
    /// Encrypted persistent store, when wanted.
    pub store: Option<TokenStore>,
    /// Resolve a domain tenant to its GUID through the OpenID configuration before the first
    /// token request (default on).
    pub resolve_tenant: bool,
}

impl ProviderConfig {
    /// A configuration with default HTTP, retry and cache settings and no store.
    pub fn new(authority: Authority, client_id: impl Into<String>, credential: Credential) -> Self {
        ProviderConfig {
            authority,
            client_id: client_id.into(),
            credential,
            http: HttpOptions::default(),
            retry: RetryPolicy::default(),
            cache: CachePolicy::default(),
            store: None,
            resolve_tenant: true,
        }
    }
}

struct Inner {
    config: ProviderConfig,
    http: reqwest::Client,
    client: OnceCell<TokenClient>,
    cache: TokenCache,
    refresh_tokens: Mutex<HashMap<String, SecretString>>,
}

/// A shareable token source: cheap to clone, cache and single flight inside.
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("authority", &self.inner.config.authority.to_string())
            .field("client_id", &self.inner.config.client_id)
            .field("flow", &self.inner.config.credential.flow_name())
            .finish()
    }
}

/// A source of bearer tokens, for crates that should not depend on how tokens are obtained.
pub trait TokenSource: Send + Sync {
    /// A token for `request`.
    fn token<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> Pin<Box<dyn Future<Output = Result<AccessToken, AuthError>> + Send + 'a>>;
}

impl TokenSource for TokenProvider {
    fn token<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> Pin<Box<dyn Future<Output = Result<AccessToken, AuthError>> + Send + 'a>> {
        Box::pin(TokenProvider::token(self, request))
    }
}

impl TokenProvider {
    /// Builds a provider. Validates the configuration (app-only against `common` is refused here,
    /// before any request).
    pub fn new(config: ProviderConfig) -> Result<TokenProvider, AuthError> {
        Self::with_clock(config, system_clock())
    }

    /// Builds a provider with a custom clock (tests).
    pub fn with_clock(config: ProviderConfig, clock: Clock) -> Result<TokenProvider, AuthError> {
        if config.client_id.trim().is_empty() {
            return Err(ConfigError::new(
                "config",
                "client_id",
                "no client id",
                "set client_id (AZURE_CLIENT_ID) to the app's Application (client) ID",
            )
            .into());
        }
        if config.credential.is_app_only() {
            config.authority.require_specific_tenant()?;
        }
        let http = build_http_client(&config.http)?;
        Ok(TokenProvider {
            inner: Arc::new(Inner {
                cache: TokenCache::new(config.cache, clock),
                config,
                http,
                client: OnceCell::new(),
                refresh_tokens: Mutex::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// The HTTP client (shared with callers that want the same TLS settings).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The cache key of a request.
    pub fn cache_key(&self, request: &TokenRequest) -> CacheKey {
        let c = &self.inner.config;
        let user = request
            .user
            .as_deref()
            .or_else(|| c.credential.default_user());
        CacheKey::new(
            &c.authority.cache_key(),
            &c.client_id,
            &request.scopes,
            if c.credential.is_app_only() {
                None
            } else {
                user
            },
        )
    }

    /// A token for `request`, from the cache or from Entra (one request for all concurrent
    /// callers of the same key).
    pub async fn token(&self, request: &TokenRequest) -> Result<AccessToken, AuthError> {
        if request.scopes.is_empty() {
            return Err(ConfigError::new(
                "request",
                "scopes",
                "no scope requested",
                "ask for e.g. https://outlook.office365.com/.default",
            )
            .into());
        }
        let key = self.cache_key(request);
        let inner = Arc::clone(&self.inner);
        let request = request.clone();
        let k = key.clone();
        self.inner
            .cache
            .get_or_fetch(&key, move || async move { inner.fetch(&request, &k).await })
            .await
    }

    /// Drops the cached token of `request` (after the resource rejected it).
    pub fn invalidate(&self, request: &TokenRequest) {
        self.inner.cache.invalidate(&self.cache_key(request));
    }

    /// The token client, resolving the tenant first when configured.
    pub async fn token_client(&self) -> Result<TokenClient, AuthError> {
        self.inner.token_client().await.cloned()
    }
}

impl Inner {
    async fn token_client(&self) -> Result<&TokenClient, AuthError> {
        self.client
            .get_or_try_init(|| async {
                let c = &self.config;
                let mut authority = c.authority.clone();
                let base = TokenClient::new(
                    self.http.clone(),
                    authority.clone(),
                    c.client_id.clone(),
                    c.credential.client_auth(),
                    c.retry,
                );
                if c.resolve_tenant && !authority.is_multi_tenant_alias() && !is_guid(authority.tenant()) {
                    let oidc = base.discover().await?;
                    if let Some(tid) = oidc.tenant_id().filter(|t| is_guid(t)) {
                        authority = authority.with_tenant(&tid)?;
                        tracing::debug!(tenant = %tid, "tenant resolved through the OpenID configuration");
                    }
                }
                Ok(TokenClient::new(
                    self.http.clone(),
                    authority,
                    c.client_id.clone(),
                    c.credential.client_auth(),
                    c.retry,
                ))
            })
            .await
    }

    fn rt_key(&self, key: &CacheKey) -> String {
        format!(
            "rt|{}|{}|{}",
            key.authority,
            key.client_id,
            key.user.as_deref().unwrap_or("")
        )
    }

    fn known_refresh_token(&self, rt_key: &str) -> Result<Option<SecretString>, AuthError> {
        if let Some(store) = &self.config.store
            && let Some(rt) = store.refresh_token(rt_key)?
        {
            return Ok(Some(rt));
        }
        Ok(self
            .refresh_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(rt_key)
            .cloned())
    }

    fn keep_refresh_token(&self, rt_key: &str, response: &TokenResponse) -> Result<(), AuthError> {
        if let Some(rt) = &response.refresh_token {
            self.refresh_tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(rt_key.to_string(), rt.clone());
            if let Some(store) = &self.config.store {
                store.put_refresh_token(rt_key, rt)?;
            }
        }
        Ok(())
    }

    async fn fetch(
        &self,
        request: &TokenRequest,
        key: &CacheKey,
    ) -> Result<AccessToken, AuthError> {
        let target = Target {
            scopes: request.scopes.clone(),
        };
        if self.config.credential.is_app_only() {
            let store_key = format!("at|{}", key.as_text());
            if let Some(store) = &self.config.store
                && let Some(t) = store.app_token(&store_key)?
            {
                let expires = OffsetDateTime::from_unix_timestamp(t.expires_at)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                let left = (expires - OffsetDateTime::now_utc()).whole_seconds();
                if left > i64::try_from(self.config.cache.renew_ahead.as_secs()).unwrap_or(300) {
                    return Ok(AccessToken::new(
                        t.token,
                        expires,
                        t.scopes,
                        None,
                        "Bearer".into(),
                    ));
                }
            }
            let client = self.token_client().await?;
            let r = client.request(&Grant::ClientCredentials, &target).await?;
            if let Some(store) = &self.config.store {
                store.put_app_token(
                    &store_key,
                    StoredToken {
                        token: SecretString::from(r.access_token.secret().to_string()),
                        expires_at: r.access_token.expires_at().unix_timestamp(),
                        scopes: r.access_token.scopes().to_vec(),
                    },
                )?;
            }
            return Ok(r.access_token);
        }

        let client = self.token_client().await?;
        let rt_key = self.rt_key(key);
        // A known (rotated) refresh token first; the configured one for RefreshToken credentials.
        let mut rt = self.known_refresh_token(&rt_key)?;
        if rt.is_none()
            && let Credential::RefreshToken { refresh_token, .. } = &self.config.credential
        {
            rt = Some(refresh_token.clone());
        }
        if let Some(rt) = rt {
            match client.request(&Grant::RefreshToken(rt), &target).await {
                Ok(r) => {
                    self.keep_refresh_token(&rt_key, &r)?;
                    return Ok(r.access_token);
                }
                Err(e) if matches!(self.config.credential, Credential::RefreshToken { .. }) => {
                    return Err(e);
                }
                Err(e) if e.entra().is_some_and(|b| b.error == "invalid_grant") => {
                    tracing::info!(error = %e, "refresh token refused; starting the configured sign-in flow");
                }
                Err(e) => return Err(e),
            }
        }
        let r = match &self.config.credential {
            Credential::Password {
                username, password, ..
            } => {
                let user = request.user.as_deref().unwrap_or(username);
                if !user.eq_ignore_ascii_case(username) {
                    return Err(AuthError::Unsupported(format!(
                        "the configured password is for {username}, not {user}"
                    )));
                }
                client
                    .request(
                        &Grant::Password {
                            username: username.clone(),
                            password: SecretString::from(password.expose_secret().to_string()),
                        },
                        &target,
                    )
                    .await?
            }
            Credential::DeviceCode { options, .. } => {
                device_code_flow(client, &target, options).await?
            }
            Credential::AuthorizationCode { options, .. } => {
                let mut options = options.clone();
                if options.login_hint.is_none() {
                    options.login_hint = request.user.clone();
                }
                auth_code_flow(client, &target, &options).await?
            }
            Credential::RefreshToken { .. } => {
                return Err(AuthError::Unsupported(
                    "no refresh token is available".into(),
                ));
            }
            Credential::ClientSecret(_) | Credential::Certificate { .. } => {
                return Err(AuthError::Unsupported(
                    "app-only credential in a user flow".into(),
                ));
            }
        };
        self.keep_refresh_token(&rt_key, &r)?;
        Ok(r.access_token)
    }
}

pub use exgate_wire::ids::is_guid;
