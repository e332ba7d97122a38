//! Tokens toward Exchange: one [`TokenProvider`] per auth profile (the single-flight cache of
//! `exgate-auth`, renewed ahead of expiry), shared by every account that names the profile.

use std::collections::HashMap;
use std::sync::Arc;

use exgate_auth::{AuthError, TokenProvider, TokenRequest};
use secrecy::SecretString;

use crate::config::{AccountConfig, GatewayConfig};

/// The token sources of every profile.
pub struct Upstreams {
    providers: HashMap<String, (Arc<TokenProvider>, TokenRequest)>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("profiles", &self.providers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Upstreams {
    /// Builds a provider per profile; an unusable profile (missing client id, unreadable
    /// certificate, unset secret variable) is an error naming it.
    pub fn new(config: &GatewayConfig) -> Result<Upstreams, AuthError> {
        let mut providers = HashMap::new();
        for (name, settings) in &config.profiles {
            let prompt: exgate_auth::DevicePrompt = Arc::new(|info| {
                tracing::warn!(
                    verification_uri = %info.verification_uri,
                    "a device-code sign-in is needed: run `exgate gateway login ACCOUNT`"
                );
            });
            let open: exgate_auth::OpenUrl = Arc::new(|_| {});
            let scopes = settings.scopes.clone();
            let provider_config = settings.clone().into_provider_config(prompt, open)?;
            let request = match scopes {
                Some(s) if !s.is_empty() => TokenRequest::scopes(s),
                _ => TokenRequest::exchange_online(),
            };
            providers.insert(
                name.clone(),
                (Arc::new(TokenProvider::new(provider_config)?), request),
            );
        }
        Ok(Upstreams { providers })
    }

    fn entry(&self, account: &AccountConfig) -> Option<&(Arc<TokenProvider>, TokenRequest)> {
        account
            .profile
            .as_deref()
            .and_then(|p| self.providers.get(p))
    }

    /// An access token for `account`'s mailbox (from the cache when still fresh).
    pub async fn token(&self, account: &AccountConfig) -> Result<SecretString, AuthError> {
        let (provider, request) = self.entry(account).ok_or_else(|| {
            AuthError::Config(exgate_auth::ConfigError::new(
                "gateway".to_owned(),
                "profile",
                "the account names no usable profile",
                "set profile = \"NAME\" on the account".to_owned(),
            ))
        })?;
        let request = if provider.config().credential.is_app_only() {
            request.clone()
        } else {
            request.clone().for_user(account.mailbox.clone())
        };
        let token = provider.token(&request).await?;
        Ok(SecretString::from(token.secret().to_owned()))
    }

    /// An access token for Microsoft Graph (`sendMail` with MIME) as `account`'s mailbox.
    pub async fn graph_token(&self, account: &AccountConfig) -> Result<SecretString, AuthError> {
        let (provider, _) = self.entry(account).ok_or_else(|| {
            AuthError::Config(exgate_auth::ConfigError::new(
                "gateway".to_owned(),
                "profile",
                "the account names no usable profile",
                "set profile = \"NAME\" on the account".to_owned(),
            ))
        })?;
        let request = TokenRequest::resource_default("https://graph.microsoft.com");
        let request = if provider.config().credential.is_app_only() {
            request
        } else {
            request.for_user(account.mailbox.clone())
        };
        let token = provider.token(&request).await?;
        Ok(SecretString::from(token.secret().to_owned()))
    }

    /// Drops `account`'s cached token (after Exchange refused it).
    pub fn invalidate(&self, account: &AccountConfig) {
        if let Some((provider, request)) = self.entry(account) {
            provider.invalidate(request);
        }
    }
}
