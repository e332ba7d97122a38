//! The failure catalog: `catalog/*.toml`, compiled in and validated once.
//!
//! `catalog/causes.toml` is the vocabulary of cause ids (those of the shared causes list, plus the
//! project's additions); every other file holds `[[entry]]` tables, each with one or more
//! `[[entry.match]]` matchers. A matcher matches when *all* its conditions hold; an entry matches
//! when *any* of its matchers does. See `docs/diagnose.md` for the format.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use crate::evidence::{AuthMode, Environment, Protocol};

/// The catalog files compiled into the crate: `(file name, contents)`.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "token_endpoint.toml",
        include_str!("../../../catalog/token_endpoint.toml"),
    ),
    (
        "user_signin.toml",
        include_str!("../../../catalog/user_signin.toml"),
    ),
    (
        "exchange_oauth.toml",
        include_str!("../../../catalog/exchange_oauth.toml"),
    ),
    (
        "aadsts_reference.toml",
        include_str!("../../../catalog/aadsts_reference.toml"),
    ),
    ("ews.toml", include_str!("../../../catalog/ews.toml")),
    ("graph.toml", include_str!("../../../catalog/graph.toml")),
    (
        "mail_protocols.toml",
        include_str!("../../../catalog/mail_protocols.toml"),
    ),
    ("hybrid.toml", include_str!("../../../catalog/hybrid.toml")),
    (
        "fallback.toml",
        include_str!("../../../catalog/fallback.toml"),
    ),
    (
        "transport.toml",
        include_str!("../../../catalog/transport.toml"),
    ),
    (
        "migration_tools.toml",
        include_str!("../../../catalog/migration_tools.toml"),
    ),
];

/// The cause vocabulary.
pub const CAUSES_SOURCE: &str = include_str!("../../../catalog/causes.toml");

/// A catalog that does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog/{file}: {location}: {message}")]
pub struct CatalogError {
    /// The file (`ews.toml`).
    pub file: String,
    /// Where: `line 12`, or `entry "id", field "text"`.
    pub location: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// One cause of the vocabulary.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CauseDef {
    /// Stable id.
    pub id: String,
    /// Short title.
    pub title: String,
    /// The fact that confirms or rules out this cause, asked when evidence is thin.
    #[serde(default)]
    pub question: Option<String>,
    /// Whether a response alone can show it (false for `library_regression`).
    #[serde(default = "yes")]
    pub diagnosable: bool,
    /// How often this cause is the real one where its signatures are shared with other causes,
    /// relative to the others (1.0 = typical). Taken from public reports; see docs/diagnose.md.
    #[serde(default = "one")]
    pub prior: f32,
    /// The one observation that tells this cause apart, and how to make it (a command, a field
    /// to read). Shown with the cause when several causes fit.
    #[serde(default)]
    pub check: Option<String>,
    /// Whether the cause lies with the endpoint (the app, the tenant, the service account, the
    /// server) rather than one mailbox: every mailbox behind that endpoint then fails alike.
    #[serde(default)]
    pub scope: CauseScope,
}

/// Where a cause lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseScope {
    /// With one mailbox (its permissions, licence, provisioning).
    #[default]
    Mailbox,
    /// With the endpoint: every mailbox reached through it fails the same way.
    Endpoint,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CausesFile {
    cause: Vec<CauseDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesFile {
    #[serde(default)]
    entry: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: String,
    cause: String,
    title: String,
    #[serde(default)]
    protocols: Vec<Protocol>,
    #[serde(default)]
    environments: Vec<Environment>,
    #[serde(default = "one")]
    weight: f32,
    #[serde(default)]
    differential: Vec<String>,
    explanation: String,
    fix: Vec<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(rename = "match", default)]
    matchers: Vec<RawMatcher>,
}

