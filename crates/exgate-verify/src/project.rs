//! The migration project file: endpoints, their auth profiles and the mailbox list.
//!
//! A project is TOML. The mailbox list is inline (`[[mailboxes]]`) or in a CSV file named by
//! `mailboxes_csv` (relative to the project file), or both. Every error names the file, the line,
//! the field and, where one exists, the fix. Secrets may be written inline, or taken from an
//! environment variable (`{ env = "NAME" }`) or a file (`{ file = "path" }`); they are held in
//! [`Secret`] and never appear in errors or `Debug` output.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::secret::Secret;

/// A loaded, validated project.
#[derive(Debug, Clone)]
pub struct Project {
    /// Project name (defaults to the file stem); keys the state in the database.
    pub name: String,
    /// The project file.
    pub path: PathBuf,
    /// Where mailboxes come from.
    pub source: Arc<Endpoint>,
    /// Where mailboxes go; `None` for a project that checks one side only (an archiver, a
    /// scanner, or a source before its destination exists).
    pub destination: Option<Arc<Endpoint>>,
    /// Every line item, in file order (inline first, then CSV).
    pub mailboxes: Vec<LineItem>,
}

impl Project {
    /// The endpoint of one side (`None` for the destination of a one-sided project).
    pub fn endpoint(&self, side: crate::Side) -> Option<&Arc<Endpoint>> {
        match side {
            crate::Side::Source => Some(&self.source),
            crate::Side::Destination => self.destination.as_ref(),
        }
    }

    /// The sides this project checks: both, or the source alone.
    pub fn sides(&self) -> &'static [crate::Side] {
        if self.destination.is_some() {
            &crate::Side::BOTH
        } else {
            &crate::Side::BOTH[..1]
        }
    }
}

/// Which kind of Exchange an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    /// Exchange Online (Microsoft 365), through Graph or EWS.
    ExchangeOnline,
    /// Exchange Server on premises, through EWS.
    ExchangeOnprem,
}

/// The mail protocol used to reach mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// Microsoft Graph (`/users/{id}/mailFolders/inbox`).
    Graph,
    /// Exchange Web Services (SOAP, impersonation for app-only).
    Ews,
}

/// How the service URL is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// A fixed URL (EWS `Exchange.asmx` or the Graph root).
    Explicit(String),
    /// Autodiscover per mailbox, optionally starting at a given Autodiscover URL.
    Autodiscover(Option<String>),
}

/// One end of the migration.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Exchange Online or on premises.
    pub kind: EndpointKind,
    /// Graph or EWS.
    pub api: Api,
    /// Tenant id or domain (OAuth modes).
    pub tenant: Option<String>,
    /// Entra authority host, e.g. `https://login.microsoftonline.com` (overridable for an emulator).
    pub authority_host: Option<String>,
    /// How the service URL is found.
    pub discovery: Discovery,
    /// Credentials.
    pub auth: AuthProfile,
    /// Maximum concurrent requests to this endpoint's tenant (overrides the run default).
    pub max_concurrency: Option<usize>,
    /// The encrypted token store (`[side.auth.store]`, the keys of an auth profile's `[store]`):
    /// a rotated refresh token is kept there, so the next run uses it instead of the one the
    /// project names, which Entra ID no longer accepts.
    pub store: Option<exgate_auth::StoreSettings>,
}

impl Endpoint {
    /// Key under which concurrency is limited and throttling honoured: the tenant, or the
    /// service URL for endpoints without a tenant.
    pub fn tenant_key(&self) -> String {
        if let Some(t) = &self.tenant {
            return t.to_ascii_lowercase();
        }
        match &self.discovery {
            Discovery::Explicit(url) => url.clone(),
            Discovery::Autodiscover(Some(url)) => url.clone(),
            Discovery::Autodiscover(None) => "autodiscover".to_owned(),
        }
    }
}

/// How an endpoint authenticates. Mirrors the modes of the auth crate.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthProfile {
    /// App-only, client secret.
    AppSecret {
        /// Application (client) id.
        client_id: String,
        /// The secret value (not the secret id).
        secret: Secret,
    },
    /// App-only, certificate (PFX or PEM).
    AppCertificate {
        /// Application (client) id.
        client_id: String,
        /// Certificate file (PFX, or PEM with the key or without it), resolved relative to the
        /// project file.
        certificate: PathBuf,
        /// Private key file (PEM) when the certificate file holds only the certificate.
        key: Option<PathBuf>,
        /// Password of a PFX file or an encrypted key.
        certificate_password: Option<Secret>,
    },
    /// Delegated, with a stored refresh token.
    DelegatedRefresh {
        /// Application (client) id.
        client_id: String,
        /// The refresh token.
        refresh_token: Secret,
    },
    /// A password sign-in: Basic (or an app password), or NTLM (`mode = "ntlm"`, on-premises
    /// Windows authentication), optionally with EWS impersonation of each mailbox.
    Basic {
        /// Account name (UPN or DOMAIN\user).
        username: String,
        /// Password or app password.
        password: Secret,
        /// Impersonate each mailbox (`ExchangeImpersonation`) instead of opening it as itself.
        impersonation: bool,
        /// Sign in with NTLM instead of Basic (per-user credentials of the line items too).
        ntlm: bool,
    },
    /// Hybrid Modern Authentication against on-premises Exchange: an app-only Entra token whose
    /// audience is the on-premises URL.
    Hma {
        /// Application (client) id.
        client_id: String,
        /// Client secret (or use a certificate instead).
        secret: Option<Secret>,
        /// Certificate file, resolved relative to the project file.
        certificate: Option<PathBuf>,
        /// Private key file (PEM) when the certificate file holds only the certificate.
        key: Option<PathBuf>,
        /// Password of a PFX file or an encrypted key.
        certificate_password: Option<Secret>,
        /// The token's audience: Exchange's external URL as registered in Entra ID (for example
        /// `https://mail.contoso.com`). Default: the scheme and host of the EWS URL, which is
        /// wrong when exgate reaches the server by another name than its registered one.
        resource: Option<String>,
    },
}

