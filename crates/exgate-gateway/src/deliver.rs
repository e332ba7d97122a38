//! Delivery from the spool to Exchange: SMTP submission with XOAUTH2 as the account's mailbox,
//! Exchange's per-mailbox limits respected, temporary failures retried with back-off, permanent
//! ones returned to the sender as a delivery status notification (RFC 3464), every refusal
//! diagnosed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exgate_diagnose::Protocol;
use exgate_mail::smtp::{
    Outgoing, SmtpConnection, SmtpOptions, SmtpSecurity, SmtpTranscript, Stage,
};
use tokio::sync::{Notify, Semaphore, watch};

use crate::Shared;
use crate::explain::{Explained, SignedInAs, explain, short};
use crate::spool::{Envelope, new_id};

/// Per-mailbox sending history for the limits.
#[derive(Debug, Default)]
struct Usage {
    messages: VecDeque<Instant>,
    recipients: VecDeque<(Instant, usize)>,
}

/// The delivery queue: the due times of spooled messages.
#[derive(Debug, Default)]
pub struct Delivery {
    heap: Mutex<BinaryHeap<Reverse<(i64, String)>>>,
    envelopes: Mutex<HashMap<String, Envelope>>,
    usage: Mutex<HashMap<String, Usage>>,
    notify: Notify,
    /// Signed-in upstream SMTP sessions waiting for their account's next message.
    sessions: SessionPool,
}

/// Longest life of one upstream SMTP session, however busy (its sign-in is renewed with a fresh
/// token at least this often).
const SESSION_MAX_AGE: Duration = Duration::from_secs(600);

/// Idle signed-in SMTP sessions per account and mailbox. A session is taken by one delivery at
/// a time; parallel deliveries of one account open sessions of their own.
#[derive(Debug, Default)]
struct SessionPool(Mutex<HashMap<(String, String), Vec<Kept>>>);

/// A kept session and when the token it signed in with expires (epoch seconds; `None` for a
/// password): a session is not used past its token, so every delivery is made under a token
/// that is valid when it is made.
#[derive(Debug)]
struct Kept {
    conn: SmtpConnection,
    expires: Option<i64>,
}

/// A session is not taken when its token has less than this left.
const TOKEN_MARGIN_SECS: i64 = 60;

impl Kept {
    fn fit(&self, idle: Duration, max_messages: u32) -> bool {
        let c = &self.conn;
        c.usable()
            && c.idle() < idle
            && c.age() < SESSION_MAX_AGE
            && c.messages() < max_messages
            && self.expires.is_none_or(|e| e - now() > TOKEN_MARGIN_SECS)
    }
}

impl SessionPool {
    /// A session still fit for another message, if one waits, with its token's expiry; the
    /// stale ones are closed.
    fn take(
        &self,
        key: &(String, String),
        idle: Duration,
        max_messages: u32,
    ) -> Option<(SmtpConnection, Option<i64>)> {
        let mut stale = Vec::new();
        let found = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let list = map.get_mut(key)?;
            let mut found = None;
            while let Some(k) = list.pop() {
                if k.fit(idle, max_messages) {
                    found = Some((k.conn, k.expires));
                    break;
                }
                stale.push(k.conn);
            }
            found
        };
        close(stale);
        found
    }

    /// Keeps a session for the account's next message (closed instead when it is spent).
    fn put(
        &self,
        key: (String, String),
        conn: SmtpConnection,
        expires: Option<i64>,
        idle: Duration,
        max_messages: u32,
    ) {
        let kept = Kept { conn, expires };
        if !kept.fit(idle, max_messages) {
            close(vec![kept.conn]);
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().push(kept);
    }

    /// Every kept session (to close them when the gateway stops).
    fn drain(&self) -> Vec<SmtpConnection> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.drain().flat_map(|(_, l)| l).map(|k| k.conn).collect()
    }

    /// Closes the sessions idle for `idle` or longer; `true` when some are still kept.
    fn sweep(&self, idle: Duration) -> bool {
        let mut stale = Vec::new();
        let kept = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            for list in map.values_mut() {
                let (old, fresh): (Vec<_>, Vec<_>) = std::mem::take(list)
                    .into_iter()
                    .partition(|k| k.conn.idle() >= idle);
                stale.extend(old.into_iter().map(|k| k.conn));
                *list = fresh;
            }
            map.retain(|_, l| !l.is_empty());
            !map.is_empty()
        };
        close(stale);
        kept
    }
}

