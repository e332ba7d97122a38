//! Scenario files: the TOML description of the tenants, applications, consent and users the
//! emulator plays.
//!
//! The format is documented in `docs/scenarios.md`. Parsing happens in two steps: serde reads the
//! file into private `Raw*` structs (unknown fields are errors, every semantically checked value
//! keeps its source span), then [`Scenario::from_toml_str`] validates and resolves references into
//! the public model. Every error names the file, line, column and field, and says how to fix it.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use toml::Spanned;
use uuid::Uuid;

/// A value that must never be printed: passwords, client secrets, seeded refresh tokens.
///
/// `Debug` and `Display` print `[redacted]`; [`SecretValue::expose`] gives the value to code that
/// compares it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for comparison. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = self.0.as_bytes();
        let b = candidate.as_bytes();
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            let y = b.get(i).copied().unwrap_or(0);
            diff |= usize::from(x ^ y);
        }
        diff == 0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A scenario file could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read the scenario file: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid: TOML syntax, an unknown field, a wrong type or a bad value.
    #[error("{path}:{line}:{column}: {field}: {message}{}", fix.as_ref().map(|f| format!(" (fix: {f})")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field, as `[[table]] key` or a dotted path.
        field: String,
        /// What is wrong.
        message: String,
        /// How to fix it, where known.
        fix: Option<String>,
    },
}

impl ScenarioError {
    /// The 1-based line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Io { .. } => None,
            ScenarioError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The field the problem is in, when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            ScenarioError::Io { .. } => None,
            ScenarioError::Invalid { field, .. } => Some(field),
        }
    }
}

/// Well-known resource of Exchange Online ("Office 365 Exchange Online").
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";
/// Application id of Exchange Online.
pub use exgate_wire::ids::EXCHANGE_APP_ID;
/// Well-known resource of Microsoft Graph.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// Application id of Microsoft Graph.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// A parsed, validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file it came from (for messages).
    pub origin: PathBuf,
    /// Global settings.
    pub settings: Settings,
    /// How device codes are approved without a browser, if at all.
    pub device_flow: Option<DeviceFlow>,
    /// The tenants.
    pub tenants: Vec<Tenant>,
    /// The application registrations.
    pub applications: Vec<Application>,
    /// The `[exchange]` section (mailboxes, on-premises servers, ...), validated against the
    /// tenants; served by the Exchange plane (`exgate-emulator-exchange`).
    pub exchange: Option<toml::Table>,
    /// Injected faults and latency (`[[faults]]`), for tests of retries, budgets and timeouts.
    pub faults: Vec<crate::faults::Fault>,
}

/// Global settings of a scenario (`[settings]`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `expires_in` of issued access tokens; `None` = 3599 s.
    pub token_lifetime: Option<std::time::Duration>,
    /// Allowed clock skew for client assertions.
    pub clock_skew: std::time::Duration,
    /// Reject a client assertion whose `jti` was already seen (real Entra does not).
    pub reject_reused_jti: bool,
    /// `interval` of device-code responses, seconds.
    pub device_code_interval: u64,
    /// `expires_in` of device codes, seconds.
    pub device_code_lifetime: u64,
    /// Refresh tokens are replaced on every use (the old one stops working).
    pub rotate_refresh_tokens: bool,
}

/// What happens to device codes when they are polled (`[device_flow]`).
#[derive(Clone, Debug)]
pub struct DeviceFlow {
    /// UPN of the user who "signs in" on the verification page.
    pub user: String,
    /// The outcome after the pending polls.
    pub outcome: DeviceOutcome,
    /// How many polls get `authorization_pending` first.
    pub pending_polls: u32,
    /// Answer the first poll with `slow_down`.
    pub slow_down: bool,
}

/// Outcome of a device-code sign-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceOutcome {
    /// The user approves: a token is issued.
    Approve,
    /// The user declines: `authorization_declined`.
    Decline,
    /// The code expires: `expired_token` (AADSTS70019).
    Expire,
    /// Nobody ever signs in: `authorization_pending` forever (or until `/devicelogin` is used).
    Pending,
}

/// A directory (tenant).
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Short name used for references inside the scenario.
    pub name: String,
    /// The tenant id.
    pub id: Uuid,
    /// Display name.
    pub display_name: String,
    /// Verified domains (lower case); the first is the default domain.
    pub domains: Vec<String>,
    /// Security defaults on: every user needs MFA, legacy flows (ROPC) are blocked by MFA.
    pub security_defaults: bool,
    /// Basic authentication to Exchange allowed (read by the Exchange plane).
    pub basic_auth: bool,
    /// On-premises Exchange URLs registered as service principal names of Exchange Online
    /// (Hybrid Modern Authentication), normalised: tokens for them are Exchange tokens whose
    /// `aud` is the URL.
    pub hybrid_exchange_urls: Vec<String>,
    /// Users.
    pub users: Vec<User>,
    /// Permissions granted (admin consent) to applications in this tenant.
    pub consent: Vec<Consent>,
    /// Conditional Access rules that block token issuance (AADSTS53003).
    pub conditional_access: Vec<ConditionalAccessRule>,
    /// Refresh tokens that exist before the emulator starts.
    pub refresh_tokens: Vec<SeededRefreshToken>,
}

