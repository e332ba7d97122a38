//! HAR files (browser and Fiddler exports), read as a stream.
//!
//! `log.entries` is deserialised one element at a time from any [`std::io::Read`], so a
//! gigabyte-sized HAR is explained or redacted in memory bounded by its largest entry. Entries
//! are read as plain JSON values and interpreted leniently: missing fields, odd types and base64
//! bodies are tolerated.

use std::fmt;
use std::io::{Read, Write};

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::evidence::{AuthMode, Evidence, HttpHeader, HttpResponse, Protocol, protocol_of_url};
use crate::jwt::TokenClaims;
use crate::rank::{Diagnosis, RankedCause, diagnose};
use crate::redact::{TokenMode, redact_har_value, redact_text};

/// A HAR that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HarError {
    /// Not JSON, or not a HAR.
    #[error("not a readable HAR file (line {line}, column {column}): {message}")]
    Json {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Write(String),
}

impl From<serde_json::Error> for HarError {
    fn from(e: serde_json::Error) -> Self {
        HarError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

/// Calls `f` for every element of `log.entries`, reading the input as a stream.
/// Returns the number of entries.
pub fn for_each_entry<R: Read>(reader: R, f: impl FnMut(Value)) -> Result<usize, HarError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut count = 0usize;
    let mut f = f;
    Root {
        on_entry: &mut |v: Value| {
            count += 1;
            f(v);
        },
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(count)
}

struct Root<'a> {
    on_entry: &'a mut dyn FnMut(Value),
}

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a HAR object with a \"log\" member")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_log = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "log" {
                seen_log = true;
                map.next_value_seed(Log {
                    on_entry: &mut *self.on_entry,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !seen_log {
            return Err(de::Error::custom(
                "no \"log\" member: this JSON is not a HAR file",
            ));
        }
        Ok(())
    }
}

struct Log<'a> {
    on_entry: &'a mut dyn FnMut(Value),
}

impl<'de> DeserializeSeed<'de> for Log<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Log<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the HAR log object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "entries" {
                map.next_value_seed(Entries {
                    on_entry: &mut *self.on_entry,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Entries<'a> {
    on_entry: &'a mut dyn FnMut(Value),
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the HAR entries array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            (self.on_entry)(v);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Redaction: the same walk, writing everything back out as it goes.

/// Counts of a redaction run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RedactStats {
    /// HAR entries written.
    pub entries: usize,
    /// Values replaced.
    pub values_redacted: usize,
}

/// Redacts a HAR from `reader` to `writer`, streaming entry by entry. Members other than
/// `log.entries` are redacted as whole values (they are small in real HARs).
pub fn redact_har<R: Read, W: Write>(
    reader: R,
    writer: W,
    mode: TokenMode,
) -> Result<RedactStats, HarError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut w = writer;
    let mut stats = RedactStats::default();
    ObjectW {
        w: &mut w,
        mode,
        stats: &mut stats,
        level: Level::Root,
    }
    .deserialize(&mut de)?;
    de.end()?;
    w.write_all(b"\n")
        .map_err(|e| HarError::Write(e.to_string()))?;
    w.flush().map_err(|e| HarError::Write(e.to_string()))?;
    Ok(stats)
}

/// Copies a JSON object of the HAR while redacting it (see [`Level`]).
struct ObjectW<'a, W: Write> {
    w: &'a mut W,
    mode: TokenMode,
    stats: &'a mut RedactStats,
    level: Level,
}

fn io<E: de::Error>(e: std::io::Error) -> E {
    E::custom(format!("write failed: {e}"))
}

fn write_key<W: Write, E: de::Error>(w: &mut W, first: &mut bool, key: &str) -> Result<(), E> {
    if !*first {
        w.write_all(b",").map_err(io)?;
    }
    *first = false;
    serde_json::to_writer(&mut *w, key).map_err(|e| E::custom(e.to_string()))?;
    w.write_all(b":").map_err(io)
}

