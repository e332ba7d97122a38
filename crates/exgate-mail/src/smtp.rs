//! SMTP submission check (RFC 5321, STARTTLS RFC 3207, SASL XOAUTH2 and LOGIN): what a daemon
//! that sends mail does against `smtp.office365.com:587`, step by step, with every server reply
//! kept so a refusal (`535 5.7.139 ...`, `535 5.7.3 ...`) can be diagnosed.
//!
//! [`check`] connects, reads the greeting, says EHLO, upgrades with STARTTLS (or starts in TLS
//! on port 465), authenticates and, when given a [`TestMessage`], sends it. It stops at the first
//! refused step and returns the transcript; it never fails as a whole. The AUTH lines themselves
//! (token, password) are never recorded: a step keeps only the server's reply.
//!
//! Hand-written: the SMTP crates (`lettre`, `mail-send`) send mail but hide the replies of the
//! steps before a failure and do not report per-step results, which is the point here; the
//! client part of SMTP needed is about two hundred lines over tokio and tokio-rustls.

use std::time::{Duration, Instant};

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::io::BufReader;

use crate::tls::{
    Io, LineIo, connect_tcp, read_line, start_tls, tls_config, write_bytes, write_line,
};

/// Longest reply line read (RFC 5321 allows 512; servers send a little more).
const MAX_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 100;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain TCP, upgraded with STARTTLS before authentication (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Connect to this address instead of resolving `host` (tests, emulators).
    pub connect_to: Option<std::net::SocketAddr>,
    /// STARTTLS or implicit TLS.
    pub security: SmtpSecurity,
    /// Extra root certificates (PEM) to trust besides the platform's.
    pub extra_root_pem: Option<Vec<u8>>,
    /// Limit for each network step.
    pub timeout: Duration,
    /// The name said in EHLO.
    pub ehlo_name: String,
}

impl SmtpOptions {
    /// Exchange Online submission: `smtp.office365.com:587` with STARTTLS.
    pub fn exchange_online() -> Self {
        SmtpOptions {
            host: "smtp.office365.com".to_owned(),
            port: 587,
            connect_to: None,
            security: SmtpSecurity::StartTls,
            extra_root_pem: None,
            timeout: Duration::from_secs(30),
            ehlo_name: "exgate.localhost".to_owned(),
        }
    }
}

/// How to authenticate (XOAUTH2 or a password). Secrets never appear in `Debug`.
pub use crate::sasl::SaslAuth as SmtpAuth;

/// A message to send once authenticated.
#[derive(Debug, Clone)]
pub struct TestMessage {
    /// Envelope and header sender (must be the authenticated mailbox, or one it may send as).
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// One server reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpReply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code (`5.7.139`), when the first line has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    /// The text of every line, codes removed.
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// The reply as the server sent it (`535 5.7.3 Authentication unsuccessful`), one line each.
    pub fn text(&self) -> String {
        let last = self.lines.len().saturating_sub(1);
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}{}{l}", self.code, if i == last { ' ' } else { '-' }))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// One step of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpStep {
    /// `connect`, `greeting`, `ehlo`, `starttls`, `auth`, `mail`, `rcpt`, `data`, `quit`.
    pub name: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// The server's reply, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<SmtpReply>,
    /// What went wrong without a reply (connection, TLS, timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds.
    pub ms: u64,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpTranscript {
    /// `host:port`.
    pub server: String,
    /// The AUTH mechanism used.
    pub mechanism: String,
    /// Extensions the server announced in its last EHLO answer (`AUTH LOGIN XOAUTH2`, ...).
    pub extensions: Vec<String>,
    /// Every step, in order, up to the first failure (then `quit`).
    pub steps: Vec<SmtpStep>,
}

impl SmtpTranscript {
    /// `true` when every step succeeded.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
    }

    /// The first failed step.
    pub fn failure(&self) -> Option<&SmtpStep> {
        self.steps.iter().find(|s| !s.ok)
    }
}

struct Session {
    io: LineIo,
    timeout: Duration,
}

