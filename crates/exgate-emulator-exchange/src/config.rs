//! The Exchange half of a scenario file: organisations, mailboxes, access scoping, impersonation
//! rights, throttling budgets and on-premises servers. See `docs/exchange-emulator.md`.

use std::collections::HashSet;

use serde::Deserialize;

use crate::directory::Directory;

/// A configuration problem, naming the field and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The TOML text does not parse or does not match the schema.
    #[error("exchange configuration does not parse: {0}")]
    Parse(String),
    /// A field holds a value that does not fit.
    #[error("{field}: {message}")]
    Invalid {
        /// Dotted path of the field, e.g. `exchange.mailboxes[3].tenant`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The Exchange half of a scenario file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Messages generated in every Inbox unless a mailbox says otherwise.
    #[serde(default = "default_inbox")]
    pub default_inbox_messages: u32,
    /// Messages generated in every Sent Items folder unless a mailbox says otherwise.
    #[serde(default = "default_sent")]
    pub default_sent_messages: u32,
    /// Folders generated under every Inbox ("Project 1", ...), unless a mailbox says otherwise.
    #[serde(default)]
    pub default_extra_folders: u8,
    /// Messages generated in each of those folders.
    #[serde(default = "default_sent")]
    pub default_extra_folder_messages: u32,
    /// Throttling budgets.
    #[serde(default)]
    pub throttling: ThrottlingConfig,
    /// Organisation-level settings per tenant (tenants not listed use the defaults).
    #[serde(default)]
    pub organizations: Vec<OrganizationConfig>,
    /// Mailboxes listed one by one.
    #[serde(default)]
    pub mailboxes: Vec<MailboxConfig>,
    /// Mailboxes generated in bulk (`{prefix}{n}@{domain}`).
    #[serde(default)]
    pub mailbox_sets: Vec<MailboxSetConfig>,
    /// Application access scoping (RBAC for Applications or an application access policy).
    #[serde(default)]
    pub app_access: Vec<AppAccessConfig>,
    /// Impersonation rights (the ApplicationImpersonation role) for service accounts.
    #[serde(default)]
    pub impersonation: Vec<ImpersonationConfig>,
    /// On-premises Exchange servers.
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
}

fn default_inbox() -> u32 {
    25
}
fn default_sent() -> u32 {
    5
}
fn yes() -> bool {
    true
}

/// Throttling: a budget of requests per principal (app id for app-only, UPN otherwise) per window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottlingConfig {
    /// Length of a budget window in seconds.
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// EWS requests allowed per principal per window.
    #[serde(default = "default_budget")]
    pub ews_budget: u64,
    /// Graph requests allowed per principal per window.
    #[serde(default = "default_budget")]
    pub graph_budget: u64,
    /// Budgets for particular principals.
    #[serde(default)]
    pub overrides: Vec<ThrottlingOverride>,
}

fn default_window() -> u64 {
    600
}
fn default_budget() -> u64 {
    10_000
}

impl Default for ThrottlingConfig {
    fn default() -> Self {
        Self {
            window_seconds: default_window(),
            ews_budget: default_budget(),
            graph_budget: default_budget(),
            overrides: Vec::new(),
        }
    }
}

/// A budget for one principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottlingOverride {
    /// App id (app-only tokens) or UPN (delegated tokens, Basic).
    pub principal: String,
    /// EWS requests per window (default: the general budget).
    pub ews_budget: Option<u64>,
    /// Graph requests per window (default: the general budget).
    pub graph_budget: Option<u64>,
}

