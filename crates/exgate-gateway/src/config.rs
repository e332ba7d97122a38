//! The gateway's configuration: listeners, TLS, the spool, the upstream servers, auth profiles
//! (the credential spec of `exgate-auth`) and local accounts.
//!
//! ```toml
//! [listen]
//! smtp = ["127.0.0.1:2587"]          # submission with STARTTLS
//!
//! [profiles.contoso]
//! tenant = "contoso.com"
//! client_id = "aaaaaaaa-0000-0000-0000-000000000001"
//! client_secret_env = "SCANNER_SECRET"
//!
//! [[accounts]]
//! name = "scanner"
//! mailbox = "scanner@contoso.com"
//! ```
//!
//! Errors name the file, the line and the field. Secrets are never read from this file in the
//! clear: a profile names an environment variable, a file or the token store instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use exgate_auth::AuthSettings;
use serde::Deserialize;

/// A configuration error: where, what, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{file}{line}: {field}: {message}\n  fix: {fix}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// `:LINE` when known.
    pub line: String,
    /// The field (`accounts[1].mailbox`).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl ConfigError {
    fn new(file: &Path, field: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError {
            file: file.display().to_string(),
            line: String::new(),
            field: field.to_owned(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Where the gateway listens toward devices. Loopback unless configured otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// SMTP submission, STARTTLS offered and required before AUTH (port 587 in production).
    #[serde(default = "default_smtp")]
    pub smtp: Vec<SocketAddr>,
    /// SMTP submission in TLS from the first byte (port 465).
    #[serde(default)]
    pub smtps: Vec<SocketAddr>,
    /// SMTP without TLS (port 25): only with `allow_plain = true`, for an isolated device
    /// network; passwords then cross that network in the clear.
    #[serde(default)]
    pub smtp_plain: Vec<SocketAddr>,
    /// Allows `smtp_plain` (and AUTH without TLS on it).
    #[serde(default)]
    pub allow_plain: bool,
    /// IMAP with STARTTLS (port 143).
    #[serde(default)]
    pub imap: Vec<SocketAddr>,
    /// IMAP in TLS from the first byte (port 993).
    #[serde(default)]
    pub imaps: Vec<SocketAddr>,
    /// POP3 with STLS (port 110).
    #[serde(default)]
    pub pop3: Vec<SocketAddr>,
    /// POP3 in TLS from the first byte (port 995).
    #[serde(default)]
    pub pop3s: Vec<SocketAddr>,
    /// Prometheus `/metrics` and `/health` (HTTP, loopback by default).
    #[serde(default = "default_metrics")]
    pub metrics: Option<SocketAddr>,
}

fn default_smtp() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 2587))]
}

fn default_metrics() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9187)))
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            smtp: default_smtp(),
            smtps: Vec::new(),
            smtp_plain: Vec::new(),
            allow_plain: false,
            imap: Vec::new(),
            imaps: Vec::new(),
            pop3: Vec::new(),
            pop3s: Vec::new(),
            metrics: default_metrics(),
        }
    }
}

/// The certificate the gateway presents to devices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The durable queue of accepted messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSettings {
    /// The spool directory (created 0700).
    #[serde(default = "default_spool")]
    pub path: PathBuf,
    /// First retry after a temporary failure, in seconds; doubled each time up to
    /// `retry_max_secs`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_secs: u64,
    /// Longest wait between attempts.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// After this long without delivery a message is returned to its sender.
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
    /// Upstream submissions in flight at once, over all accounts.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
}

fn default_spool() -> PathBuf {
    PathBuf::from("spool")
}
fn default_retry_initial() -> u64 {
    30
}
fn default_retry_max() -> u64 {
    1800
}
fn default_max_age() -> u64 {
    2 * 24 * 3600
}
fn default_parallel() -> usize {
    16
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            path: default_spool(),
            retry_initial_secs: default_retry_initial(),
            retry_max_secs: default_retry_max(),
            max_age_secs: default_max_age(),
            parallel: default_parallel(),
        }
    }
}

