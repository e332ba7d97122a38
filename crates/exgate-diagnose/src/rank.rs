//! Matching evidence against the catalog, combination rules, and ranking.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Entry, Matcher};
use crate::evidence::{AuthMode, Environment, Evidence, Parsed, Protocol};
use crate::jwt::{self, Finding, LintContext, Severity, TokenCheck};
use crate::redact::{TokenMode, redact_text};

/// One ranked cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedCause {
    /// Cause id (see `catalog/causes.toml`).
    pub id: String,
    /// The catalog entry that matched best.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entry: String,
    /// Confidence in `0.0..=1.0`.
    pub confidence: f32,
    /// Title.
    pub title: String,
    /// Explanation in plain words.
    #[serde(default)]
    pub explanation: String,
    /// What in the evidence supports this cause.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Ordered fix steps.
    #[serde(default)]
    pub fix: Vec<String>,
    /// Reference URLs.
    #[serde(default)]
    pub references: Vec<String>,
    /// The observation that tells this cause apart from the others listed, and how to make it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// The result of [`diagnose`]: causes ranked most likely first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Ranked causes (empty when nothing points to a failure).
    pub causes: Vec<RankedCause>,
    /// When evidence is thin: the facts that would decide between the top candidates.
    pub decisive_questions: Vec<String>,
    /// Token lint findings, when a token was part of the evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_findings: Vec<Finding>,
    /// The checks made on the token that was part of the evidence, and what each showed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_checks: Vec<TokenCheck>,
}

/// Everything the matchers look at, computed once per diagnosis.
pub(crate) struct Facts<'a> {
    ev: &'a Evidence,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    p: Parsed,
    blob: String,
    protocol: Option<Protocol>,
    /// The protocol as far as the text suggests it (library and exception names, host names);
    /// only the catch-all entries of `fallback.toml` look at it.
    hint: std::cell::OnceCell<Option<Protocol>>,
    /// The context the token was linted in.
    lint_ctx: LintContext,
    /// Whether the evidence shows a failure at all (a status, a code, a negative reply, an
    /// exception name or a failure word); read only when nothing specific matched.
    failure: std::cell::OnceCell<bool>,
    /// Which `text` patterns of the catalog the free text matches (one pass for all).
    text_hits: std::cell::OnceCell<regex::SetMatches>,
    lint: Vec<Finding>,
}

const BLOB_LIMIT: usize = 256 * 1024;

use exgate_wire::ids::{MSA_TENANT_ID, is_guid};

/// Below this score for every cause, a failure counts as unexplained and the catch-alls apply.
const CATCH_ALL_BELOW: f32 = 1.0;

/// AADSTS codes of a second factor or its registration being required.
const MFA_CODES: &[u32] = &[50072, 50074, 50076, 50079, 50158];

/// The most causes a diagnosis lists.
const MAX_CAUSES: usize = 5;

/// The least share of a shared signature's points a candidate cause gets, whatever its place.
const SHARED_FLOOR: f32 = 0.5;

/// How much less each further candidate of a shared signature gets than the one before it.
const PLACE_STEP: f32 = 0.1;

/// How far a candidate's prior moves its share (a fraction of it).
const PRIOR_SPAN: f32 = 0.08;

/// AADSTS codes that only say that something failed ("Error validating credentials",
/// "Provided grant is invalid or malformed"): when a text carries one of them next to a more
/// specific code, the specific code decides and the umbrella is context.
const UMBRELLA_AADSTS: &[u32] = &[70002, 70000, 50000, 50064];

fn clip(s: &str, n: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let mut t: String = one_line.chars().take(n).collect();
        t.push('…');
        t
    }
}

fn head(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = n;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    s.get(..i).unwrap_or("")
}