/// Organisation-level settings (`Set-OrganizationConfig`) of one tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationConfig {
    /// Tenant GUID or verified domain, as known by the identity side.
    pub tenant: String,
    /// `EWSEnabled` at organisation level.
    #[serde(default = "yes")]
    pub ews_enabled: bool,
    /// `EwsApplicationAccessPolicy EnforceAllowList` with `EwsAllowList`: when set, only these
    /// app ids may use EWS.
    pub ews_allowed_apps: Option<Vec<String>>,
    /// Exchange accepts app-only tokens only when the app authenticated to Entra ID with a
    /// certificate (`appidacr` "2"); a token minted with a client secret is refused as too weak
    /// ("Presented auth strength was 1, required is 2"). This is how Exchange Online treated
    /// app-only access when it was introduced, and how some organisations still run.
    #[serde(default)]
    pub app_only_requires_certificate: bool,
    /// SMTP AUTH (client submission) for the organisation: false plays
    /// `Set-TransportConfig -SmtpClientAuthenticationDisabled $true`, which refuses OAuth and
    /// Basic alike (`535 5.7.139 ... disabled for the Tenant`).
    #[serde(default = "yes")]
    pub smtp_auth_enabled: bool,
    /// IMAP4 for the organisation's mailboxes: false plays `Set-CASMailboxPlan -ImapEnabled
    /// $false` on every plan (and every mailbox), which refuses OAuth and passwords alike with
    /// Exchange's bare `NO AUTHENTICATE failed.` / `NO LOGIN failed.`.
    #[serde(default = "yes")]
    pub imap_enabled: bool,
    /// POP3 for the organisation's mailboxes: false plays `Set-CASMailboxPlan -PopEnabled
    /// $false` (`-ERR Logon failure`, as every POP refusal).
    #[serde(default = "yes")]
    pub pop_enabled: bool,
}

/// How a mailbox is licensed.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum LicenseKind {
    /// Exchange Online Plan 1 / Microsoft 365 E1.
    E1,
    /// Microsoft 365 E3.
    #[default]
    E3,
    /// Microsoft 365 E5.
    E5,
    /// Frontline F1 (no mailbox rights for EWS).
    F1,
    /// Frontline F3 / Exchange Online Kiosk.
    F3,
    /// Exchange Online Kiosk.
    Kiosk,
}

impl LicenseKind {
    /// Whether the licence includes EWS and REST mailbox access for third-party applications.
    pub fn allows_api_access(self) -> bool {
        !matches!(self, LicenseKind::F1)
    }
}

/// One mailbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// Primary SMTP address (also the UPN).
    pub address: String,
    /// Tenant GUID or domain; default: the domain of `address`.
    pub tenant: Option<String>,
    /// Display name; default: derived from the address.
    pub display_name: Option<String>,
    /// Proxy addresses.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Whether the mailbox is provisioned (false: a licensed user whose mailbox is not there yet).
    #[serde(default = "yes")]
    pub provisioned: bool,
    /// Whether the user holds an Exchange licence.
    #[serde(default = "yes")]
    pub licensed: bool,
    /// The licence kind.
    #[serde(default)]
    pub license: LicenseKind,
    /// `EWSEnabled` for this mailbox (`Set-CASMailbox`).
    #[serde(default = "yes")]
    pub ews_enabled: bool,
    /// SMTP AUTH for this mailbox: false plays
    /// `Set-CASMailbox -SmtpClientAuthenticationDisabled $true` (`535 5.7.139 ... disabled for
    /// the Mailbox`).
    #[serde(default = "yes")]
    pub smtp_auth_enabled: bool,
    /// IMAP4 for this mailbox: false plays `Set-CASMailbox -ImapEnabled $false` (`NO
    /// AUTHENTICATE failed.`, as every IMAP refusal).
    #[serde(default = "yes")]
    pub imap_enabled: bool,
    /// POP3 for this mailbox: false plays `Set-CASMailbox -PopEnabled $false`.
    #[serde(default = "yes")]
    pub pop_enabled: bool,
    /// Name of the on-premises server hosting the mailbox; absent: Exchange Online.
    pub server: Option<String>,
    /// Groups the mailbox belongs to (for access scoping).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Messages generated in the Inbox.
    pub inbox_messages: Option<u32>,
    /// Messages generated in Sent Items.
    pub sent_messages: Option<u32>,
    /// Folders generated under the Inbox.
    pub extra_folders: Option<u8>,
    /// Messages generated in each generated folder.
    pub extra_folder_messages: Option<u32>,
    /// Hybrid target address (the other side's routing address), used in Autodiscover redirects.
    pub routing_address: Option<String>,
}

