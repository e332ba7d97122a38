//! POP3 as Exchange Online's `outlook.office365.com:995` answers it (RFC 1939, CAPA RFC 2449,
//! SASL RFC 5034): implicit TLS, `USER`/`PASS` and `AUTH PLAIN` (passwords through the
//! [`Directory`](crate::Directory), refused when the tenant has Basic off), `AUTH XOAUTH2`
//! (bearer tokens of the emulator with `POP.AccessAsApp` or `POP.AccessAsUser.All`), the POP
//! switches of the organisation and the mailbox, then `STAT`, `LIST`, `UIDL`, `RETR`, `TOP`,
//! `DELE`, `RSET`, `NOOP`, `QUIT` over the Inbox.
//!
//! Exchange answers every sign-in refusal alike; the wording used here,
//! `-ERR Logon failure: unknown user name or bad password.`, is the one users quote from
//! Exchange Online (for example in the email-oauth2-proxy and Thunderbird trackers); it is not
//! in Microsoft's documentation. The dialogue is a pure state machine ([`Session`]); the I/O
//! loop bounds line length, time per read and concurrent connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::{protocol_right, xoauth2_mailbox};
use crate::directory::PasswordCheck;
use crate::smtp::{ReadLine, parse_plain, parse_xoauth2, read_line, send, timed};
use crate::state::{Counters, ExchangeState, Inner};
use crate::store::Folder;

/// Longest command or SASL line (XOAUTH2 responses carry a whole token).
const MAX_LINE: usize = 16 * 1024;
/// Protocol errors before the server hangs up.
const MAX_ERRORS: u32 = 20;
/// The sign-in refusal.
pub const LOGON_FAILURE: &str = "-ERR Logon failure: unknown user name or bad password.";
/// What `CAPA` lists.
pub const CAPABILITIES: &[&str] = &["TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER"];
/// What `CAPA` lists on an on-premises server reached by its name: Windows authentication
/// (NTLM; GSSAPI is not played) and PLAIN instead of XOAUTH2.
pub const ONPREM_CAPABILITIES: &[&str] = &["TOP", "UIDL", "SASL NTLM PLAIN", "USER"];

/// How the POP3 endpoint runs.
#[derive(Debug, Clone)]
pub struct PopOptions {
    /// The server name in the greeting.
    pub host: String,
    /// Time allowed for each read.
    pub read_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Asked on each new connection for an injected fault (`[[faults]]`).
    pub on_connect: crate::line_faults::OnConnect,
}

impl Default for PopOptions {
    fn default() -> Self {
        PopOptions {
            host: "outlook.office365.com".into(),
            read_timeout: Duration::from_secs(600),
            max_connections: 64,
            on_connect: crate::line_faults::OnConnect::default(),
        }
    }
}

/// What the session does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this (one or more CRLF-terminated lines).
    Reply(String),
    /// Send `+ ` (with the text after it, e.g. an NTLM challenge) and read a SASL response for
    /// this mechanism.
    Challenge(Mech, String),
    /// Send this and close.
    Close(String),
}

/// A SASL mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mech {
    Plain,
    Xoauth2,
    /// Windows authentication on an on-premises server.
    Ntlm(crate::line_auth::NtlmStep),
}

/// One POP3 session.
#[derive(Debug, Default)]
pub(crate) struct Session {
    user: Option<String>,
    authed: Option<u32>,
    /// Positions (in the Inbox) of the messages at sign-in; the maildrop is fixed then.
    drop: Vec<u32>,
    deleted: Vec<bool>,
    errors: u32,
    /// The on-premises server the client reached by its name (the TLS server name), if any.
    onprem: Option<usize>,
}

fn line(s: &str) -> String {
    format!("{s}\r\n")
}

/// The greeting.
pub(crate) fn greeting(host: &str) -> String {
    line(&format!(
        "+OK The Microsoft Exchange POP3 service is ready. [{}]",
        B64.encode(host)
    ))
}