/// Ends sessions with `QUIT`, in the background.
fn close(sessions: Vec<SmtpConnection>) {
    if sessions.is_empty() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for c in sessions {
                c.quit().await;
            }
        });
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// How an attempt ended.
#[derive(Debug)]
enum Outcome {
    Delivered(String),
    /// Try again later.
    Temporary(String, Option<Explained>),
    /// Some recipients refused for good (their index, the reply); the rest may be retried.
    Refused(Vec<(usize, String)>, String, Option<Explained>),
    /// The whole message refused for good.
    Permanent(String, Option<Explained>),
    /// A limit: try at this time without counting an attempt.
    Limited(i64),
}

impl Delivery {
    /// Queues a spooled message for delivery.
    pub fn enqueue(&self, env: Envelope) {
        let due = env.next_attempt;
        let id = env.id.clone();
        self.envelopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), env);
        self.heap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Reverse((due, id)));
        self.notify.notify_one();
    }

    /// Messages waiting.
    pub fn depth(&self) -> usize {
        self.envelopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn pop_due(&self) -> Result<Envelope, Option<i64>> {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let t = now();
        match heap.peek() {
            Some(Reverse((due, _))) if *due <= t => {
                let Some(Reverse((_, id))) = heap.pop() else {
                    return Err(None);
                };
                let env = self
                    .envelopes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&id)
                    .cloned();
                env.ok_or(Some(t))
            }
            Some(Reverse((due, _))) => Err(Some(*due)),
            None => Err(None),
        }
    }

    fn done(&self, id: &str) {
        self.envelopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// When `mailbox` may send a message to `n` recipients, or `None` for now.
    fn limit(&self, mailbox: &str, n: usize, per_minute: u32, per_day: u32) -> Option<i64> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let u = usage.entry(mailbox.to_ascii_lowercase()).or_default();
        let t = Instant::now();
        while u
            .messages
            .front()
            .is_some_and(|x| t.duration_since(*x) >= Duration::from_secs(60))
        {
            u.messages.pop_front();
        }
        while u
            .recipients
            .front()
            .is_some_and(|(x, _)| t.duration_since(*x) >= Duration::from_secs(86_400))
        {
            u.recipients.pop_front();
        }
        if u.messages.len() >= per_minute as usize {
            let wait = u
                .messages
                .front()
                .map_or(1, |x| 60 - t.duration_since(*x).as_secs());
            return Some(now() + i64::try_from(wait.max(1)).unwrap_or(60));
        }
        let sent: usize = u.recipients.iter().map(|(_, k)| k).sum();
        if sent + n > per_day as usize && sent > 0 {
            let wait = u
                .recipients
                .front()
                .map_or(60, |(x, _)| 86_400 - t.duration_since(*x).as_secs());
            return Some(now() + i64::try_from(wait.max(1)).unwrap_or(3600));
        }
        u.messages.push_back(t);
        u.recipients.push_back((t, n));
        None
    }
}