impl<'a> Facts<'a> {
    pub(crate) fn new(ev: &'a Evidence) -> Self {
        let mut p = ev.parsed.clone();
        let mut headers = Vec::new();
        let mut status = None;
        if let Some(r) = &ev.response {
            status = r.status;
            headers = r
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.clone()))
                .collect();
            let mut limited = r.clone();
            limited.body = head(&r.body, BLOB_LIMIT).to_owned();
            p.merge(Parsed::from_response(&limited));
        }
        let text = head(&ev.text, BLOB_LIMIT);
        // Redirect URLs and form bodies pasted as text are percent-encoded.
        let decoded = if text.contains('%')
            && (text.contains("%3a")
                || text.contains("%3A")
                || text.contains("%2f")
                || text.contains("%2F"))
        {
            Some(crate::evidence::percent_decode(text))
        } else {
            None
        };
        if !text.is_empty() {
            p.merge(Parsed::from_body(text));
        }
        if let Some(d) = &decoded {
            p.merge(Parsed::from_text(d));
        }
        if status.is_none() {
            status = p.status_hints.first().copied();
        }
        let mut blob = String::new();
        blob.push_str(text);
        if let Some(d) = &decoded {
            blob.push('\n');
            blob.push_str(d);
        }
        if let Some(r) = &ev.response {
            blob.push('\n');
            blob.push_str(head(&r.body, BLOB_LIMIT));
            for (n, v) in &headers {
                if n == "location" {
                    blob.push('\n');
                    blob.push_str(&crate::evidence::percent_decode(v));
                }
            }
        }
        for d in &p.diagnostics {
            blob.push('\n');
            blob.push_str(&d.reason);
        }
        for e in &p.entra {
            blob.push('\n');
            blob.push_str(&e.error_description);
        }
        for e in &p.ews {
            blob.push('\n');
            blob.push_str(&e.message);
        }
        for g in &p.graph {
            blob.push('\n');
            blob.push_str(&g.message);
        }
        let protocol = ev.attempt.protocol.or_else(|| {
            if !p.aadsts.is_empty() {
                Some(Protocol::TokenEndpoint)
            } else if !p.replies.is_empty() {
                p.replies.first().map(|r| match r.protocol.as_str() {
                    "smtp" => Protocol::Smtp,
                    "pop" => Protocol::Pop,
                    _ => Protocol::Imap,
                })
            } else {
                None
            }
        });
        let lint_ctx = LintContext {
            url: ev.url_hint(),
            now: ev.now,
            skew_secs: None,
            app_only: ev.attempt.app_only,
            tenant: ev.attempt.tenant.clone(),
            mailbox: ev.attempt.mailbox.clone(),
            protocol: ev.attempt.protocol,
        };
        let lint = match &ev.token {
            Some(c) => jwt::lint(c, &lint_ctx),
            None => Vec::new(),
        };
        Facts {
            ev,
            status,
            headers,
            p,
            blob,
            protocol,
            hint: std::cell::OnceCell::new(),
            lint_ctx,
            failure: std::cell::OnceCell::new(),
            text_hits: std::cell::OnceCell::new(),
            lint,
        }
    }

    /// The protocol, or the one the text suggests (computed on first use).
    fn hint(&self) -> Option<Protocol> {
        *self
            .hint
            .get_or_init(|| self.protocol.or_else(|| protocol_hint(&self.blob)))
    }

    /// Whether the evidence shows a failure at all (computed on first use).
    fn failure(&self) -> bool {
        *self.failure.get_or_init(|| {
            self.failed()
                || FAILURE_WORD
                    .as_ref()
                    .is_some_and(|r| r.is_match(&self.blob))
        })
    }

    fn failed(&self) -> bool {
        self.status.is_some_and(|s| s >= 400)
            || !self.p.diagnostics.is_empty()
            || !self.p.aadsts.is_empty()
            || !self.p.entra.is_empty()
            || !self.p.ews.is_empty()
            || !self.p.graph.is_empty()
            || !self.p.replies.is_empty()
    }
}

static FAILURE_WORD: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)(\b(errors?|exception|fail(s|ed|ure)?|denied|unauthori[sz]ed|forbidden|refused|invalid|unsuccessful|rejected|blocked|disabled|timed? ?out|unable|cannot|can't|could not|not (found|allowed|permitted|authenticated|connected))\b|[a-z](error|exception)\b|-ERR\b|\bNO [A-Z])",
    )
    .ok()
});

/// The protocol a text is about, from names only a client of that protocol prints.
fn protocol_hint(blob: &str) -> Option<Protocol> {
    let l = blob.to_ascii_lowercase();
    let has = |ws: &[&str]| ws.iter().any(|w| l.contains(w));
    if l.contains("aadsts") {
        Some(Protocol::TokenEndpoint)
    } else if has(&["poplib", "pop3", "-err "]) {
        Some(Protocol::Pop)
    } else if has(&["imaplib", "imap"]) {
        Some(Protocol::Imap)
    } else if has(&[
        "smtp",
        "phpmailer",
        "nodemailer",
        "send-mailmessage",
        "system.net.mail",
    ]) {
        Some(Protocol::Smtp)
    } else if l.contains("autodiscover") {
        Some(Protocol::Autodiscover)
    } else if has(&[
        "exchange.asmx",
        "exchangelib",
        "webservices",
        "exchangeservice",
        "ews",
        "soap",
    ]) {
        Some(Protocol::Ews)
    } else if has(&[
        "graph.microsoft.com",
        "msgraph",
        "odataerror",
        "microsoft.graph",
    ]) {
        Some(Protocol::Graph)
    } else if has(&[
        "msal",
        "login.microsoftonline",
        "/oauth2/",
        "invalid_grant",
        "invalid_client",
    ]) {
        Some(Protocol::TokenEndpoint)
    } else {
        None
    }
}

fn any_eq(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(v))
}

