//! The Entra token client: one `reqwest::Client`, request building per grant (mirroring what msal
//! sends), response and error parsing, and the retry policy.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use crate::assertion::{AssertionOptions, build_assertion};
use crate::authority::{Authority, EndpointVersion, OpenIdConfiguration};
use crate::certificate::ClientCertificate;
use crate::error::{AuthError, ConfigError, EntraError, TransportKind, strip_query};
use crate::token::{AccessToken, unix_now};

/// The `client_assertion_type` value for JWT bearer client authentication.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The device-code grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How the application authenticates itself to the token endpoint.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A public client (no secret): device code, auth code, ROPC and refresh only.
    #[default]
    Public,
    /// A client secret, sent as `client_secret` in the body.
    Secret(SecretString),
    /// A certificate: a signed client assertion per request.
    Certificate {
        /// The certificate and key.
        cert: ClientCertificate,
        /// Algorithm, `x5c`, lifetime.
        options: AssertionOptions,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Public => f.write_str("Public"),
            ClientAuth::Secret(_) => f.write_str("Secret(<redacted>)"),
            ClientAuth::Certificate { cert, options } => f
                .debug_struct("Certificate")
                .field("cert", cert)
                .field("options", options)
                .finish(),
        }
    }
}

impl ClientAuth {
    /// Whether this is a confidential client (secret or certificate).
    pub fn is_confidential(&self) -> bool {
        !matches!(self, ClientAuth::Public)
    }

    /// `appidacr`-style label: `public`, `secret` or `certificate`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientAuth::Public => "public",
            ClientAuth::Secret(_) => "secret",
            ClientAuth::Certificate { .. } => "certificate",
        }
    }
}

/// A grant sent to the token endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum Grant {
    /// `client_credentials` (app-only).
    ClientCredentials,
    /// `refresh_token`.
    RefreshToken(SecretString),
    /// `password` (ROPC).
    Password {
        /// User principal name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// Device-code polling.
    DeviceCode(SecretString),
    /// Authorization code with its PKCE verifier.
    AuthorizationCode {
        /// The code from the redirect.
        code: SecretString,
        /// The PKCE code verifier.
        verifier: SecretString,
        /// The redirect URI used in the authorize request.
        redirect_uri: String,
    },
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.grant_type())
    }
}

impl Grant {
    /// The `grant_type` value.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::Password { .. } => "password",
            Grant::DeviceCode(_) => DEVICE_CODE_GRANT,
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }

    fn is_user_grant(&self) -> bool {
        !matches!(self, Grant::ClientCredentials)
    }
}

/// Retry policy for transient failures (5xx, 429, timeouts, connection errors): exponential
/// backoff with jitter. `invalid_grant` and `invalid_client` are never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Cap on any one delay (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based), with up to 50 % jitter subtracted.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let mut b = [0u8; 2];
        let _ = aws_lc_rs::rand::fill(&mut b);
        let jitter = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) * 0.5;
        capped.mul_f64(1.0 - jitter)
    }
}

/// HTTP settings of a provider.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// An extra trusted root CA in PEM (the emulator's).
    pub extra_root_ca_pem: Option<Vec<u8>>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            extra_root_ca_pem: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Builds the one `reqwest::Client` of a provider.
pub fn build_http_client(options: &HttpOptions) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("exgate/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &options.extra_root_ca_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
            ConfigError::new(
                "http",
                "ca_pem",
                format!("not a PEM certificate: {e}"),
                "give the PEM of the root CA to trust",
            )
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| {
        ConfigError::new(
            "http",
            "client",
            format!("cannot build the HTTP client: {e}"),
            "",
        )
    })
}

/// What a token request asks for: scopes (v2) or a resource (v1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Requested scopes, e.g. `https://outlook.office365.com/.default`.
    pub scopes: Vec<String>,
}

impl Target {
    /// The v1 `resource` for these scopes: the first scope without its last path segment
    /// (`https://outlook.office365.com/.default` → `https://outlook.office365.com`).
    pub fn resource(&self) -> String {
        let first = self.scopes.first().map(String::as_str).unwrap_or_default();
        match first.rfind('/') {
            Some(i) if first[..i].contains("://") && i > first.find("://").map_or(0, |p| p + 2) => {
                first[..i].to_string()
            }
            _ => first.to_string(),
        }
    }
}