/// A user account.
#[derive(Clone, Debug)]
pub struct User {
    /// User principal name (lower case).
    pub upn: String,
    /// Object id.
    pub object_id: Uuid,
    /// Display name.
    pub display_name: String,
    /// Password.
    pub password: SecretValue,
    /// May grant tenant-wide admin consent.
    pub admin: bool,
    /// MFA is required for this user.
    pub mfa_required: bool,
    /// MFA is required but the user has not registered a method yet.
    pub mfa_registration_pending: bool,
    /// The account is disabled.
    pub disabled: bool,
    /// The account is locked out.
    pub locked: bool,
    /// The password has expired.
    pub password_expired: bool,
    /// The user's domain is federated (password checked by an on-premises IdP).
    pub federated: bool,
    /// `false`: the scenario mentions the user but the directory does not have it.
    pub exists: bool,
}

/// Permissions granted to one application for one resource in a tenant.
#[derive(Clone, Debug)]
pub struct Consent {
    /// The application.
    pub client_id: Uuid,
    /// The resource (normalised, e.g. `https://outlook.office365.com`).
    pub resource: String,
    /// Application permissions (roles) granted.
    pub roles: Vec<String>,
    /// Delegated permissions (scopes) granted.
    pub scopes: Vec<String>,
}

/// A Conditional Access rule that blocks token issuance when all its conditions match.
#[derive(Clone, Debug)]
pub struct ConditionalAccessRule {
    /// Rule name, echoed nowhere but useful in scenario files.
    pub name: String,
    /// UPNs it applies to; empty = all users (and app-only requests).
    pub users: Vec<String>,
    /// Client ids it applies to; empty = all applications.
    pub applications: Vec<Uuid>,
    /// Grant types it applies to (`password`, `client_credentials`, ...); empty = all.
    pub grants: Vec<String>,
}

/// State of a refresh token seeded by the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshTokenState {
    /// Usable.
    Valid,
    /// Revoked (password change, admin revocation): AADSTS50173.
    Revoked,
    /// Expired after 90 days without use: AADSTS700082.
    Inactive,
    /// Expired by a sign-in frequency policy: AADSTS70043.
    SignInFrequency,
}

/// A refresh token that exists before the emulator starts.
#[derive(Clone, Debug)]
pub struct SeededRefreshToken {
    /// The token value the client presents.
    pub value: SecretValue,
    /// The user (UPN).
    pub user: String,
    /// The application it was issued to.
    pub client_id: Uuid,
    /// Scopes it carries.
    pub scopes: Vec<String>,
    /// Its state.
    pub state: RefreshTokenState,
}

/// An application registration.
#[derive(Clone, Debug)]
pub struct Application {
    /// The application (client) id.
    pub client_id: Uuid,
    /// Display name.
    pub name: String,
    /// Tenant the app is registered in.
    pub home_tenant: Uuid,
    /// Multi-tenant: usable in other tenants that consented.
    pub multi_tenant: bool,
    /// "Allow public client flows": device code and ROPC without a client credential.
    pub public_client: bool,
    /// `false`: the service principal is disabled (AADSTS7000112).
    pub enabled: bool,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Client secrets.
    pub secrets: Vec<ClientSecret>,
    /// Registered certificates.
    pub certificates: Vec<RegisteredCertificate>,
    /// Requested (not necessarily granted) API permissions.
    pub permissions: Vec<Permission>,
    /// Service principal object id in the home tenant.
    pub object_id: Uuid,
}

/// A client secret.
#[derive(Clone, Debug)]
pub struct ClientSecret {
    /// The secret value.
    pub value: SecretValue,
    /// When it expires; `None` = never.
    pub expires: Option<OffsetDateTime>,
}

/// A registered certificate (public part only).
#[derive(Clone)]
pub struct RegisteredCertificate {
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// SHA-1 of the DER (the `x5t` thumbprint).
    pub sha1: Vec<u8>,
    /// SHA-256 of the DER (the `x5t#S256` thumbprint).
    pub sha256: Vec<u8>,
    /// PKCS#1 `RSAPublicKey` DER of the certificate's key (for signature checks).
    pub public_key: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for RegisteredCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredCertificate")
            .field("sha1", &hex_upper(&self.sha1))
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Permissions an application requests for one resource.
#[derive(Clone, Debug)]
pub struct Permission {
    /// The resource (normalised).
    pub resource: String,
    /// Application permissions.
    pub roles: Vec<String>,
    /// Delegated permissions.
    pub scopes: Vec<String>,
}

impl Scenario {
    /// Parse a scenario; `origin` is the file name used in error messages.
    pub fn from_toml_str(src: &str, origin: &Path) -> Result<Scenario, ScenarioError> {
        let ctx = Ctx { src, origin };
        let raw: RawScenario = toml::from_str(src).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.err_at(span, None, e.message().trim().to_string(), None)
        })?;
        resolve(&ctx, raw)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let src = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&src, path)
    }

    /// Finds a tenant by GUID, verified domain or scenario name (case-insensitive).
    pub fn tenant(&self, key: &str) -> Option<&Tenant> {
        let key = key.trim().to_ascii_lowercase();
        if let Ok(id) = Uuid::parse_str(&key) {
            return self.tenants.iter().find(|t| t.id == id);
        }
        self.tenants
            .iter()
            .find(|t| t.domains.contains(&key) || t.name.to_ascii_lowercase() == key)
    }

    /// Finds an application by client id.
    pub fn application(&self, client_id: &str) -> Option<&Application> {
        let id = Uuid::parse_str(client_id.trim()).ok()?;
        self.applications.iter().find(|a| a.client_id == id)
    }
}