/// Evaluates one matcher; returns its points and evidence lines when all conditions hold.
fn eval(m: &Matcher, f: &Facts<'_>) -> Option<(f32, Vec<String>)> {
    let mut pts = 0.0f32;
    let mut ev: Vec<String> = Vec::new();
    if let Some(st) = &m.status {
        let s = f.status?;
        if !st.contains(&s) {
            return None;
        }
        pts += 0.5;
        ev.push(format!("HTTP status {s}"));
    }
    if let Some(h) = &m.header {
        let hl = h.to_ascii_lowercase();
        let found = f
            .headers
            .iter()
            .find(|(n, v)| *n == hl && m.header_value.as_ref().is_none_or(|r| r.is_match(v)))?;
        pts += if m.header_value.is_some() { 2.0 } else { 1.0 };
        ev.push(format!("header {}: {}", h, clip(&found.1, 120)));
    }
    if m.diag_code.is_some() || m.diag_category.is_some() || m.diag_reason.is_some() {
        let d = f.p.diagnostics.iter().find(|d| {
            m.diag_code
                .as_ref()
                .is_none_or(|c| d.code.as_deref() == Some(c.as_str()))
                && m.diag_category.as_ref().is_none_or(|c| {
                    d.category
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(c))
                })
                && m.diag_reason.as_ref().is_none_or(|r| r.is_match(&d.reason))
        })?;
        pts += if m.diag_code.is_some() { 2.0 } else { 0.0 }
            + if m.diag_category.is_some() { 1.0 } else { 0.0 }
            + if m.diag_reason.is_some() { 3.0 } else { 0.0 };
        ev.push(format!(
            "x-ms-diagnostics {} {}: {}",
            d.code.as_deref().unwrap_or("-"),
            d.category.as_deref().unwrap_or("-"),
            clip(&d.reason, 160)
        ));
    }
    if let Some(scheme) = &m.challenge {
        let c = f.p.challenges.iter().find(|c| {
            c.is(scheme)
                && m.challenge_param.as_ref().is_none_or(|p| {
                    c.param(p).is_some_and(|v| {
                        m.challenge_param_value
                            .as_ref()
                            .is_none_or(|r| r.is_match(v))
                    })
                })
                && m.challenge_lacks
                    .as_ref()
                    .is_none_or(|p| c.param(p).is_none())
        })?;
        pts +=
            1.0 + if m.challenge_param.is_some() {
                1.0
            } else {
                0.0
            } + if m.challenge_lacks.is_some() {
                1.5
            } else {
                0.0
            };
        let mut s = format!("WWW-Authenticate: {} challenge", c.scheme);
        if let Some(p) = &m.challenge_param {
            s.push_str(&format!(" with {p}={}", clip(c.param(p).unwrap_or(""), 80)));
        }
        if let Some(p) = &m.challenge_lacks {
            s.push_str(&format!(" without {p}"));
        }
        ev.push(s);
    }
    if let Some(scheme) = &m.no_challenge {
        if f.p.challenges.is_empty() || f.p.challenges.iter().any(|c| c.is(scheme)) {
            return None;
        }
        pts += 1.5;
        ev.push(format!("no {scheme} challenge offered"));
    }
    if let Some(codes) = &m.aadsts {
        let c = f.p.aadsts.iter().find(|c| codes.contains(c))?;
        let umbrella =
            UMBRELLA_AADSTS.contains(c) && f.p.aadsts.iter().any(|o| !UMBRELLA_AADSTS.contains(o));
        pts += if umbrella { 1.0 } else { 4.0 };
        ev.push(format!("AADSTS{c}"));
    }
    if let Some(errs) = &m.oauth_error {
        let e = f.p.oauth_errors.iter().find(|e| any_eq(errs, e))?;
        pts += 0.5;
        ev.push(format!("OAuth error {e}"));
    }
    if m.ews_code.is_some() || m.ews_message.is_some() {
        let e = f.p.ews.iter().find(|e| {
            m.ews_code.as_ref().is_none_or(|c| any_eq(c, &e.code))
                && m.ews_message
                    .as_ref()
                    .is_none_or(|r| r.is_match(&e.message) || r.is_match(&f.blob))
        })?;
        pts += if m.ews_code.is_some() { 3.0 } else { 0.0 }
            + if m.ews_message.is_some() { 1.5 } else { 0.0 };
        ev.push(if e.message.is_empty() {
            format!("EWS {}", e.code)
        } else {
            format!("EWS {}: {}", e.code, clip(&e.message, 140))
        });
    }
    if m.graph_code.is_some() || m.graph_message.is_some() {
        let g = f.p.graph.iter().find(|g| {
            m.graph_code.as_ref().is_none_or(|c| any_eq(c, &g.code))
                && m.graph_message
                    .as_ref()
                    .is_none_or(|r| r.is_match(&g.message) || r.is_match(&f.blob))
        })?;
        pts += if m.graph_code.is_some() { 2.0 } else { 0.0 }
            + if m.graph_message.is_some() { 2.0 } else { 0.0 };
        ev.push(format!("Graph error {}: {}", g.code, clip(&g.message, 140)));
    }
    if m.reply_code.is_some() || m.reply_enhanced.is_some() || m.reply_text.is_some() {
        let r = f.p.replies.iter().find(|r| {
            m.reply_code.as_ref().is_none_or(|c| any_eq(c, &r.code))
                && m.reply_enhanced
                    .as_ref()
                    .is_none_or(|c| r.enhanced.as_deref().is_some_and(|e| any_eq(c, e)))
                && m.reply_text.as_ref().is_none_or(|t| t.is_match(&r.text))
        })?;
        pts += if m.reply_code.is_some() { 1.0 } else { 0.0 }
            + if m.reply_enhanced.is_some() { 2.0 } else { 0.0 }
            + if m.reply_text.is_some() { 2.0 } else { 0.0 };
        ev.push(format!(
            "{} reply {} {}{}",
            r.protocol.to_uppercase(),
            r.code,
            r.enhanced
                .as_deref()
                .map(|e| format!("{e} "))
                .unwrap_or_default(),
            clip(&r.text, 120)
        ));
    }
    if let Some(t) = &m.text {
        if !f.text_hits.get().is_none_or(|h| h.matched(m.text_idx)) {
            return None;
        }
        let hit = t.find(&f.blob)?;
        pts += 3.0;
        ev.push(format!("text: \"{}\"", clip(hit.as_str(), 120)));
    }
    if let Some(codes) = &m.lint {
        let l = f.lint.iter().find(|l| any_eq(codes, &l.code))?;
        pts += 3.0;
        ev.push(format!("token: {}", l.message));
    }
    if let Some(ps) = &m.protocol {
        // Strict: a matcher that names a protocol needs it known.
        let p = f.protocol?;
        if !ps.contains(&p) {
            return None;
        }
        pts += 0.5;
    }
    if let Some(ps) = &m.hint {
        let p = f.hint()?;
        if !ps.contains(&p) {
            return None;
        }
        pts += 0.5;
    }
    if m.failure == Some(true) {
        if !f.failure() {
            return None;
        }
        pts += 0.2;
    }
    if let Some(auths) = &m.auth {
        let a = f.ev.attempt.auth?;
        if !auths.contains(&a) {
            return None;
        }
        pts += 1.0;
        ev.push(format!("authentication: {a:?}"));
    }
    if let Some(want) = m.app_only {
        let is =
            f.ev.attempt
                .app_only
                .or_else(|| f.ev.token.as_ref().map(|t| t.is_app_only()))?;
        if is != want {
            return None;
        }
        pts += 0.5;
    }
    Some((pts, ev))
}