#[derive(Debug)]
enum StepError {
    /// The server answered, negatively.
    Refused(SmtpReply),
    /// No usable answer.
    Transport(String),
}

impl Session {
    async fn read_reply(&mut self) -> Result<SmtpReply, StepError> {
        let mut code = None;
        let mut lines = Vec::new();
        loop {
            let line = read_line(&mut self.io, MAX_LINE, self.timeout)
                .await
                .map_err(StepError::Transport)?;
            let line = line.as_str();
            let (c, rest) = (line.get(..3), line.get(3..).unwrap_or(""));
            let c: u16 = c
                .and_then(|c| c.parse().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| StepError::Transport(format!("not an SMTP reply: {line:.80}")))?;
            if code.is_some_and(|k| k != c) {
                return Err(StepError::Transport(
                    "a reply changed its code midway".into(),
                ));
            }
            code = Some(c);
            let (more, text) = match rest.chars().next() {
                Some('-') => (true, &rest[1..]),
                Some(' ') => (false, &rest[1..]),
                None => (false, ""),
                Some(_) => {
                    return Err(StepError::Transport(format!(
                        "not an SMTP reply: {line:.80}"
                    )));
                }
            };
            lines.push(text.to_owned());
            if !more {
                break;
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(StepError::Transport("a reply of too many lines".into()));
            }
        }
        let code = code.unwrap_or(0);
        let enhanced = lines.first().and_then(|l| {
            let first = l.split_whitespace().next()?;
            let parts: Vec<&str> = first.split('.').collect();
            (parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
            .then(|| first.to_owned())
        });
        Ok(SmtpReply {
            code,
            enhanced,
            lines,
        })
    }

    async fn send_line(&mut self, line: &str) -> Result<(), StepError> {
        write_line(&mut self.io, line, self.timeout)
            .await
            .map_err(StepError::Transport)
    }

    /// Sends `line` and reads the reply; a negative reply is [`StepError::Refused`].
    async fn command(&mut self, line: &str) -> Result<SmtpReply, StepError> {
        self.send_line(line).await?;
        let reply = self.read_reply().await?;
        if reply.positive() {
            Ok(reply)
        } else {
            Err(StepError::Refused(reply))
        }
    }
}

fn message_text(m: &TestMessage, host: &str) -> Vec<u8> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let id = format!(
        "<{}.exgate@{}>",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        host
    );
    let mut out = format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nDate: {date}\r\nMessage-ID: {id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        m.from,
        m.to,
        m.subject.replace(['\r', '\n'], " ")
    );
    for line in m.body.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The DATA payload of `message`: lines ended by CRLF (a bare LF becomes CRLF), a leading dot
/// doubled (RFC 5321 4.5.2), and the final `.` line.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A message to submit: the envelope and the message as the client gave it (not dot-stuffed).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `MAIL FROM` (may be empty: a bounce).
    pub from: String,
    /// `RCPT TO`, one per recipient.
    pub to: Vec<String>,
    /// The message (headers and body).
    pub data: Vec<u8>,
}

/// Where a submission is when [`Handover`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// After the server's `354`, before the message's bytes are sent: an error stops the
    /// submission there (the server then discards the incomplete message).
    Sending,
    /// The server accepted the message (its reply to the final `.`), before `QUIT`; an error
    /// is ignored.
    Accepted,
}

/// Called at each [`Stage`] of a submission (a spool records the handover and the acceptance
/// as close to the wire as it can).
pub type Handover<'a> = &'a (dyn Fn(Stage) -> Result<(), String> + Send + Sync);

/// Submits `message`: the steps of [`check`] followed by `MAIL`, one `RCPT` per recipient and
/// `DATA`. The transcript's last step before `quit` is `data` when the server took the message.
/// `handover` runs just before the bytes go out (a spool records it).
pub async fn submit(
    options: &SmtpOptions,
    auth: &SmtpAuth,
    message: &Outgoing,
    handover: Handover<'_>,
) -> SmtpTranscript {
    let mut t = new_transcript(options, auth);
    let session = run(options, auth, Some((message, handover)), &mut t).await;
    if let Some(mut s) = session {
        let start = Instant::now();
        let quit = s.command("QUIT").await;
        t.steps.push(step("quit", start, quit));
    }
    t
}