fn one() -> f32 {
    1.0
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatcher {
    status: Option<Vec<u16>>,
    header: Option<String>,
    header_value: Option<String>,
    diag_code: Option<String>,
    diag_category: Option<String>,
    diag_reason: Option<String>,
    challenge: Option<String>,
    challenge_param: Option<String>,
    challenge_param_value: Option<String>,
    challenge_lacks: Option<String>,
    no_challenge: Option<String>,
    aadsts: Option<Vec<u32>>,
    oauth_error: Option<Vec<String>>,
    ews_code: Option<Vec<String>>,
    ews_message: Option<String>,
    graph_code: Option<Vec<String>>,
    graph_message: Option<String>,
    reply_code: Option<Vec<String>>,
    reply_enhanced: Option<Vec<String>>,
    reply_text: Option<String>,
    text: Option<String>,
    lint: Option<Vec<String>>,
    protocol: Option<Vec<Protocol>>,
    hint: Option<Vec<Protocol>>,
    failure: Option<bool>,
    auth: Option<Vec<AuthMode>>,
    app_only: Option<bool>,
}

/// A compiled matcher. All present conditions must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    pub(crate) status: Option<Vec<u16>>,
    pub(crate) header: Option<String>,
    pub(crate) header_value: Option<Regex>,
    pub(crate) diag_code: Option<String>,
    pub(crate) diag_category: Option<String>,
    pub(crate) diag_reason: Option<Regex>,
    pub(crate) challenge: Option<String>,
    pub(crate) challenge_param: Option<String>,
    pub(crate) challenge_param_value: Option<Regex>,
    pub(crate) challenge_lacks: Option<String>,
    pub(crate) no_challenge: Option<String>,
    pub(crate) aadsts: Option<Vec<u32>>,
    pub(crate) oauth_error: Option<Vec<String>>,
    pub(crate) ews_code: Option<Vec<String>>,
    pub(crate) ews_message: Option<Regex>,
    pub(crate) graph_code: Option<Vec<String>>,
    pub(crate) graph_message: Option<Regex>,
    pub(crate) reply_code: Option<Vec<String>>,
    pub(crate) reply_enhanced: Option<Vec<String>>,
    pub(crate) reply_text: Option<Regex>,
    pub(crate) text: Option<Regex>,
    /// The index of `text` in [`Catalog::text_set`].
    pub(crate) text_idx: usize,
    pub(crate) lint: Option<Vec<String>>,
    pub(crate) protocol: Option<Vec<Protocol>>,
    pub(crate) hint: Option<Vec<Protocol>>,
    pub(crate) failure: Option<bool>,
    pub(crate) auth: Option<Vec<AuthMode>>,
    pub(crate) app_only: Option<bool>,
}

/// One catalog entry: a failure signature and what to do about it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stable entry id.
    pub id: String,
    /// Cause id.
    pub cause: String,
    /// Title.
    pub title: String,
    /// Protocols it applies to (empty: any).
    pub protocols: Vec<Protocol>,
    /// Environments it applies to (empty: any).
    pub environments: Vec<Environment>,
    /// Score multiplier.
    pub weight: f32,
    /// Other causes that show the same signature; they are ranked with `cause` by their priors.
    pub differential: Vec<String>,
    /// Whether every matcher of the entry rests on `failure = true` alone (with status, protocol
    /// hints and the like): a catch-all of `fallback.toml`, consulted only when no specific entry
    /// matched.
    pub catch_all: bool,
    /// Plain-words explanation.
    pub explanation: String,
    /// Ordered fix steps.
    pub fix: Vec<String>,
    /// Reference URLs.
    pub references: Vec<String>,
    pub(crate) matchers: Vec<Matcher>,
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The cause vocabulary.
    pub causes: Vec<CauseDef>,
    /// Every entry, in file order.
    pub entries: Vec<Entry>,
    by_cause: HashMap<String, usize>,
    in_differential: HashSet<String>,
    /// Every matcher's `text` regex in one set: the free text is scanned once per diagnosis,
    /// and only the matchers whose pattern the set found run their own regex.
    pub(crate) text_set: regex::RegexSet,
}

fn compile(
    file: &str,
    entry: &str,
    field: &str,
    pattern: &Option<String>,
) -> Result<Option<Regex>, CatalogError> {
    match pattern {
        None => Ok(None),
        Some(p) => Regex::new(p).map(Some).map_err(|e| CatalogError {
            file: file.into(),
            location: format!("entry \"{entry}\", field \"{field}\""),
            message: format!("invalid regular expression: {e}"),
        }),
    }
}

