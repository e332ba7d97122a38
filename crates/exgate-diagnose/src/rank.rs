//! Matching evidence against the catalog, combination rules, and ranking.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Entry, Matcher};
use crate::evidence::{AuthMode, Evidence, Parsed, Protocol};
use crate::jwt::{self, Finding, LintContext, Severity};
use crate::redact::{TokenMode, redact_text};

/// One ranked cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedCause {
    /// Cause id (see `catalog/causes.toml`).
    pub id: String,
    /// The catalog entry that matched best.
    pub entry: String,
    /// Confidence in `0.0..=1.0`.
    pub confidence: f32,
    /// Title.
    pub title: String,
    /// Explanation in plain words.
    pub explanation: String,
    /// What in the evidence supports this cause.
    pub evidence: Vec<String>,
    /// Ordered fix steps.
    pub fix: Vec<String>,
    /// Reference URLs.
    pub references: Vec<String>,
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
}

/// Everything the matchers look at, computed once per diagnosis.
pub(crate) struct Facts<'a> {
    ev: &'a Evidence,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    p: Parsed,
    blob: String,
    protocol: Option<Protocol>,
    lint: Vec<Finding>,
}

const BLOB_LIMIT: usize = 256 * 1024;

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
        let lint = match &ev.token {
            Some(c) => jwt::lint(
                c,
                &LintContext {
                    url: ev.url_hint(),
                    now: ev.now,
                    skew_secs: None,
                    app_only: ev.attempt.app_only,
                    tenant: ev.attempt.tenant.clone(),
                    mailbox: ev.attempt.mailbox.clone(),
                },
            ),
            None => Vec::new(),
        };
        Facts {
            ev,
            status,
            headers,
            p,
            blob,
            protocol,
            lint,
        }
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
        pts += 4.0;
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
    (e.protocols.is_empty() || f.protocol.is_none_or(|p| e.protocols.contains(&p)))
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
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            best: 0.0,
            sum: 0.0,
            factor: 1.0,
            entry: None,
            evidence: Vec::new(),
        }
    }
}

impl Acc {
    fn add(&mut self, pts: f32, entry: Option<usize>, ev: Vec<String>) {
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
    let mut acc: HashMap<String, Acc> = HashMap::new();
    for (i, e) in cat.entries.iter().enumerate() {
        if !entry_applies(e, &f) {
            continue;
        }
        let best = e
            .matchers
            .iter()
            .filter_map(|m| eval(m, &f))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((pts, lines)) = best {
            acc.entry(e.cause.clone())
                .or_default()
                .add(pts * e.weight, Some(i), lines);
        }
    }
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
    rank(cat, acc, f.lint)
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
    if acc.contains_key("ssl_offloading") {
        suppress(acc, "wrong_audience", 0.3);
    }
    // A Graph-audience token on EWS: the permissions were granted on the wrong API.
    if acc.contains_key("graph_permission_instead_of_ews") {
        suppress(acc, "wrong_audience", 0.4);
        suppress(acc, "missing_application_permission", 0.5);
    }
    // Delegated scopes on an app-only token: the permission type is wrong, not just missing.
    if acc.contains_key("delegated_instead_of_application") {
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
    // AADSTS50001/500011 naming a non-Microsoft URL: an on-premises namespace missing from the
    // SPNs of the Exchange principal; naming a Microsoft resource: a wrong resource.
    if f.p.aadsts.iter().any(|c| *c == 50001 || *c == 500011)
        && let Some(host) = named_resource_host(&f.blob)
    {
        let microsoft = [
            "microsoft.com",
            "office365.com",
            "office.com",
            "outlook.com",
            "windows.net",
            "microsoftonline.com",
        ]
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")));
        if microsoft {
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
    // AADSTS70002 "Error validating credentials" is about the client's credential unless the
    // request was a password grant; its companion 50064 then does not mean a wrong password.
    if f.p.aadsts.contains(&70002) && auth != Some(AuthMode::Password) {
        suppress(acc, "wrong_credentials", 0.4);
    }
    // A policy that scopes the app out explains an access denied better than a missing role.
    if acc.contains_key("application_access_policy_denied") {
        suppress(acc, "missing_application_permission", 0.4);
    }
    // Throttling signals dominate generic server errors.
    if acc.contains_key("throttled") {
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
    let mut causes = Vec::new();
    for (id, score, a) in &scored {
        let entry = a
            .entry
            .and_then(|i| cat.entries.get(i))
            .or_else(|| cat.primary_entry(id));
        let Some(entry) = entry else { continue };
        let conf = if total > 0.0 {
            score / total * strength
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
        });
    }
    let mut decisive_questions = Vec::new();
    // Thin: several candidates and no clear winner, or one weakly supported candidate.
    let thin = match causes.len() {
        0 => false,
        1 => causes.first().is_some_and(|c| c.confidence < 0.35),
        _ => {
            causes.first().is_some_and(|c| c.confidence < 0.6)
                || scored.get(1).is_some_and(|(_, b, _)| *b >= 0.6 * top)
        }
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
    }
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