impl Tenant {
    /// Finds a user by UPN (case-insensitive).
    pub fn user(&self, upn: &str) -> Option<&User> {
        let upn = upn.trim().to_ascii_lowercase();
        self.users.iter().find(|u| u.upn == upn)
    }

    /// The default (first) verified domain.
    pub fn default_domain(&self) -> &str {
        self.domains.first().map(String::as_str).unwrap_or("")
    }
}

/// Normalises a resource identifier: lower-case scheme and host, no trailing slash; the
/// application ids of Exchange and Graph map to their URIs.
pub fn normalize_resource(resource: &str) -> String {
    let r = resource.trim().trim_end_matches('/');
    let lower = r.to_ascii_lowercase();
    match lower.as_str() {
        EXCHANGE_APP_ID | "exchange" => EXCHANGE_RESOURCE.to_string(),
        GRAPH_APP_ID | "graph" => GRAPH_RESOURCE.to_string(),
        "https://outlook.office.com" | "https://ps.outlook.com" => EXCHANGE_RESOURCE.to_string(),
        "https://graph.windows.net" => lower,
        _ => {
            // Lower-case scheme and host only; paths keep their case.
            match r.find("://") {
                Some(i) => {
                    let after = &r[i + 3..];
                    let host_end = after.find('/').unwrap_or(after.len());
                    format!(
                        "{}://{}{}",
                        r[..i].to_ascii_lowercase(),
                        after[..host_end].to_ascii_lowercase(),
                        &after[host_end..]
                    )
                }
                None => r.to_string(),
            }
        }
    }
}

pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) model
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    settings: RawSettings,
    device_flow: Option<RawDeviceFlow>,
    #[serde(default)]
    tenants: Vec<RawTenant>,
    #[serde(default)]
    applications: Vec<RawApplication>,
    exchange: Option<Spanned<toml::Table>>,
    #[serde(default)]
    faults: Vec<Spanned<crate::faults::RawFault>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    token_lifetime_secs: Option<Spanned<u64>>,
    clock_skew_secs: Option<u64>,
    #[serde(default)]
    reject_reused_jti: bool,
    device_code_interval_secs: Option<u64>,
    device_code_lifetime_secs: Option<u64>,
    rotate_refresh_tokens: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeviceFlow {
    user: Spanned<String>,
    #[serde(default = "default_outcome")]
    outcome: DeviceOutcome,
    #[serde(default)]
    pending_polls: u32,
    #[serde(default)]
    slow_down: bool,
}