/// Mailboxes generated in bulk: `{prefix}{n}@{domain}` for `n` in `first..first+count`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSetConfig {
    /// Tenant GUID or domain; default: `domain`.
    pub tenant: Option<String>,
    /// The address domain.
    pub domain: String,
    /// Local-part prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// First number.
    #[serde(default = "default_first")]
    pub first: u32,
    /// How many mailboxes.
    pub count: u32,
    /// Whether the mailboxes are provisioned.
    #[serde(default = "yes")]
    pub provisioned: bool,
    /// Whether the users are licensed.
    #[serde(default = "yes")]
    pub licensed: bool,
    /// Licence kind.
    #[serde(default)]
    pub license: LicenseKind,
    /// `EWSEnabled` per mailbox.
    #[serde(default = "yes")]
    pub ews_enabled: bool,
    /// SMTP AUTH per mailbox.
    #[serde(default = "yes")]
    pub smtp_auth_enabled: bool,
    /// IMAP4 per mailbox (`Set-CASMailbox -ImapEnabled`).
    #[serde(default = "yes")]
    pub imap_enabled: bool,
    /// POP3 per mailbox (`Set-CASMailbox -PopEnabled`).
    #[serde(default = "yes")]
    pub pop_enabled: bool,
    /// On-premises server; absent: Exchange Online.
    pub server: Option<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Messages generated in the Inbox.
    pub inbox_messages: Option<u32>,
    /// Messages generated in Sent Items.
    pub sent_messages: Option<u32>,
    /// Folders generated under the Inbox.
    pub extra_folders: Option<u8>,
    /// Messages generated in each generated folder.
    pub extra_folder_messages: Option<u32>,
}

fn default_prefix() -> String {
    "user".to_owned()
}
fn default_first() -> u32 {
    1
}

/// How an application's mailbox access is scoped.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AppAccessKind {
    /// `New-ApplicationAccessPolicy` (Graph/EWS app-only).
    #[default]
    AccessPolicy,
    /// RBAC for Applications with a management scope.
    Rbac,
}

/// Whether the scope restricts the app to the group or denies the group.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AccessRight {
    /// The app may reach only mailboxes in the group.
    #[default]
    Restrict,
    /// The app may reach every mailbox except those in the group.
    Deny,
}

/// Application access scoping of one app in one tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppAccessConfig {
    /// Tenant GUID or domain.
    pub tenant: String,
    /// The application (client) id.
    pub app_id: String,
    /// The mailbox group the policy names.
    pub group: String,
    /// Mechanism.
    #[serde(default)]
    pub kind: AppAccessKind,
    /// Restrict to or deny the group.
    #[serde(default)]
    pub access: AccessRight,
}

/// An impersonation right (ApplicationImpersonation role assignment) for an account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpersonationConfig {
    /// The service account's UPN.
    pub account: String,
    /// Management scope: a mailbox group; absent: every mailbox of the account's tenant.
    pub group: Option<String>,
}

/// An authentication method of a virtual directory.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic.
    Basic,
    /// Windows authentication: NTLMv2, under `NTLM` or as a raw NTLM token in `Negotiate`.
    Ntlm,
    /// OAuth bearer tokens.
    Oauth,
}

/// A virtual directory's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VdirConfig {
    /// Enabled authentication methods.
    #[serde(default = "default_methods")]
    pub auth: Vec<AuthMethod>,
}

fn default_methods() -> Vec<AuthMethod> {
    vec![AuthMethod::Basic, AuthMethod::Ntlm, AuthMethod::Oauth]
}

impl Default for VdirConfig {
    fn default() -> Self {
        Self {
            auth: default_methods(),
        }
    }
}