/// Where in the HAR document an object being copied sits.
#[derive(Clone, Copy)]
enum Level {
    /// The top-level object, whose `log` member is descended into.
    Root,
    /// The `log` object, whose `entries` array is streamed entry by entry.
    Log,
}

impl<'de, W: Write> DeserializeSeed<'de> for ObjectW<'_, W> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, W: Write> Visitor<'de> for ObjectW<'_, W> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.level {
            Level::Root => "a HAR object with a \"log\" member",
            Level::Log => "the HAR log object",
        })
    }
    /// Copies the object member by member: the member that leads to the entries is descended
    /// into, every other member is redacted whole (they are small).
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.w.write_all(b"{").map_err(io)?;
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            write_key::<W, A::Error>(self.w, &mut first, &key)?;
            match (self.level, key.as_str()) {
                (Level::Root, "log") => map.next_value_seed(ObjectW {
                    w: &mut *self.w,
                    mode: self.mode,
                    stats: &mut *self.stats,
                    level: Level::Log,
                })?,
                (Level::Log, "entries") => map.next_value_seed(EntriesW {
                    w: &mut *self.w,
                    mode: self.mode,
                    stats: &mut *self.stats,
                })?,
                _ => {
                    let mut v: Value = map.next_value()?;
                    self.stats.values_redacted += redact_har_value(&mut v, self.mode);
                    serde_json::to_writer(&mut *self.w, &v)
                        .map_err(|e| de::Error::custom(e.to_string()))?;
                }
            }
        }
        self.w.write_all(b"}").map_err(io)
    }
}

struct EntriesW<'a, W: Write> {
    w: &'a mut W,
    mode: TokenMode,
    stats: &'a mut RedactStats,
}

impl<'de, W: Write> DeserializeSeed<'de> for EntriesW<'_, W> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, W: Write> Visitor<'de> for EntriesW<'_, W> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the HAR entries array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.w.write_all(b"[").map_err(io)?;
        let mut first = true;
        while let Some(mut v) = seq.next_element::<Value>()? {
            if !first {
                self.w.write_all(b",").map_err(io)?;
            }
            first = false;
            self.stats.values_redacted += redact_har_value(&mut v, self.mode);
            self.stats.entries += 1;
            serde_json::to_writer(&mut *self.w, &v)
                .map_err(|e| de::Error::custom(e.to_string()))?;
        }
        self.w.write_all(b"]").map_err(io)
    }
}

// ---------------------------------------------------------------------------------------------
// Explaining.

/// One failing exchange of a HAR and its diagnosis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedExchange {
    /// Position in `log.entries` (0-based).
    pub index: usize,
    /// `startedDateTime`.
    pub started: String,
    /// Method.
    pub method: String,
    /// URL with secrets in the query removed.
    pub url: String,
    /// Status (0 when no response was received).
    pub status: i64,
    /// Summary of the bearer token sent, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The diagnosis.
    pub diagnosis: Diagnosis,
}

/// The result of explaining a HAR.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HarReport {
    /// Entries read.
    pub entries: usize,
    /// Completed Bearer handshakes (probe or challenge, token request, accepted retry).
    pub handshakes_completed: usize,
    /// 401 challenges that were steps of a handshake rather than failures.
    pub handshake_challenges: usize,
    /// Failing exchanges, in order (at most [`MAX_FAILURES`] kept).
    pub failures: Vec<FailedExchange>,
    /// Failures beyond [`MAX_FAILURES`] that were counted but not kept.
    pub failures_not_kept: usize,
    /// Causes over all failures: each cause once, in order of first appearance.
    pub causes: Vec<RankedCause>,
}