fn default_outcome() -> DeviceOutcome {
    DeviceOutcome::Approve
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Spanned<String>,
    id: Spanned<String>,
    display_name: Option<String>,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    #[serde(default)]
    security_defaults: bool,
    #[serde(default)]
    basic_auth: bool,
    #[serde(default)]
    hybrid_exchange_urls: Vec<Spanned<String>>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    consent: Vec<RawConsent>,
    #[serde(default)]
    conditional_access: Vec<RawCaRule>,
    #[serde(default)]
    refresh_tokens: Vec<RawRefreshToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    upn: Spanned<String>,
    #[serde(default)]
    password: Option<SecretValue>,
    object_id: Option<Spanned<String>>,
    display_name: Option<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    mfa_required: bool,
    #[serde(default)]
    mfa_registration_pending: bool,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    password_expired: bool,
    #[serde(default)]
    federated: bool,
    #[serde(default = "yes")]
    exists: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsent {
    app: Spanned<String>,
    resource: Spanned<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaRule {
    name: String,
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    applications: Vec<Spanned<String>>,
    #[serde(default)]
    grants: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefreshToken {
    value: Spanned<SecretValue>,
    user: Spanned<String>,
    app: Spanned<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "valid_state")]
    state: RefreshTokenState,
}

fn valid_state() -> RefreshTokenState {
    RefreshTokenState::Valid
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    client_id: Spanned<String>,
    name: Option<String>,
    home_tenant: Spanned<String>,
    #[serde(default)]
    multi_tenant: bool,
    #[serde(default)]
    public_client: bool,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    redirect_uris: Vec<Spanned<String>>,
    #[serde(default)]
    secrets: Vec<RawSecret>,
    #[serde(default)]
    certificates: Vec<RawCertificate>,
    #[serde(default)]
    permissions: Vec<RawPermission>,
    object_id: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    value: Spanned<SecretValue>,
    expires: Option<Spanned<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    pem: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermission {
    resource: Spanned<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Resolution and validation
// ---------------------------------------------------------------------------------------------

struct Ctx<'a> {
    src: &'a str,
    origin: &'a Path,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let before = self.src.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before
            .get(line_start..)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, column)
    }

    /// The field at `offset`: the nearest table header above plus the key on that line.
    fn field_at(&self, offset: usize) -> String {
        let offset = offset.min(self.src.len());
        let before = self.src.get(..offset).unwrap_or("");
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = self
            .src
            .get(offset..)
            .and_then(|s| s.find('\n'))
            .map(|i| offset + i)
            .unwrap_or(self.src.len());
        let line = self.src.get(line_start..line_end).unwrap_or("").trim();
        let header = before
            .get(..line_start)
            .unwrap_or("")
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|h| h.split('#').next().unwrap_or(h).trim().to_string());
        let key = if line.starts_with('[') {
            None
        } else {
            line.split('=')
                .next()
                .map(|k| k.trim().trim_matches('"').to_string())
                .filter(|k| !k.is_empty() && line.contains('='))
        };
        match (header, key) {
            (Some(h), Some(k)) => format!("{h} {k}"),
            (Some(h), None) => h,
            (None, Some(k)) => k,
            (None, None) if line.starts_with('[') => line.to_string(),
            (None, None) => "(top level)".to_string(),
        }
    }

    fn err_at(
        &self,
        span: Range<usize>,
        field: Option<&str>,
        message: String,
        fix: Option<&str>,
    ) -> ScenarioError {
        let (line, column) = self.line_col(span.start);
        let located = self.field_at(span.start);
        let field = match field {
            Some(f) if !located.contains(f) => format!("{located} ({f})"),
            _ => located,
        };
        ScenarioError::Invalid {
            path: self.origin.to_path_buf(),
            line,
            column,
            field,
            message,
            fix: fix.map(str::to_string),
        }
    }

    fn guid(&self, value: &Spanned<String>, field: &str) -> Result<Uuid, ScenarioError> {
        Uuid::parse_str(value.get_ref().trim()).map_err(|_| {
            self.err_at(
                value.span(),
                Some(field),
                format!("`{}` is not a GUID", value.get_ref()),
                Some("write a GUID such as 11111111-2222-3333-4444-555555555555"),
            )
        })
    }
}