impl Session {
    fn err(&mut self, text: &str) -> Step {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            return Step::Close(line("-ERR Too many errors."));
        }
        Step::Reply(line(text))
    }

    fn refuse(&mut self, st: &Inner) -> Step {
        Counters::bump(&st.counters.auth_failures);
        self.user = None;
        self.err(LOGON_FAILURE)
    }

    fn pop_allowed(st: &Inner, i: u32, tenant_id: &str) -> bool {
        st.org(&tenant_id.to_ascii_lowercase()).pop_enabled && !st.pop_disabled.contains(&i)
    }

    fn sign_in(&mut self, st: &Inner, i: u32) {
        self.authed = Some(i);
        let gone = st.overlay.deleted_in(i, Folder::Inbox);
        self.drop = (0..st.slots(i, Folder::Inbox))
            .filter(|n| gone.binary_search(n).is_err())
            .collect();
        self.deleted = vec![false; self.drop.len()];
    }

    fn xoauth2(&mut self, st: &Inner, user: &str, token: &SecretString) -> bool {
        let Some((claims, i, m)) = xoauth2_mailbox(st, user, token) else {
            return false;
        };
        if !Self::pop_allowed(st, i, &m.tenant_id)
            || !protocol_right(st, &claims, i, m, "POP.AccessAsUser.All", "POP.AccessAsApp")
        {
            return false;
        }
        self.sign_in(st, i);
        true
    }

    fn password(&mut self, st: &Inner, user: &str, password: &SecretString) -> bool {
        if let Some(server) = self.onprem {
            return crate::line_auth::password(st, server, user, password)
                .is_some_and(|i| self.onprem_sign_in(st, i));
        }
        let upn = user.trim().to_ascii_lowercase();
        let domain = upn.rsplit('@').next().unwrap_or_default();
        let Some(tenant) = st.directory.tenant(domain) else {
            return false;
        };
        if !tenant.basic_auth
            || st.directory.check_password(&upn, password.expose_secret()) != PasswordCheck::Ok
        {
            return false;
        }
        let Some((i, m)) = st.find(&upn).and_then(|i| st.mailbox(i).map(|m| (i, m))) else {
            return false;
        };
        if !m.tenant_id.eq_ignore_ascii_case(&tenant.id)
            || !m.provisioned
            || m.server.is_some()
            || !Self::pop_allowed(st, i, &m.tenant_id)
        {
            return false;
        }
        self.sign_in(st, i);
        true
    }

    /// Signs in to mailbox `i` of an on-premises server when POP is allowed for it.
    fn onprem_sign_in(&mut self, st: &Inner, i: u32) -> bool {
        let allowed = st
            .mailbox(i)
            .is_some_and(|m| Self::pop_allowed(st, i, &m.tenant_id));
        if allowed {
            self.sign_in(st, i);
        }
        allowed
    }

    /// A SASL response (after `+ ` or as the initial response).
    pub(crate) fn sasl(&mut self, st: &Inner, mech: Mech, raw: &[u8]) -> Step {
        let text = std::str::from_utf8(raw).unwrap_or("\u{0}").trim();
        if text == "*" {
            return self.err("-ERR Authentication cancelled.");
        }
        let ok = match (mech, B64.decode(text).ok()) {
            (_, None) => false,
            (Mech::Ntlm(step), Some(d)) => {
                let server = self.onprem.unwrap_or(usize::MAX);
                match crate::line_auth::ntlm_step(st, server, step, &d) {
                    crate::line_auth::NtlmOutcome::Challenge(next, text) => {
                        return Step::Challenge(Mech::Ntlm(next), text);
                    }
                    crate::line_auth::NtlmOutcome::Done(Some(i)) => self.onprem_sign_in(st, i),
                    crate::line_auth::NtlmOutcome::Done(None) => false,
                }
            }
            (Mech::Xoauth2, Some(d)) => {
                parse_xoauth2(&d).is_some_and(|(u, t)| self.xoauth2(st, &u, &t))
            }
            (Mech::Plain, Some(d)) => {
                parse_plain(&d).is_some_and(|(u, p)| self.password(st, &u, &p))
            }
        };
        if ok {
            Step::Reply(line("+OK User successfully authenticated."))
        } else {
            self.refuse(st)
        }
    }

    /// The message at 1-based `n`, when present and not deleted.
    fn pick(&self, n: &str) -> Option<(usize, u32)> {
        let n: usize = n.parse().ok()?;
        let k = n.checked_sub(1)?;
        (k < self.drop.len() && !self.deleted[k]).then(|| (k, self.drop[k]))
    }

    fn mime(st: &Inner, i: u32, pos: u32) -> String {
        st.message(i, Folder::Inbox, pos)
            .map(|m| m.mime())
            .unwrap_or_default()
    }

    fn uid(st: &Inner, i: u32, pos: u32) -> String {
        let id = st
            .message(i, Folder::Inbox, pos)
            .map(|m| m.internet_message_id.clone())
            .unwrap_or_default();
        format!(
            "{:016x}",
            crate::store::fnv(&[id.as_bytes(), &pos.to_le_bytes()])
        )
    }

    /// One command line.
    pub(crate) fn command(&mut self, st: &Inner, raw: &[u8]) -> Step {
        let text = String::from_utf8_lossy(raw);
        let (verb, args) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_owned()),
            None => (text.trim().to_ascii_uppercase(), String::new()),
        };
        if verb == "QUIT" {
            if let Some(i) = self.authed {
                for (k, gone) in self.deleted.iter().enumerate() {
                    if *gone {
                        st.delete(i, Folder::Inbox, self.drop[k]);
                    }
                }
            }
            return Step::Close(line(
                "+OK Microsoft Exchange Server POP3 server signing off.",
            ));
        }
        if verb == "CAPA" {
            let mut out = line("+OK");
            let list = if self.onprem.is_some() {
                ONPREM_CAPABILITIES
            } else {
                CAPABILITIES
            };
            for c in list {
                out.push_str(&line(c));
            }
            out.push_str(&line("."));
            return Step::Reply(out);
        }
        if verb == "NOOP" {
            return Step::Reply(line("+OK"));
        }
        let Some(i) = self.authed else {
            return match verb.as_str() {
                "USER" if !args.is_empty() => {
                    self.user = Some(args);
                    Step::Reply(line("+OK"))
                }
                "PASS" => match self.user.take() {
                    Some(u) if self.password(st, &u, &SecretString::from(args)) => {
                        Step::Reply(line("+OK User successfully logged on."))
                    }
                    Some(_) => self.refuse(st),
                    None => self.err("-ERR Command is not valid in this state."),
                },
                "AUTH" => {
                    let mut parts = args.split_whitespace();
                    let onprem = self.onprem.is_some();
                    let mech = match parts.next().map(str::to_ascii_uppercase).as_deref() {
                        Some("XOAUTH2") if !onprem => Mech::Xoauth2,
                        Some("NTLM") if onprem => Mech::Ntlm(crate::line_auth::NtlmStep::Start),
                        Some("PLAIN") => Mech::Plain,
                        _ => return self.err("-ERR Unrecognized authentication type."),
                    };
                    match parts.next() {
                        Some(ir) => self.sasl(st, mech, ir.as_bytes()),
                        None => Step::Challenge(mech, String::new()),
                    }
                }
                _ => self.err("-ERR Command is not valid in this state."),
            };
        };
        match verb.as_str() {
            "STAT" => {
                let (n, size) = self
                    .drop
                    .iter()
                    .zip(&self.deleted)
                    .filter(|(_, d)| !**d)
                    .fold((0, 0), |(n, s), (p, _)| {
                        (n + 1, s + Self::mime(st, i, *p).len())
                    });
                Step::Reply(line(&format!("+OK {n} {size}")))
            }
            "LIST" | "UIDL" => {
                let entry = |k: usize, p: u32| {
                    if verb == "LIST" {
                        format!("{} {}", k + 1, Self::mime(st, i, p).len())
                    } else {
                        format!("{} {}", k + 1, Self::uid(st, i, p))
                    }
                };
                if args.is_empty() {
                    let mut out = line("+OK");
                    for (k, p) in self.drop.iter().enumerate() {
                        if !self.deleted[k] {
                            out.push_str(&line(&entry(k, *p)));
                        }
                    }
                    out.push_str(&line("."));
                    Step::Reply(out)
                } else {
                    match self.pick(&args) {
                        Some((k, p)) => Step::Reply(line(&format!("+OK {}", entry(k, p)))),
                        None => self.err("-ERR The specified message is out of range."),
                    }
                }
            }
            "RETR" | "TOP" => {
                let mut parts = args.split_whitespace();
                let Some((_, p)) = parts.next().and_then(|n| self.pick(n)) else {
                    return self.err("-ERR The specified message is out of range.");
                };
                let lines = if verb == "TOP" {
                    match parts.next().and_then(|n| n.parse::<usize>().ok()) {
                        Some(n) => Some(n),
                        None => return self.err("-ERR Protocol error. 14"),
                    }
                } else {
                    None
                };
                let mime = Self::mime(st, i, p);
                let (head, body) = mime.split_once("\r\n\r\n").unwrap_or((&mime, ""));
                let mut out = line("+OK");
                let mut push = |l: &str| {
                    if l.starts_with('.') {
                        out.push('.');
                    }
                    out.push_str(l);
                    out.push_str("\r\n");
                };
                for l in head.split("\r\n") {
                    push(l);
                }
                push("");
                let body_lines: Vec<&str> = body.split("\r\n").collect();
                let take = lines.unwrap_or(body_lines.len());
                for l in body_lines.iter().take(take) {
                    push(l);
                }
                out.push_str(&line("."));
                Step::Reply(out)
            }
            "DELE" => match self.pick(&args) {
                Some((k, _)) => {
                    self.deleted[k] = true;
                    Step::Reply(line("+OK"))
                }
                None => self.err("-ERR The specified message is out of range."),
            },
            "RSET" => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                Step::Reply(line("+OK"))
            }
            "USER" | "PASS" | "AUTH" => self.err("-ERR Command is not valid in this state."),
            _ => self.err("-ERR Protocol error. 14"),
        }
    }
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    st: &Inner,
    stream: S,
    opts: &PopOptions,
    onprem: Option<usize>,
) {
    let mut io = BufReader::new(stream);
    let d = opts.read_timeout;
    let mut session = Session {
        onprem,
        ..Session::default()
    };
    let host = onprem
        .and_then(|k| st.servers.get(k))
        .map_or(opts.host.as_str(), |s| s.host.as_str());
    if send(io.get_mut(), &greeting(host)).await.is_err() {
        return;
    }
    loop {
        let mut step = match timed(d, read_line(&mut io, MAX_LINE)).await {
            None | Some(ReadLine::Eof) => return,
            Some(ReadLine::TooLong) => session.err("-ERR Protocol error. 14"),
            Some(ReadLine::Line(l)) => session.command(st, &l),
        };
        loop {
            match step {
                Step::Reply(r) => {
                    if send(io.get_mut(), &r).await.is_err() {
                        return;
                    }
                    break;
                }
                Step::Close(r) => {
                    let _ = send(io.get_mut(), &r).await;
                    let _ = io.get_mut().shutdown().await;
                    return;
                }
                Step::Challenge(mech, text) => {
                    if send(io.get_mut(), &format!("+ {text}\r\n")).await.is_err() {
                        return;
                    }
                    step = match timed(d, read_line(&mut io, MAX_LINE)).await {
                        None | Some(ReadLine::Eof) => return,
                        Some(ReadLine::TooLong) => session.sasl(st, mech, b"!"),
                        Some(ReadLine::Line(l)) => session.sasl(st, mech, &l),
                    };
                }
            }
        }
    }
}