fn entry_applies(e: &Entry, f: &Facts<'_>) -> bool {
    // Entra ID's own answer in the evidence (a sign-in made alongside the failed call) lets the
    // token endpoint's signatures read it, whatever the call's protocol.
    (e.protocols.is_empty()
        || f.protocol.is_none_or(|p| e.protocols.contains(&p))
        || (e.protocols.contains(&Protocol::TokenEndpoint) && !f.p.entra.is_empty()))
        && (e.environments.is_empty()
            || f.ev
                .attempt
                .environment
                .is_none_or(|x| e.environments.contains(&x)))
}

struct Acc {
    best: f32,
    sum: f32,
    factor: f32,
    entry: Option<usize>,
    evidence: Vec<String>,
    /// Whether a signature of this cause itself matched (not only one it shares with others).
    direct: bool,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            best: 0.0,
            sum: 0.0,
            factor: 1.0,
            entry: None,
            evidence: Vec::new(),
            direct: false,
        }
    }
}

impl Acc {
    fn add(&mut self, pts: f32, entry: Option<usize>, ev: Vec<String>) {
        self.direct = true;
        self.add_shared(pts, entry, ev);
    }

    /// Points from a signature this cause shares with others (a differential candidate).
    fn add_shared(&mut self, pts: f32, entry: Option<usize>, ev: Vec<String>) {
        if entry.is_some() && (pts > self.best || self.entry.is_none()) {
            self.entry = entry;
        }
        self.best = self.best.max(pts);
        self.sum += pts;
        for e in ev {
            if !self.evidence.contains(&e) {
                self.evidence.push(e);
            }
        }
    }

    /// The best signal counts fully; further signals for the same cause add a quarter.
    fn score(&self) -> f32 {
        (self.best + 0.25 * (self.sum - self.best)) * self.factor
    }
}

/// Diagnoses evidence with the built-in catalog.
pub fn diagnose(ev: &Evidence) -> Diagnosis {
    match crate::catalog::builtin() {
        Ok(c) => diagnose_with(c, ev),
        Err(_) => Diagnosis::default(),
    }
}

/// Diagnoses evidence with a given catalog.
pub fn diagnose_with(cat: &Catalog, ev: &Evidence) -> Diagnosis {
    let f = Facts::new(ev);
    let _ = f.text_hits.set(cat.text_set.matches(&f.blob));
    let mut acc: HashMap<String, Acc> = HashMap::new();
    score_entries(cat, &f, &mut acc, false);
    combine(&f, &mut acc);
    // Token lint findings that point at a cause count as evidence on a failure.
    let failed = f.failed() || ev.response.is_none();
    if failed {
        for l in &f.lint {
            if let Some(c) = &l.cause {
                let pts = match l.severity {
                    Severity::Error => 5.0,
                    Severity::Warning => 1.5,
                    Severity::Info => 0.0,
                };
                if pts > 0.0 {
                    acc.entry(c.clone()).or_default().add(
                        pts,
                        None,
                        vec![format!("token: {}", l.message)],
                    );
                }
            }
        }
    }
    rule_out_by_token(&f, &mut acc);
    rule_out_by_mechanism(&f, &mut acc);
    // Never silent on a failure: when no specific signature matched, the catch-alls list the
    // usual causes for what is known of the protocol.
    if acc.values().all(|a| a.score() < CATCH_ALL_BELOW) && f.failure() {
        let mut more: HashMap<String, Acc> = HashMap::new();
        score_entries(cat, &f, &mut more, true);
        rule_out_by_token(&f, &mut more);
        rule_out_by_mechanism(&f, &mut more);
        for (cause, a) in more {
            let slot = acc.entry(cause).or_default();
            let score = a.score();
            if a.direct {
                slot.add(score, a.entry, a.evidence);
            } else {
                slot.add_shared(score, a.entry, a.evidence);
            }
        }
    }
    let token_checks = match &ev.token {
        Some(c) => jwt::checks(c, &f.lint_ctx, &f.lint),
        None => Vec::new(),
    };
    let mut d = rank(cat, acc, f.lint);
    d.token_checks = token_checks;
    d
}

