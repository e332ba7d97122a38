//! `exgate-auth`: everything an unattended process needs to get and keep a token for Exchange.
//!
//! - [`Authority`] names the Entra host, tenant and endpoint version.
//! - [`Credential`] names the flow: client secret, certificate (RS256 + `x5t` or PS256 +
//!   `x5t#S256`, optional `x5c`), refresh token, password (ROPC), device code, or authorization code
//!   + PKCE with a loopback listener.
//! - [`TokenProvider`] is the shareable token source: a single-flight cache that renews ahead of
//!   expiry, keeps rotated refresh tokens, and optionally persists them in an encrypted
//!   [`TokenStore`].
//! - [`AuthError`] keeps the raw Entra error body ([`EntraError`]) as typed fields.
//! - [`AuthSettings`] loads a TOML profile, the Azure SDK environment variables and flags.
//!
//! ```no_run
//! # async fn demo() -> Result<(), exgate_auth::AuthError> {
//! use exgate_auth::{Authority, Credential, ProviderConfig, TokenProvider, TokenRequest};
//! let authority = Authority::public_cloud("contoso.onmicrosoft.com")?;
//! let credential = Credential::ClientSecret(secrecy::SecretString::from("secret"));
//! let provider = TokenProvider::new(ProviderConfig::new(authority, "client-id", credential))?;
//! let token = provider.token(&TokenRequest::exchange_online()).await?;
//! let _header = token.authorization_header();
//! # Ok(()) }
//! ```

// Libraries never print: output belongs to the binary (see ARCHITECTURE.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod assertion;
mod authority;
mod cache;
mod certificate;
mod client;
mod config;
mod consent;
mod error;
mod flows;
mod hma;
mod loopback;
mod provider;
mod signin;
mod store;
mod token;

pub use assertion::{AssertionAlgorithm, AssertionClaims, AssertionOptions, build_assertion};
pub use authority::{Authority, EndpointVersion, OpenIdConfiguration, PUBLIC_CLOUD_HOST};
pub use cache::{CacheKey, CachePolicy, Clock, TokenCache, system_clock};
pub use certificate::{
    CertificateInfo, CertificateWarning, ClientCertificate, GeneratedCertificate, KeyAlgorithm,
    generate_certificate, generate_self_signed, generate_with_names, load_certificate_info,
    random_password, write_pfx,
};
pub use client::{
    ClientAuth, DEVICE_CODE_GRANT, DeviceCodeInfo, Grant, HttpOptions, JWT_BEARER, RetryPolicy,
    Target, TokenClient, TokenResponse, build_http_client, parse_token_response,
};
pub use config::{AuthSettings, FlowKind, StoreSettings};
pub use consent::{ConsentOutcome, admin_consent_url, consent_outcome, jwt_claim, jwt_claims};
pub use error::{
    AuthError, ConfigError, CredentialError, EntraError, StoreError, TransportKind, aadsts_codes_in,
};
pub use flows::{
    AuthCodeOptions, BASIC_WARNING, BasicCredential, DeviceCodeOptions, DevicePrompt, OpenUrl,
    Pkce, auth_code_flow, authorize_url, device_code_flow,
};
pub use hma::{Challenge, HmaChallenge, on_prem_request, parse_www_authenticate, probe};
pub use loopback::{RedirectListener, RedirectParams};
pub use provider::{Credential, ProviderConfig, TokenProvider, TokenSource, is_guid};
pub use signin::{
    AFTER_PASSWORD_CODES, CHECK_APP_CODES, SIGNIN_CHECK_CLIENT_ID, SigninCheck, signin_check,
};
pub use store::{
    KEYRING_SERVICE, Keyring, STORE_KEY_ENV, StoreKey, StoredToken, TokenStore,
    write_atomic_private,
};
pub use token::{AccessToken, TokenRequest, unix_now};

/// Re-exports of the crates whose types appear in this API.
pub mod reexports {
    pub use secrecy;
    pub use time;
    pub use url;
}
pub use secrecy::{ExposeSecret, SecretString};
pub use url::Url;