pub(crate) fn derived_guid(parts: &[&str]) -> Uuid {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(b"\0");
    }
    let digest = ctx.finish();
    let mut bytes = [0u8; 16];
    for (dst, src) in bytes.iter_mut().zip(digest.as_ref()) {
        *dst = *src;
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn resolve(ctx: &Ctx<'_>, raw: RawScenario) -> Result<Scenario, ScenarioError> {
    let settings = Settings {
        token_lifetime: match raw.settings.token_lifetime_secs {
            Some(v) if *v.get_ref() == 0 => {
                return Err(ctx.err_at(
                    v.span(),
                    Some("token_lifetime_secs"),
                    "must be at least 1".into(),
                    Some("omit it for the default of 3599 s"),
                ));
            }
            Some(v) => Some(std::time::Duration::from_secs(*v.get_ref())),
            None => None,
        },
        clock_skew: std::time::Duration::from_secs(raw.settings.clock_skew_secs.unwrap_or(300)),
        reject_reused_jti: raw.settings.reject_reused_jti,
        device_code_interval: raw.settings.device_code_interval_secs.unwrap_or(5),
        device_code_lifetime: raw.settings.device_code_lifetime_secs.unwrap_or(900),
        rotate_refresh_tokens: raw.settings.rotate_refresh_tokens.unwrap_or(true),
    };

    // Tenants first (applications refer to them).
    let mut tenants: Vec<Tenant> = Vec::new();
    let mut seen_names = HashSet::new();
    let mut seen_domains = HashSet::new();
    for rt in &raw.tenants {
        let id = ctx.guid(&rt.id, "id")?;
        if tenants.iter().any(|t| t.id == id) {
            return Err(ctx.err_at(
                rt.id.span(),
                Some("id"),
                format!("tenant id {id} is declared twice"),
                Some("give every tenant its own GUID"),
            ));
        }
        let name = rt.name.get_ref().trim().to_string();
        if name.is_empty() || !seen_names.insert(name.to_ascii_lowercase()) {
            return Err(ctx.err_at(
                rt.name.span(),
                Some("name"),
                format!("tenant name `{name}` is empty or declared twice"),
                Some("give every tenant a unique short name"),
            ));
        }
        let mut domains = Vec::new();
        for d in &rt.domains {
            let dom = d.get_ref().trim().to_ascii_lowercase();
            let valid = !dom.is_empty()
                && dom.contains('.')
                && dom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !valid {
                return Err(ctx.err_at(
                    d.span(),
                    Some("domains"),
                    format!("`{}` is not a DNS domain name", d.get_ref()),
                    Some("write a domain such as contoso.onmicrosoft.com"),
                ));
            }
            if !seen_domains.insert(dom.clone()) {
                return Err(ctx.err_at(
                    d.span(),
                    Some("domains"),
                    format!("domain `{dom}` is verified in two tenants"),
                    Some("a domain belongs to exactly one tenant"),
                ));
            }
            domains.push(dom);
        }
        if domains.is_empty() {
            domains.push(format!("{}.onmicrosoft.com", name.to_ascii_lowercase()));
        }
        let mut hybrid_exchange_urls = Vec::new();
        for u in &rt.hybrid_exchange_urls {
            let ok = url::Url::parse(u.get_ref())
                .is_ok_and(|p| p.scheme() == "https" && p.host_str().is_some());
            if !ok {
                return Err(ctx.err_at(
                    u.span(),
                    Some("hybrid_exchange_urls"),
                    format!("`{}` is not an https URL", u.get_ref()),
                    Some("write the on-premises Exchange URL, e.g. https://mail.contoso.com"),
                ));
            }
            hybrid_exchange_urls.push(normalize_resource(u.get_ref()));
        }
        tenants.push(Tenant {
            display_name: rt.display_name.clone().unwrap_or_else(|| name.clone()),
            name,
            id,
            domains,
            security_defaults: rt.security_defaults,
            basic_auth: rt.basic_auth,
            hybrid_exchange_urls,
            users: Vec::new(),
            consent: Vec::new(),
            conditional_access: Vec::new(),
            refresh_tokens: Vec::new(),
        });
    }

    let find_tenant = |key: &str| -> Option<Uuid> {
        let k = key.trim().to_ascii_lowercase();
        tenants
            .iter()
            .find(|t| {
                t.name.to_ascii_lowercase() == k || t.id.to_string() == k || t.domains.contains(&k)
            })
            .map(|t| t.id)
    };

    // Applications.
    let mut applications: Vec<Application> = Vec::new();
    for ra in &raw.applications {
        let client_id = ctx.guid(&ra.client_id, "client_id")?;
        if applications.iter().any(|a| a.client_id == client_id) {
            return Err(ctx.err_at(
                ra.client_id.span(),
                Some("client_id"),
                format!("application {client_id} is declared twice"),
                Some(
                    "declare each application once; use multi_tenant and consent for other tenants",
                ),
            ));
        }
        let home_tenant = find_tenant(ra.home_tenant.get_ref()).ok_or_else(|| {
            ctx.err_at(
                ra.home_tenant.span(),
                Some("home_tenant"),
                format!(
                    "no tenant named `{}` in this scenario",
                    ra.home_tenant.get_ref()
                ),
                Some("use the name, GUID or a domain of a [[tenants]] entry"),
            )
        })?;
        let mut redirect_uris = Vec::new();
        for u in &ra.redirect_uris {
            if url::Url::parse(u.get_ref()).is_err() {
                return Err(ctx.err_at(
                    u.span(),
                    Some("redirect_uris"),
                    format!("`{}` is not an absolute URL", u.get_ref()),
                    Some("write e.g. http://localhost:8400/cb"),
                ));
            }
            redirect_uris.push(u.get_ref().clone());
        }
        let mut secrets = Vec::new();
        for s in &ra.secrets {
            if s.value.get_ref().expose().is_empty() {
                return Err(ctx.err_at(
                    s.value.span(),
                    Some("value"),
                    "a client secret must not be empty".into(),
                    None,
                ));
            }
            let expires = match &s.expires {
                None => None,
                Some(e) => Some(parse_time(e.get_ref()).ok_or_else(|| {
                    ctx.err_at(
                        e.span(),
                        Some("expires"),
                        format!("`{}` is not an RFC 3339 date-time", e.get_ref()),
                        Some("write e.g. \"2027-01-31T00:00:00Z\""),
                    )
                })?),
            };
            secrets.push(ClientSecret {
                value: s.value.get_ref().clone(),
                expires,
            });
        }
        let mut certificates = Vec::new();
        for c in &ra.certificates {
            let (text, span) = match (&c.pem, &c.file) {
                (Some(p), None) => (p.get_ref().clone(), p.span()),
                (None, Some(f)) => {
                    let base = ctx.origin.parent().unwrap_or(Path::new("."));
                    let path = base.join(f.get_ref());
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        ctx.err_at(
                            f.span(),
                            Some("file"),
                            format!("cannot read {}: {e}", path.display()),
                            Some("the path is relative to the scenario file"),
                        )
                    })?;
                    (text, f.span())
                }
                _ => {
                    let span = ra.client_id.span();
                    return Err(ctx.err_at(
                        span,
                        Some("certificates"),
                        "each [[applications.certificates]] needs exactly one of `pem` or `file`"
                            .into(),
                        Some("paste the PEM certificate into `pem`, or name a file in `file`"),
                    ));
                }
            };
            let cert = parse_certificate_pem(&text).map_err(|m| {
                ctx.err_at(
                    span,
                    Some("certificates"),
                    m,
                    Some("give the PEM of an RSA certificate (-----BEGIN CERTIFICATE-----)"),
                )
            })?;
            certificates.push(cert);
        }
        let mut permissions = Vec::new();
        for p in &ra.permissions {
            permissions.push(Permission {
                resource: resource_checked(ctx, &p.resource)?,
                roles: p.roles.clone(),
                scopes: p.scopes.clone(),
            });
        }
        let object_id = match &ra.object_id {
            Some(o) => ctx.guid(o, "object_id")?,
            None => derived_guid(&["sp", &client_id.to_string(), &home_tenant.to_string()]),
        };
        applications.push(Application {
            client_id,
            name: ra
                .name
                .clone()
                .unwrap_or_else(|| format!("app {client_id}")),
            home_tenant,
            multi_tenant: ra.multi_tenant,
            public_client: ra.public_client,
            enabled: ra.enabled,
            redirect_uris,
            secrets,
            certificates,
            permissions,
            object_id,
        });
    }

    let find_app = |s: &Spanned<String>, field: &str| -> Result<Uuid, ScenarioError> {
        let key = s.get_ref().trim();
        let found = Uuid::parse_str(key)
            .ok()
            .and_then(|id| applications.iter().find(|a| a.client_id == id))
            .or_else(|| {
                applications
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(key))
            });
        found.map(|a| a.client_id).ok_or_else(|| {
            ctx.err_at(
                s.span(),
                Some(field),
                format!("no application `{key}` in this scenario"),
                Some("use the client_id or name of an [[applications]] entry"),
            )
        })
    };

    // Users, consent, rules, refresh tokens.
    for (rt, tenant) in raw.tenants.iter().zip(tenants.iter_mut()) {
        for ru in &rt.users {
            let upn = ru.upn.get_ref().trim().to_ascii_lowercase();
            let domain_ok = upn
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
            if !domain_ok {
                return Err(ctx.err_at(
                    ru.upn.span(),
                    Some("upn"),
                    format!("`{}` is not a user principal name", ru.upn.get_ref()),
                    Some("write name@domain, e.g. alice@contoso.com"),
                ));
            }
            if tenant.users.iter().any(|u| u.upn == upn) {
                return Err(ctx.err_at(
                    ru.upn.span(),
                    Some("upn"),
                    format!("user `{upn}` is declared twice"),
                    None,
                ));
            }
            let object_id = match &ru.object_id {
                Some(o) => ctx.guid(o, "object_id")?,
                None => derived_guid(&["user", &tenant.id.to_string(), &upn]),
            };
            tenant.users.push(User {
                display_name: ru
                    .display_name
                    .clone()
                    .unwrap_or_else(|| upn.split('@').next().unwrap_or(&upn).to_string()),
                upn,
                object_id,
                password: ru.password.clone().unwrap_or_else(|| SecretValue::new("")),
                admin: ru.admin,
                mfa_required: ru.mfa_required,
                mfa_registration_pending: ru.mfa_registration_pending,
                disabled: ru.disabled,
                locked: ru.locked,
                password_expired: ru.password_expired,
                federated: ru.federated,
                exists: ru.exists,
            });
        }
        for rc in &rt.consent {
            let client_id = find_app(&rc.app, "app")?;
            tenant.consent.push(Consent {
                client_id,
                resource: resource_checked(ctx, &rc.resource)?,
                roles: rc.roles.clone(),
                scopes: rc.scopes.clone(),
            });
        }
        for rr in &rt.conditional_access {
            let mut users = Vec::new();
            for u in &rr.users {
                let upn = u.get_ref().trim().to_ascii_lowercase();
                if !tenant.users.iter().any(|x| x.upn == upn) {
                    return Err(ctx.err_at(
                        u.span(),
                        Some("users"),
                        format!("no user `{upn}` in tenant `{}`", tenant.name),
                        Some("list UPNs of [[tenants.users]] of the same tenant"),
                    ));
                }
                users.push(upn);
            }
            let mut apps = Vec::new();
            for a in &rr.applications {
                apps.push(find_app(a, "applications")?);
            }
            let mut grants = Vec::new();
            for g in &rr.grants {
                let grant = g.get_ref().trim().to_string();
                const KNOWN: [&str; 5] = [
                    "password",
                    "client_credentials",
                    "refresh_token",
                    "device_code",
                    "authorization_code",
                ];
                if !KNOWN.contains(&grant.as_str()) {
                    return Err(ctx.err_at(
                        g.span(),
                        Some("grants"),
                        format!("unknown grant `{grant}`"),
                        Some("use password, client_credentials, refresh_token, device_code or authorization_code"),
                    ));
                }
                grants.push(grant);
            }
            tenant.conditional_access.push(ConditionalAccessRule {
                name: rr.name.clone(),
                users,
                applications: apps,
                grants,
            });
        }
        for rr in &rt.refresh_tokens {
            let user = rr.user.get_ref().trim().to_ascii_lowercase();
            if !tenant.users.iter().any(|x| x.upn == user) {
                return Err(ctx.err_at(
                    rr.user.span(),
                    Some("user"),
                    format!("no user `{user}` in tenant `{}`", tenant.name),
                    Some("name a user of the same tenant"),
                ));
            }
            if rr.value.get_ref().expose().is_empty() {
                return Err(ctx.err_at(
                    rr.value.span(),
                    Some("value"),
                    "a refresh token must not be empty".into(),
                    None,
                ));
            }
            tenant.refresh_tokens.push(SeededRefreshToken {
                value: rr.value.get_ref().clone(),
                user,
                client_id: find_app(&rr.app, "app")?,
                scopes: rr.scopes.clone(),
                state: rr.state,
            });
        }
    }

    let device_flow = match raw.device_flow {
        None => None,
        Some(df) => {
            let upn = df.user.get_ref().trim().to_ascii_lowercase();
            if !tenants.iter().any(|t| t.users.iter().any(|u| u.upn == upn)) {
                return Err(ctx.err_at(
                    df.user.span(),
                    Some("user"),
                    format!("no user `{upn}` in any tenant"),
                    Some("name a user declared in [[tenants.users]]"),
                ));
            }
            Some(DeviceFlow {
                user: upn,
                outcome: df.outcome,
                pending_polls: df.pending_polls,
                slow_down: df.slow_down,
            })
        }
    };

    let exchange = match raw.exchange {
        None => None,
        Some(section) => {
            let span = section.span();
            let table = section.into_inner();
            // A section that does not fit the schema is read again straight from the file, so
            // the error points at the file's own line and column, not at a copy of the section.
            #[derive(Deserialize)]
            struct ExchangeOnly {
                #[allow(dead_code)]
                exchange: exgate_emulator_exchange::ExchangeConfig,
            }
            if let Err(e) = toml::from_str::<ExchangeOnly>(ctx.src) {
                let at = e.span().unwrap_or_else(|| span.clone());
                let field = field_at(ctx.src, at.start).unwrap_or_else(|| "exchange".to_owned());
                return Err(ctx.err_at(
                    at,
                    Some(&field),
                    e.message().trim().to_string(),
                    Some("see docs/exchange-emulator.md for the [exchange] keys"),
                ));
            }
            if let Err(e) = crate::exchange::config(&table, &tenants) {
                let (field, message) = match e {
                    exgate_emulator_exchange::ConfigError::Parse(m) => ("exchange".to_string(), m),
                    exgate_emulator_exchange::ConfigError::Invalid { field, message } => {
                        (field, message)
                    }
                };
                return Err(ctx.err_at(span, Some(&field), message, None));
            }
            Some(table)
        }
    };

    let mut faults = Vec::new();
    for f in &raw.faults {
        faults.push(crate::faults::Fault::from_raw(f.get_ref()).map_err(
            |(field, message, fix)| ctx.err_at(f.span(), Some(field), message, Some(fix)),
        )?);
    }

    Ok(Scenario {
        origin: ctx.origin.to_path_buf(),
        settings,
        device_flow,
        tenants,
        applications,
        exchange,
        faults,
    })
}