/// The Exchange servers the gateway signs in to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// SMTP submission host (also the TLS name).
    #[serde(default = "default_smtp_host")]
    pub smtp_host: String,
    /// SMTP port (587 STARTTLS; 465 with `smtp_tls = true`).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// TLS from the first byte toward the SMTP server.
    #[serde(default)]
    pub smtp_tls: bool,
    /// Connect here instead of resolving `smtp_host` (an emulator, a smart host's address).
    pub smtp_connect: Option<SocketAddr>,
    /// IMAP host.
    #[serde(default = "default_imap_host")]
    pub imap_host: String,
    /// IMAP port (TLS from the first byte).
    #[serde(default = "default_imap_port")]
    pub imap_port: u16,
    /// Connect here instead of resolving `imap_host`.
    pub imap_connect: Option<SocketAddr>,
    /// POP3 host.
    #[serde(default = "default_imap_host")]
    pub pop_host: String,
    /// POP3 port (TLS from the first byte).
    #[serde(default = "default_pop_port")]
    pub pop_port: u16,
    /// Connect here instead of resolving `pop_host`.
    pub pop_connect: Option<SocketAddr>,
    /// Microsoft Graph's base URL (for `submit = "graph"` or `"smtp_then_graph"`).
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    /// An extra root CA (PEM) to trust upstream.
    pub ca_pem: Option<PathBuf>,
    /// Messages per minute per mailbox (Exchange Online allows 30).
    #[serde(default = "default_per_minute")]
    pub messages_per_minute: u32,
    /// Recipients per day per mailbox (Exchange Online allows 10,000).
    #[serde(default = "default_per_day")]
    pub recipients_per_day: u32,
    /// Seconds allowed for each upstream network step.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Seconds a signed-in SMTP session is kept open after a delivery for the account's next
    /// message (0: a new session for every message).
    #[serde(default = "default_reuse_idle")]
    pub smtp_reuse_idle_secs: u64,
    /// Messages one upstream SMTP session carries before it is closed (Exchange's receive
    /// connectors take 20 per connection by default).
    #[serde(default = "default_session_messages")]
    pub smtp_session_messages: u32,
}

fn default_smtp_host() -> String {
    "smtp.office365.com".into()
}
fn default_smtp_port() -> u16 {
    587
}
fn default_imap_host() -> String {
    "outlook.office365.com".into()
}
fn default_imap_port() -> u16 {
    993
}
fn default_graph_url() -> String {
    "https://graph.microsoft.com/v1.0".into()
}
fn default_pop_port() -> u16 {
    995
}
fn default_per_minute() -> u32 {
    30
}
fn default_per_day() -> u32 {
    10_000
}
fn default_timeout() -> u64 {
    60
}
fn default_reuse_idle() -> u64 {
    30
}
fn default_session_messages() -> u32 {
    20
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            smtp_host: default_smtp_host(),
            smtp_port: default_smtp_port(),
            smtp_tls: false,
            smtp_connect: None,
            imap_host: default_imap_host(),
            imap_port: default_imap_port(),
            imap_connect: None,
            pop_host: default_imap_host(),
            pop_port: default_pop_port(),
            pop_connect: None,
            graph_url: default_graph_url(),
            ca_pem: None,
            messages_per_minute: default_per_minute(),
            recipients_per_day: default_per_day(),
            timeout_secs: default_timeout(),
            smtp_reuse_idle_secs: default_reuse_idle(),
            smtp_session_messages: default_session_messages(),
        }
    }
}

/// A protocol a local account may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// SMTP submission.
    Smtp,
    /// IMAP.
    Imap,
    /// POP3.
    Pop,
}

impl Service {
    /// `smtp`, `imap`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Imap => "imap",
            Service::Pop => "pop",
        }
    }
}

/// How an account's messages go to Exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Submit {
    /// SMTP submission with XOAUTH2 (`SMTP.SendAsApp` / `SMTP.Send`).
    #[default]
    Smtp,
    /// Graph `sendMail` with the message's MIME (`Mail.Send`).
    Graph,
    /// SMTP, and Graph when Exchange says SMTP AUTH is off for the tenant or the mailbox.
    SmtpThenGraph,
}

/// A password sign-in upstream, for on-premises Exchange that offers no OAuth: the password
/// itself (SMTP AUTH LOGIN, IMAP LOGIN, POP USER/PASS) or Windows authentication with it (NTLM:
/// SMTP AUTH NTLM, IMAP AUTHENTICATE NTLM, POP AUTH NTLM). The password comes from a variable or
/// a file, never this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamBasic {
    /// The user name upstream (`CONTOSO\\copier` or `copier@contoso.com`).
    pub username: String,
    /// `login` (default: the password is sent, over TLS) or `ntlm` (Windows authentication, for
    /// servers that take no password in the clear).
    #[serde(default)]
    pub mechanism: PasswordMechanism,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (surrounding whitespace ignored).
    pub password_file: Option<PathBuf>,
}

