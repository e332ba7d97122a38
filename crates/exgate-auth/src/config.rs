//! Configuration: a TOML profile, the Azure SDK environment variables, and command-line flags,
//! merged in that order (later wins) into a [`ProviderConfig`].
//!
//! ```toml
//! tenant = "contoso.onmicrosoft.com"
//! client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
//! authority_host = "https://login.microsoftonline.com"   # optional
//! endpoint = "v2"                                        # or "v1"
//! flow = "certificate"        # client_secret | certificate | refresh_token | password | device_code | auth_code
//! certificate_path = "app.pfx"
//! certificate_password_env = "APP_PFX_PASSWORD"
//! assertion_algorithm = "PS256"   # RS256 (default) or PS256
//! send_x5c = false
//! scopes = ["https://outlook.office365.com/.default"]
//!
//! [store]
//! path = "tokens.bin"
//! key_file = "tokens.key"        # or key_env = "EXGATE_TOKEN_STORE_KEY"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::assertion::{AssertionAlgorithm, AssertionOptions};
use crate::authority::{Authority, EndpointVersion, PUBLIC_CLOUD_HOST};
use crate::certificate::ClientCertificate;
use crate::client::ClientAuth;
use crate::error::{AuthError, ConfigError};
use crate::flows::{AuthCodeOptions, DeviceCodeOptions, DevicePrompt, OpenUrl};
use crate::provider::{Credential, ProviderConfig};
use crate::store::{Keyring, STORE_KEY_ENV, StoreKey, TokenStore};

/// The flows a profile can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// App-only, client secret.
    ClientSecret,
    /// App-only, certificate.
    Certificate,
    /// Delegated, from a refresh token.
    RefreshToken,
    /// Delegated, username + password (ROPC).
    Password,
    /// Delegated, device code.
    DeviceCode,
    /// Delegated, authorization code + PKCE.
    AuthCode,
}

impl FlowKind {
    /// A flow that signs a user in (the token is the user's), not the application alone.
    pub fn is_delegated(self) -> bool {
        matches!(
            self,
            FlowKind::RefreshToken | FlowKind::Password | FlowKind::DeviceCode | FlowKind::AuthCode
        )
    }
}

impl std::str::FromStr for FlowKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "client_secret" | "secret" => FlowKind::ClientSecret,
            "certificate" | "cert" => FlowKind::Certificate,
            "refresh_token" => FlowKind::RefreshToken,
            "password" | "ropc" => FlowKind::Password,
            "device_code" | "device" => FlowKind::DeviceCode,
            "auth_code" | "authorization_code" | "browser" => FlowKind::AuthCode,
            other => {
                return Err(format!(
                    "unknown flow `{other}` (client_secret, certificate, refresh_token, password, device_code, auth_code)"
                ));
            }
        })
    }
}

fn de_opt_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Option::<String>::deserialize(d).map(|o| o.map(SecretString::from))
}

/// Store settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The store file.
    pub path: Option<PathBuf>,
    /// Environment variable holding the key (default `EXGATE_TOKEN_STORE_KEY`).
    pub key_env: Option<String>,
    /// A 0600 key file.
    pub key_file: Option<PathBuf>,
    /// An account name in the OS keyring (service `exgate-token-store`).
    pub key_keyring: Option<String>,
}

impl StoreSettings {
    /// Opens the store these settings name, with its key from (in order) `key_file`, `key_env`,
    /// `key_keyring`, the `EXGATE_TOKEN_STORE_KEY` variable, or the OS keyring's `default`
    /// account. `source` names the file (or `flags`) the settings came from, for errors.
    pub fn open(&self, source: &str) -> Result<TokenStore, AuthError> {
        let err = |field: &str, message: &str, fix: String| {
            ConfigError::new(source.to_owned(), field, message, fix)
        };
        let path = self.path.clone().ok_or_else(|| {
            err(
                "store.path",
                "no store file",
                "set [store] path = \"tokens.bin\"".to_owned(),
            )
        })?;
        let key = if let Some(f) = &self.key_file {
            StoreKey::from_file(f)?
        } else if let Some(var) = &self.key_env {
            StoreKey::from_env(var)?
        } else if let Some(account) = &self.key_keyring {
            Keyring::detect()
                .ok_or_else(|| {
                    err(
                        "store.key_keyring",
                        "no OS keyring tool (secret-tool or security) is installed",
                        "use key_file or key_env on machines without a keyring".to_owned(),
                    )
                })?
                .load(account)?
        } else if std::env::var_os(STORE_KEY_ENV).is_some() {
            StoreKey::from_env(STORE_KEY_ENV)?
        } else if let Some(keyring) = Keyring::detect() {
            keyring.load("default")?
        } else {
            return Err(err(
                "store.key_file",
                "no key for the token store",
                format!("set [store] key_file (a 0600 file) or key_env, or export {STORE_KEY_ENV}"),
            )
            .into());
        };
        Ok(TokenStore::open(path, &key)?)
    }
}