/// The dotted table path and key of the `key = value` line holding byte `offset` of `src`
/// (`exchange.mailboxes.adress`), from the nearest table header above it.
fn field_at(src: &str, offset: usize) -> Option<String> {
    let before = src.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = src.get(line_start..)?.lines().next()?;
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))?;
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']']).trim().to_owned());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

fn resource_checked(ctx: &Ctx<'_>, r: &Spanned<String>) -> Result<String, ScenarioError> {
    let norm = normalize_resource(r.get_ref());
    let ok = norm.starts_with("https://")
        || norm.starts_with("http://")
        || Uuid::parse_str(&norm).is_ok()
        || norm.starts_with("api://");
    if !ok {
        return Err(ctx.err_at(
            r.span(),
            Some("resource"),
            format!("`{}` is not a resource URI or application id", r.get_ref()),
            Some("write https://outlook.office365.com or https://graph.microsoft.com"),
        ));
    }
    Ok(norm)
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s.trim(), &Rfc3339) {
        return Some(t);
    }
    // A bare date means midnight UTC.
    let d = time::Date::parse(
        s.trim(),
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(d.midnight().assume_utc())
}

/// Parses one PEM certificate (RSA key) into a [`RegisteredCertificate`].
pub fn parse_certificate_pem(text: &str) -> Result<RegisteredCertificate, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!(
            "PEM block is `{}`, expected `CERTIFICATE` (never put a private key in a scenario)",
            pem.label
        ));
    }
    registered_certificate_from_der(&pem.contents)
}