/// How a password signs in upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordMechanism {
    /// The password itself (AUTH LOGIN, IMAP LOGIN, POP USER/PASS).
    #[default]
    Login,
    /// NTLMv2 with the password (AUTH NTLM, AUTHENTICATE NTLM).
    Ntlm,
}

impl UpstreamBasic {
    /// The password, read now.
    pub fn password(&self) -> Result<secrecy::SecretString, String> {
        if let Some(var) = &self.password_env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(secrecy::SecretString::from(v)),
                _ => Err(format!(
                    "environment variable {var} (upstream_basic.password_env) is not set"
                )),
            };
        }
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot read {} (upstream_basic.password_file): {e}",
                    path.display()
                )
            })?;
            return Ok(secrecy::SecretString::from(text.trim().to_owned()));
        }
        Err("upstream_basic has neither password_env nor password_file".into())
    }
}

/// A device or app: its local name, the mailbox it reaches, and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The user name the device signs in with.
    pub name: String,
    /// The Exchange mailbox used upstream (XOAUTH2 `user=`).
    pub mailbox: String,
    /// Envelope senders allowed (default: the mailbox alone).
    #[serde(default)]
    pub send_as: Vec<String>,
    /// Protocols allowed (default: SMTP alone).
    #[serde(default)]
    pub protocols: Vec<Service>,
    /// Source networks allowed (`192.168.10.0/24`); empty = any source that reaches a listener.
    #[serde(default)]
    pub networks: Vec<ipnet::IpNet>,
    /// The auth profile (a key of `[profiles]`); default: the only profile.
    pub profile: Option<String>,
    /// How messages go upstream: `smtp` (default), `graph`, `smtp_then_graph`.
    #[serde(default)]
    pub submit: Submit,
    /// Sign in upstream with a password (on-premises Exchange without OAuth) instead of a
    /// profile's token.
    pub upstream_basic: Option<UpstreamBasic>,
}

/// Options of the whole gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// The name in greetings (`220 <name> ...`).
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// The password file (`NAME:$argon2id$...` lines; `exgate gateway passwd` writes it).
    #[serde(default = "default_passwords")]
    pub passwords: PathBuf,
    /// Failed sign-ins from one address for one name before a lockout.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// Lockout length, in seconds.
    #[serde(default = "default_lockout")]
    pub lockout_secs: u64,
    /// Seconds a client may stay silent before it is disconnected.
    #[serde(default = "default_idle")]
    pub idle_secs: u64,
    /// Largest message accepted, in bytes (Exchange Online's default is 35 MB).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Client connections at once, over all listeners.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_hostname() -> String {
    "exgate-gateway".into()
}
fn default_passwords() -> PathBuf {
    PathBuf::from("gateway.passwd")
}
fn default_max_failures() -> u32 {
    5
}
fn default_lockout() -> u64 {
    900
}
fn default_idle() -> u64 {
    300
}
fn default_max_message() -> usize {
    35 * 1024 * 1024
}
fn default_max_connections() -> usize {
    4096
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            hostname: default_hostname(),
            passwords: default_passwords(),
            max_failures: default_max_failures(),
            lockout_secs: default_lockout(),
            idle_secs: default_idle(),
            max_message_bytes: default_max_message(),
            max_connections: default_max_connections(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Gateway-wide options.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// Listeners.
    #[serde(default)]
    pub listen: Listen,
    /// The certificate toward devices (required by every TLS listener and by STARTTLS).
    pub tls: Option<TlsFiles>,
    /// The spool.
    #[serde(default)]
    pub spool: SpoolSettings,
    /// Upstream servers.
    #[serde(default)]
    pub upstream: Upstream,
    /// Auth profiles: how the gateway gets tokens (see `exgate-auth`).
    #[serde(default)]
    pub profiles: BTreeMap<String, AuthSettings>,
    /// Local accounts.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// The file this came from; relative paths in it are resolved against its directory.
    #[serde(skip)]
    pub source: PathBuf,
}

/// The 1-based line of an error at byte `start`; for an unknown field (reported at its table)
/// the line of the field itself.
fn error_line(text: &str, start: usize, message: &str) -> usize {
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let field = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next());
    if let Some(field) = field {
        for (i, l) in text.lines().enumerate().skip(line - 1) {
            let l = l.trim_start();
            if l.strip_prefix(field)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                return i + 1;
            }
        }
    }
    line
}