/// Runs the queue until `shutdown` turns true, then waits for attempts in flight.
pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(shared.config().spool.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        shared.metrics.set_queue_depth(shared.delivery.depth());
        match shared.delivery.pop_due() {
            Ok(env) => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let s = shared.clone();
                tasks.spawn(async move {
                    attempt(&s, env).await;
                    drop(permit);
                });
                // Reap finished tasks so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
            Err(next) => {
                let mut wait = next.map_or(Duration::from_secs(3600), |due| {
                    Duration::from_secs(u64::try_from(due - now()).unwrap_or(0).max(1))
                });
                // Idle upstream sessions are closed once their time is up.
                let idle = Duration::from_secs(shared.config().upstream.smtp_reuse_idle_secs);
                if shared.delivery.sessions.sweep(idle) {
                    wait = wait.min(idle.max(Duration::from_secs(1)));
                }
                tokio::select! {
                    _ = shared.delivery.notify.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    for c in shared.delivery.sessions.drain() {
        c.quit().await;
    }
    shared.metrics.set_queue_depth(shared.delivery.depth());
}

fn smtp_options(shared: &Shared) -> SmtpOptions {
    let up = &shared.config().upstream;
    SmtpOptions {
        host: up.smtp_host.clone(),
        port: up.smtp_port,
        connect_to: up.smtp_connect,
        security: if up.smtp_tls {
            SmtpSecurity::Tls
        } else {
            SmtpSecurity::StartTls
        },
        extra_root_pem: shared.upstream_ca.clone(),
        timeout: Duration::from_secs(up.timeout_secs.max(1)),
        ehlo_name: shared.config().gateway.hostname.clone(),
    }
}

async fn attempt(shared: &Arc<Shared>, mut env: Envelope) {
    if env.maybe_sent {
        tracing::warn!(id = %env.id, "the gateway stopped while this message was being handed over; sending it again (it may arrive twice)");
        env.maybe_sent = false;
    }
    tracing::debug!(id = %env.id, attempt = env.attempts + 1, "delivery attempt");
    let outcome = try_once(shared, &env).await;
    let spool = shared.spool.clone();
    match outcome {
        Outcome::Delivered(reply) => {
            let id = env.id.clone();
            let r = tokio::task::spawn_blocking(move || spool.complete(&id)).await;
            if !matches!(r, Ok(Ok(()))) {
                tracing::error!(id = %env.id, "delivered, but the spool could not record it");
            }
            shared.delivery.done(&env.id);
            shared.metrics.count("messages", &env.account, "delivered");
            tracing::info!(id = %env.id, account = %env.account, upstream = %short(&reply), "delivered");
        }
        Outcome::Limited(at) => {
            tracing::debug!(id = %env.id, wait_secs = at - now(), "held back by the mailbox's sending limits");
            env.next_attempt = at;
            shared
                .metrics
                .count("messages", &env.account, "rate_limited");
            shared.delivery.enqueue(env);
        }
        Outcome::Temporary(text, why) => {
            env.attempts += 1;
            let cfg = &shared.config().spool;
            let age = now() - env.received;
            if age >= i64::try_from(cfg.max_age_secs).unwrap_or(i64::MAX) {
                let reason = format!(
                    "not delivered within {} hours: {text}",
                    cfg.max_age_secs / 3600
                );
                give_up(shared, env, &reason, why).await;
                return;
            }
            let exp = env.attempts.saturating_sub(1).min(20);
            let delay = cfg
                .retry_initial_secs
                .saturating_mul(1u64 << exp)
                .min(cfg.retry_max_secs.max(cfg.retry_initial_secs));
            env.next_attempt = now() + i64::try_from(delay).unwrap_or(3600);
            env.last_error = Some(short(&text));
            env.last_cause = why
                .as_ref()
                .map(|w| w.cause.clone())
                .filter(|c| !c.is_empty());
            tracing::warn!(id = %env.id, account = %env.account, attempt = env.attempts, retry_in_secs = delay, error = %short(&text), cause = %why.as_ref().map(Explained::summary).unwrap_or_default(), "delivery deferred");
            shared.metrics.count("messages", &env.account, "deferred");
            let e = env.clone();
            let _ = tokio::task::spawn_blocking(move || spool.update(&e)).await;
            shared.delivery.enqueue(env);
        }
        Outcome::Refused(refused, text, why) => {
            let failed: Vec<String> = refused
                .iter()
                .filter_map(|(i, _)| env.to.get(*i).cloned())
                .collect();
            let reply = refused.first().map(|(_, r)| r.clone()).unwrap_or(text);
            env.to.retain(|t| !failed.contains(t));
            // The refused recipients are returned; the rest are tried again at once.
            queue_dsn(shared, &env, &reply, &failed).await;
            tracing::warn!(id = %env.id, account = %env.account, refused = failed.len(), error = %short(&reply), cause = %why.as_ref().map(Explained::summary).unwrap_or_default(), "recipients refused");
            if env.to.is_empty() {
                let e = env.clone();
                let _ = tokio::task::spawn_blocking(move || spool.fail(&e)).await;
                shared.delivery.done(&env.id);
                shared.metrics.count("messages", &env.account, "bounced");
            } else {
                env.next_attempt = now();
                let e = env.clone();
                let _ = tokio::task::spawn_blocking(move || spool.update(&e)).await;
                shared.delivery.enqueue(env);
            }
        }
        Outcome::Permanent(text, why) => {
            give_up(shared, env, &text, why).await;
        }
    }
}

async fn give_up(shared: &Arc<Shared>, mut env: Envelope, text: &str, why: Option<Explained>) {
    env.last_error = Some(short(text));
    env.last_cause = why
        .as_ref()
        .map(|w| w.cause.clone())
        .filter(|c| !c.is_empty());
    tracing::error!(id = %env.id, account = %env.account, error = %short(text), cause = %why.as_ref().map(Explained::summary).unwrap_or_default(), "delivery failed for good; returning the message to its sender");
    let to = env.to.clone();
    queue_dsn(shared, &env, text, &to).await;
    let spool = shared.spool.clone();
    let e = env.clone();
    let _ = tokio::task::spawn_blocking(move || spool.fail(&e)).await;
    shared.delivery.done(&env.id);
    shared.metrics.count("messages", &env.account, "bounced");
}

/// Spools a delivery status notification to the original sender (never for a notification).
async fn queue_dsn(shared: &Arc<Shared>, env: &Envelope, reason: &str, failed: &[String]) {
    if env.dsn || failed.is_empty() {
        return;
    }
    let spool = shared.spool.clone();
    let original = {
        let s = spool.clone();
        let id = env.id.clone();
        tokio::task::spawn_blocking(move || s.data(&id))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let id = new_id();
    let text = dsn_message(
        &shared.config().gateway.hostname,
        env,
        failed,
        &short(reason),
        &original,
        &id,
    );
    let notice = Envelope {
        id,
        account: env.account.clone(),
        mailbox: env.mailbox.clone(),
        from: env.mailbox.clone(),
        to: vec![env.from.clone()],
        received: now(),
        attempts: 0,
        next_attempt: 0,
        last_error: None,
        last_cause: None,
        dsn: true,
        maybe_sent: false,
    };
    let e = notice.clone();
    if let Ok(Ok(())) = tokio::task::spawn_blocking(move || spool.accept(&e, &text)).await {
        shared.delivery.enqueue(notice);
    }
}

/// An RFC 3464 delivery status notification: a human part, the machine-readable status, and
/// the original headers.
pub fn dsn_message(
    host: &str,
    env: &Envelope,
    failed: &[String],
    reason: &str,
    original: &[u8],
    id: &str,
) -> Vec<u8> {
    let boundary = format!("exgate-dsn-{id}");
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let headers_end = original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(original.len(), |p| p + 2);
    let headers = String::from_utf8_lossy(&original[..headers_end.min(64 * 1024)]);
    let subject = headers
        .lines()
        .find_map(|l| {
            l.get(..8)
                .filter(|h| h.eq_ignore_ascii_case("subject:"))
                .map(|_| l[8..].trim().to_owned())
        })
        .unwrap_or_default();
    let status = reason
        .split_whitespace()
        .nth(1)
        .filter(|s| s.split('.').count() == 3 && s.starts_with(['4', '5']))
        .map_or("5.0.0".to_owned(), |s| format!("5{}", &s[1..]));
    let mut out = format!(
        "From: Mail Delivery System <{mailbox}>\r\nTo: <{to}>\r\nSubject: Undeliverable: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}@{host}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n",
        mailbox = env.mailbox,
        to = env.from,
    );
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe exgate gateway could not deliver your message to:\r\n"
    ));
    for r in failed {
        out.push_str(&format!("  {r}\r\n"));
    }
    out.push_str(&format!("\r\nExchange answered: {reason}\r\n\r\n"));
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {host}\r\nArrival-Date: {date}\r\n"
    ));
    for r in failed {
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {reason}\r\n"
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--{boundary}--\r\n"
    ));
    out.into_bytes()
}