static OAUTH_WORDS: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)(xoauth2|\boauth ?2?\b|access[ _]token|\bbearer\b)").ok()
});
static PASSWORD_WORDS: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)(auth (login|plain)\b|\bLOGIN \S+ \S+|app password|\bbasic auth)").ok()
});

/// What the sign-in mechanism rules out, when the attempt or the text shows only one: a client
/// that sent a token cannot have a wrong password, one that sent a password cannot lack a role.
fn rule_out_by_mechanism(f: &Facts<'_>, acc: &mut HashMap<String, Acc>) {
    // Known from the attempt: the other mechanism's causes are out. Read from the text: less sure.
    let (oauth, password, factor) = match f.ev.attempt.auth {
        Some(AuthMode::Bearer | AuthMode::Xoauth2 | AuthMode::BearerProbe) => (true, false, 0.0),
        Some(AuthMode::Basic | AuthMode::Ntlm | AuthMode::Negotiate) => (false, true, 0.0),
        Some(_) => return,
        None => (
            OAUTH_WORDS.as_ref().is_some_and(|r| r.is_match(&f.blob)),
            PASSWORD_WORDS.as_ref().is_some_and(|r| r.is_match(&f.blob)),
            0.3,
        ),
    };
    let out: &[&str] = if oauth && !password {
        &[
            "wrong_credentials",
            "basic_auth_disabled",
            "mfa_required",
            "account_locked",
        ]
    } else if password && !oauth {
        &[
            "wrong_audience",
            "missing_application_permission",
            "missing_permission",
            "wrong_service_principal_object_id",
            "token_user_mismatch",
            "token_expired",
            "token_malformed",
            "delegated_instead_of_application",
            "graph_permission_instead_of_ews",
        ]
    } else {
        &[]
    };
    for c in out {
        suppress(acc, c, factor);
    }
}

/// Where the caller holds the token, its claims decide between causes a shared signature
/// leaves open: a cause the token rules out is dropped.
fn rule_out_by_token(f: &Facts<'_>, acc: &mut HashMap<String, Acc>) {
    let Some(t) = &f.ev.token else { return };
    let has = |code: &str| {
        f.lint
            .iter()
            .any(|l| l.code == code || l.code.starts_with(code))
    };
    // A token with application roles is not a delegated-only configuration.
    if !t.roles.is_empty() {
        suppress(acc, "delegated_instead_of_application", 0.0);
    }
    // Its audience matched the target: not a wrong-audience or Graph-instead-of-EWS case.
    if t.aud.is_some() && !has("aud_") {
        // (Kept at a tenth: the audience check compares kinds of host, not every name.)
        suppress(acc, "wrong_audience", 0.1);
        suppress(acc, "graph_permission_instead_of_ews", 0.1);
    }
    // Its permissions cover the call: not a missing permission.
    if !has("no_permissions") && !has("missing_") && !has("scp_without_roles") {
        let (app, user) = (t.is_app_only(), !t.is_app_only());
        if app && f.lint_ctx.protocol.is_some() {
            suppress(acc, "missing_application_permission", 0.0);
        }
        if user && f.lint_ctx.protocol.is_some() {
            suppress(acc, "missing_permission", 0.0);
        }
    }
    // Not expired at the time of the failure.
    if f.ev.now.is_some() && t.exp.is_some() && !has("expired") {
        suppress(acc, "token_expired", 0.0);
    }
    // Issued by an organisation's tenant, not the personal-account one.
    if t.tid
        .as_deref()
        .is_some_and(|tid| !tid.eq_ignore_ascii_case(MSA_TENANT_ID))
    {
        suppress(acc, "personal_account_unsupported_endpoint", 0.0);
    }
    // The token's user is the mailbox.
    if let (Some(m), Some(u)) = (&f.ev.attempt.mailbox, &t.upn)
        && m.eq_ignore_ascii_case(u)
    {
        suppress(acc, "token_user_mismatch", 0.0);
    }
    // A token was sent: the client did authenticate with OAuth, so neither a password nor Basic
    // is the matter.
    suppress(acc, "wrong_credentials", 0.0);
    suppress(acc, "basic_auth_disabled", 0.0);
}

/// Scores every entry that applies (the catch-alls, or every other entry) into `acc`.
fn score_entries(cat: &Catalog, f: &Facts<'_>, acc: &mut HashMap<String, Acc>, catch_all: bool) {
    for (i, e) in cat.entries.iter().enumerate() {
        if e.catch_all != catch_all || !entry_applies(e, f) {
            continue;
        }
        // The catch-all for an unknown protocol stands back when the protocol is known.
        if e.catch_all && f.hint().is_some() && e.matchers.iter().all(|m| m.hint.is_none()) {
            continue;
        }
        let best = e
            .matchers
            .iter()
            .filter_map(|m| eval(m, f))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((pts, lines)) = best {
            let pts = pts * e.weight;
            if e.differential.is_empty() {
                acc.entry(e.cause.clone())
                    .or_default()
                    .add(pts, Some(i), lines);
                continue;
            }
            // A shared signature: every candidate gets the points, scaled by its place in the
            // entry's list (most frequent real cause first, from the threads where the signature
            // appeared) and, more gently, by its prior across all public reports.
            let prior = |c: &str| cat.cause(c).map_or(1.0, |d| d.prior);
            let top = std::iter::once(&e.cause)
                .chain(&e.differential)
                .map(|c| prior(c))
                .fold(f32::MIN_POSITIVE, f32::max);
            for (k, c) in std::iter::once(&e.cause).chain(&e.differential).enumerate() {
                let primary = k == 0;
                // The entry's own cause keeps its full points; the others share by place and prior.
                let share = if primary {
                    1.0
                } else {
                    let place = (1.0 - PLACE_STEP * k as f32).max(SHARED_FLOOR);
                    place * (1.0 - PRIOR_SPAN + PRIOR_SPAN * prior(c) / top)
                };
                let slot = acc.entry(c.clone()).or_default();
                if primary {
                    slot.add(pts * share, Some(i), lines.clone());
                } else {
                    slot.add_shared(pts * share, None, lines.clone());
                }
            }
        }
    }
}

