//! Authentication is injected: the caller implements [`Credentials`] and the clients only ask
//! it for an `Authorization` header value per request.
//!
//! Three modes ship here: [`Bearer`] (a token from a [`TokenSource`] the caller provides, e.g.
//! a wrapper around exgate-auth's token provider), [`Basic`] (username and password) and
//! [`EmptyBearer`] (the Hybrid Modern Auth probe: `Authorization: Bearer` with no token).
//! [`Anonymous`] sends no header at all (Autodiscover v2 JSON needs none).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// A boxed, sendable future (object-safe async methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Any error a credential source reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which protocol a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Exchange Web Services.
    Ews,
    /// Microsoft Graph.
    Graph,
    /// Autodiscover (any of its three forms).
    Autodiscover,
}

/// What a request is for, so a credential source can pick the right token audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The protocol.
    pub protocol: Protocol,
    /// Scheme, host and port of the endpoint, e.g. `https://outlook.office365.com`.
    pub origin: String,
    /// The mailbox the request acts on, when there is one.
    pub mailbox: Option<String>,
}

/// An `Authorization` header value, or none. Its `Debug` never shows the value.
#[derive(Clone)]
pub enum AuthHeader {
    /// Send no `Authorization` header.
    None,
    /// Send this value (`Bearer ...`, `Basic ...`).
    Value(SecretString),
}

impl AuthHeader {
    /// The scheme word of the header (`Bearer`, `Basic`), for evidence; never the secret.
    pub fn scheme(&self) -> Option<String> {
        match self {
            AuthHeader::None => None,
            AuthHeader::Value(v) => v
                .expose_secret()
                .split_whitespace()
                .next()
                .map(str::to_owned),
        }
    }
}

impl fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme() {
            None if matches!(self, AuthHeader::None) => f.write_str("AuthHeader::None"),
            scheme => write!(
                f,
                "AuthHeader({} [REDACTED])",
                scheme.unwrap_or_else(|| "?".into())
            ),
        }
    }
}

/// Supplies the `Authorization` header for each request. Object-safe.
pub trait Credentials: Send + Sync + fmt::Debug {
    /// The header to send for a request to `target`.
    fn authorization<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<AuthHeader, BoxError>>;

    /// Short description of the mode for evidence (`bearer`, `basic`, `empty-bearer`, `none`,
    /// `ntlm`).
    fn mode(&self) -> &'static str;

    /// NTLM credentials, which authenticate a connection by a handshake instead of sending a
    /// header per request (the HTTP layer runs it). `None` for every other mode.
    fn ntlm(&self) -> Option<&crate::ntlm::NtlmCredentials> {
        None
    }
}

impl Credentials for crate::ntlm::NtlmCredentials {
    fn authorization<'a>(
        &'a self,
        _target: &'a Target,
    ) -> BoxFuture<'a, Result<AuthHeader, BoxError>> {
        // Never used: the HTTP layer runs the NTLM handshake itself (see `ntlm`).
        Box::pin(async { Ok(AuthHeader::None) })
    }

    fn mode(&self) -> &'static str {
        "ntlm"
    }

    fn ntlm(&self) -> Option<&crate::ntlm::NtlmCredentials> {
        Some(self)
    }
}

/// Produces access tokens for a target (implemented by the caller around its token cache).
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A current access token for `target`.
    fn token<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<SecretString, BoxError>>;
}

/// A fixed token, for tests and for tokens obtained elsewhere.
#[derive(Clone)]
pub struct StaticToken(pub SecretString);

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken([REDACTED])")
    }
}

impl TokenSource for StaticToken {
    fn token<'a>(&'a self, _target: &'a Target) -> BoxFuture<'a, Result<SecretString, BoxError>> {
        let t = self.0.clone();
        Box::pin(async move { Ok(t) })
    }
}

/// A [`TokenSource`] from an async closure, e.g. around another crate's token provider:
///
/// ```
/// use exgate_mail::credentials::{BoxError, FnTokenSource, Target};
/// use secrecy::SecretString;
/// let source = FnTokenSource::new(|target: Target| async move {
///     let _audience = target.origin; // pick the scope from the target
///     Ok::<_, BoxError>(SecretString::from("token"))
/// });
/// ```
pub struct FnTokenSource<F>(F);

impl<F> FnTokenSource<F> {
    /// Wraps `f`, called once per request with the request's [`Target`].
    pub fn new(f: F) -> Self {
        FnTokenSource(f)
    }
}

impl<F> fmt::Debug for FnTokenSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnTokenSource")
    }
}

impl<F, Fut> TokenSource for FnTokenSource<F>
where
    F: Fn(Target) -> Fut + Send + Sync,
    Fut: Future<Output = Result<SecretString, BoxError>> + Send + 'static,
{
    fn token<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<SecretString, BoxError>> {
        Box::pin((self.0)(target.clone()))
    }
}

/// `Authorization: Bearer <token>` with tokens from a [`TokenSource`].
#[derive(Debug, Clone)]
pub struct Bearer {
    source: Arc<dyn TokenSource>,
}

