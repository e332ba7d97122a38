//! Interactive and legacy user flows: device code (with `slow_down`), authorization code + PKCE
//! with a loopback redirect listener, and Basic credentials for on-premises endpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::authority::EndpointVersion;
use crate::client::{DeviceCodeInfo, Grant, Target, TokenClient, TokenResponse};
use crate::error::{AuthError, EntraError, aadsts_codes_in};
use crate::loopback::RedirectListener;

/// Called with the device code and URL the user must be shown.
pub type DevicePrompt = Arc<dyn Fn(&DeviceCodeInfo) + Send + Sync>;

/// Called with the authorize URL (open a browser, or print it when headless).
pub type OpenUrl = Arc<dyn Fn(&Url) + Send + Sync>;

/// Device-code flow settings.
#[derive(Clone)]
pub struct DeviceCodeOptions {
    /// Shows the code to the user.
    pub prompt: DevicePrompt,
    /// Overrides the server's polling interval (tests against an emulator); `None` follows the
    /// server.
    pub poll_interval: Option<Duration>,
    /// How much a `slow_down` answer adds to the interval (RFC 8628: 5 s).
    pub slow_down_increment: Duration,
}

impl DeviceCodeOptions {
    /// Options that follow the server's interval and RFC 8628's 5 s `slow_down` step.
    pub fn new(prompt: DevicePrompt) -> Self {
        DeviceCodeOptions {
            prompt,
            poll_interval: None,
            slow_down_increment: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for DeviceCodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCodeOptions")
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// Authorization-code flow settings.
#[derive(Clone)]
pub struct AuthCodeOptions {
    /// Opens (or prints) the authorize URL.
    pub open_url: OpenUrl,
    /// Loopback port (0 = any free port).
    pub port: u16,
    /// Host name in the redirect URI (`localhost` by default, as registered on most apps).
    pub redirect_host: String,
    /// How long to wait for the redirect.
    pub timeout: Duration,
    /// `login_hint` to pre-fill the user.
    pub login_hint: Option<String>,
}

impl std::fmt::Debug for AuthCodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCodeOptions")
            .field("port", &self.port)
            .field("redirect_host", &self.redirect_host)
            .field("timeout", &self.timeout)
            .field("login_hint", &self.login_hint)
            .finish_non_exhaustive()
    }
}

impl AuthCodeOptions {
    /// Options with defaults: any port, `localhost`, 5 minutes.
    pub fn new(open_url: OpenUrl) -> Self {
        AuthCodeOptions {
            open_url,
            port: 0,
            redirect_host: "localhost".into(),
            timeout: Duration::from_secs(300),
            login_hint: None,
        }
    }
}

/// Runs the device-code flow: starts it, shows the code, polls until the user signs in. Polling
/// honours `authorization_pending` (keep going) and `slow_down` (interval + 5 s).
pub async fn device_code_flow(
    client: &TokenClient,
    target: &Target,
    options: &DeviceCodeOptions,
) -> Result<TokenResponse, AuthError> {
    let info = client.device_code_start(target).await?;
    (options.prompt)(&info);
    let deadline = Instant::now() + Duration::from_secs(info.expires_in.max(1));
    let mut interval = options
        .poll_interval
        .unwrap_or(Duration::from_secs(info.interval.max(1)));
    let grant = Grant::DeviceCode(info.device_code.clone());
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            return Err(AuthError::Flow {
                flow: "device_code",
                message: "the code expired before the sign-in completed".into(),
            });
        }
        match client.request(&grant, target).await {
            Ok(r) => return Ok(r),
            Err(AuthError::Entra { body, .. }) if body.error == "authorization_pending" => {}
            Err(AuthError::Entra { body, .. }) if body.error == "slow_down" => {
                interval += options.slow_down_increment;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A PKCE verifier and its S256 challenge.
#[derive(Clone)]
pub struct Pkce {
    /// The verifier (43 characters of base64url).
    pub verifier: SecretString,
    /// base64url(SHA-256(verifier)).
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Pkce {
    /// A fresh verifier.
    pub fn generate() -> Pkce {
        let verifier = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        Pkce::from_verifier(&verifier)
    }

    /// The challenge for a given verifier.
    pub fn from_verifier(verifier: &str) -> Pkce {
        let d = digest::digest(&digest::SHA256, verifier.as_bytes());
        Pkce {
            verifier: SecretString::from(verifier.to_string()),
            challenge: URL_SAFE_NO_PAD.encode(d.as_ref()),
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The system RNG does not fail on supported platforms; if it did, the uuid fallback still
    // gives unpredictable bytes.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        for (i, x) in b.iter_mut().enumerate() {
            *x = uuid::Uuid::new_v4().as_bytes()[i % 16];
        }
    }
    b
}

fn random_hex(n: usize) -> String {
    let bytes = random_bytes::<32>();
    bytes
        .iter()
        .take(n.min(32))
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The authorize URL of an authorization-code + PKCE request (msal's shape).
pub fn authorize_url(
    client: &TokenClient,
    target: &Target,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    pkce: &Pkce,
    login_hint: Option<&str>,
) -> Url {
    let mut url = client.authority().authorize_endpoint();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", client.client_id())
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri);
        match client.authority().version() {
            EndpointVersion::V2 => {
                let mut scopes = target.scopes.clone();
                for extra in ["offline_access", "openid", "profile"] {
                    if !scopes.iter().any(|s| s == extra) {
                        scopes.push(extra.into());
                    }
                }
                scopes.sort();
                q.append_pair("scope", &scopes.join(" "));
            }
            EndpointVersion::V1 => {
                q.append_pair("resource", &target.resource());
            }
        }
        q.append_pair("state", state)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("nonce", nonce)
            .append_pair("client_info", "1")
            .append_pair("response_mode", "query");
        if let Some(h) = login_hint {
            q.append_pair("login_hint", h);
        }
    }
    url
}

/// Runs the authorization-code + PKCE flow with a loopback redirect listener.
pub async fn auth_code_flow(
    client: &TokenClient,
    target: &Target,
    options: &AuthCodeOptions,
) -> Result<TokenResponse, AuthError> {
    let listener = RedirectListener::bind(options.port).await?;
    let redirect_uri = format!("http://{}:{}/", options.redirect_host, listener.port());
    let pkce = Pkce::generate();
    let state = random_hex(16);
    let nonce = random_hex(32);
    let url = authorize_url(
        client,
        target,
        &redirect_uri,
        &state,
        &nonce,
        &pkce,
        options.login_hint.as_deref(),
    );
    (options.open_url)(&url);
    let params = listener.receive(options.timeout).await?;
    if params.get("state").map(String::as_str) != Some(state.as_str()) {
        return Err(AuthError::Flow {
            flow: "authorization_code",
            message: "the redirect's state does not match the request (a stale or forged response)"
                .into(),
        });
    }
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").cloned().unwrap_or_default();
        return Err(AuthError::Entra {
            status: 0,
            body: Box::new(EntraError {
                error: error.clone(),
                error_codes: aadsts_codes_in(&description),
                error_description: description,
                trace_id: params.get("trace_id").cloned().unwrap_or_default(),
                correlation_id: params.get("correlation_id").cloned().unwrap_or_default(),
                error_uri: params.get("error_uri").cloned().unwrap_or_default(),
                ..Default::default()
            }),
        });
    }
    let Some(code) = params.get("code") else {
        return Err(AuthError::Flow {
            flow: "authorization_code",
            message: "the redirect carried neither a code nor an error".into(),
        });
    };
    client
        .request(
            &Grant::AuthorizationCode {
                code: SecretString::from(code.clone()),
                verifier: pkce.verifier.clone(),
                redirect_uri,
            },
            target,
        )
        .await
}

/// The warning shown whenever Basic credentials are used.
pub const BASIC_WARNING: &str = "Basic authentication is for on-premises Exchange and legacy endpoints only: Exchange Online no longer accepts Basic for EWS, IMAP or POP (cause basic_auth_disabled); use an app-only or delegated OAuth token there";

/// A username and (app) password for HTTP Basic, for on-premises or legacy endpoints.
#[derive(Clone)]
pub struct BasicCredential {
    /// The user name (UPN or DOMAIN\user).
    pub username: String,
    /// The password or app password.
    pub password: SecretString,
}

impl std::fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl BasicCredential {
    /// The `Authorization` header value.
    pub fn authorization_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password.expose_secret());
        format!("Basic {}", STANDARD.encode(raw))
    }

    /// The warning for `url`: always [`BASIC_WARNING`], and `true` when the host is Exchange
    /// Online, where Basic will be refused.
    pub fn warning_for(url: &Url) -> (&'static str, bool) {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let online = host == "outlook.office365.com"
            || host == "outlook.office.com"
            || host.ends_with(".outlook.com")
            || host == "outlook.office365.us";
        (BASIC_WARNING, online)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Authority;
    use crate::client::{ClientAuth, RetryPolicy};

    #[test]
    fn pkce_matches_rfc7636_example() {
        // RFC 7636 appendix B.
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let a = Pkce::generate();
        let b = Pkce::generate();
        assert_ne!(a.challenge, b.challenge);
        assert_eq!(a.verifier.expose_secret().len(), 43);
    }

    #[test]
    fn authorize_url_has_msal_shape() {
        let authority = Authority::new("http://127.0.0.1:1", "t", EndpointVersion::V2).expect("a");
        let client = TokenClient::new(
            reqwest::Client::new(),
            authority,
            "app".into(),
            ClientAuth::Public,
            RetryPolicy::default(),
        );
        let pkce = Pkce::generate();
        let url = authorize_url(
            &client,
            &Target {
                scopes: vec!["https://outlook.office365.com/EWS.AccessAsUser.All".into()],
            },
            "http://localhost:8400/",
            "st",
            "no",
            &pkce,
            Some("u@x"),
        );
        assert_eq!(url.path(), "/t/oauth2/v2.0/authorize");
        let q: std::collections::BTreeMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], pkce.challenge);
        assert_eq!(
            q["scope"],
            "https://outlook.office365.com/EWS.AccessAsUser.All offline_access openid profile"
        );
        assert_eq!(q["state"], "st");
        assert_eq!(q["nonce"], "no");
        assert_eq!(q["login_hint"], "u@x");
        assert!(!url.as_str().contains(pkce.verifier.expose_secret()));
    }

    #[test]
    fn basic_header_and_warning() {
        let b = BasicCredential {
            username: "u@x".into(),
            password: SecretString::from("CANARY-pw"),
        };
        assert_eq!(
            b.authorization_header(),
            format!("Basic {}", STANDARD.encode("u@x:CANARY-pw"))
        );
        assert!(!format!("{b:?}").contains("CANARY"));
        let (w, online) = BasicCredential::warning_for(
            &Url::parse("https://outlook.office365.com/EWS/Exchange.asmx").expect("url"),
        );
        assert!(online);
        assert!(w.contains("no longer accepts Basic"));
        let (_, online) = BasicCredential::warning_for(
            &Url::parse("https://mail.contoso.com/EWS/Exchange.asmx").expect("url"),
        );
        assert!(!online);
    }
}