/// Whether a signature of `cause` itself matched.
fn direct(acc: &HashMap<String, Acc>, cause: &str) -> bool {
    acc.get(cause).is_some_and(|a| a.direct)
}

fn suppress(acc: &mut HashMap<String, Acc>, cause: &str, factor: f32) {
    if let Some(a) = acc.get_mut(cause) {
        a.factor *= factor;
    }
}

/// Rules that combine several facts; they boost the cause the combination proves and suppress
/// the ones it rules out.
fn combine(f: &Facts<'_>, acc: &mut HashMap<String, Acc>) {
    let ch = &f.p.challenges;
    let has = |s: &str| ch.iter().any(|c| c.is(s));
    let auth = f.ev.attempt.auth;
    // Basic credentials + 401 + only Bearer offered => Basic is off, the password may be fine.
    if auth == Some(AuthMode::Basic) && f.status == Some(401) && has("bearer") && !has("basic") {
        acc.entry("basic_auth_disabled".into()).or_default().add(
            9.0,
            None,
            vec!["Basic credentials were sent, the 401 offers only a Bearer challenge".into()],
        );
        suppress(acc, "wrong_credentials", 0.2);
    }
    // Basic still offered and Basic credentials rejected: the password is the suspect.
    if auth == Some(AuthMode::Basic)
        && f.status == Some(401)
        && has("basic")
        && f.p.diagnostics.is_empty()
    {
        acc.entry("wrong_credentials".into()).or_default().add(
            3.0,
            None,
            vec!["Basic credentials were rejected although Basic is still offered".into()],
        );
    }
    // An https audience on a request Exchange received as http: TLS offloading, not a wrong host.
    if direct(acc, "ssl_offloading") {
        suppress(acc, "wrong_audience", 0.3);
    }
    // A Graph-audience token on EWS: the permissions were granted on the wrong API.
    if direct(acc, "graph_permission_instead_of_ews") {
        suppress(acc, "wrong_audience", 0.4);
        suppress(acc, "missing_application_permission", 0.5);
    }
    // Delegated scopes on an app-only token: the permission type is wrong, not just missing.
    if direct(acc, "delegated_instead_of_application") {
        suppress(acc, "missing_application_permission", 0.5);
        suppress(acc, "missing_permission", 0.5);
    }
    // An app-only token with no roles: not consented / not granted.
    if let Some(t) = &f.ev.token
        && t.roles.is_empty()
        && t.scp.is_empty()
        && f.failed()
    {
        acc.entry("missing_application_permission".into())
            .or_default()
            .add(
                2.0,
                None,
                vec!["the token carries no roles and no scp".into()],
            );
    }
    // HMA probe answered without authorization_uri: the server does not offer Entra ID.
    if auth == Some(AuthMode::BearerProbe)
        && f.status == Some(401)
        && ch
            .iter()
            .any(|c| c.is("bearer") && c.param("authorization_uri").is_none())
    {
        acc.entry("oauth_not_enabled_onprem".into())
            .or_default()
            .add(
                5.0,
                None,
                vec![
                    "the empty Bearer probe got a Bearer challenge without authorization_uri"
                        .into(),
                ],
            );
    }
    // App-only EWS without ExchangeImpersonation.
    if f.ev.attempt.app_only == Some(true)
        && f.protocol == Some(Protocol::Ews)
        && f.ev.attempt.impersonation_header == Some(false)
        && f.failed()
    {
        acc.entry("missing_impersonation_header".into())
            .or_default()
            .add(
                3.0,
                None,
                vec!["app-only EWS request without an ExchangeImpersonation header".into()],
            );
    }
    // 2000003 "Expected 'https://A'. Actual 'https://B'" with two on-premises names: the token
    // was issued for the name the client used, and Exchange received the request under another;
    // a publishing rule or reverse proxy forwards one name to another ([HMA] troubleshooting).
    if let Some(m) = f.p.diagnostics.iter().find_map(|d| d.audience_mismatch())
        && m.is_other_host()
    {
        let (aud, seen) = m.hosts();
        if is_microsoft_host(&aud) || is_microsoft_host(&seen) {
            suppress(acc, "publishing_name_mismatch", 0.2);
        } else {
            acc.entry("publishing_name_mismatch".into())
                .or_default()
                .add(
                    5.0,
                    None,
                    vec![format!(
                        "the token is for {}, Exchange received the request as {}",
                        clip(&aud, 80),
                        clip(&seen, 80)
                    )],
                );
            suppress(acc, "wrong_audience", 0.5);
        }
    }
    // A publishing rule sits in front of on-premises Exchange: when every host the evidence
    // names is a Microsoft cloud host and nothing says on premises, it is not a candidate.
    if acc.contains_key("publishing_name_mismatch")
        && f.ev.attempt.environment != Some(Environment::OnPremises)
    {
        let hosts = named_hosts(&f.blob);
        if !hosts.is_empty() && hosts.iter().all(|h| is_microsoft_host(h)) {
            suppress(acc, "publishing_name_mismatch", 0.0);
        }
    }
    // AADSTS50001/500011 naming a non-Microsoft URL: an on-premises namespace missing from the
    // SPNs of the Exchange principal; naming a Microsoft resource: a wrong resource.
    if f.p.aadsts.iter().any(|c| *c == 50001 || *c == 500011)
        && let Some(host) = named_resource_host(&f.blob)
    {
        if is_microsoft_host(&host) {
            suppress(acc, "spn_missing", 0.2);
        } else {
            acc.entry("spn_missing".into()).or_default().add(
                3.0,
                None,
                vec![format!(
                    "the resource named is the non-Microsoft host {host}"
                )],
            );
            suppress(acc, "resource_not_found", 0.4);
        }
    }
    // "Application with identifier 'X' was not found": an X that is not one GUID is not an
    // application (client) id at all (a name, an object id pasted twice, a secret).
    if let Some(id) = named_application_id(&f.blob)
        && !is_guid(&id)
    {
        acc.entry("wrong_client_id".into()).or_default().add(
            6.0,
            None,
            vec![format!(
                "the identifier '{}' is not an application (client) id",
                clip(&id, 60)
            )],
        );
    }
    // AADSTS70002 "Error validating credentials" is about the client's credential unless the
    // request was a password grant; its companion 50064 then does not mean a wrong password.
    // A user-credential code beside it (50126, 50053, …) shows it was a password grant.
    const USER_CODES: &[u32] = &[50126, 50053, 50034, 50055, 50057, 50076, 50079, 50173];
    if f.p.aadsts.contains(&70002)
        && auth != Some(AuthMode::Password)
        && !f.p.aadsts.iter().any(|c| USER_CODES.contains(c))
    {
        suppress(acc, "wrong_credentials", 0.4);
        suppress(acc, "federated_user_ropc", 0.4);
    }
    // AUTH was refused (535) and the session went on to MAIL unauthenticated (5.7.57): the client
    // did try to authenticate, and a policy blocking the sign-in is the documented cause.
    let replies = &f.p.replies;
    if replies
        .iter()
        .any(|r| r.enhanced.as_deref() == Some("5.7.57"))
        && replies.iter().any(|r| r.code == "535")
    {
        acc.entry("conditional_access_blocked".into())
            .or_default()
            .add(
                4.0,
                None,
                vec![
                "AUTH was refused (535) before MAIL FROM was refused as unauthenticated (5.7.57)"
                    .into(),
            ],
            );
        suppress(acc, "smtp_auth_not_attempted", 0.3);
    }
    // Entra ID accepted the same password: the mail server refused it for another reason, so
    // the account's own causes are out and the server's switches are in.
    if f.ev.attempt.password_accepted == Some(true) {
        for c in [
            "wrong_credentials",
            "account_locked",
            "account_disabled",
            "password_expired",
            "user_not_found",
        ] {
            suppress(acc, c, 0.0);
        }
        // A second factor asked after the password explains the refusal (a password-only client
        // cannot answer it); when the protocol's Basic is off too, the challenge says so.
        let mfa = f.p.aadsts.iter().any(|c| MFA_CODES.contains(c));
        if !mfa {
            suppress(acc, "mfa_required", 0.0);
        }
        if !mfa {
            let switch = if f.protocol == Some(Protocol::Smtp) {
                "smtp_auth_disabled"
            } else {
                "basic_auth_disabled"
            };
            let why = || vec!["Entra ID accepted the same user name and password".to_owned()];
            acc.entry(switch.into()).or_default().add(4.0, None, why());
            if switch == "smtp_auth_disabled" {
                acc.entry("basic_auth_disabled".into())
                    .or_default()
                    .add(3.0, None, why());
            }
        }
    }
    // A policy that scopes the app out explains an access denied better than a missing role.
    if direct(acc, "application_access_policy_denied") {
        suppress(acc, "missing_application_permission", 0.4);
    }
    // A 5xx that carries a specific EWS or Graph error code is that error, not a transient
    // fault of the server (EWS answers most request errors with 500 and a SOAP fault).
    const TRANSIENT_CODES: &[&str] = &[
        "ErrorInternalServerTransientError",
        "ErrorServerBusy",
        "ErrorMailboxStoreUnavailable",
        "ErrorMailboxMoveInProgress",
        "ErrorConnectionFailed",
        "ErrorInternalServerError",
        "ErrorProxyRequestProcessingFailed",
        "ErrorTimeoutExpired",
    ];
    let specific_code =
        f.p.ews
            .iter()
            .map(|e| e.code.as_str())
            .chain(f.p.graph.iter().map(|g| g.code.as_str()))
            .any(|c| !TRANSIENT_CODES.contains(&c) && !c.eq_ignore_ascii_case("UnknownError"));
    if specific_code {
        suppress(acc, "service_side_transient", 0.5);
    }
    // Throttling signals dominate generic server errors.
    if direct(acc, "throttled") {
        suppress(acc, "service_side_transient", 0.5);
    }
    // A specific AADSTS / diagnostics cause makes generic "wrong credentials" text less likely.
    let specific = acc
        .iter()
        .any(|(k, a)| k != "wrong_credentials" && a.score() >= 4.0);
    if specific
        && let Some(a) = acc.get("wrong_credentials")
        && a.score() < 4.0
    {
        suppress(acc, "wrong_credentials", 0.5);
    }
}