impl Bearer {
    /// Bearer credentials backed by `source`.
    pub fn new(source: Arc<dyn TokenSource>) -> Self {
        Bearer { source }
    }

    /// Bearer credentials with one fixed token.
    pub fn fixed(token: SecretString) -> Self {
        Bearer::new(Arc::new(StaticToken(token)))
    }
}

impl Credentials for Bearer {
    fn authorization<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<AuthHeader, BoxError>> {
        Box::pin(async move {
            let token = self.source.token(target).await?;
            Ok(AuthHeader::Value(SecretString::from(format!(
                "Bearer {}",
                token.expose_secret()
            ))))
        })
    }

    fn mode(&self) -> &'static str {
        "bearer"
    }
}

/// `Authorization: Basic base64(user:password)`. The password never appears in `Debug`.
#[derive(Clone)]
pub struct Basic {
    username: String,
    password: SecretString,
}

impl Basic {
    /// Basic credentials.
    pub fn new(username: impl Into<String>, password: SecretString) -> Self {
        Basic {
            username: username.into(),
            password,
        }
    }
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Basic")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

impl Credentials for Basic {
    fn authorization<'a>(
        &'a self,
        _target: &'a Target,
    ) -> BoxFuture<'a, Result<AuthHeader, BoxError>> {
        Box::pin(async move {
            let raw = format!("{}:{}", self.username, self.password.expose_secret());
            let enc = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
            Ok(AuthHeader::Value(SecretString::from(format!(
                "Basic {enc}"
            ))))
        })
    }

    fn mode(&self) -> &'static str {
        "basic"
    }
}

/// `Authorization: Bearer` with an empty token: the Hybrid Modern Auth discovery probe.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyBearer;

impl Credentials for EmptyBearer {
    fn authorization<'a>(
        &'a self,
        _target: &'a Target,
    ) -> BoxFuture<'a, Result<AuthHeader, BoxError>> {
        Box::pin(async { Ok(AuthHeader::Value(SecretString::from("Bearer"))) })
    }

    fn mode(&self) -> &'static str {
        "empty-bearer"
    }
}

/// No `Authorization` header.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl Credentials for Anonymous {
    fn authorization<'a>(
        &'a self,
        _target: &'a Target,
    ) -> BoxFuture<'a, Result<AuthHeader, BoxError>> {
        Box::pin(async { Ok(AuthHeader::None) })
    }

    fn mode(&self) -> &'static str {
        "none"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-S3cr3t-7f3a";

    fn target() -> Target {
        Target {
            protocol: Protocol::Ews,
            origin: "https://x".into(),
            mailbox: None,
        }
    }

    #[tokio::test]
    async fn debug_output_never_contains_secrets() {
        let basic = Basic::new("user@example.com", SecretString::from(CANARY));
        let bearer = Bearer::fixed(SecretString::from(CANARY));
        let h1 = basic.authorization(&target()).await.unwrap();
        let h2 = bearer.authorization(&target()).await.unwrap();
        for s in [
            format!("{basic:?}"),
            format!("{bearer:?}"),
            format!("{h1:?}"),
            format!("{h2:?}"),
        ] {
            assert!(!s.contains(CANARY), "{s}");
        }
        assert_eq!(format!("{h2:?}"), "AuthHeader(Bearer [REDACTED])");
        assert!(format!("{basic:?}").contains("user@example.com"));
    }

    #[tokio::test]
    async fn fn_token_source_sees_the_target_and_its_errors_propagate() {
        let src = FnTokenSource::new(|t: Target| async move {
            if t.origin.contains("graph") {
                Ok(SecretString::from("graph-token"))
            } else {
                Err::<SecretString, BoxError>("no token for this resource".into())
            }
        });
        let bearer = Bearer::new(Arc::new(src));
        let graph = Target {
            protocol: Protocol::Graph,
            origin: "https://graph.microsoft.com".into(),
            mailbox: None,
        };
        let AuthHeader::Value(v) = bearer.authorization(&graph).await.unwrap() else {
            panic!("bearer must send a header")
        };
        assert_eq!(v.expose_secret(), "Bearer graph-token");
        let err = bearer.authorization(&target()).await.unwrap_err();
        assert_eq!(err.to_string(), "no token for this resource");
    }

    #[tokio::test]
    async fn header_values_are_well_formed() {
        let basic = Basic::new("u", SecretString::from("p"));
        let AuthHeader::Value(v) = basic.authorization(&target()).await.unwrap() else {
            panic!("basic must send a header")
        };
        assert_eq!(v.expose_secret(), "Basic dTpw");
        let AuthHeader::Value(v) = EmptyBearer.authorization(&target()).await.unwrap() else {
            panic!("empty bearer must send a header")
        };
        assert_eq!(v.expose_secret(), "Bearer");
        assert!(matches!(
            Anonymous.authorization(&target()).await.unwrap(),
            AuthHeader::None
        ));
    }
}