impl AuthProfile {
    /// The mode name as written in the project file.
    pub fn mode(&self) -> &'static str {
        match self {
            AuthProfile::AppSecret { .. } => "app-secret",
            AuthProfile::AppCertificate { .. } => "app-certificate",
            AuthProfile::DelegatedRefresh { .. } => "delegated-refresh",
            AuthProfile::Basic { ntlm: true, .. } => "ntlm",
            AuthProfile::Basic { .. } => "basic",
            AuthProfile::Hma { .. } => "hma",
        }
    }

    /// `true` for modes that obtain Entra tokens (and so need a tenant).
    pub fn needs_tenant(&self) -> bool {
        !matches!(self, AuthProfile::Basic { .. })
    }
}

/// Credentials given for one user on one side of a line item (CSV columns).
#[derive(Debug, Clone, PartialEq)]
pub struct UserCredentials {
    /// Account name.
    pub username: String,
    /// Password or app password.
    pub password: Secret,
}

/// One mailbox line of the project.
#[derive(Debug, Clone)]
pub struct LineItem {
    /// Stable id, derived from the lower-cased addresses.
    pub id: String,
    /// Source address.
    pub source: String,
    /// Destination address (`None` when the project has no destination).
    pub destination: Option<String>,
    /// Per-user source credentials, if given (boxed: most lines have none, and a project holds
    /// every line in memory).
    pub source_credentials: Option<Box<UserCredentials>>,
    /// Per-user destination credentials, if given.
    pub destination_credentials: Option<Box<UserCredentials>>,
    /// Where the line was defined, for messages.
    pub origin: Origin,
}

/// Where a line item was defined: a file (shared by every line of that file) and a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The project file or the mailbox CSV.
    pub file: Arc<Path>,
    /// 1-based line number.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

impl LineItem {
    /// A fingerprint of everything about the line except secret values: when it changes, the
    /// line is verified again even if it was ok.
    pub fn fingerprint(&self) -> String {
        let mut s = self.source.to_ascii_lowercase();
        if let Some(d) = &self.destination {
            s.push('\u{1f}');
            s.push_str(&d.to_ascii_lowercase());
        }
        for c in [&self.source_credentials, &self.destination_credentials] {
            s.push('\u{1f}');
            if let Some(c) = c {
                s.push_str(&c.username.to_ascii_lowercase());
            }
        }
        format!("{:016x}", fnv1a(s.as_bytes()))
    }

    /// The address of one side (`None` for the destination of a one-sided project).
    pub fn address(&self, side: crate::Side) -> Option<&str> {
        match side {
            crate::Side::Source => Some(&self.source),
            crate::Side::Destination => self.destination.as_deref(),
        }
    }

    /// `source -> destination`, or the source alone, for messages.
    pub fn label(&self) -> String {
        match &self.destination {
            Some(d) => format!("{} -> {d}", self.source),
            None => self.source.clone(),
        }
    }

    /// The per-user credentials of one side.
    pub fn credentials(&self, side: crate::Side) -> Option<&UserCredentials> {
        match side {
            crate::Side::Source => self.source_credentials.as_deref(),
            crate::Side::Destination => self.destination_credentials.as_deref(),
        }
    }
}

/// The line-item id of a pair of addresses, or of a source alone in a one-sided project.
pub fn line_item_id(source: &str, destination: Option<&str>) -> String {
    let mut key = source.trim().to_ascii_lowercase();
    if let Some(d) = destination {
        key.push('\u{1f}');
        key.push_str(&d.trim().to_ascii_lowercase());
    }
    format!("{:016x}", fnv1a(key.as_bytes()))
}

/// FNV-1a, 64 bit: a stable, dependency-free hash for ids (not for secrets).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// An error in a project file or its CSV. Display names file, line, field and fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectError {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A value is missing, malformed or inconsistent.
    #[error("{file}:{line}: {field}: {message}{}", fix.as_deref().map(|f| format!("\n  fix: {f}")).unwrap_or_default())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// The field (dotted path or CSV column).
        field: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: Option<String>,
    },
}