fn rank(cat: &Catalog, acc: HashMap<String, Acc>, lint: Vec<Finding>) -> Diagnosis {
    let mut scored: Vec<(String, f32, Acc)> = acc
        .into_iter()
        .map(|(k, a)| (k, a.score(), a))
        .filter(|(_, s, _)| *s > 0.05)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total: f32 = scored.iter().map(|(_, s, _)| s).sum();
    let top = scored.first().map_or(0.0, |(_, s, _)| *s);
    let strength = 1.0 - (-top / 3.0).exp();
    scored.truncate(MAX_CAUSES);
    let raw_top = if total > 0.0 {
        top / total * strength
    } else {
        0.0
    };
    let calibrated_top = calibrate(raw_top);
    let rest: f32 = scored.iter().skip(1).map(|(_, s, _)| s).sum();
    let mut causes = Vec::new();
    for (i, (id, score, a)) in scored.iter().enumerate() {
        let entry = a
            .entry
            .and_then(|i| cat.entries.get(i))
            .or_else(|| cat.primary_entry(id));
        let Some(entry) = entry else { continue };
        // The top cause gets the calibrated probability of being the true one; the others share
        // what is left in proportion to their scores, none above the top.
        let conf = if i == 0 {
            calibrated_top
        } else if rest > 0.0 {
            ((1.0 - calibrated_top) * score / rest).min(calibrated_top)
        } else {
            0.0
        };
        causes.push(RankedCause {
            id: id.clone(),
            entry: entry.id.clone(),
            confidence: (conf * 100.0).round() / 100.0,
            title: entry.title.clone(),
            explanation: entry.explanation.clone(),
            evidence: a
                .evidence
                .iter()
                .map(|e| redact_text(e, TokenMode::Remove))
                .collect(),
            fix: entry.fix.clone(),
            references: entry.references.clone(),
            check: cat
                .cause(id)
                .and_then(|d| d.check.clone().or_else(|| d.question.clone())),
        });
    }
    let mut decisive_questions = Vec::new();
    // Thin: several candidates and no clear winner, or one weakly supported candidate (judged on
    // the raw share of the score, before calibration).
    let thin = match causes.len() {
        0 => false,
        1 => raw_top < 0.35,
        _ => raw_top < 0.6 || scored.get(1).is_some_and(|(_, b, _)| *b >= 0.6 * top),
    };
    if thin {
        for c in causes.iter().take(3) {
            if let Some(q) = cat.cause(&c.id).and_then(|d| d.question.clone()) {
                decisive_questions.push(format!("{}: {q}", c.id));
            }
        }
    }
    Diagnosis {
        causes,
        decisive_questions,
        token_findings: lint,
        token_checks: Vec::new(),
    }
}