async fn connection(
    state: ExchangeState,
    stream: TcpStream,
    tls: tokio_rustls::TlsAcceptor,
    opts: Arc<PopOptions>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let Some(secure) = crate::accept::open_tls(
        stream,
        &tls,
        opts.read_timeout,
        &opts.on_connect,
        permit.is_some(),
        "-ERR Too many concurrent connections.",
    )
    .await
    else {
        return;
    };
    let name = secure.get_ref().1.server_name().map(str::to_owned);
    let onprem = crate::line_auth::server_by_name(&state.inner, name.as_deref());
    run(&state.inner, secure, &opts, onprem).await;
    drop(permit);
}

/// Serves POP3 with implicit TLS on `listener` until `stop` completes. Bind the listener to
/// loopback: the endpoint is for tests.
pub async fn serve_pop(
    state: ExchangeState,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    options: PopOptions,
    stop: impl Future<Output = ()> + Send,
) {
    let (max, read_timeout) = (options.max_connections, options.read_timeout);
    let opts = Arc::new(options);
    crate::accept::serve_implicit_tls(
        listener,
        tls,
        max,
        read_timeout,
        stop,
        move |stream, acceptor, permit| {
            connection(state.clone(), stream, acceptor, opts.clone(), permit)
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_command_gets_an_answer(cmds in proptest::collection::vec("\\PC{0,40}", 0..20)) {
            let cfg = crate::ExchangeConfig::from_toml_str("")
                .unwrap_or_else(|e| panic!("{e}"));
            let state = ExchangeState::new(
                cfg,
                Arc::new(crate::InMemoryDirectory::new()),
                crate::TokenVerifier::new(Vec::new()),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let mut s = Session::default();
            for c in cmds {
                match s.command(&state.inner, c.as_bytes()) {
                    Step::Reply(r) | Step::Close(r) => proptest::prop_assert!(r.starts_with('+') || r.starts_with('-')),
                    Step::Challenge(..) => {}
                }
            }
        }
    }
}