impl ProjectError {
    fn invalid(
        file: &Path,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: Option<&str>,
    ) -> Self {
        ProjectError::Invalid {
            file: file.to_path_buf(),
            line,
            field: field.into(),
            message: message.into(),
            fix: fix.map(str::to_owned),
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Raw file model

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: Option<Spanned<String>>,
    source: Spanned<RawEndpoint>,
    destination: Option<Spanned<RawEndpoint>>,
    #[serde(default)]
    mailboxes: Vec<Spanned<RawMailbox>>,
    mailboxes_csv: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    kind: Spanned<EndpointKind>,
    api: Option<Spanned<Api>>,
    tenant: Option<Spanned<String>>,
    authority_host: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    #[serde(default)]
    autodiscover: bool,
    autodiscover_url: Option<Spanned<String>>,
    max_concurrency: Option<Spanned<i64>>,
    auth: Spanned<RawAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    mode: Spanned<String>,
    client_id: Option<Spanned<String>>,
    secret: Option<Spanned<RawSecret>>,
    certificate: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    certificate_password: Option<Spanned<RawSecret>>,
    refresh_token: Option<Spanned<RawSecret>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<RawSecret>>,
    impersonation: Option<Spanned<bool>>,
    resource: Option<Spanned<String>>,
    store: Option<Spanned<RawStore>>,
}

/// `[side.auth.store]`: the keys of an auth profile's `[store]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Spanned<String>,
    key_env: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    key_keyring: Option<Spanned<String>>,
}

/// The auth modes and the fields each accepts (required fields first, then `|`, then optional).
const AUTH_MODES: &[(&str, &[&str], &[&str])] = &[
    ("app-secret", &["client_id", "secret"], &[]),
    (
        "app-certificate",
        &["client_id", "certificate"],
        &["key", "certificate_password"],
    ),
    ("delegated-refresh", &["client_id", "refresh_token"], &[]),
    ("basic", &["username", "password"], &["impersonation"]),
    ("ntlm", &["username", "password"], &["impersonation"]),
    (
        "hma",
        &["client_id"],
        &[
            "secret",
            "certificate",
            "key",
            "certificate_password",
            "resource",
        ],
    ),
];

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSecret {
    Inline(String),
    Env { env: String },
    File { file: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    source: Spanned<String>,
    destination: Option<Spanned<String>>,
    source_username: Option<Spanned<String>>,
    source_password: Option<Spanned<RawSecret>>,
    destination_username: Option<Spanned<String>>,
    destination_password: Option<Spanned<RawSecret>>,
}

/// Where the loader looks up `{ env = "NAME" }` secrets (the process environment by default).
pub trait EnvLookup {
    /// The value of a variable, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvLookup for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Loads and validates a project file, reading secrets from the process environment.
pub fn load(path: &Path) -> Result<Project, ProjectError> {
    load_with_env(path, &ProcessEnv)
}

/// Loads and validates a project file with an explicit environment.
pub fn load_with_env(path: &Path, env: &dyn EnvLookup) -> Result<Project, ProjectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path, env)
}

/// Parses project text as if read from `path` (used for relative paths and messages).
pub fn parse(text: &str, path: &Path, env: &dyn EnvLookup) -> Result<Project, ProjectError> {
    let cx = Cx {
        file: path,
        file_arc: Arc::from(path),
        text,
        base: path.parent().unwrap_or(Path::new(".")),
        env,
    };
    if text.trim().is_empty() {
        return Err(ProjectError::invalid(
            path,
            1,
            "source",
            "the project file is empty",
            Some(
                "start from examples/projects/migration.toml; docs/verify.md describes the format",
            ),
        ));
    }
    let raw: RawProject = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| cx.line_of(&s)).unwrap_or(0).max(1);
        let message = scrub_values(e.message().trim());
        // serde names the field only for missing and unknown fields; for a wrong type, the key
        // written on the line the error points at is the field.
        let field = match field_from_message(&message) {
            f if f == "(syntax)" => e.span().and_then(|s| key_at(text, s.start)).unwrap_or(f),
            f => f,
        };
        let fix = toml_fix(&message).or_else(|| {
            message
                .starts_with("wanted string")
                .then_some("write the value as a quoted string (see docs/verify.md)")
        });
        ProjectError::invalid(path, line, field, message, fix)
    })?;

    let name = match &raw.name {
        Some(n) if n.get_ref().trim().is_empty() => {
            return Err(cx.err(
                n.span(),
                "name",
                "is empty",
                Some("give the project a name"),
            ));
        }
        Some(n) => n.get_ref().trim().to_owned(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".to_owned()),
    };
    let source = cx.endpoint("source", &raw.source)?;
    let destination = match &raw.destination {
        Some(d) => Some(cx.endpoint("destination", d)?),
        None => None,
    };
    let two_sided = destination.is_some();

    let mut mailboxes = Vec::new();
    for (i, m) in raw.mailboxes.iter().enumerate() {
        mailboxes.push(cx.inline_mailbox(i, m, two_sided)?);
    }
    if let Some(csv_name) = &raw.mailboxes_csv {
        let csv_path = cx.base.join(csv_name.get_ref());
        let csv_text = std::fs::read(&csv_path).map_err(|e| {
            cx.err(
                csv_name.span(),
                "mailboxes_csv",
                format!("cannot read {}: {e}", csv_path.display()),
                Some("the path is relative to the project file"),
            )
        })?;
        mailboxes.extend(parse_csv(&csv_text, &csv_path, env, two_sided)?);
    }
    if mailboxes.is_empty() {
        // Reported at the end of the file, where [[mailboxes]] would go.
        return Err(ProjectError::invalid(
            path,
            text.lines().count().max(1),
            "mailboxes",
            "the project lists no mailbox",
            Some("add [[mailboxes]] entries or a mailboxes_csv file"),
        ));
    }
    // Duplicates: the line items sorted by id (a few bytes each), then neighbours compared.
    let mut order: Vec<usize> = (0..mailboxes.len()).collect();
    order.sort_by(|a, b| mailboxes[*a].id.cmp(&mailboxes[*b].id).then(a.cmp(b)));
    if let Some(pair) = order
        .windows(2)
        .filter(|w| mailboxes[w[0]].id == mailboxes[w[1]].id)
        .min_by_key(|w| w[1])
    {
        let (first, m) = (&mailboxes[pair[0]], &mailboxes[pair[1]]);
        return Err(ProjectError::invalid(
            &m.origin.file,
            m.origin.line,
            "source",
            format!(
                "duplicate line item {} (first defined at {})",
                m.label(),
                first.origin
            ),
            Some("remove one of the two lines"),
        ));
    }
    Ok(Project {
        name,
        path: path.to_path_buf(),
        source: Arc::new(source),
        destination: destination.map(Arc::new),
        mailboxes,
    })
}