impl GatewayConfig {
    /// Reads and validates `path`; relative paths inside resolve against its directory.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path,
                "(file)",
                format!("cannot read: {e}"),
                "pass the gateway's configuration file with --config FILE",
            )
        })?;
        GatewayConfig::from_toml_str(&text, path)
    }

    /// Parses and validates a configuration; `path` names it in errors and anchors relative
    /// paths.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<GatewayConfig, ConfigError> {
        let mut config: GatewayConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(":{}", error_line(text, s.start, e.message())))
                .unwrap_or_default();
            ConfigError {
                file: path.display().to_string(),
                line,
                field: "(syntax)".into(),
                message: e.message().to_owned(),
                fix: "see docs/gateway.md for the configuration reference".into(),
            }
        })?;
        config.source = path.to_owned();
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        anchor(&mut config.gateway.passwords);
        anchor(&mut config.spool.path);
        if let Some(t) = &mut config.tls {
            anchor(&mut t.certificate);
            anchor(&mut t.key);
        }
        if let Some(c) = &mut config.upstream.ca_pem {
            anchor(c);
        }
        for (name, p) in &mut config.profiles {
            p.source = format!("{} [profiles.{name}]", path.display());
            for f in [
                &mut p.certificate_path,
                &mut p.key_path,
                &mut p.ca_pem,
                &mut p.client_secret_file,
            ]
            .into_iter()
            .flatten()
            {
                anchor(f);
            }
            if let Some(s) = &mut p.store {
                for f in [&mut s.path, &mut s.key_file].into_iter().flatten() {
                    anchor(f);
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let path = self.source.clone();
        let err = |field: String, message: String, fix: &str| {
            ConfigError::new(&path, &field, message, fix.to_owned())
        };
        for (name, p) in &self.profiles {
            let clear = [
                (
                    "client_secret",
                    p.client_secret.is_some(),
                    "client_secret_env",
                ),
                ("password", p.password.is_some(), "password_env"),
                (
                    "refresh_token",
                    p.refresh_token.is_some(),
                    "refresh_token_env",
                ),
                (
                    "certificate_password",
                    p.certificate_password.is_some(),
                    "certificate_password_env",
                ),
            ];
            if let Some((field, _, instead)) = clear.iter().find(|c| c.1) {
                return Err(err(
                    format!("profiles.{name}.{field}"),
                    "a secret in the configuration file in the clear".into(),
                    &format!(
                        "remove it and set {instead} = \"VARIABLE\" (or use a certificate file, or the token store)"
                    ),
                ));
            }
        }
        if !self.listen.smtp_plain.is_empty() && !self.listen.allow_plain {
            return Err(err(
                "listen.smtp_plain".into(),
                "a listener without TLS, where passwords would cross the network in the clear"
                    .into(),
                "set allow_plain = true in [listen] only for an isolated device network, or use smtp (STARTTLS) / smtps",
            ));
        }
        let needs_tls = !self.listen.smtp.is_empty()
            || !self.listen.smtps.is_empty()
            || !self.listen.imap.is_empty()
            || !self.listen.imaps.is_empty()
            || !self.listen.pop3.is_empty()
            || !self.listen.pop3s.is_empty();
        if needs_tls && self.tls.is_none() {
            return Err(err(
                "tls".into(),
                "listeners with TLS or STARTTLS but no certificate".into(),
                "add [tls] certificate = \"gateway.pem\" and key = \"gateway.key\" (`exgate cert new --out gateway` makes a pair)",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.accounts.iter_mut().enumerate() {
            let field = |f: &str| format!("accounts[{i}].{f}");
            if a.name.is_empty() || a.name.contains([':', '\n', ' ']) {
                return Err(err(
                    field("name"),
                    format!("`{}` is not a usable user name", a.name),
                    "use letters, digits, dots, dashes, `@` (no spaces or colons)",
                ));
            }
            if !seen.insert(a.name.to_ascii_lowercase()) {
                return Err(err(
                    field("name"),
                    format!("`{}` is defined twice", a.name),
                    "give each device its own name",
                ));
            }
            if !a.mailbox.contains('@') {
                return Err(err(
                    field("mailbox"),
                    format!("`{}` is not a mailbox address", a.mailbox),
                    "set mailbox = \"scanner@contoso.com\"",
                ));
            }
            if a.send_as.is_empty() {
                a.send_as.push(a.mailbox.clone());
            }
            if a.protocols.is_empty() {
                a.protocols.push(Service::Smtp);
            }
            if let Some(b) = &mut a.upstream_basic {
                if b.password_env.is_some() == b.password_file.is_some() {
                    return Err(err(
                        field("upstream_basic"),
                        "give exactly one of password_env and password_file".into(),
                        "upstream_basic = { username = \"...\", password_file = \"copier.pw\" }",
                    ));
                }
                if let Some(f) = &mut b.password_file
                    && f.is_relative()
                {
                    *f = path.parent().unwrap_or(Path::new(".")).join(&*f);
                }
                if a.submit != Submit::Smtp {
                    return Err(err(
                        field("submit"),
                        "Graph needs a token; a password sign-in sends over SMTP only".into(),
                        "remove submit, or use a profile instead of upstream_basic",
                    ));
                }
            }
            match &a.profile {
                None if a.upstream_basic.is_some() => {}
                Some(p) if !self.profiles.contains_key(p) => {
                    return Err(err(
                        field("profile"),
                        format!("no profile `{p}`"),
                        "add [profiles.NAME] or name one that exists",
                    ));
                }
                Some(_) => {}
                None if self.profiles.len() == 1 => {
                    a.profile = self.profiles.keys().next().cloned();
                }
                None => {
                    return Err(err(
                        field("profile"),
                        format!(
                            "no profile named and {} profiles defined",
                            self.profiles.len()
                        ),
                        "set profile = \"NAME\" for the account, or define one [profiles.NAME]",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The account named `name` (case-insensitive).
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[tls]
certificate = "gw.pem"
key = "gw.key"

[profiles.contoso]
tenant = "contoso.com"
client_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_secret_env = "SCANNER_SECRET"

[[accounts]]
name = "scanner"
mailbox = "scanner@contoso.com"
"#;

    #[test]
    fn defaults_are_loopback_and_filled_in() {
        let c = GatewayConfig::from_toml_str(GOOD, Path::new("/etc/exgate/gateway.toml")).unwrap();
        assert!(c.listen.smtp.iter().all(|a| a.ip().is_loopback()));
        assert!(c.listen.metrics.unwrap().ip().is_loopback());
        let a = &c.accounts[0];
        assert_eq!(a.send_as, ["scanner@contoso.com"]);
        assert_eq!(a.protocols, [Service::Smtp]);
        assert_eq!(a.profile.as_deref(), Some("contoso"));
        assert_eq!(c.tls.unwrap().key, Path::new("/etc/exgate/gw.key"));
        assert_eq!(c.spool.path, Path::new("/etc/exgate/spool"));
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let e = GatewayConfig::from_toml_str(
            &GOOD.replace(
                "client_secret_env = \"SCANNER_SECRET\"",
                "client_secret = \"CANARY-x\"",
            ),
            Path::new("g.toml"),
        )
        .unwrap_err();
        assert_eq!(e.field, "profiles.contoso.client_secret");
        assert!(!e.to_string().contains("CANARY"), "{e}");
        assert!(e.fix.contains("client_secret_env"));

        let e = GatewayConfig::from_toml_str(
            &GOOD.replace("mailbox = \"scanner@contoso.com\"", "mailbox = \"scanner\""),
            Path::new("g.toml"),
        )
        .unwrap_err();
        assert_eq!(e.field, "accounts[0].mailbox");

        let e = GatewayConfig::from_toml_str(
            &format!("{GOOD}\n[listen]\nsmtp_plain = [\"0.0.0.0:25\"]\n"),
            Path::new("g.toml"),
        )
        .unwrap_err();
        assert_eq!(e.field, "listen.smtp_plain");

        let e =
            GatewayConfig::from_toml_str("[listen]\nsmpt = []\n", Path::new("g.toml")).unwrap_err();
        assert_eq!(
            (e.line.as_str(), e.field.as_str()),
            (":2", "(syntax)"),
            "{e:?}"
        );
        assert!(e.message.contains("smpt"), "{e}");

        let e = GatewayConfig::from_toml_str(
            &format!("{GOOD}\n[[accounts]]\nname = \"Scanner\"\nmailbox = \"b@contoso.com\"\n"),
            Path::new("g.toml"),
        )
        .unwrap_err();
        assert_eq!(e.field, "accounts[1].name");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_an_error_or_a_config(s in "\\PC{0,200}") {
            let _ = GatewayConfig::from_toml_str(&s, Path::new("g.toml"));
        }
    }
}