impl Catalog {
    /// Parses and validates a catalog: unknown cause ids, invalid regexes, duplicate entry ids,
    /// entries without matchers and matchers without a signal condition are errors.
    pub fn from_sources(causes: &str, files: &[(&str, &str)]) -> Result<Catalog, CatalogError> {
        let causes: CausesFile = toml::from_str(causes).map_err(|e| CatalogError {
            file: "causes.toml".into(),
            location: e
                .span()
                .map(|s| format!("line {}", line_of(causes, s.start)))
                .unwrap_or_else(|| "file".into()),
            message: e.message().to_owned(),
        })?;
        let mut known = HashSet::new();
        for c in &causes.cause {
            if !(c.prior.is_finite() && c.prior > 0.0) {
                return Err(CatalogError {
                    file: "causes.toml".into(),
                    location: format!("cause \"{}\", field \"prior\"", c.id),
                    message: "prior must be a positive number".into(),
                });
            }
            if !known.insert(c.id.clone()) {
                return Err(CatalogError {
                    file: "causes.toml".into(),
                    location: format!("cause \"{}\"", c.id),
                    message: "duplicate cause id".into(),
                });
            }
        }
        let mut entries = Vec::new();
        let mut ids = HashSet::new();
        for (file, src) in files {
            let parsed: EntriesFile = toml::from_str(src).map_err(|e| CatalogError {
                file: (*file).into(),
                location: e
                    .span()
                    .map(|s| format!("line {}", line_of(src, s.start)))
                    .unwrap_or_else(|| "file".into()),
                message: e.message().to_owned(),
            })?;
            for raw in parsed.entry {
                let err = |field: &str, message: String| CatalogError {
                    file: (*file).into(),
                    location: format!("entry \"{}\", field \"{field}\"", raw.id),
                    message,
                };
                if !ids.insert(raw.id.clone()) {
                    return Err(err(
                        "id",
                        "duplicate entry id; ids must be unique across all catalog files".into(),
                    ));
                }
                if !known.contains(&raw.cause) {
                    return Err(err(
                        "cause",
                        format!(
                            "unknown cause id \"{}\"; add it to catalog/causes.toml or use an existing id",
                            raw.cause
                        ),
                    ));
                }
                if let Some(d) = raw.differential.iter().find(|d| !known.contains(*d)) {
                    return Err(err(
                        "differential",
                        format!("unknown cause id \"{d}\"; add it to catalog/causes.toml"),
                    ));
                }
                if raw.matchers.is_empty() {
                    return Err(err("match", "entry has no [[entry.match]] matcher".into()));
                }
                if raw.fix.is_empty() {
                    return Err(err("fix", "entry has no fix steps".into()));
                }
                if !(raw.weight.is_finite() && raw.weight > 0.0) {
                    return Err(err("weight", "weight must be a positive number".into()));
                }
                let mut matchers = Vec::new();
                for m in &raw.matchers {
                    let signal = m.header.is_some()
                        || m.diag_code.is_some()
                        || m.diag_category.is_some()
                        || m.diag_reason.is_some()
                        || m.challenge.is_some()
                        || m.no_challenge.is_some()
                        || m.aadsts.is_some()
                        || m.oauth_error.is_some()
                        || m.ews_code.is_some()
                        || m.ews_message.is_some()
                        || m.graph_code.is_some()
                        || m.graph_message.is_some()
                        || m.reply_code.is_some()
                        || m.reply_enhanced.is_some()
                        || m.reply_text.is_some()
                        || m.text.is_some()
                        || m.lint.is_some()
                        || m.failure == Some(true);
                    if !signal {
                        return Err(err(
                            "match",
                            "matcher has no signal condition (only status/protocol/auth/app_only); add a header, code, challenge, text or lint condition".into(),
                        ));
                    }
                    let id = raw.id.as_str();
                    matchers.push(Matcher {
                        status: m.status.clone(),
                        header: m.header.clone(),
                        header_value: compile(file, id, "header_value", &m.header_value)?,
                        diag_code: m.diag_code.clone(),
                        diag_category: m.diag_category.clone(),
                        diag_reason: compile(file, id, "diag_reason", &m.diag_reason)?,
                        challenge: m.challenge.clone(),
                        challenge_param: m.challenge_param.clone(),
                        challenge_param_value: compile(
                            file,
                            id,
                            "challenge_param_value",
                            &m.challenge_param_value,
                        )?,
                        challenge_lacks: m.challenge_lacks.clone(),
                        no_challenge: m.no_challenge.clone(),
                        aadsts: m.aadsts.clone(),
                        oauth_error: m.oauth_error.clone(),
                        ews_code: m.ews_code.clone(),
                        ews_message: compile(file, id, "ews_message", &m.ews_message)?,
                        graph_code: m.graph_code.clone(),
                        graph_message: compile(file, id, "graph_message", &m.graph_message)?,
                        reply_code: m.reply_code.clone(),
                        reply_enhanced: m.reply_enhanced.clone(),
                        reply_text: compile(file, id, "reply_text", &m.reply_text)?,
                        text: compile(file, id, "text", &m.text)?,
                        text_idx: 0,
                        lint: m.lint.clone(),
                        protocol: m.protocol.clone(),
                        hint: m.hint.clone(),
                        failure: m.failure,
                        auth: m.auth.clone(),
                        app_only: m.app_only,
                    });
                }
                entries.push(Entry {
                    id: raw.id,
                    cause: raw.cause,
                    title: raw.title,
                    protocols: raw.protocols,
                    environments: raw.environments,
                    weight: raw.weight,
                    catch_all: raw.matchers.iter().all(|m| {
                        m.failure == Some(true)
                            && m.header.is_none()
                            && m.diag_code.is_none()
                            && m.diag_category.is_none()
                            && m.diag_reason.is_none()
                            && m.challenge.is_none()
                            && m.no_challenge.is_none()
                            && m.aadsts.is_none()
                            && m.oauth_error.is_none()
                            && m.ews_code.is_none()
                            && m.ews_message.is_none()
                            && m.graph_code.is_none()
                            && m.graph_message.is_none()
                            && m.reply_code.is_none()
                            && m.reply_enhanced.is_none()
                            && m.reply_text.is_none()
                            && m.text.is_none()
                            && m.lint.is_none()
                    }),
                    differential: raw.differential,
                    explanation: raw.explanation.trim().to_owned(),
                    fix: raw.fix,
                    references: raw.references,
                    matchers,
                });
            }
        }
        let mut by_cause = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            by_cause.entry(e.cause.clone()).or_insert(i);
        }
        let mut in_differential = HashSet::new();
        for e in &entries {
            in_differential.extend(e.differential.iter().cloned());
        }
        let mut patterns = Vec::new();
        for e in &mut entries {
            for m in &mut e.matchers {
                if let Some(t) = &m.text {
                    m.text_idx = patterns.len();
                    patterns.push(t.as_str().to_owned());
                }
            }
        }
        let text_set = regex::RegexSet::new(&patterns).map_err(|e| CatalogError {
            file: "catalog".into(),
            location: "text patterns".into(),
            message: format!("the text patterns do not build one set: {e}"),
        })?;
        Ok(Catalog {
            causes: causes.cause,
            entries,
            by_cause,
            in_differential,
            text_set,
        })
    }

    /// Diagnosable causes of the vocabulary that no entry names (as its cause or among its
    /// differential).
    pub fn uncovered_causes(&self) -> Vec<&str> {
        self.causes
            .iter()
            .filter(|c| {
                c.diagnosable
                    && !self.by_cause.contains_key(&c.id)
                    && !self.in_differential.contains(&c.id)
            })
            .map(|c| c.id.as_str())
            .collect()
    }

    /// The first entry of a cause (its canonical explanation and fix).
    pub fn primary_entry(&self, cause: &str) -> Option<&Entry> {
        self.by_cause.get(cause).and_then(|&i| self.entries.get(i))
    }

    /// The vocabulary entry of a cause.
    pub fn cause(&self, id: &str) -> Option<&CauseDef> {
        self.causes.iter().find(|c| c.id == id)
    }

    /// Whether a cause lies with the endpoint rather than one mailbox (`scope = "endpoint"`).
    pub fn is_endpoint_wide(&self, id: &str) -> bool {
        self.cause(id)
            .is_some_and(|c| c.scope == CauseScope::Endpoint)
    }
}

fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(0, |s| s.matches('\n').count()) + 1
}

static BUILTIN: LazyLock<Result<Catalog, CatalogError>> =
    LazyLock::new(|| Catalog::from_sources(CAUSES_SOURCE, SOURCES));

/// The built-in catalog (validated by this crate's tests).
pub fn builtin() -> Result<&'static Catalog, &'static CatalogError> {
    BUILTIN.as_ref()
}