/// An on-premises Exchange server, served under `{base}/onprem/{name}/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Name, used in the path prefix.
    pub name: String,
    /// Tenant GUID or domain of the hybrid organisation.
    pub tenant: String,
    /// Public URL (scheme and host), e.g. `https://mail.contoso.com`.
    pub public_url: String,
    /// Public Autodiscover URL; default: `public_url`.
    pub autodiscover_url: Option<String>,
    /// Hybrid Modern Authentication (EvoSTS is the default authorization endpoint).
    #[serde(default)]
    pub hma: bool,
    /// TLS is terminated in front of Exchange: the server sees `http://`.
    #[serde(default)]
    pub tls_offload: bool,
    /// `OAuth2ClientProfileEnabled` of the organisation. Off: the empty-Bearer answer carries the
    /// whole Bearer challenge and `x-ms-diagnostics: 4000000;reason="Flighting is not enabled
    /// for domain ..."` (the answer quoted in Microsoft's HMA troubleshooting).
    #[serde(default = "yes")]
    pub client_profile_enabled: bool,
    /// A reverse proxy or publishing rule in front of Exchange forwards requests for
    /// `public_url` and `autodiscover_url` to this name (scheme and host), so Exchange compares a
    /// token's audience with it: a token for the name the client used is refused with `2000003
    /// "... Expected '<audience>'. Actual '<this name>'"`.
    #[serde(default)]
    pub forwarded_as: Option<String>,
    /// A device in front of Exchange removes the `WWW-Authenticate: Bearer` challenge from its
    /// 401s (the other schemes pass).
    #[serde(default)]
    pub strip_bearer_challenge: bool,
    /// Service principal names registered for this server on the Exchange principal in Entra ID
    /// (read by the identity side; not checked here).
    #[serde(default)]
    pub spns: Vec<String>,
    /// The EWS virtual directory.
    #[serde(default)]
    pub ews: VdirConfig,
    /// The Autodiscover virtual directory.
    #[serde(default)]
    pub autodiscover: VdirConfig,
}

impl ServerConfig {
    /// Whether a vdir has a method enabled.
    pub(crate) fn allows(vdir: &VdirConfig, m: AuthMethod) -> bool {
        vdir.auth.contains(&m)
    }
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks an SMTP address: one `@`, non-empty parts, no spaces or angle brackets.
pub(crate) fn valid_address(a: &str) -> bool {
    let mut parts = a.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(l), Some(d), None) => {
            !l.is_empty()
                && d.contains('.')
                && !d.starts_with('.')
                && !d.ends_with('.')
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == '"' || c == '&')
        }
        _ => false,
    }
}

fn valid_origin(u: &str) -> bool {
    match url::Url::parse(u) {
        Ok(url) => {
            (url.scheme() == "https" || url.scheme() == "http")
                && url.host_str().is_some()
                && (url.path() == "/" || url.path().is_empty())
                && url.query().is_none()
        }
        Err(_) => false,
    }
}

/// Total mailboxes a config describes, used to cap generation.
pub const MAX_MAILBOXES: u64 = 1_000_000;
/// Messages per folder, at most.
pub const MAX_MESSAGES_PER_FOLDER: u32 = 100_000;