/// The parsed body of a successful token response (v1 or v2).
#[derive(Clone)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: AccessToken,
    /// A refresh token, when one was issued (user flows with `offline_access`).
    pub refresh_token: Option<SecretString>,
    /// The ID token, when one was issued (kept secret: it identifies the user).
    pub id_token: Option<SecretString>,
    /// `client_info` (base64url JSON with `uid` and `utid`).
    pub client_info: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<NumOrString>,
    #[serde(default)]
    expires_on: Option<NumOrString>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    client_info: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(f64),
    Str(String),
}

impl NumOrString {
    fn as_u64(&self) -> Option<u64> {
        match self {
            NumOrString::Num(n) if n.is_finite() && *n >= 0.0 => Some(*n as u64),
            NumOrString::Str(s) => s.trim().parse().ok(),
            NumOrString::Num(_) => None,
        }
    }
}

/// Parses a token-endpoint success body. `now` is the time the request was sent.
pub fn parse_token_response(
    body: &[u8],
    target: &Target,
    now: u64,
) -> Result<TokenResponse, String> {
    let raw: RawTokenResponse =
        serde_json::from_slice(body).map_err(|e| format!("token response is not valid: {e}"))?;
    if raw.access_token.is_empty() {
        return Err("token response has an empty access_token".into());
    }
    let expires_at = match (
        raw.expires_in.as_ref().and_then(NumOrString::as_u64),
        raw.expires_on.as_ref().and_then(NumOrString::as_u64),
    ) {
        (Some(secs), _) => now.saturating_add(secs),
        (None, Some(on)) => on,
        (None, None) => return Err("token response has neither expires_in nor expires_on".into()),
    };
    let expires_at =
        OffsetDateTime::from_unix_timestamp(i64::try_from(expires_at).unwrap_or(i64::MAX))
            .map_err(|e| format!("token expiry out of range: {e}"))?;
    let scopes = match raw.scope {
        Some(s) if !s.trim().is_empty() => s.split_whitespace().map(str::to_string).collect(),
        _ => target.scopes.clone(),
    };
    Ok(TokenResponse {
        access_token: AccessToken::new(
            SecretString::from(raw.access_token),
            expires_at,
            scopes,
            raw.resource,
            raw.token_type.unwrap_or_else(|| "Bearer".into()),
        ),
        refresh_token: raw
            .refresh_token
            .filter(|s| !s.is_empty())
            .map(SecretString::from),
        id_token: raw
            .id_token
            .filter(|s| !s.is_empty())
            .map(SecretString::from),
        client_info: raw.client_info,
    })
}

/// The response of the device authorization endpoint.
#[derive(Clone, Deserialize)]
pub struct DeviceCodeInfo {
    /// The code the user types.
    pub user_code: String,
    /// The code the client polls with (secret).
    #[serde(deserialize_with = "de_secret")]
    pub device_code: SecretString,
    /// Where the user goes.
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    /// Seconds until the code expires.
    #[serde(default = "default_expires")]
    pub expires_in: u64,
    /// Polling interval in seconds.
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// The ready-made instruction text.
    #[serde(default)]
    pub message: String,
}

fn default_expires() -> u64 {
    900
}
fn default_interval() -> u64 {
    5
}

fn de_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

impl std::fmt::Debug for DeviceCodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCodeInfo")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// Sends token requests for one application against one authority.
#[derive(Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    authority: Authority,
    client_id: String,
    auth: ClientAuth,
    retry: RetryPolicy,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient")
            .field("authority", &self.authority.to_string())
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .finish()
    }
}

impl TokenClient {
    /// A client for `client_id` at `authority`.
    pub fn new(
        http: reqwest::Client,
        authority: Authority,
        client_id: String,
        auth: ClientAuth,
        retry: RetryPolicy,
    ) -> Self {
        TokenClient {
            http,
            authority,
            client_id,
            auth,
            retry,
        }
    }

