//! Access tokens and token requests.

use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An access token. `Debug` and `Display` never show the token itself; use [`AccessToken::secret`]
/// to put it on the wire. Cloning is cheap (one reference count).
#[derive(Clone)]
pub struct AccessToken {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    secret: SecretString,
    expires_at: OffsetDateTime,
    scopes: Vec<String>,
    resource: Option<String>,
    token_type: String,
}

impl AccessToken {
    /// Wraps a token.
    pub fn new(
        secret: SecretString,
        expires_at: OffsetDateTime,
        scopes: Vec<String>,
        resource: Option<String>,
        token_type: String,
    ) -> Self {
        AccessToken {
            inner: std::sync::Arc::new(Inner {
                secret,
                expires_at,
                scopes,
                resource,
                token_type,
            }),
        }
    }

    /// The token text, for an `Authorization: Bearer` header.
    pub fn secret(&self) -> &str {
        self.inner.secret.expose_secret()
    }

    /// When the token expires.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.inner.expires_at
    }

    /// Seconds of validity left at `now` (0 once expired).
    pub fn seconds_left(&self, now: OffsetDateTime) -> i64 {
        (self.inner.expires_at - now).whole_seconds().max(0)
    }

    /// Scopes granted (or requested, when the response did not say).
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// The v1 `resource`, when the response carried one.
    pub fn resource(&self) -> Option<&str> {
        self.inner.resource.as_deref()
    }

    /// The token type (`Bearer`).
    pub fn token_type(&self) -> &str {
        &self.inner.token_type
    }

    /// The `Authorization` header value.
    pub fn authorization_header(&self) -> String {
        format!("Bearer {}", self.inner.secret.expose_secret())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.inner.expires_at)
            .field("scopes", &self.inner.scopes)
            .field("resource", &self.inner.resource)
            .finish()
    }
}

impl std::fmt::Display for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} token for {} (expires {})",
            self.inner.token_type,
            self.inner.scopes.join(" "),
            self.inner.expires_at
        )
    }
}

/// What a caller asks a provider for: scopes (or a resource) and, for delegated flows, a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// The user (UPN) for delegated tokens; `None` for app-only or "the configured user".
    pub user: Option<String>,
}

impl TokenRequest {
    /// A request for the given scopes.
    pub fn scopes<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TokenRequest {
            scopes: scopes.into_iter().map(Into::into).collect(),
            user: None,
        }
    }

    /// An app-only request for a resource: `{resource}/.default`.
    pub fn resource_default(resource: &str) -> Self {
        TokenRequest::scopes([format!("{}/.default", resource.trim_end_matches('/'))])
    }

    /// The app-only EWS request: `https://outlook.office365.com/.default`.
    pub fn exchange_online() -> Self {
        TokenRequest::resource_default("https://outlook.office365.com")
    }

    /// Names the user of a delegated request.
    pub fn for_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_the_token() {
        let canary = "CANARY-eyJ0eXAi-access-token";
        let t = AccessToken::new(
            SecretString::from(canary),
            OffsetDateTime::now_utc(),
            vec!["https://outlook.office365.com/.default".into()],
            None,
            "Bearer".into(),
        );
        assert!(!format!("{t:?}").contains(canary));
        assert!(!format!("{t}").contains(canary));
        assert_eq!(t.secret(), canary);
        assert_eq!(t.authorization_header(), format!("Bearer {canary}"));
    }

    #[test]
    fn request_helpers() {
        assert_eq!(
            TokenRequest::exchange_online().scopes,
            vec!["https://outlook.office365.com/.default".to_string()]
        );
        assert_eq!(
            TokenRequest::resource_default("https://graph.microsoft.com/").scopes,
            vec!["https://graph.microsoft.com/.default".to_string()]
        );
    }
}