/// The raw confidence of the top cause (its share of the score, times the strength of the
/// evidence) mapped to how often a top cause of that raw confidence was the true cause on the
/// development part of the corpus of real reports (docs/diagnose.md, "Calibration").
const CALIBRATION: &[(f32, f32)] = &[
    (0.0, 0.05),
    (0.1, 0.26),
    (0.3, 0.62),
    (0.5, 0.85),
    (0.7, 0.97),
    (1.0, 0.98),
];

fn calibrate(raw: f32) -> f32 {
    let raw = raw.clamp(0.0, 1.0);
    let mut out = raw;
    for w in CALIBRATION.windows(2) {
        if let [(x0, y0), (x1, y1)] = w
            && raw >= *x0
            && raw <= *x1
        {
            out = y0 + (y1 - y0) * (raw - x0) / (x1 - x0);
            break;
        }
    }
    (out * 100.0).round() / 100.0
}

/// A Microsoft cloud host (Exchange Online, Graph, Entra ID), not an on-premises name.
fn is_microsoft_host(host: &str) -> bool {
    let host = host.split(':').next().unwrap_or(host);
    [
        "microsoft.com",
        "office365.com",
        "office.com",
        "outlook.com",
        "windows.net",
        "microsoftonline.com",
    ]
    .iter()
    .any(|d| host == *d || host.ends_with(&format!(".{d}")))
}

fn named_application_id(blob: &str) -> Option<String> {
    static NAMED: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)application with identifier '?([^'\s]+)'? was not found").ok()
    });
    NAMED
        .as_ref()?
        .captures(blob)?
        .get(1)
        .map(|m| m.as_str().to_owned())
}

/// Every host of an `http(s)://` URL in the text, lower case.
fn named_hosts(blob: &str) -> Vec<String> {
    static URL: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"(?i)https?://([a-z0-9.-]+)").ok());
    let Some(re) = URL.as_ref() else {
        return Vec::new();
    };
    re.captures_iter(blob)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().to_ascii_lowercase())
        .collect()
}

fn named_resource_host(blob: &str) -> Option<String> {
    static NAMED: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)(?:application|resource principal) named https?://([a-z0-9.-]+)")
            .ok()
    });
    NAMED
        .as_ref()?
        .captures(blob)?
        .get(1)
        .map(|m| m.as_str().to_ascii_lowercase())
}