fn new_transcript(options: &SmtpOptions, auth: &SmtpAuth) -> SmtpTranscript {
    SmtpTranscript {
        // The name the TLS certificate must carry, and where the connection really goes.
        server: match options.connect_to {
            Some(addr) => format!("{}:{} via {addr}", options.host, options.port),
            None => format!("{}:{}", options.host, options.port),
        },
        mechanism: auth.mechanism().to_owned(),
        extensions: Vec::new(),
        steps: Vec::new(),
    }
}

/// Runs the check. See the module documentation.
pub async fn check(
    options: &SmtpOptions,
    auth: &SmtpAuth,
    message: Option<&TestMessage>,
) -> SmtpTranscript {
    let mut t = new_transcript(options, auth);
    let outgoing = message.map(|m| Outgoing {
        from: m.from.clone(),
        to: vec![m.to.clone()],
        data: message_text(m, &options.host),
    });
    let none = |_: Stage| Ok(());
    let session = run(
        options,
        auth,
        outgoing.as_ref().map(|o| (o, &none as Handover<'_>)),
        &mut t,
    )
    .await;
    if let Some(mut s) = session {
        let start = Instant::now();
        let quit = s.command("QUIT").await;
        t.steps.push(step("quit", start, quit));
    }
    t
}

fn step(name: &str, start: Instant, r: Result<SmtpReply, StepError>) -> SmtpStep {
    let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    match r {
        Ok(reply) => SmtpStep {
            name: name.to_owned(),
            ok: true,
            reply: Some(reply),
            error: None,
            ms,
        },
        Err(StepError::Refused(reply)) => SmtpStep {
            name: name.to_owned(),
            ok: false,
            reply: Some(reply),
            error: None,
            ms,
        },
        Err(StepError::Transport(e)) => SmtpStep {
            name: name.to_owned(),
            ok: false,
            reply: None,
            error: Some(e),
            ms,
        },
    }
}

/// Records a step; `None` (stop) when it failed.
fn record<T>(
    t: &mut SmtpTranscript,
    name: &str,
    start: Instant,
    r: Result<(T, SmtpReply), StepError>,
) -> Option<T> {
    match r {
        Ok((v, reply)) => {
            t.steps.push(step(name, start, Ok(reply)));
            Some(v)
        }
        Err(e) => {
            t.steps.push(step(name, start, Err(e)));
            None
        }
    }
}

/// Every step up to the first failure; returns the session when QUIT can still be sent.
async fn run(
    o: &SmtpOptions,
    auth: &SmtpAuth,
    message: Option<(&Outgoing, Handover<'_>)>,
    t: &mut SmtpTranscript,
) -> Option<Session> {
    let (mut s, signed_in) = open_steps(o, auth, t).await?;
    if signed_in && let Some((m, handover)) = message {
        transact(&mut s, m, handover, t).await;
    }
    Some(s)
}

/// Connect, greeting, EHLO, STARTTLS, EHLO, AUTH: the session (when QUIT can still be sent) and
/// whether the sign-in succeeded.
async fn open_steps(
    o: &SmtpOptions,
    auth: &SmtpAuth,
    t: &mut SmtpTranscript,
) -> Option<(Session, bool)> {
    let config = match tls_config(o.extra_root_pem.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            t.steps.push(step(
                "connect",
                Instant::now(),
                Err(StepError::Transport(e)),
            ));
            return None;
        }
    };
    let start = Instant::now();
    let connected = async {
        let tcp = connect_tcp(&o.host, o.port, o.connect_to, o.timeout)
            .await
            .map_err(StepError::Transport)?;
        let stream: Box<dyn Io> = Box::new(tcp);
        let stream = match o.security {
            SmtpSecurity::Tls => start_tls(stream, &o.host, config.clone(), o.timeout)
                .await
                .map_err(StepError::Transport)?,
            SmtpSecurity::StartTls => stream,
        };
        Ok(Session {
            io: BufReader::new(stream),
            timeout: o.timeout,
        })
    }
    .await;
    let mut s = match connected {
        Ok(s) => {
            t.steps.push(SmtpStep {
                name: "connect".into(),
                ok: true,
                reply: None,
                error: None,
                ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
            s
        }
        Err(e) => {
            t.steps.push(step("connect", start, Err(e)));
            return None;
        }
    };

    let start = Instant::now();
    let greeting = s.read_reply().await.and_then(|r| {
        if r.code == 220 {
            Ok(((), r))
        } else {
            Err(StepError::Refused(r))
        }
    });
    record(t, "greeting", start, greeting)?;

    let ehlo = format!("EHLO {}", o.ehlo_name);
    let start = Instant::now();
    let r = s.command(&ehlo).await.map(|r| ((), r));
    let reply = match &r {
        Ok((_, reply)) => Some(reply.clone()),
        Err(_) => None,
    };
    record(t, "ehlo", start, r)?;
    if let Some(reply) = reply {
        t.extensions = reply.lines.iter().skip(1).cloned().collect();
    }

    if o.security == SmtpSecurity::StartTls {
        let start = Instant::now();
        let r = s.command("STARTTLS").await;
        let r = match r {
            Ok(reply) => {
                let buffered = !s.io.buffer().is_empty();
                let inner = s.io.into_inner();
                if buffered {
                    t.steps.push(step(
                        "starttls",
                        start,
                        Err(StepError::Transport(
                            "the server sent data before the TLS handshake".into(),
                        )),
                    ));
                    return None;
                }
                match start_tls(inner, &o.host, config.clone(), o.timeout).await {
                    Ok(tls) => {
                        s = Session {
                            io: BufReader::new(tls),
                            timeout: o.timeout,
                        };
                        Ok(((), reply))
                    }
                    Err(e) => {
                        t.steps
                            .push(step("starttls", start, Err(StepError::Transport(e))));
                        return None;
                    }
                }
            }
            Err(e) => Err(e),
        };
        record(t, "starttls", start, r)?;
        let start = Instant::now();
        let r = s.command(&ehlo).await;
        if let Ok(reply) = &r {
            t.extensions = reply.lines.iter().skip(1).cloned().collect();
        }
        record(t, "ehlo", start, r.map(|r| ((), r)))?;
    }

    let start = Instant::now();
    let r = authenticate(&mut s, auth).await.map(|r| ((), r));
    let signed_in = r.is_ok();
    record(t, "auth", start, r);
    Some((s, signed_in))
}

/// `MAIL`, one `RCPT` per recipient, `DATA`: `true` when the server took the message. A step
/// that failed is the transcript's last.
async fn transact(
    s: &mut Session,
    m: &Outgoing,
    handover: Handover<'_>,
    t: &mut SmtpTranscript,
) -> bool {
    let start = Instant::now();
    let r = s.command(&format!("MAIL FROM:<{}>", m.from)).await;
    if record(t, "mail", start, r.map(|r| ((), r))).is_none() {
        return false;
    }
    for to in &m.to {
        let start = Instant::now();
        let r = s.command(&format!("RCPT TO:<{to}>")).await;
        if record(t, "rcpt", start, r.map(|r| ((), r))).is_none() {
            return false;
        }
    }
    let start = Instant::now();
    let r = async {
        let go = s.command("DATA").await?;
        if go.code != 354 {
            return Err(StepError::Refused(go));
        }
        handover(Stage::Sending).map_err(StepError::Transport)?;
        write_bytes(&mut s.io, &dot_stuff(&m.data), s.timeout)
            .await
            .map_err(StepError::Transport)?;
        let done = s.read_reply().await?;
        if done.positive() {
            let _ = handover(Stage::Accepted);
            Ok(done)
        } else {
            Err(StepError::Refused(done))
        }
    }
    .await;
    record(t, "data", start, r.map(|r| ((), r))).is_some()
}

/// A signed-in SMTP session kept for several submissions, as a relay reuses its connection:
/// one connection, TLS handshake and `AUTH` for many messages instead of one each.
///
/// A submission that fails leaves the session usable when the server answered (the
/// transaction is reset with `RSET`), unusable after a transport error (a timeout, a closed
/// connection): [`SmtpConnection::usable`] says which, and an unusable session is dropped.
pub struct SmtpConnection {
    s: Session,
    server: String,
    mechanism: String,
    extensions: Vec<String>,
    usable: bool,
    opened: Instant,
    last_used: Instant,
    messages: u32,
}

impl std::fmt::Debug for SmtpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("server", &self.server)
            .field("usable", &self.usable)
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl SmtpConnection {
    /// Connects and signs in. The transcript of the opening (its steps are a [`submit`]'s
    /// first ones), and the connection when the sign-in succeeded.
    pub async fn open(
        options: &SmtpOptions,
        auth: &SmtpAuth,
    ) -> (SmtpTranscript, Option<SmtpConnection>) {
        let mut t = new_transcript(options, auth);
        match open_steps(options, auth, &mut t).await {
            Some((s, true)) => {
                let now = Instant::now();
                let c = SmtpConnection {
                    s,
                    server: t.server.clone(),
                    mechanism: t.mechanism.clone(),
                    extensions: t.extensions.clone(),
                    usable: true,
                    opened: now,
                    last_used: now,
                    messages: 0,
                };
                (t, Some(c))
            }
            Some((mut s, false)) => {
                let start = Instant::now();
                let quit = s.command("QUIT").await;
                t.steps.push(step("quit", start, quit));
                (t, None)
            }
            None => (t, None),
        }
    }

    /// Submits one message on the open session (`MAIL`, `RCPT`s, `DATA`); the transcript has
    /// those steps only. After a refusal the transaction is reset for the next message.
    pub async fn send(&mut self, message: &Outgoing, handover: Handover<'_>) -> SmtpTranscript {
        let mut t = SmtpTranscript {
            server: self.server.clone(),
            mechanism: self.mechanism.clone(),
            extensions: self.extensions.clone(),
            steps: Vec::new(),
        };
        self.last_used = Instant::now();
        let delivered = transact(&mut self.s, message, handover, &mut t).await;
        if delivered {
            self.messages += 1;
        } else if t.steps.last().is_some_and(|s| s.reply.is_none()) {
            // No answer: the connection is gone or out of step.
            self.usable = false;
        } else {
            self.usable = self.s.command("RSET").await.is_ok();
        }
        self.last_used = Instant::now();
        t
    }

    /// `false` once a submission ended without an answer from the server.
    pub fn usable(&self) -> bool {
        self.usable
    }

    /// Messages this session delivered.
    pub fn messages(&self) -> u32 {
        self.messages
    }

    /// Time since the session was opened.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Time since the session was last used.
    pub fn idle(&self) -> Duration {
        self.last_used.elapsed()
    }

    /// Ends the session politely (`QUIT`); errors are ignored.
    pub async fn quit(mut self) {
        if self.usable {
            let _ = self.s.command("QUIT").await;
        }
    }
}

async fn authenticate(s: &mut Session, auth: &SmtpAuth) -> Result<SmtpReply, StepError> {
    match auth {
        SmtpAuth::Xoauth2 { user, token } => {
            s.send_line(&format!(
                "AUTH XOAUTH2 {}",
                crate::sasl::xoauth2_response(user, token)
            ))
            .await?;
            let reply = s.read_reply().await?;
            if reply.code == 334 {
                // An error challenge (RFC 7628): answer with an empty line for the final reply.
                s.send_line("").await?;
                let last = s.read_reply().await?;
                return Err(StepError::Refused(last));
            }
            if reply.code == 235 {
                Ok(reply)
            } else {
                Err(StepError::Refused(reply))
            }
        }
        SmtpAuth::Ntlm(creds) => {
            // [MS-SMTPNTLM]: AUTH NTLM, 334, NEGOTIATE, 334 CHALLENGE, AUTHENTICATE, 235.
            let first = s.command("AUTH NTLM").await?;
            if first.code != 334 {
                return Err(StepError::Refused(first));
            }
            let negotiate = crate::ntlm::negotiate_message();
            s.send_line(&B64.encode(&negotiate)).await?;
            let challenge = s.read_reply().await?;
            if challenge.code != 334 {
                return Err(StepError::Refused(challenge));
            }
            let text = challenge.lines.first().map(String::as_str).unwrap_or("");
            let Some(answer) = crate::ntlm::answer_challenge(creds, &negotiate, text) else {
                // Not a challenge: cancel the exchange and report the server's answer to it.
                s.send_line("*").await?;
                let last = s.read_reply().await?;
                return Err(StepError::Refused(last));
            };
            s.send_line(&B64.encode(answer)).await?;
            let done = s.read_reply().await?;
            if done.code == 235 {
                Ok(done)
            } else {
                Err(StepError::Refused(done))
            }
        }
        SmtpAuth::Login { user, password } => {
            let first = s.command("AUTH LOGIN").await?;
            if first.code != 334 {
                return Err(StepError::Refused(first));
            }
            s.send_line(&B64.encode(user)).await?;
            let second = s.read_reply().await?;
            if second.code != 334 {
                return Err(StepError::Refused(second));
            }
            s.send_line(&B64.encode(password.expose_secret())).await?;
            let done = s.read_reply().await?;
            if done.code == 235 {
                Ok(done)
            } else {
                Err(StepError::Refused(done))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    fn read(bytes: &[u8]) -> Result<SmtpReply, StepError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (a, mut b) = tokio::io::duplex(1 << 16);
            b.write_all(bytes).await.expect("write");
            drop(b);
            let mut s = Session {
                io: BufReader::new(Box::new(a)),
                timeout: Duration::from_secs(1),
            };
            s.read_reply().await
        })
    }

    #[test]
    fn replies_single_and_multi_line_with_enhanced_codes() {
        let r = read(b"250-smtp.test Hello\r\n250-SIZE 1\r\n250 AUTH LOGIN XOAUTH2\r\n").unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["smtp.test Hello", "SIZE 1", "AUTH LOGIN XOAUTH2"]);
        assert_eq!(r.enhanced, None);
        let r = read(b"535 5.7.3 Authentication unsuccessful [x]\r\n").unwrap();
        assert_eq!((r.code, r.enhanced.as_deref()), (535, Some("5.7.3")));
        assert_eq!(r.text(), "535 5.7.3 Authentication unsuccessful [x]");
        assert!(matches!(
            read(b"250-a\r\n251 b\r\n"),
            Err(StepError::Transport(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 400\r\n"),
            Err(StepError::Transport(_))
        ));
        assert!(matches!(read(b""), Err(StepError::Transport(_))));
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let a = SmtpAuth::Login {
            user: "u".into(),
            password: secrecy::SecretString::from("CANARY-pw"),
        };
        assert!(!format!("{a:?}").contains("CANARY"));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".x\nend"), b"..x\r\nend\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    proptest::proptest! {
        #[test]
        fn dot_stuffing_round_trips(lines in proptest::collection::vec("[.a-z]{0,5}", 0..8)) {
            let message: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            let stuffed = dot_stuff(message.as_bytes());
            let text = String::from_utf8(stuffed).expect("ascii");
            let body = text.strip_suffix(".\r\n").expect("terminator");
            let unstuffed: String = body
                .split_inclusive("\r\n")
                .map(|l| l.strip_prefix('.').unwrap_or(l))
                .collect();
            proptest::prop_assert_eq!(unstuffed, message);
        }

        #[test]
        fn reply_reader_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = read(&bytes);
            let mut framed = b"250-".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = read(&framed);
        }
    }
}