/// How many failing exchanges a report keeps (bounded memory on huge HARs).
pub const MAX_FAILURES: usize = 1000;
const BODY_LIMIT: usize = 256 * 1024;

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(*p) {
            Some(x) => cur = x,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn headers(v: &Value) -> Vec<(String, String)> {
    v.get("headers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|h| (s(h, &["name"]).to_owned(), s(h, &["value"]).to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn status_of(v: &Value) -> i64 {
    match v.get("status") {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Some(Value::String(x)) => x.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn body_text(content: Option<&Value>) -> String {
    let Some(c) = content else {
        return String::new();
    };
    let text = s(c, &["text"]);
    let text = if text.len() > BODY_LIMIT * 2 {
        crate::rank_head(text, BODY_LIMIT * 2)
    } else {
        text
    };
    if s(c, &["encoding"]).eq_ignore_ascii_case("base64") {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    } else {
        text.to_owned()
    }
}

fn parse_time(t: &str) -> Option<i64> {
    time::OffsetDateTime::parse(t.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|d| d.unix_timestamp())
}

#[derive(Default)]
struct HandshakeState {
    challenged: bool,
    token_obtained: bool,
    client_credentials: bool,
}

/// Options for [`explain_har`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HarOptions {
    /// "Now" for token expiry checks; by default each entry's `startedDateTime` is used.
    pub now: Option<i64>,
}

/// Explains every failing exchange of a HAR, streaming.
pub fn explain_har<R: Read>(reader: R, opts: HarOptions) -> Result<HarReport, HarError> {
    let mut report = HarReport::default();
    let mut st = HandshakeState::default();
    let mut index = 0usize;
    let entries = for_each_entry(reader, |entry| {
        analyse(&entry, index, &opts, &mut st, &mut report);
        index += 1;
    })?;
    report.entries = entries;
    Ok(report)
}

fn auth_of(req_headers: &[(String, String)]) -> (AuthMode, Option<&str>) {
    for (n, v) in req_headers {
        if n.eq_ignore_ascii_case("authorization") {
            let v = v.trim();
            let (scheme, cred) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
            let cred = cred.trim();
            return match scheme.to_ascii_lowercase().as_str() {
                "bearer" if cred.is_empty() => (AuthMode::BearerProbe, None),
                "bearer" => (AuthMode::Bearer, Some(cred)),
                "basic" => (AuthMode::Basic, None),
                "ntlm" => (AuthMode::Ntlm, None),
                "negotiate" => (AuthMode::Negotiate, None),
                _ => (AuthMode::None, None),
            };
        }
    }
    (AuthMode::None, None)
}

fn analyse(
    entry: &Value,
    index: usize,
    opts: &HarOptions,
    st: &mut HandshakeState,
    report: &mut HarReport,
) {
    let req = entry.get("request").unwrap_or(&Value::Null);
    let resp = entry.get("response").unwrap_or(&Value::Null);
    let url = s(req, &["url"]);
    let url_no_query = url.split('?').next().unwrap_or(url);
    let protocol = protocol_of_url(url_no_query);
    let req_headers = headers(req);
    let status = status_of(resp);
    let resp_headers = headers(resp);
    let (auth, bearer) = auth_of(&req_headers);

    // Cheap pass first: is this a failure, or a step of a handshake?
    let has_diag = resp_headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("x-ms-diagnostics"));
    let challenges: Vec<_> = resp_headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .flat_map(|(_, v)| crate::parse::www_authenticate::parse_challenges(v))
        .collect();
    let location_error = resp_headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("location") && v.contains("error="));
    let failure = if status == 0 {
        true
    } else if (300..400).contains(&status) {
        location_error
    } else if status == 401 {
        // A challenge that continues a handshake is not a failure: an anonymous request or an
        // empty Bearer probe answered with a usable challenge, or an NTLM/Negotiate round trip
        // answered with a challenge token. A rejected token or password is a failure.
        let bearer_ok = challenges.iter().any(|c| {
            c.is("bearer") && c.param("authorization_uri").is_some() && c.param("error").is_none()
        });
        let step = !has_diag
            && match auth {
                AuthMode::None => !challenges.is_empty(),
                AuthMode::BearerProbe => bearer_ok,
                AuthMode::Ntlm => challenges
                    .iter()
                    .any(|c| c.is("ntlm") && c.token68.is_some()),
                AuthMode::Negotiate => challenges
                    .iter()
                    .any(|c| c.is("negotiate") && c.token68.is_some()),
                _ => false,
            };
        if step {
            st.challenged = true;
            report.handshake_challenges += 1;
            false
        } else {
            true
        }
    } else {
        status >= 400
    };
    let is_token_request = protocol == Some(Protocol::TokenEndpoint);
    let post = if is_token_request || (failure && protocol == Some(Protocol::Ews)) {
        body_text(req.get("postData"))
    } else {
        String::new()
    };
    if is_token_request && !post.is_empty() && post.contains("grant_type=client_credentials") {
        st.client_credentials = true;
    }
    if !failure {
        if is_token_request && (200..300).contains(&status) {
            st.token_obtained = true;
        } else if auth == AuthMode::Bearer
            && (200..300).contains(&status)
            && (st.challenged || st.token_obtained)
        {
            report.handshakes_completed += 1;
            st.challenged = false;
            st.token_obtained = false;
        }
        return;
    }

    // A failure: build the full evidence.
    let method = s(req, &["method"]);
    let started = s(entry, &["startedDateTime"]);
    let mut ev = Evidence::new().with_url(url_no_query);
    ev.attempt.method = Some(method.to_owned());
    ev.now = opts.now.or_else(|| parse_time(started));
    ev.attempt.auth = Some(auth);
    ev.token = bearer.and_then(|t| TokenClaims::from_token(t).ok());
    for (n, v) in &req_headers {
        if n.eq_ignore_ascii_case("x-anchormailbox") {
            ev.attempt.anchor_mailbox_header = Some(true);
            ev.attempt.mailbox = Some(v.clone());
        }
    }
    if is_token_request && !post.is_empty() {
        ev.apply_token_form(&post);
    } else if protocol == Some(Protocol::Ews) && !post.is_empty() {
        ev.attempt.impersonation_header = Some(post.contains("ExchangeImpersonation"));
    }
    if auth == AuthMode::Bearer && st.client_credentials {
        ev.attempt.app_only = Some(true);
    }
    if status == 0 {
        ev.text = "no HTTP response received for this request (status 0)".into();
    }
    let body = body_text(resp.get("content"));
    ev.response = Some(HttpResponse {
        status: u16::try_from(status).ok().filter(|s| *s > 0),
        headers: resp_headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("set-cookie"))
            .map(|(n, v)| HttpHeader {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
        body: crate::rank_head(&body, BODY_LIMIT).to_owned(),
    });
    let diagnosis = diagnose(&ev);
    for c in &diagnosis.causes {
        if !report.causes.iter().any(|x| x.id == c.id) && report.causes.len() < 64 {
            report.causes.push(c.clone());
        }
    }
    if report.failures.len() >= MAX_FAILURES {
        report.failures_not_kept += 1;
        return;
    }
    report.failures.push(FailedExchange {
        index,
        started: started.to_owned(),
        method: method.to_owned(),
        url: redact_text(url, TokenMode::Remove),
        status,
        token: ev.token.as_ref().map(TokenClaims::summary),
        diagnosis,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_entries_and_ignores_other_members() {
        let har = r#"{"log":{"version":"1.2","creator":{"name":"x"},"entries":[{"request":{"url":"a"}},{"request":{"url":"b"}}],"pages":[]}}"#;
        let mut urls = Vec::new();
        let n = for_each_entry(har.as_bytes(), |v| {
            urls.push(s(&v, &["request", "url"]).to_owned())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(urls, ["a", "b"]);
        assert!(for_each_entry(&b"{\"x\":1}"[..], |_| {}).is_err());
        assert!(for_each_entry(&b"[1,2]"[..], |_| {}).is_err());
    }

    #[test]
    fn redaction_roundtrips_structure() {
        let har = r#"{"log":{"version":"1.2","entries":[{"request":{"url":"https://x/?code=SECRET1","headers":[{"name":"Cookie","value":"SECRET2"}]},"response":{"status":200}}]}}"#;
        let mut out = Vec::new();
        let stats = redact_har(har.as_bytes(), &mut out, TokenMode::Remove).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(stats.entries, 1);
        assert!(!text.contains("SECRET1") && !text.contains("SECRET2"));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["log"]["version"], "1.2");
    }
}