    /// The authority.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client authentication.
    pub fn auth(&self) -> &ClientAuth {
        &self.auth
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Builds the form fields of a token request (without sending it). Mirrors msal's shape:
    /// `client_id`, `grant_type`, `client_info=1`, the grant's fields, `scope` (v2) or
    /// `resource` (v1), and the client credential.
    pub fn form(&self, grant: &Grant, target: &Target) -> Result<Vec<(String, String)>, AuthError> {
        let mut f: Vec<(String, String)> = vec![
            ("client_id".into(), self.client_id.clone()),
            ("grant_type".into(), grant.grant_type().into()),
        ];
        if grant.is_user_grant() {
            f.push(("client_info".into(), "1".into()));
        }
        match grant {
            Grant::ClientCredentials => {
                self.authority.require_specific_tenant()?;
                if !self.auth.is_confidential() {
                    return Err(ConfigError::new(
                        "credential",
                        "client_secret",
                        "app-only tokens need a client secret or a certificate",
                        "set client_secret or certificate_path (AZURE_CLIENT_SECRET / AZURE_CLIENT_CERTIFICATE_PATH)",
                    )
                    .into());
                }
            }
            Grant::RefreshToken(rt) => {
                f.push(("refresh_token".into(), rt.expose_secret().into()));
            }
            Grant::Password { username, password } => {
                f.push(("username".into(), username.clone()));
                f.push(("password".into(), password.expose_secret().into()));
            }
            Grant::DeviceCode(code) => {
                // msal sends the code twice; Entra reads `device_code`.
                f.push(("device_code".into(), code.expose_secret().into()));
                f.push(("code".into(), code.expose_secret().into()));
            }
            Grant::AuthorizationCode {
                code,
                verifier,
                redirect_uri,
            } => {
                f.push(("code".into(), code.expose_secret().into()));
                f.push(("code_verifier".into(), verifier.expose_secret().into()));
                f.push(("redirect_uri".into(), redirect_uri.clone()));
            }
        }
        self.push_target(&mut f, grant, target);
        self.push_client_auth(&mut f)?;
        Ok(f)
    }

    fn push_target(&self, f: &mut Vec<(String, String)>, grant: &Grant, target: &Target) {
        match self.authority.version() {
            EndpointVersion::V2 => {
                let mut scopes: Vec<String> = target.scopes.clone();
                if grant.is_user_grant() {
                    for extra in ["offline_access", "openid", "profile"] {
                        if !scopes.iter().any(|s| s == extra) {
                            scopes.push(extra.into());
                        }
                    }
                }
                scopes.sort();
                scopes.dedup();
                f.push(("scope".into(), scopes.join(" ")));
            }
            EndpointVersion::V1 => {
                f.push(("resource".into(), target.resource()));
            }
        }
    }

    fn push_client_auth(&self, f: &mut Vec<(String, String)>) -> Result<(), AuthError> {
        match &self.auth {
            ClientAuth::Public => {}
            ClientAuth::Secret(s) => f.push(("client_secret".into(), s.expose_secret().into())),
            ClientAuth::Certificate { cert, options } => {
                let jwt = build_assertion(
                    cert,
                    &self.client_id,
                    self.authority.token_endpoint().as_str(),
                    options,
                    unix_now(),
                )?;
                f.push(("client_assertion_type".into(), JWT_BEARER.into()));
                f.push(("client_assertion".into(), jwt));
            }
        }
        Ok(())
    }

    /// Sends one grant, retrying transient failures per the policy.
    pub async fn request(
        &self,
        grant: &Grant,
        target: &Target,
    ) -> Result<TokenResponse, AuthError> {
        let url = self.authority.token_endpoint();
        // msal routes ROPC requests with `X-AnchorMailbox: upn:{username}`.
        let anchor = match grant {
            Grant::Password { username, .. } => Some(format!("upn:{username}")),
            _ => None,
        };
        let extra = anchor.as_deref().map(|a| ("X-AnchorMailbox", a));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let form = self.form(grant, target)?;
            let now = unix_now();
            let result = match self.post(&url, &form, extra).await {
                Err(e) => Err(e),
                Ok((status, body)) if (200..300).contains(&status) => {
                    parse_token_response(&body, target, now).map_err(|m| {
                        (
                            AuthError::Transport {
                                kind: TransportKind::Protocol,
                                url: strip_query(&url),
                                message: m,
                            },
                            None,
                        )
                    })
                }
                Ok((status, body)) => Err(error_from_response(&url, status, &body)),
            };
            match result {
                Ok(r) => return Ok(r),
                Err((err, retry_after))
                    if err.is_transient() && attempt < self.retry.max_attempts =>
                {
                    let delay = self.retry.delay(attempt, retry_after);
                    tracing::info!(attempt, ?delay, error = %err, "transient token endpoint failure, retrying");
                    tokio::time::sleep(delay).await;
                }
                Err((err, _)) => return Err(err),
            }
        }
    }