async fn try_once(shared: &Arc<Shared>, env: &Envelope) -> Outcome {
    let Some(account) = shared.account(&env.account) else {
        return Outcome::Temporary(
            format!("the account `{}` is no longer configured", env.account),
            None,
        );
    };
    let up = &shared.config().upstream;
    if let Some(at) = shared.delivery.limit(
        &account.mailbox,
        env.to.len(),
        up.messages_per_minute.max(1),
        up.recipients_per_day.max(1),
    ) {
        return Outcome::Limited(at);
    }
    let data = {
        let spool = shared.spool.clone();
        let id = env.id.clone();
        match tokio::task::spawn_blocking(move || spool.data(&id)).await {
            Ok(Ok(d)) => d,
            _ => {
                return Outcome::Permanent(
                    "the spooled message could not be read".to_owned(),
                    None,
                );
            }
        }
    };
    if account.submit == crate::config::Submit::Graph {
        return via_graph(shared, env, &account, &data).await;
    }
    let outgoing = Outgoing {
        from: env.from.clone(),
        to: env.to.clone(),
        data,
    };
    let spool = shared.spool.clone();
    let id = env.id.clone();
    // The handover is recorded before the bytes go out, the delivery as soon as Exchange
    // answers (before QUIT), so a crash leaves the smallest window of doubt.
    let handover = move |stage: Stage| match stage {
        Stage::Sending => spool.mark_handover(&id).map_err(|e| format!("spool: {e}")),
        Stage::Accepted => spool.complete(&id).map_err(|e| format!("spool: {e}")),
    };
    let key = (account.name.clone(), account.mailbox.clone());
    let idle = Duration::from_secs(up.smtp_reuse_idle_secs);
    let per_session = up.smtp_session_messages.max(1);
    let started = Instant::now();
    let mut t = None;
    // The account's signed-in session from an earlier delivery, when one is still open.
    if let Some((mut conn, expires)) = shared.delivery.sessions.take(&key, idle, per_session) {
        let sent = conn.send(&outgoing, &handover).await;
        // Closed by the server while idle (no answer, or `421` to MAIL): a new session below,
        // without counting an attempt.
        let stale = sent
            .failure()
            .is_some_and(|f| f.name == "mail" && f.reply.as_ref().is_none_or(|r| r.code == 421));
        if stale {
            shared
                .metrics
                .count("upstream_sessions", &account.name, "stale");
        } else {
            shared
                .metrics
                .count("upstream_sessions", &account.name, "reused");
            shared
                .delivery
                .sessions
                .put(key.clone(), conn, expires, idle, per_session);
            t = Some((sent, None));
        }
    }
    let (t, token) = match t {
        Some(done) => done,
        None => {
            let token_started = Instant::now();
            let (auth, token) = match shared.upstreams.sasl(&account).await {
                Ok(x) => x,
                Err(e) => {
                    let text = e.to_string();
                    let why = explain(Protocol::Smtp, &text, &account.mailbox, SignedInAs::Unknown);
                    return Outcome::Temporary(format!("no token: {text}"), Some(why));
                }
            };
            shared
                .metrics
                .observe("token", token_started.elapsed().as_secs_f64());
            let (mut t, conn) = SmtpConnection::open(&smtp_options(shared), &auth).await;
            if let Some(mut conn) = conn {
                shared
                    .metrics
                    .count("upstream_sessions", &account.name, "opened");
                let sent = conn.send(&outgoing, &handover).await;
                t.steps.extend(sent.steps);
                if idle.is_zero() {
                    conn.quit().await;
                } else {
                    let expires = token.as_ref().and_then(|t| {
                        use secrecy::ExposeSecret as _;
                        exgate_wire::jwt::TokenClaims::from_token(t.expose_secret())
                            .ok()
                            .and_then(|c| c.exp)
                    });
                    shared
                        .delivery
                        .sessions
                        .put(key, conn, expires, idle, per_session);
                }
            }
            (t, token)
        }
    };
    shared
        .metrics
        .observe("smtp_submit", started.elapsed().as_secs_f64());
    let outcome = classify(shared, env, &account, &t, token.as_ref());
    // SMTP AUTH off for the tenant or the mailbox: Graph, when the account allows it.
    if account.submit == crate::config::Submit::SmtpThenGraph
        && let Outcome::Temporary(_, Some(why)) = &outcome
        && why.cause == "smtp_auth_disabled"
    {
        tracing::info!(id = %env.id, account = %account.name, "SMTP AUTH is off for this mailbox; sending through Graph");
        return via_graph(shared, env, &account, &outgoing.data).await;
    }
    outcome
}