/// Builds a [`RegisteredCertificate`] from DER.
pub fn registered_certificate_from_der(der: &[u8]) -> Result<RegisteredCertificate, String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(_)) => {}
        _ => return Err("the certificate's key is not RSA (Entra accepts RSA only)".into()),
    }
    let public_key = spki.subject_public_key.data.to_vec();
    let validity = cert.validity();
    let not_before = OffsetDateTime::from_unix_timestamp(validity.not_before.timestamp())
        .map_err(|e| format!("bad notBefore: {e}"))?;
    let not_after = OffsetDateTime::from_unix_timestamp(validity.not_after.timestamp())
        .map_err(|e| format!("bad notAfter: {e}"))?;
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .to_vec();
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .to_vec();
    Ok(RegisteredCertificate {
        der: der.to_vec(),
        sha1,
        sha256,
        public_key,
        not_before,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.onmicrosoft.com", "contoso.com"]

[[tenants.users]]
upn = "Alice@contoso.com"
password = "canary-password-1234"

[[applications]]
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
home_tenant = "contoso"

[[applications.secrets]]
value = "canary-secret-5678"
expires = "2099-01-01"
"#;

    fn parse(src: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml_str(src, Path::new("test.toml"))
    }

    #[test]
    fn minimal_scenario_resolves_references() {
        let s = parse(MINIMAL).expect("valid");
        let t = s.tenant("contoso.com").expect("by domain");
        assert_eq!(t.name, "contoso");
        assert!(s.tenant("11111111-2222-3333-4444-555555555555").is_some());
        assert!(t.user("ALICE@contoso.com").is_some());
        let app = s
            .application("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
            .expect("app");
        assert_eq!(app.home_tenant, t.id);
        assert!(app.secrets[0].expires.is_some());
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let s = parse(MINIMAL).expect("valid");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("canary-password-1234"), "{dbg}");
        assert!(!dbg.contains("canary-secret-5678"), "{dbg}");
        assert!(dbg.contains("[redacted]"));
    }

    #[test]
    fn secret_matches_only_exact_value() {
        let s = SecretValue::new("abc");
        assert!(s.matches("abc"));
        assert!(!s.matches("abcd"));
        assert!(!s.matches("ab"));
        assert!(!s.matches("abd"));
    }

    #[test]
    fn unknown_field_is_named_with_line() {
        let src = MINIMAL.replace("password = \"canary", "pasword = \"canary");
        let err = parse(&src).expect_err("unknown field");
        let text = err.to_string();
        assert_eq!(err.line(), Some(9), "{text}");
        assert!(text.contains("pasword"), "{text}");
        assert!(text.starts_with("test.toml:9:"), "{text}");
    }

    #[test]
    fn wrong_type_names_table_and_field() {
        let src = MINIMAL.replace(
            "password = \"canary-password-1234\"",
            "password = \"canary-password-1234\"\nmfa_required = \"yes\"",
        );
        let err = parse(&src).expect_err("wrong type");
        assert_eq!(err.line(), Some(10), "{err}");
        assert_eq!(err.field(), Some("[[tenants.users]] mfa_required"), "{err}");
    }

    #[test]
    fn bad_guid_is_reported_with_fix() {
        let src = MINIMAL.replace("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "not-a-guid");
        let err = parse(&src).expect_err("bad guid");
        let text = err.to_string();
        assert_eq!(err.line(), Some(12), "{text}");
        assert_eq!(err.field(), Some("[[applications]] client_id"), "{text}");
        assert!(text.contains("fix:"), "{text}");
    }

    #[test]
    fn unknown_tenant_reference_is_reported() {
        let src = MINIMAL.replace("home_tenant = \"contoso\"", "home_tenant = \"fabrikam\"");
        let err = parse(&src).expect_err("unknown tenant");
        assert_eq!(err.line(), Some(13), "{err}");
        assert!(err.to_string().contains("fabrikam"), "{err}");
    }

    #[test]
    fn bad_expiry_date_is_reported() {
        let src = MINIMAL.replace("2099-01-01", "next tuesday");
        let err = parse(&src).expect_err("bad date");
        assert_eq!(err.line(), Some(17), "{err}");
        assert_eq!(err.field(), Some("[[applications.secrets]] expires"));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("[[tenants]\nname = 1").expect_err("syntax");
        assert_eq!(err.line(), Some(1), "{err}");
    }

    #[test]
    fn private_key_in_certificate_is_refused() {
        let src = format!(
            "{MINIMAL}\n[[applications.certificates]]\npem = \"\"\"\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n\"\"\"\n"
        );
        let err = parse(&src).expect_err("key");
        assert!(err.to_string().contains("CERTIFICATE"), "{err}");
    }

    #[test]
    fn resources_are_normalised() {
        assert_eq!(
            normalize_resource("https://Outlook.Office365.com/"),
            EXCHANGE_RESOURCE
        );
        assert_eq!(normalize_resource(GRAPH_APP_ID), GRAPH_RESOURCE);
        assert_eq!(
            normalize_resource("https://Mail.Contoso.com/EWS"),
            "https://mail.contoso.com/EWS"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(src in ".{0,400}") {
            let _ = parse(&src);
        }

        #[test]
        fn arbitrary_certificate_text_never_panics(src in ".{0,300}") {
            let _ = parse_certificate_pem(&src);
        }
    }
}