    /// Starts a device-code flow: `POST .../devicecode`.
    pub async fn device_code_start(&self, target: &Target) -> Result<DeviceCodeInfo, AuthError> {
        let url = self.authority.device_code_endpoint();
        let mut form = vec![("client_id".to_string(), self.client_id.clone())];
        match self.authority.version() {
            EndpointVersion::V2 => {
                let mut scopes = target.scopes.clone();
                for extra in ["offline_access", "openid", "profile"] {
                    if !scopes.iter().any(|s| s == extra) {
                        scopes.push(extra.into());
                    }
                }
                scopes.sort();
                form.push(("scope".into(), scopes.join(" ")));
            }
            EndpointVersion::V1 => form.push(("resource".into(), target.resource())),
        }
        let (status, body) = self.post(&url, &form, None).await.map_err(|(e, _)| e)?;
        if !(200..300).contains(&status) {
            return Err(error_from_response(&url, status, &body).0);
        }
        serde_json::from_slice(&body).map_err(|e| AuthError::Transport {
            kind: TransportKind::Protocol,
            url: strip_query(&url),
            message: format!("device code response is not valid: {e}"),
        })
    }

    /// Fetches the OpenID configuration of the authority (resolves a domain to the tenant GUID).
    pub async fn discover(&self) -> Result<OpenIdConfiguration, AuthError> {
        let url = self.authority.openid_configuration_url();
        // The same retry policy as token requests: transient failures (5xx, 429, timeouts) are
        // retried with back-off, honouring Retry-After; anything else is final.
        let mut attempt = 0u32;
        let body = loop {
            attempt += 1;
            let result: Result<(u16, Vec<u8>, Option<Duration>), AuthError> = async {
                let resp = self
                    .http
                    .get(url.clone())
                    .header("Accept", "application/json")
                    .send()
                    .await
                    .map_err(|e| AuthError::transport(&url, e))?;
                let status = resp.status().as_u16();
                let retry_after = retry_after_of(&resp);
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| AuthError::transport(&url, e))?;
                Ok((status, body.to_vec(), retry_after))
            }
            .await;
            let (err, retry_after) = match result {
                Ok((status, body, _)) if (200..300).contains(&status) => break body,
                Ok((status, body, retry_after)) => {
                    (error_from_response(&url, status, &body).0, retry_after)
                }
                Err(e) => (e, None),
            };
            if !(err.is_transient() && attempt < self.retry.max_attempts) {
                return Err(err);
            }
            let delay = self.retry.delay(attempt, retry_after);
            tracing::info!(attempt, ?delay, error = %err, "transient discovery failure, retrying");
            tokio::time::sleep(delay).await;
        };
        serde_json::from_slice(&body).map_err(|e| AuthError::Transport {
            kind: TransportKind::Protocol,
            url: strip_query(&url),
            message: format!("OpenID configuration is not valid: {e}"),
        })
    }

    async fn post(
        &self,
        url: &Url,
        form: &[(String, String)],
        extra: Option<(&str, &str)>,
    ) -> Result<(u16, Vec<u8>), (AuthError, Option<Duration>)> {
        let mut req = self
            .http
            .post(url.clone())
            .header("Accept", "application/json")
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .header("x-client-sku", "exgate")
            .header("x-client-ver", env!("CARGO_PKG_VERSION"))
            .form(form);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| (AuthError::transport(url, e), None))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after_of(&resp);
        let body = resp
            .bytes()
            .await
            .map_err(|e| (AuthError::transport(url, e), None))?
            .to_vec();
        if status == 429 || status >= 500 {
            // Keep Retry-After for the retry loop.
            return Err((error_from_response(url, status, &body).0, retry_after));
        }
        Ok((status, body))
    }
}

/// The wait a response's `Retry-After` asks for (seconds or an HTTP-date).
fn retry_after_of(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| exgate_wire::retry_after::parse(v, std::time::SystemTime::now()))
}

fn error_from_response(url: &Url, status: u16, body: &[u8]) -> (AuthError, Option<Duration>) {
    if let Some(entra) = EntraError::parse(body) {
        return (
            AuthError::Entra {
                status,
                body: Box::new(entra),
            },
            None,
        );
    }
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.chars().take(200).collect();
    (
        AuthError::Http {
            status,
            url: strip_query(url),
            snippet,
        },
        None,
    )
}

#[cfg(test)]
mod tests;