/// Hides quoted values in deserializer messages (`invalid type: string "…"`), which could be
/// secrets written in the wrong place.
fn scrub_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        let after = &rest[i + "string \"".len()..];
        // The literal ends at the last quote before ", expected" (or the last quote at all).
        let end = after
            .find("\", expected")
            .or_else(|| after.rfind('"'))
            .map(|j| j + 1)
            .unwrap_or(after.len());
        rest = after.get(end..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The key of the `key = value` line that holds byte `offset` of `text`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
    .then(|| key.to_owned())
}

fn field_from_message(message: &str) -> String {
    // serde messages name fields in backticks: "missing field `kind`", "unknown field `x`".
    message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_else(|| "(syntax)".to_owned())
}

fn toml_fix(message: &str) -> Option<&'static str> {
    if message.contains("missing field") {
        Some("add the field; see docs/verify.md for the project format")
    } else if message.contains("unknown field") {
        Some("check the spelling; see docs/verify.md for the accepted fields")
    } else if message.contains("unknown variant") {
        Some("use one of the values listed above")
    } else {
        None
    }
}

struct Cx<'a> {
    file: &'a Path,
    /// The same path, shared by the origin of every inline line item.
    file_arc: Arc<Path>,
    text: &'a str,
    base: &'a Path,
    env: &'a dyn EnvLookup,
}