/// The message with a `Bcc:` field for envelope recipients its `To`/`Cc`/`Bcc` do not name
/// (Graph's MIME `sendMail` takes the recipients from the headers).
pub fn with_envelope_recipients(data: &[u8], to: &[String]) -> Vec<u8> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |p| p + 2);
    let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
    let mut in_rcpt_field = false;
    let mut named = String::new();
    for l in head.split("\r\n") {
        if l.starts_with([' ', '\t']) {
            if in_rcpt_field {
                named.push_str(l);
            }
            continue;
        }
        let name = l.split(':').next().unwrap_or_default().trim();
        in_rcpt_field = matches!(name, "to" | "cc" | "bcc");
        if in_rcpt_field {
            named.push_str(l);
            named.push(' ');
        }
    }
    let missing: Vec<&String> = to
        .iter()
        .filter(|a| !named.contains(&a.to_ascii_lowercase()))
        .collect();
    if missing.is_empty() {
        return data.to_vec();
    }
    let list: Vec<String> = missing.iter().map(|a| format!("<{a}>")).collect();
    let mut out = format!("Bcc: {}\r\n", list.join(", ")).into_bytes();
    out.extend_from_slice(data);
    out
}

async fn via_graph(
    shared: &Arc<Shared>,
    env: &Envelope,
    account: &crate::config::AccountConfig,
    data: &[u8],
) -> Outcome {
    let token = match shared.upstreams.graph_token(account).await {
        Ok(t) => t,
        Err(e) => {
            let text = e.to_string();
            let why = explain(
                Protocol::Graph,
                &text,
                &account.mailbox,
                SignedInAs::Unknown,
            );
            return Outcome::Temporary(format!("no Graph token: {text}"), Some(why));
        }
    };
    let Some(http) = shared.http.clone() else {
        return Outcome::Temporary("no HTTP client for Graph".into(), None);
    };
    let credentials = std::sync::Arc::new(exgate_mail::Bearer::fixed(token.clone()));
    let client = match exgate_mail::graph::GraphClient::new(
        http,
        &shared.config().upstream.graph_url,
        credentials,
    ) {
        Ok(c) => c,
        Err(e) => return Outcome::Permanent(e.to_string(), None),
    };
    let mime = with_envelope_recipients(data, &env.to);
    let started = Instant::now();
    let _ = shared.spool.mark_handover(&env.id);
    let r = client.send_mime(&account.mailbox, &mime).await;
    shared
        .metrics
        .observe("graph_send", started.elapsed().as_secs_f64());
    match r {
        Ok(()) => {
            let _ = shared.spool.complete(&env.id);
            shared
                .metrics
                .count("messages", &account.name, "delivered_graph");
            Outcome::Delivered("202 Accepted (Graph sendMail)".into())
        }
        Err(e) => {
            let status = e.evidence().status;
            let text = e.to_string();
            let _ = shared.spool.clear_handover(&env.id);
            let why = explain(
                Protocol::Graph,
                &text,
                &account.mailbox,
                SignedInAs::Token(&token),
            );
            match status {
                Some(400 | 404 | 413) => Outcome::Permanent(text, Some(why)),
                Some(401 | 403) => {
                    shared.upstreams.invalidate(account);
                    Outcome::Temporary(text, Some(why))
                }
                _ => Outcome::Temporary(text, Some(why)),
            }
        }
    }
}