/// Merged settings. Secrets are held as `SecretString`; `Debug` never shows them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Tenant GUID or domain.
    pub tenant: Option<String>,
    /// Application (client) id.
    pub client_id: Option<String>,
    /// Authority host URL.
    pub authority_host: Option<String>,
    /// `v1` or `v2`.
    pub endpoint: Option<EndpointVersion>,
    /// The flow; inferred from the credentials present when absent.
    pub flow: Option<FlowKind>,
    /// Client secret (prefer `client_secret_env`).
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub client_secret: Option<SecretString>,
    /// Environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// A file holding the client secret (systemd credentials, container secrets); surrounding
    /// whitespace is ignored.
    pub client_secret_file: Option<PathBuf>,
    /// PEM or PFX certificate.
    pub certificate_path: Option<PathBuf>,
    /// PEM key, when not in the certificate file.
    pub key_path: Option<PathBuf>,
    /// PFX password or PEM passphrase (prefer `certificate_password_env`).
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub certificate_password: Option<SecretString>,
    /// Environment variable holding the certificate password.
    pub certificate_password_env: Option<String>,
    /// `RS256` (default) or `PS256`.
    pub assertion_algorithm: Option<AssertionAlgorithm>,
    /// Send `x5c`.
    pub send_x5c: Option<bool>,
    /// ROPC user name.
    pub username: Option<String>,
    /// ROPC password (prefer `password_env`).
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub password: Option<SecretString>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// Refresh token (prefer `refresh_token_env`).
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub refresh_token: Option<SecretString>,
    /// Environment variable holding the refresh token.
    pub refresh_token_env: Option<String>,
    /// Scopes to request by default.
    pub scopes: Option<Vec<String>>,
    /// An extra root CA (PEM) to trust.
    pub ca_pem: Option<PathBuf>,
    /// Renew this many seconds ahead of expiry.
    pub renew_ahead_secs: Option<u64>,
    /// Persistent store.
    pub store: Option<StoreSettings>,
    /// Where these settings came from (`FILE`, `environment`, `flags`), for error messages.
    #[serde(skip)]
    pub source: String,
}

macro_rules! overlay {
    ($dst:ident, $src:ident, $($f:ident),*) => {
        $( if $src.$f.is_some() { $dst.$f = $src.$f; } )*
    };
}