impl ExchangeConfig {
    /// Parses the Exchange section from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Checks references (tenants, servers, groups, app ids) and values, naming the field.
    pub fn validate(&self, dir: &dyn Directory) -> Result<(), ConfigError> {
        let tenant_of = |field: String, t: &str| {
            dir.tenant(t).ok_or_else(|| {
                ConfigError::invalid(
                    field,
                    format!(
                        "tenant '{t}' is not in the scenario; use a tenant id or a verified domain of a configured tenant"
                    ),
                )
            })
        };
        if self.throttling.window_seconds == 0 {
            return Err(ConfigError::invalid(
                "exchange.throttling.window_seconds",
                "must be at least 1",
            ));
        }
        for check in [
            (
                self.default_inbox_messages,
                "exchange.default_inbox_messages",
            ),
            (self.default_sent_messages, "exchange.default_sent_messages"),
        ] {
            if check.0 > MAX_MESSAGES_PER_FOLDER {
                return Err(ConfigError::invalid(
                    check.1,
                    format!("at most {MAX_MESSAGES_PER_FOLDER}"),
                ));
            }
        }
        let folders_ok = |field: String, n: Option<u8>| match n {
            Some(n) if n > crate::store::MAX_CUSTOM_FOLDERS => Err(ConfigError::invalid(
                field,
                format!("at most {}", crate::store::MAX_CUSTOM_FOLDERS),
            )),
            _ => Ok(()),
        };
        folders_ok(
            "exchange.default_extra_folders".into(),
            Some(self.default_extra_folders),
        )?;
        for (i, o) in self.throttling.overrides.iter().enumerate() {
            if o.principal.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("exchange.throttling.overrides[{i}].principal"),
                    "must name an app id or a UPN",
                ));
            }
        }
        for (i, o) in self.organizations.iter().enumerate() {
            tenant_of(format!("exchange.organizations[{i}].tenant"), &o.tenant)?;
            for (j, a) in o.ews_allowed_apps.iter().flatten().enumerate() {
                if uuid::Uuid::parse_str(a).is_err() {
                    return Err(ConfigError::invalid(
                        format!("exchange.organizations[{i}].ews_allowed_apps[{j}]"),
                        format!("'{a}' is not an application (client) id GUID"),
                    ));
                }
            }
        }
        let mut servers = HashSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            if !is_valid_name(&s.name) {
                return Err(ConfigError::invalid(
                    format!("exchange.servers[{i}].name"),
                    "use letters, digits, '-' or '_' (it becomes a URL path segment)",
                ));
            }
            if !servers.insert(s.name.to_ascii_lowercase()) {
                return Err(ConfigError::invalid(
                    format!("exchange.servers[{i}].name"),
                    format!("server '{}' is defined twice", s.name),
                ));
            }
            tenant_of(format!("exchange.servers[{i}].tenant"), &s.tenant)?;
            if !valid_origin(&s.public_url) {
                return Err(ConfigError::invalid(
                    format!("exchange.servers[{i}].public_url"),
                    format!(
                        "'{}' is not a scheme and host such as https://mail.contoso.com",
                        s.public_url
                    ),
                ));
            }
            if let Some(a) = &s.forwarded_as
                && !valid_origin(a)
            {
                return Err(ConfigError::invalid(
                    format!("exchange.servers[{i}].forwarded_as"),
                    format!("'{a}' is not a scheme and host such as https://mail-int.contoso.com"),
                ));
            }
            if let Some(a) = &s.autodiscover_url
                && !valid_origin(a)
            {
                return Err(ConfigError::invalid(
                    format!("exchange.servers[{i}].autodiscover_url"),
                    format!(
                        "'{a}' is not a scheme and host such as https://autodiscover.contoso.com"
                    ),
                ));
            }
        }
        let server_ok = |field: String, s: &Option<String>| match s {
            Some(name) if !servers.contains(&name.to_ascii_lowercase()) => {
                Err(ConfigError::invalid(
                    field,
                    format!("server '{name}' is not defined in [[exchange.servers]]"),
                ))
            }
            _ => Ok(()),
        };
        let mut groups: HashSet<String> = HashSet::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut total: u64 = 0;
        for (i, m) in self.mailboxes.iter().enumerate() {
            let f = |name: &str| format!("exchange.mailboxes[{i}].{name}");
            if !valid_address(&m.address) {
                return Err(ConfigError::invalid(
                    f("address"),
                    format!("'{}' is not an SMTP address", m.address),
                ));
            }
            let domain = m.address.rsplit('@').next().unwrap_or_default();
            let tenant = tenant_of(f("tenant"), m.tenant.as_deref().unwrap_or(domain))?;
            if !tenant
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
            {
                return Err(ConfigError::invalid(
                    f("address"),
                    format!(
                        "domain '{domain}' is not a verified domain of tenant {}; add it to the tenant's domains",
                        tenant.id
                    ),
                ));
            }
            for (j, a) in m.aliases.iter().enumerate() {
                if !valid_address(a) {
                    return Err(ConfigError::invalid(
                        format!("exchange.mailboxes[{i}].aliases[{j}]"),
                        format!("'{a}' is not an SMTP address"),
                    ));
                }
            }
            if let Some(r) = &m.routing_address
                && !valid_address(r)
            {
                return Err(ConfigError::invalid(
                    f("routing_address"),
                    format!("'{r}' is not an SMTP address"),
                ));
            }
            server_ok(f("server"), &m.server)?;
            for a in std::iter::once(&m.address).chain(m.aliases.iter()) {
                if !seen.insert(a.to_ascii_lowercase()) {
                    return Err(ConfigError::invalid(
                        f("address"),
                        format!("address '{a}' is used by two mailboxes"),
                    ));
                }
            }
            folders_ok(f("extra_folders"), m.extra_folders)?;
            for c in [m.inbox_messages, m.sent_messages, m.extra_folder_messages]
                .into_iter()
                .flatten()
            {
                if c > MAX_MESSAGES_PER_FOLDER {
                    return Err(ConfigError::invalid(
                        f("inbox_messages"),
                        format!("at most {MAX_MESSAGES_PER_FOLDER}"),
                    ));
                }
            }
            groups.extend(m.groups.iter().map(|g| g.to_ascii_lowercase()));
            total += 1;
        }
        for (i, s) in self.mailbox_sets.iter().enumerate() {
            let f = |name: &str| format!("exchange.mailbox_sets[{i}].{name}");
            let sample = format!("{}{}@{}", s.prefix, s.first, s.domain);
            if !valid_address(&sample) {
                return Err(ConfigError::invalid(
                    f("domain"),
                    format!("'{sample}' is not an SMTP address; fix prefix or domain"),
                ));
            }
            let tenant = tenant_of(f("tenant"), s.tenant.as_deref().unwrap_or(&s.domain))?;
            if !tenant
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&s.domain))
            {
                return Err(ConfigError::invalid(
                    f("domain"),
                    format!(
                        "'{}' is not a verified domain of tenant {}",
                        s.domain, tenant.id
                    ),
                ));
            }
            server_ok(f("server"), &s.server)?;
            if u64::from(s.first) + u64::from(s.count) > u64::from(u32::MAX) {
                return Err(ConfigError::invalid(f("count"), "first + count overflows"));
            }
            folders_ok(f("extra_folders"), s.extra_folders)?;
            for c in [s.inbox_messages, s.sent_messages, s.extra_folder_messages]
                .into_iter()
                .flatten()
            {
                if c > MAX_MESSAGES_PER_FOLDER {
                    return Err(ConfigError::invalid(
                        f("inbox_messages"),
                        format!("at most {MAX_MESSAGES_PER_FOLDER}"),
                    ));
                }
            }
            groups.extend(s.groups.iter().map(|g| g.to_ascii_lowercase()));
            total += u64::from(s.count);
        }
        if total > MAX_MAILBOXES {
            return Err(ConfigError::invalid(
                "exchange.mailbox_sets",
                format!("{total} mailboxes in all; at most {MAX_MAILBOXES}"),
            ));
        }
        for (i, a) in self.app_access.iter().enumerate() {
            tenant_of(format!("exchange.app_access[{i}].tenant"), &a.tenant)?;
            if uuid::Uuid::parse_str(&a.app_id).is_err() {
                return Err(ConfigError::invalid(
                    format!("exchange.app_access[{i}].app_id"),
                    format!("'{}' is not an application (client) id GUID", a.app_id),
                ));
            }
            if !groups.contains(&a.group.to_ascii_lowercase()) {
                return Err(ConfigError::invalid(
                    format!("exchange.app_access[{i}].group"),
                    format!(
                        "no mailbox is in group '{}'; add it to a mailbox's groups",
                        a.group
                    ),
                ));
            }
        }
        for (i, r) in self.impersonation.iter().enumerate() {
            if !valid_address(&r.account) {
                return Err(ConfigError::invalid(
                    format!("exchange.impersonation[{i}].account"),
                    format!("'{}' is not a UPN", r.account),
                ));
            }
            if let Some(g) = &r.group
                && !groups.contains(&g.to_ascii_lowercase())
            {
                return Err(ConfigError::invalid(
                    format!("exchange.impersonation[{i}].group"),
                    format!("no mailbox is in group '{g}'; add it to a mailbox's groups"),
                ));
            }
        }
        Ok(())
    }
}