fn classify(
    shared: &Arc<Shared>,
    env: &Envelope,
    account: &crate::config::AccountConfig,
    t: &SmtpTranscript,
    token: Option<&secrecy::SecretString>,
) -> Outcome {
    let Some(f) = t.failure() else {
        let reply = t
            .steps
            .iter()
            .find(|s| s.name == "data")
            .and_then(|s| s.reply.as_ref())
            .map(|r| r.text())
            .unwrap_or_default();
        return Outcome::Delivered(reply);
    };
    // A QUIT that failed after the data step succeeded is still a delivery.
    if f.name == "quit" && t.steps.iter().any(|s| s.name == "data" && s.ok) {
        return Outcome::Delivered(String::new());
    }
    let data_sent = f.name == "data" && f.reply.is_none();
    if !data_sent {
        // Exchange did not take the message: the handover (if any) did not happen.
        let _ = shared.spool.clear_handover(&env.id);
    }
    let Some(reply) = &f.reply else {
        let text = f.error.clone().unwrap_or_else(|| "no reply".into());
        return Outcome::Temporary(format!("{}: {text}", f.name), None);
    };
    let text = reply.text();
    let why = explain(
        Protocol::Smtp,
        &text,
        &account.mailbox,
        SignedInAs::of(account, token),
    );
    if f.name == "auth" {
        shared.upstreams.invalidate(account);
        shared
            .metrics
            .count("upstream_auth", &account.name, "refused");
        return Outcome::Temporary(text, Some(why));
    }
    if reply.code < 500 {
        return Outcome::Temporary(text, Some(why));
    }
    if f.name == "rcpt" {
        let index = t.steps.iter().filter(|s| s.name == "rcpt" && s.ok).count();
        return Outcome::Refused(vec![(index, text.clone())], text, Some(why));
    }
    Outcome::Permanent(text, Some(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_minute_and_per_day() {
        let d = Delivery::default();
        assert!(d.limit("a@b.c", 1, 2, 100).is_none());
        assert!(d.limit("A@b.c", 1, 2, 100).is_none());
        let at = d
            .limit("a@b.c", 1, 2, 100)
            .expect("third message in a minute waits");
        assert!(at > now() && at <= now() + 60);
        assert!(d.limit("other@b.c", 99, 2, 100).is_none());
        assert!(d.limit("other@b.c", 1, 5, 100).is_none());
        assert!(
            d.limit("other@b.c", 1, 5, 100).is_some(),
            "the daily recipient limit"
        );
    }

    #[test]
    fn envelope_recipients_missing_from_the_headers_become_bcc() {
        let m = b"To: Alice <alice@contoso.com>\r\nCc: bob@contoso.com\r\nSubject: x\r\n\r\nbody carol@contoso.com\r\n";
        let out =
            with_envelope_recipients(m, &["ALICE@contoso.com".into(), "carol@contoso.com".into()]);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("Bcc: <carol@contoso.com>\r\nTo: Alice"),
            "{text}"
        );
        let same = with_envelope_recipients(m, &["bob@contoso.com".into()]);
        assert_eq!(same, m.to_vec());
    }

    #[test]
    fn dsn_has_the_three_parts() {
        let env = Envelope {
            id: "1".into(),
            account: "scanner".into(),
            mailbox: "scanner@contoso.com".into(),
            from: "scanner@contoso.com".into(),
            to: vec!["x@y.z".into()],
            received: 0,
            attempts: 0,
            next_attempt: 0,
            last_error: None,
            last_cause: None,
            dsn: false,
            maybe_sent: false,
        };
        let m = dsn_message(
            "gw",
            &env,
            &["x@y.z".into()],
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound",
            b"Subject: Scan 1\r\nFrom: a\r\n\r\nbody",
            "2",
        );
        let m = String::from_utf8(m).unwrap();
        assert!(m.contains("Subject: Undeliverable: Scan 1"), "{m}");
        assert!(m.contains("Status: 5.1.10"), "{m}");
        assert!(m.contains("Final-Recipient: rfc822; x@y.z"));
        assert!(m.contains("report-type=delivery-status"));
        assert!(!m.contains("body"));
    }
}