impl AuthSettings {
    /// Parses a TOML profile. Errors name the file, the line and the field.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<AuthSettings, ConfigError> {
        let mut s: AuthSettings = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|sp| text.get(..sp.start).unwrap_or("").matches('\n').count() + 1);
            let message = e.message().to_string();
            let field = message.split('`').nth(1).unwrap_or("").to_string();
            ConfigError {
                source_name: path.display().to_string(),
                line,
                field,
                message,
                fix: "see docs/auth.md for the profile format".into(),
            }
        })?;
        s.source = path.display().to_string();
        Ok(s)
    }

    /// Reads a TOML profile file.
    pub fn from_file(path: &Path) -> Result<AuthSettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                "profile",
                format!("cannot read: {e}"),
                "check the path given with --profile",
            )
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Settings from the Azure SDK variables (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`,
    /// `AZURE_CLIENT_CERTIFICATE_PASSWORD`, `AZURE_AUTHORITY_HOST`), read through `get`.
    pub fn from_env_with(get: impl Fn(&str) -> Option<String>) -> AuthSettings {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let any = [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_AUTHORITY_HOST",
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_CERTIFICATE_PATH",
            "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        ]
        .iter()
        .any(|k| get(k).is_some());
        AuthSettings {
            tenant: get("AZURE_TENANT_ID"),
            client_id: get("AZURE_CLIENT_ID"),
            authority_host: get("AZURE_AUTHORITY_HOST"),
            client_secret: get("AZURE_CLIENT_SECRET").map(SecretString::from),
            certificate_path: get("AZURE_CLIENT_CERTIFICATE_PATH").map(PathBuf::from),
            certificate_password: get("AZURE_CLIENT_CERTIFICATE_PASSWORD").map(SecretString::from),
            source: if any {
                "environment".into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    /// Settings from the process environment.
    pub fn from_env() -> AuthSettings {
        Self::from_env_with(|k| std::env::var(k).ok())
    }

    /// Overlays `other` on `self`: every field set in `other` wins.
    pub fn merge(mut self, other: AuthSettings) -> AuthSettings {
        overlay!(
            self,
            other,
            tenant,
            client_id,
            authority_host,
            endpoint,
            flow,
            client_secret,
            client_secret_env,
            client_secret_file,
            certificate_path,
            key_path,
            certificate_password,
            certificate_password_env,
            assertion_algorithm,
            send_x5c,
            username,
            password,
            password_env,
            refresh_token,
            refresh_token_env,
            scopes,
            ca_pem,
            renew_ahead_secs,
            store
        );
        if !other.source.is_empty() {
            self.source = if self.source.is_empty() {
                other.source
            } else {
                format!("{} + {}", self.source, other.source)
            };
        }
        self
    }

    /// Marks these settings as coming from command-line flags.
    pub fn from_flags(mut self) -> AuthSettings {
        self.source = "flags".into();
        self
    }

    fn err(&self, field: &str, message: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError::new(
            if self.source.is_empty() {
                "settings".to_string()
            } else {
                self.source.clone()
            },
            field,
            message,
            fix,
        )
    }

    fn secret(
        &self,
        value: &Option<SecretString>,
        env: &Option<String>,
        field: &str,
    ) -> Result<Option<SecretString>, ConfigError> {
        if let Some(v) = value {
            return Ok(Some(v.clone()));
        }
        match env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(SecretString::from(v))),
                _ => Err(self.err(
                    &format!("{field}_env"),
                    format!("environment variable {var} is not set"),
                    format!("export {var}, or change {field}_env"),
                )),
            },
            None => Ok(None),
        }
    }

    /// The flow these settings describe (explicit, or inferred from what is present).
    pub fn flow(&self) -> Result<FlowKind, ConfigError> {
        if let Some(f) = self.flow {
            return Ok(f);
        }
        if self.certificate_path.is_some() {
            Ok(FlowKind::Certificate)
        } else if self.client_secret.is_some()
            || self.client_secret_env.is_some()
            || self.client_secret_file.is_some()
        {
            Ok(FlowKind::ClientSecret)
        } else if self.refresh_token.is_some() || self.refresh_token_env.is_some() {
            Ok(FlowKind::RefreshToken)
        } else if self.username.is_some() {
            Ok(FlowKind::Password)
        } else {
            Err(self.err(
                "flow",
                "no credential configured",
                "set client_secret (AZURE_CLIENT_SECRET), certificate_path (AZURE_CLIENT_CERTIFICATE_PATH), or flow = \"device_code\"",
            ))
        }
    }

    /// The default scopes (`https://outlook.office365.com/.default` when none are set).
    pub fn scopes(&self) -> Vec<String> {
        self.scopes
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["https://outlook.office365.com/.default".into()])
    }

    /// The authority.
    pub fn authority(&self) -> Result<Authority, ConfigError> {
        let tenant = self.tenant.as_deref().ok_or_else(|| {
            self.err(
                "tenant",
                "no tenant",
                "set tenant (AZURE_TENANT_ID) to the directory id or a verified domain",
            )
        })?;
        let host = self.authority_host.as_deref().unwrap_or(PUBLIC_CLOUD_HOST);
        Authority::new(host, tenant, self.endpoint.unwrap_or_default()).map_err(|mut e| {
            e.source_name = self.source.clone();
            e
        })
    }

    fn client_auth(&self, required: bool) -> Result<ClientAuth, ConfigError> {
        if let Some(path) = &self.certificate_path {
            let pw = self.secret(
                &self.certificate_password,
                &self.certificate_password_env,
                "certificate_password",
            )?;
            let cert = ClientCertificate::from_file(path, self.key_path.as_deref(), pw.as_ref())
                .map_err(|e| {
                    self.err(
                        "certificate_path",
                        format!("{}: {}", e.path.display(), e.message),
                        e.fix.clone(),
                    )
                })?;
            return Ok(ClientAuth::Certificate {
                cert,
                options: AssertionOptions {
                    algorithm: self.assertion_algorithm.unwrap_or_default(),
                    send_x5c: self.send_x5c.unwrap_or(false),
                    lifetime_secs: 600,
                },
            });
        }
        if let Some(s) = self.secret(
            &self.client_secret,
            &self.client_secret_env,
            "client_secret",
        )? {
            return Ok(ClientAuth::Secret(s));
        }
        if let Some(path) = &self.client_secret_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                self.err(
                    "client_secret_file",
                    format!("cannot read {}: {e}", path.display()),
                    "point client_secret_file at a readable file holding the secret alone",
                )
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(self.err(
                    "client_secret_file",
                    format!("{} is empty", path.display()),
                    "write the client secret into the file",
                ));
            }
            return Ok(ClientAuth::Secret(SecretString::from(text.to_owned())));
        }
        if required {
            return Err(self.err(
                "client_secret",
                "app-only tokens need a client secret or a certificate",
                "set client_secret (AZURE_CLIENT_SECRET) or certificate_path (AZURE_CLIENT_CERTIFICATE_PATH)",
            ));
        }
        Ok(ClientAuth::Public)
    }

    /// Builds the provider configuration. `device_prompt` and `open_url` are the user-interface
    /// hooks of the interactive flows.
    pub fn into_provider_config(
        self,
        device_prompt: DevicePrompt,
        open_url: OpenUrl,
    ) -> Result<ProviderConfig, AuthError> {
        let authority = self.authority()?;
        let client_id = self.client_id.clone().ok_or_else(|| {
            self.err(
                "client_id",
                "no client id",
                "set client_id (AZURE_CLIENT_ID) to the app's Application (client) ID",
            )
        })?;
        let flow = self.flow()?;
        let credential = match flow {
            FlowKind::ClientSecret | FlowKind::Certificate => {
                authority.require_specific_tenant().map_err(|mut e| {
                    e.source_name = self.source.clone();
                    e
                })?;
                match self.client_auth(true)? {
                    ClientAuth::Secret(s) if flow == FlowKind::ClientSecret => {
                        Credential::ClientSecret(s)
                    }
                    ClientAuth::Certificate { cert, options } if flow == FlowKind::Certificate => {
                        Credential::Certificate { cert, options }
                    }
                    _ => {
                        let field = if flow == FlowKind::Certificate {
                            "certificate_path"
                        } else {
                            "client_secret"
                        };
                        return Err(self
                            .err(field, "missing for this flow", format!("set {field}"))
                            .into());
                    }
                }
            }
            FlowKind::RefreshToken => Credential::RefreshToken {
                client: self.client_auth(false)?,
                refresh_token: self
                    .secret(
                        &self.refresh_token,
                        &self.refresh_token_env,
                        "refresh_token",
                    )?
                    .ok_or_else(|| {
                        self.err("refresh_token", "no refresh token", "set refresh_token_env")
                    })?,
            },
            FlowKind::Password => Credential::Password {
                client: self.client_auth(false)?,
                username: self.username.clone().ok_or_else(|| {
                    self.err("username", "no user name", "set username (the UPN)")
                })?,
                password: self
                    .secret(&self.password, &self.password_env, "password")?
                    .ok_or_else(|| self.err("password", "no password", "set password_env"))?,
            },
            FlowKind::DeviceCode => Credential::DeviceCode {
                client: self.client_auth(false)?,
                options: DeviceCodeOptions::new(device_prompt),
            },
            FlowKind::AuthCode => Credential::AuthorizationCode {
                client: self.client_auth(false)?,
                options: AuthCodeOptions {
                    login_hint: self.username.clone(),
                    ..AuthCodeOptions::new(open_url)
                },
            },
        };
        let mut config = ProviderConfig::new(authority, client_id, credential);
        if let Some(ca) = &self.ca_pem {
            let pem = std::fs::read(ca).map_err(|e| {
                self.err(
                    "ca_pem",
                    format!("cannot read {}: {e}", ca.display()),
                    "check the path",
                )
            })?;
            config.http.extra_root_ca_pem = Some(pem);
        }
        if let Some(secs) = self.renew_ahead_secs {
            config.cache.renew_ahead = Duration::from_secs(secs.max(60));
        }
        if let Some(store) = &self.store {
            let source = if self.source.is_empty() {
                "settings"
            } else {
                self.source.as_str()
            };
            config.store = Some(store.open(source)?);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::Arc;

    fn hooks() -> (DevicePrompt, OpenUrl) {
        (Arc::new(|_| {}), Arc::new(|_| {}))
    }

    #[test]
    fn profile_parses_and_flags_win() {
        let s = AuthSettings::from_toml_str(
            r#"
tenant = "contoso.onmicrosoft.com"
client_id = "app"
client_secret = "CANARY-secret-from-file"
endpoint = "v1"
"#,
            Path::new("daemon.toml"),
        )
        .expect("parses");
        assert!(!format!("{s:?}").contains("CANARY"));
        let flags = AuthSettings {
            tenant: Some("fabrikam.com".into()),
            ..Default::default()
        }
        .from_flags();
        let merged = s.merge(flags);
        assert_eq!(merged.tenant.as_deref(), Some("fabrikam.com"));
        assert_eq!(merged.flow().expect("flow"), FlowKind::ClientSecret);
        let (p, o) = hooks();
        let cfg = merged.into_provider_config(p, o).expect("config");
        assert_eq!(cfg.authority.version(), EndpointVersion::V1);
        assert!(
            matches!(cfg.credential, Credential::ClientSecret(ref s) if s.expose_secret() == "CANARY-secret-from-file")
        );
        assert!(!format!("{cfg:?}").contains("CANARY"));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = AuthSettings::from_toml_str(
            "tenant = \"t\"\nclient_idd = \"x\"\n",
            Path::new("p.toml"),
        )
        .expect_err("unknown field");
        assert_eq!(err.source_name, "p.toml");
        assert_eq!(err.line, Some(2));
        assert_eq!(err.field, "client_idd");
        let err = AuthSettings::from_toml_str("endpoint = \"v3\"\n", Path::new("p.toml"))
            .expect_err("bad value");
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn azure_sdk_variables() {
        let env = |k: &str| match k {
            "AZURE_TENANT_ID" => Some("11111111-2222-3333-4444-555555555555".to_string()),
            "AZURE_CLIENT_ID" => Some("app".to_string()),
            "AZURE_CLIENT_SECRET" => Some("s".to_string()),
            "AZURE_AUTHORITY_HOST" => Some("http://127.0.0.1:9".to_string()),
            _ => None,
        };
        let s = AuthSettings::from_env_with(env);
        let a = s.authority().expect("authority");
        assert_eq!(a.host().as_str(), "http://127.0.0.1:9/");
        assert_eq!(s.flow().expect("flow"), FlowKind::ClientSecret);
    }

    #[test]
    fn app_only_on_common_is_refused_before_any_request() {
        let s = AuthSettings {
            tenant: Some("organizations".into()),
            client_id: Some("app".into()),
            client_secret: Some(SecretString::from("x")),
            source: "flags".into(),
            ..Default::default()
        };
        let (p, o) = hooks();
        let err = s.into_provider_config(p, o).expect_err("refused");
        assert!(err.to_string().contains("AADSTS50059"), "{err}");
        assert!(err.to_string().contains("flags"), "{err}");
    }

    #[test]
    fn missing_credential_is_explained() {
        let s = AuthSettings {
            tenant: Some("t".into()),
            client_id: Some("app".into()),
            ..Default::default()
        };
        let err = s.flow().expect_err("no credential");
        assert!(err.fix.contains("AZURE_CLIENT_SECRET"));
    }

    proptest::proptest! {
        #[test]
        fn profile_parser_never_panics(text in ".{0,200}") {
            let _ = AuthSettings::from_toml_str(&text, Path::new("fuzz.toml"));
        }
    }
}