impl Cx<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: Option<&str>,
    ) -> ProjectError {
        ProjectError::invalid(self.file, self.line_of(&span), field, message, fix)
    }

    fn text_field(&self, field: &str, v: &Spanned<String>) -> Result<String, ProjectError> {
        let s = v.get_ref().trim();
        if s.is_empty() {
            return Err(self.err(v.span(), field, "is empty", None));
        }
        Ok(s.to_owned())
    }

    fn url_field(&self, field: &str, v: &Spanned<String>) -> Result<String, ProjectError> {
        let s = self.text_field(field, v)?;
        if !(s.starts_with("https://") || s.starts_with("http://"))
            || s.contains(char::is_whitespace)
        {
            return Err(self.err(
                v.span(),
                field,
                format!("`{s}` is not an http(s) URL"),
                Some("write a full URL such as https://mail.contoso.com/EWS/Exchange.asmx"),
            ));
        }
        Ok(s)
    }

    fn secret(&self, field: &str, v: &Spanned<RawSecret>) -> Result<Secret, ProjectError> {
        let value = match v.get_ref() {
            RawSecret::Inline(s) => s.clone(),
            RawSecret::Env { env } => self.env.var(env).ok_or_else(|| {
                self.err(
                    v.span(),
                    field,
                    format!("environment variable {env} is not set"),
                    Some("export the variable before running, or write the value in the file"),
                )
            })?,
            RawSecret::File { file } => {
                let p = self.base.join(file);
                std::fs::read_to_string(&p)
                    .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| {
                        self.err(
                            v.span(),
                            field,
                            format!("cannot read secret file {}: {e}", p.display()),
                            Some("the path is relative to the project file"),
                        )
                    })?
            }
        };
        if value.is_empty() {
            // Never echo the value; there is none to echo here anyway.
            return Err(self.err(v.span(), field, "the secret is empty", None));
        }
        Ok(Secret::new(value))
    }

    fn client_id(&self, field: &str, v: &Spanned<String>) -> Result<String, ProjectError> {
        let s = self.text_field(field, v)?;
        if !is_guid(&s) {
            return Err(self.err(
                v.span(),
                field,
                format!("`{s}` is not a GUID"),
                Some(
                    "use the Application (client) ID from the app registration's Overview page, \
                     not its name or object id",
                ),
            ));
        }
        Ok(s)
    }

    fn endpoint(&self, side: &str, raw: &Spanned<RawEndpoint>) -> Result<Endpoint, ProjectError> {
        let r = raw.get_ref();
        let kind = *r.kind.get_ref();
        let api = match (kind, r.api.as_ref().map(|a| *a.get_ref())) {
            (EndpointKind::ExchangeOnprem, Some(Api::Graph)) => {
                let span = r.api.as_ref().map(|a| a.span()).unwrap_or(raw.span());
                return Err(self.err(
                    span,
                    format!("{side}.api"),
                    "Graph does not reach on-premises mailboxes",
                    Some("use api = \"ews\" for exchange-onprem"),
                ));
            }
            (EndpointKind::ExchangeOnprem, _) => Api::Ews,
            (EndpointKind::ExchangeOnline, Some(a)) => a,
            (EndpointKind::ExchangeOnline, None) => Api::Graph,
        };
        let discovery = match (&r.url, r.autodiscover, &r.autodiscover_url) {
            (Some(u), false, None) => {
                Discovery::Explicit(self.url_field(&format!("{side}.url"), u)?)
            }
            (Some(u), _, _) => {
                return Err(self.err(
                    u.span(),
                    format!("{side}.url"),
                    "both url and autodiscover are set",
                    Some("keep one: an explicit url, or autodiscover = true"),
                ));
            }
            (None, _, Some(a)) => Discovery::Autodiscover(Some(
                self.url_field(&format!("{side}.autodiscover_url"), a)?,
            )),
            (None, true, None) => Discovery::Autodiscover(None),
            (None, false, None) => match (kind, api) {
                (EndpointKind::ExchangeOnline, Api::Graph) => {
                    Discovery::Explicit("https://graph.microsoft.com/v1.0".to_owned())
                }
                (EndpointKind::ExchangeOnline, Api::Ews) => Discovery::Explicit(
                    "https://outlook.office365.com/EWS/Exchange.asmx".to_owned(),
                ),
                (EndpointKind::ExchangeOnprem, _) => {
                    return Err(self.err(
                        raw.span(),
                        format!("{side}.url"),
                        "an on-premises endpoint needs its EWS URL or Autodiscover",
                        Some("add url = \"https://mail.example.com/EWS/Exchange.asmx\" or autodiscover = true"),
                    ));
                }
            },
        };
        let auth = self.auth(side, &r.auth)?;
        if kind == EndpointKind::ExchangeOnline
            && matches!(auth, AuthProfile::Basic { ntlm: true, .. })
        {
            return Err(self.err(
                r.auth.span(),
                format!("{side}.auth.mode"),
                "Exchange Online does not accept NTLM",
                Some("use app-certificate or app-secret for Exchange Online; ntlm is for on-premises servers"),
            ));
        }
        let tenant = match &r.tenant {
            Some(t) => Some(self.text_field(&format!("{side}.tenant"), t)?),
            None => None,
        };
        if auth.needs_tenant() {
            match &tenant {
                None => {
                    return Err(self.err(
                        raw.span(),
                        format!("{side}.tenant"),
                        format!("auth mode {} needs the tenant", auth.mode()),
                        Some("add tenant = \"contoso.onmicrosoft.com\" (or the tenant id); app-only flows cannot use common/organizations"),
                    ));
                }
                Some(t) if matches!(t.as_str(), "common" | "organizations" | "consumers") => {
                    let span = r.tenant.as_ref().map(|t| t.span()).unwrap_or(raw.span());
                    return Err(self.err(
                        span,
                        format!("{side}.tenant"),
                        format!("`{t}` is not a tenant"),
                        Some("use the tenant id or its domain: unattended flows need a specific tenant"),
                    ));
                }
                Some(_) => {}
            }
        }
        if let AuthProfile::Hma { .. } = auth
            && kind != EndpointKind::ExchangeOnprem
        {
            return Err(self.err(
                r.auth.span(),
                format!("{side}.auth.mode"),
                "hma is for on-premises Exchange",
                Some("use app-secret or app-certificate for Exchange Online"),
            ));
        }
        let authority_host = match &r.authority_host {
            Some(a) => Some(self.url_field(&format!("{side}.authority_host"), a)?),
            None => None,
        };
        let max_concurrency = match &r.max_concurrency {
            Some(m) => {
                let v = *m.get_ref();
                if !(1..=1024).contains(&v) {
                    return Err(self.err(
                        m.span(),
                        format!("{side}.max_concurrency"),
                        format!("{v} is out of range"),
                        Some("use a number from 1 to 1024"),
                    ));
                }
                usize::try_from(v).ok()
            }
            None => None,
        };
        let store = match &r.auth.get_ref().store {
            None => None,
            Some(st) if matches!(auth, AuthProfile::Basic { .. }) => {
                return Err(self.err(
                    st.span(),
                    format!("{side}.auth.store"),
                    format!("auth mode {} keeps no tokens", auth.mode()),
                    Some("remove [store]: a token store is for the OAuth modes"),
                ));
            }
            Some(st) => {
                let st = st.get_ref();
                let f = |name: &str| format!("{side}.auth.store.{name}");
                let path_of = |name: &str, v: &Spanned<String>| {
                    self.text_field(&f(name), v).map(|p| self.base.join(p))
                };
                Some(exgate_auth::StoreSettings {
                    path: Some(path_of("path", &st.path)?),
                    key_env: st
                        .key_env
                        .as_ref()
                        .map(|v| self.text_field(&f("key_env"), v))
                        .transpose()?,
                    key_file: st
                        .key_file
                        .as_ref()
                        .map(|v| path_of("key_file", v))
                        .transpose()?,
                    key_keyring: st
                        .key_keyring
                        .as_ref()
                        .map(|v| self.text_field(&f("key_keyring"), v))
                        .transpose()?,
                })
            }
        };
        Ok(Endpoint {
            kind,
            api,
            tenant,
            authority_host,
            discovery,
            auth,
            max_concurrency,
            store,
        })
    }

    fn auth(&self, side: &str, raw: &Spanned<RawAuth>) -> Result<AuthProfile, ProjectError> {
        let f = |name: &str| format!("{side}.auth.{name}");
        let a = raw.get_ref();
        let mode = a.mode.get_ref().trim();
        let Some((_, required, optional)) = AUTH_MODES.iter().find(|(m, ..)| *m == mode) else {
            let modes: Vec<&str> = AUTH_MODES.iter().map(|(m, ..)| *m).collect();
            return Err(self.err(
                a.mode.span(),
                f("mode"),
                format!("unknown auth mode `{mode}`"),
                Some(&format!("use one of: {}", modes.join(", "))),
            ));
        };
        let present: [(&str, Option<Range<usize>>); 10] = [
            ("key", a.key.as_ref().map(|v| v.span())),
            ("client_id", a.client_id.as_ref().map(|v| v.span())),
            ("secret", a.secret.as_ref().map(|v| v.span())),
            ("certificate", a.certificate.as_ref().map(|v| v.span())),
            (
                "certificate_password",
                a.certificate_password.as_ref().map(|v| v.span()),
            ),
            ("refresh_token", a.refresh_token.as_ref().map(|v| v.span())),
            ("username", a.username.as_ref().map(|v| v.span())),
            ("password", a.password.as_ref().map(|v| v.span())),
            ("impersonation", a.impersonation.as_ref().map(|v| v.span())),
            ("resource", a.resource.as_ref().map(|v| v.span())),
        ];
        for (name, span) in &present {
            match span {
                Some(span) if !required.contains(name) && !optional.contains(name) => {
                    return Err(self.err(
                        span.clone(),
                        f(name),
                        format!("not used by auth mode {mode}"),
                        Some(&format!(
                            "mode {mode} takes: {}",
                            required
                                .iter()
                                .chain(optional.iter())
                                .copied()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ));
                }
                None if required.contains(name) => {
                    return Err(self.err(
                        raw.span(),
                        f(name),
                        format!("auth mode {mode} needs {name}"),
                        Some(&format!("add {name} to [{side}.auth]")),
                    ));
                }
                _ => {}
            }
        }
        let missing = |name: &str| {
            self.err(
                raw.span(),
                f(name),
                format!("auth mode {mode} needs {name}"),
                None,
            )
        };
        let client_id = || -> Result<String, ProjectError> {
            let v = a.client_id.as_ref().ok_or_else(|| missing("client_id"))?;
            self.client_id(&f("client_id"), v)
        };
        let secret =
            |name: &str, v: &Option<Spanned<RawSecret>>| -> Result<Option<Secret>, ProjectError> {
                v.as_ref().map(|v| self.secret(&f(name), v)).transpose()
            };
        let path =
            |name: &str, v: &Option<Spanned<String>>| -> Result<Option<PathBuf>, ProjectError> {
                v.as_ref()
                    .map(|v| self.text_field(&f(name), v).map(|p| self.base.join(p)))
                    .transpose()
            };
        Ok(match mode {
            "app-secret" => AuthProfile::AppSecret {
                client_id: client_id()?,
                secret: secret("secret", &a.secret)?.ok_or_else(|| missing("secret"))?,
            },
            "app-certificate" => AuthProfile::AppCertificate {
                client_id: client_id()?,
                certificate: path("certificate", &a.certificate)?
                    .ok_or_else(|| missing("certificate"))?,
                key: path("key", &a.key)?,
                certificate_password: secret("certificate_password", &a.certificate_password)?,
            },
            "delegated-refresh" => AuthProfile::DelegatedRefresh {
                client_id: client_id()?,
                refresh_token: secret("refresh_token", &a.refresh_token)?
                    .ok_or_else(|| missing("refresh_token"))?,
            },
            "basic" | "ntlm" => AuthProfile::Basic {
                username: match &a.username {
                    Some(u) => self.text_field(&f("username"), u)?,
                    None => return Err(missing("username")),
                },
                password: secret("password", &a.password)?.ok_or_else(|| missing("password"))?,
                impersonation: a.impersonation.as_ref().is_some_and(|i| *i.get_ref()),
                ntlm: mode == "ntlm",
            },
            _ => {
                if a.secret.is_none() && a.certificate.is_none() {
                    return Err(self.err(
                        raw.span(),
                        f("secret"),
                        "hma needs a client secret or a certificate",
                        Some("add secret = { env = \"NAME\" } or certificate = \"app.pfx\""),
                    ));
                }
                AuthProfile::Hma {
                    client_id: client_id()?,
                    secret: secret("secret", &a.secret)?,
                    certificate: path("certificate", &a.certificate)?,
                    key: path("key", &a.key)?,
                    certificate_password: secret("certificate_password", &a.certificate_password)?,
                    resource: match &a.resource {
                        Some(r) => Some(self.url_field(&f("resource"), r)?),
                        None => None,
                    },
                }
            }
        })
    }

    fn inline_mailbox(
        &self,
        index: usize,
        raw: &Spanned<RawMailbox>,
        two_sided: bool,
    ) -> Result<LineItem, ProjectError> {
        let m = raw.get_ref();
        let field = |name: &str| format!("mailboxes[{index}].{name}");
        let source = self.address(&field("source"), &m.source)?;
        if !two_sided {
            let given = [
                ("destination", m.destination.as_ref().map(Spanned::span)),
                (
                    "destination_username",
                    m.destination_username.as_ref().map(Spanned::span),
                ),
                (
                    "destination_password",
                    m.destination_password.as_ref().map(Spanned::span),
                ),
            ];
            if let Some((name, Some(span))) = given.into_iter().find(|(_, s)| s.is_some()) {
                return Err(self.err(
                    span,
                    field(name),
                    "the project has no [destination] endpoint",
                    Some(NO_DESTINATION_FIX),
                ));
            }
        }
        let destination = match &m.destination {
            Some(d) => Some(self.address(&field("destination"), d)?),
            None => two_sided.then(|| source.clone()),
        };
        let source_credentials = self.user_credentials(
            &field("source"),
            raw.span(),
            &m.source_username,
            &m.source_password,
        )?;
        let destination_credentials = self.user_credentials(
            &field("destination"),
            raw.span(),
            &m.destination_username,
            &m.destination_password,
        )?;
        Ok(LineItem {
            id: line_item_id(&source, destination.as_deref()),
            origin: Origin {
                file: self.file_arc.clone(),
                line: self.line_of(&m.source.span()),
            },
            source,
            destination,
            source_credentials,
            destination_credentials,
        })
    }

    fn address(&self, field: &str, v: &Spanned<String>) -> Result<String, ProjectError> {
        let s = v.get_ref().trim();
        check_address(s).map_err(|msg| {
            self.err(
                v.span(),
                field,
                msg,
                Some("write the mailbox's primary SMTP address, e.g. alice@contoso.com"),
            )
        })?;
        Ok(s.to_owned())
    }

    fn user_credentials(
        &self,
        prefix: &str,
        span: Range<usize>,
        username: &Option<Spanned<String>>,
        password: &Option<Spanned<RawSecret>>,
    ) -> Result<Option<Box<UserCredentials>>, ProjectError> {
        match (username, password) {
            (None, None) => Ok(None),
            (Some(u), Some(p)) => Ok(Some(Box::new(UserCredentials {
                username: self.text_field(&format!("{prefix}_username"), u)?,
                password: self.secret(&format!("{prefix}_password"), p)?,
            }))),
            (Some(_), None) => Err(self.err(
                span,
                format!("{prefix}_password"),
                "a username without a password",
                Some("give both, or neither"),
            )),
            (None, Some(_)) => Err(self.err(
                span,
                format!("{prefix}_username"),
                "a password without a username",
                Some("give both, or neither"),
            )),
        }
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map(|b| b.iter().filter(|c| **c == b'\n').count() + 1)
        .unwrap_or(1)
}

use exgate_wire::ids::is_guid;

/// Checks that a string looks like an SMTP address (one `@`, non-empty parts, a dot in the
/// domain, no spaces or control characters).
pub fn check_address(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the address is empty".to_owned());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        // Shown escaped: a raw control character would act on the terminal.
        return Err(format!(
            "`{}` contains the control character {}",
            s.escape_debug(),
            c.escape_unicode()
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || c == ',' || c == ';') {
        return Err(format!("`{s}` contains spaces or separators"));
    }
    let Some((local, domain)) = s.split_once('@') else {
        return Err(format!("`{s}` has no @"));
    };
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err(format!("`{s}` is not a mailbox address"));
    }
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return Err(format!("`{s}` has no valid domain"));
    }
    Ok(())
}

const NO_DESTINATION_FIX: &str = "add a [destination] endpoint to the project, or remove the destination fields to check the source alone";

/// The recognised CSV columns. `source` is required; the rest are optional.
pub const CSV_COLUMNS: [&str; 6] = [
    "source",
    "destination",
    "source_username",
    "source_password",
    "destination_username",
    "destination_password",
];

/// Parses a mailbox CSV (header row required). Password cells may be `env:NAME` to read an
/// environment variable. Errors name the file, the line and the column; they never echo a
/// password cell.
///
/// `two_sided` says whether the project has a destination endpoint: without one, the
/// destination columns are refused (they would be silently ignored otherwise).
pub fn parse_csv(
    bytes: &[u8],
    file: &Path,
    env: &dyn EnvLookup,
    two_sided: bool,
) -> Result<Vec<LineItem>, ProjectError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| csv_error(file, &e, "header"))?
        .clone();
    let mut col: HashMap<&str, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim_start_matches('\u{feff}').trim();
        let Some(known) = CSV_COLUMNS.iter().find(|c| c.eq_ignore_ascii_case(h)) else {
            return Err(ProjectError::invalid(
                file,
                1,
                h,
                "unknown column",
                Some(
                    "columns are: source, destination, source_username, source_password, destination_username, destination_password",
                ),
            ));
        };
        if !two_sided && known.starts_with("destination") {
            return Err(ProjectError::invalid(
                file,
                1,
                h,
                "the project has no [destination] endpoint",
                Some(NO_DESTINATION_FIX),
            ));
        }
        if col.insert(known, i).is_some() {
            return Err(ProjectError::invalid(
                file,
                1,
                h,
                "column given twice",
                None,
            ));
        }
    }
    if !col.contains_key("source") {
        return Err(ProjectError::invalid(
            file,
            1,
            "source",
            "the header has no source column",
            Some("the first line must name the columns, e.g. source,destination"),
        ));
    }
    // One line item per line: reserve for them at once instead of growing (and copying) the
    // list of a million lines twenty times.
    let mut out = Vec::with_capacity(bytes.iter().filter(|b| **b == b'\n').count());
    let origin_file: Arc<Path> = Arc::from(file);
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, &e, "row"))?;
        let line = record
            .position()
            .map(|p| usize::try_from(p.line()).unwrap_or(0))
            .unwrap_or(0);
        let cell = |name: &str| -> Option<&str> {
            col.get(name)
                .and_then(|i| record.get(*i))
                .filter(|s| !s.is_empty())
        };
        let source = cell("source").unwrap_or("");
        check_address(source).map_err(|m| {
            ProjectError::invalid(
                file,
                line,
                "source",
                m,
                Some("write the mailbox's primary SMTP address"),
            )
        })?;
        let destination = match cell("destination") {
            _ if !two_sided => None,
            Some(d) => {
                check_address(d).map_err(|m| {
                    ProjectError::invalid(
                        file,
                        line,
                        "destination",
                        m,
                        Some("write the mailbox's primary SMTP address, or leave it empty to use the source address"),
                    )
                })?;
                Some(d)
            }
            None => Some(source),
        };
        let creds = |side: &str| -> Result<Option<Box<UserCredentials>>, ProjectError> {
            let ucol = format!("{side}_username");
            let pcol = format!("{side}_password");
            match (cell(&ucol), cell(&pcol)) {
                (None, None) => Ok(None),
                (Some(u), Some(p)) => {
                    let password = match p.strip_prefix("env:") {
                        Some(var) => env.var(var).ok_or_else(|| {
                            ProjectError::invalid(
                                file,
                                line,
                                pcol.clone(),
                                format!("environment variable {var} is not set"),
                                Some("export the variable before running"),
                            )
                        })?,
                        None => p.to_owned(),
                    };
                    Ok(Some(Box::new(UserCredentials {
                        username: u.to_owned(),
                        password: Secret::new(password),
                    })))
                }
                (Some(_), None) => Err(ProjectError::invalid(
                    file,
                    line,
                    pcol,
                    "a username without a password",
                    Some("give both, or neither"),
                )),
                (None, Some(_)) => Err(ProjectError::invalid(
                    file,
                    line,
                    ucol,
                    "a password without a username",
                    Some("give both, or neither"),
                )),
            }
        };
        out.push(LineItem {
            id: line_item_id(source, destination),
            source: source.to_owned(),
            destination: destination.map(str::to_owned),
            source_credentials: creds("source")?,
            destination_credentials: creds("destination")?,
            origin: Origin {
                file: origin_file.clone(),
                line,
            },
        });
    }
    Ok(out)
}

fn csv_error(file: &Path, e: &csv::Error, what: &str) -> ProjectError {
    let line = e
        .position()
        .map(|p| usize::try_from(p.line()).unwrap_or(0))
        .unwrap_or(0);
    // csv::Error's Display can include field contents only for UTF-8 errors (as byte offsets),
    // never the cell text, so it is safe to show.
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} cells where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => e.to_string(),
    };
    ProjectError::invalid(
        file,
        line,
        what,
        message,
        Some("every row needs as many cells as the header; quote cells that contain commas"),
    )
}

#[cfg(test)]
mod tests;
