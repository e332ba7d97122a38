//! SMTP client submission as Exchange Online's `smtp.office365.com:587` answers it: EHLO,
//! STARTTLS, `AUTH XOAUTH2` (bearer tokens of the emulator), `AUTH LOGIN` / `AUTH PLAIN`
//! (passwords through the [`Directory`](crate::Directory)), the SMTP AUTH switches of the
//! organisation and the mailbox, `MAIL`/`RCPT`/`DATA`/`BDAT`, and delivery into the Inboxes of
//! emulated mailboxes.
//!
//! The dialogue is a pure state machine ([`Session`]) fed line by line; the I/O loop
//! ([`serve_smtp`]) bounds line length, message size, time per read and concurrent connections.
//! Tokens and passwords are held as [`SecretString`] and never logged or echoed.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::{protocol_right, xoauth2_mailbox};
use crate::directory::PasswordCheck;
use crate::state::{Counters, ExchangeState, Inner};
use crate::store::{Folder, Message, Person};

/// The `SIZE` Exchange Online advertises (150 MiB).
pub const ADVERTISED_SIZE: u64 = 157_286_400;

/// Longest command or SASL line accepted (XOAUTH2 responses carry a whole token).
const MAX_LINE: usize = 16 * 1024;
/// Longest line inside DATA.
const MAX_DATA_LINE: usize = 64 * 1024;
/// Largest message kept (Exchange Online's default send limit is 35 MB).
pub(crate) const MAX_MESSAGE: usize = 36 * 1024 * 1024;
/// Recipients per message.
const MAX_RECIPIENTS: usize = 500;
/// Protocol errors before the server hangs up.
const MAX_ERRORS: u32 = 20;

const HELLO_FIRST: &str = "503 5.5.2 Send hello first";
const NOT_AUTHENTICATED: &str = "530 5.7.57 Client not authenticated to send mail.";
const UNRECOGNIZED: &str = "500 5.3.3 Unrecognized command";
const UNRECOGNIZED_AUTH: &str = "504 5.7.4 Unrecognized authentication type";
const CANNOT_DECODE: &str = "501 5.5.2 Cannot Decode response";
const AUTH_OK: &str = "235 2.7.0 Authentication successful";
const SEND_AS_DENIED: &str =
    "550 5.7.60 SMTP; Client does not have permissions to send as this sender";
const CLOSING: &str = "221 2.0.0 Service closing transmission channel";

/// How the SMTP endpoint runs.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// The server name in the greeting and in replies (`[<host>]`).
    pub host: String,
    /// Time allowed for each read (a command line, a SASL response, a DATA line, a BDAT chunk).
    pub read_timeout: Duration,
    /// Concurrent connections; beyond them a connection gets `421 4.3.2` and is closed.
    pub max_connections: usize,
    /// Asked on each new connection for an injected fault (`[[faults]]`).
    pub on_connect: crate::line_faults::OnConnect,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        SmtpOptions {
            host: "localhost".to_owned(),
            read_timeout: Duration::from_secs(300),
            max_connections: 64,
            on_connect: crate::line_faults::OnConnect::default(),
        }
    }
}

/// A SASL exchange in progress (the next line is the client's response).
#[derive(Debug)]
pub(crate) enum Pending {
    LoginUser,
    LoginPassword(String),
    Plain,
    Xoauth2,
    /// Windows authentication on an on-premises server ([MS-SMTPNTLM]).
    Ntlm(crate::line_auth::NtlmStep),
}

/// What the I/O loop does after a line.
#[derive(Debug)]
pub(crate) enum Step {
    /// Write this reply (CRLF-terminated lines) and read the next command.
    Reply(String),
    /// Write the reply, then start TLS.
    StartTls(String),
    /// Write the reply and close.
    Close(String),
    /// Write the `334` challenge; the next line goes to [`Session::sasl`].
    Challenge(String, Pending),
    /// Write `354`, read the message to `.`, give it to [`Session::message`].
    Data(String),
    /// Read `size` octets, give them to [`Session::chunk`]; `keep` false: discard them.
    Bdat { size: usize, last: bool, keep: bool },
}

/// The envelope of the message being submitted.
#[derive(Debug, Default)]
struct Envelope {
    from: String,
    rcpts: Vec<String>,
    /// BDAT chunks so far.
    chunks: Vec<u8>,
    too_big: bool,
}

/// One SMTP session's state.
#[derive(Debug)]
pub(crate) struct Session {
    host: String,
    tls: bool,
    greeted: bool,
    /// The authenticated mailbox (index).
    authed: Option<u32>,
    mail: Option<Envelope>,
    errors: u32,
    /// The on-premises server the client reached by its name (the TLS server name), if any:
    /// it offers NTLM and passwords instead of XOAUTH2.
    onprem: Option<usize>,
}

fn line(s: &str) -> String {
    format!("{s}\r\n")
}

fn failed(host: &str) -> String {
    line(&format!("535 5.7.3 Authentication unsuccessful [{host}]"))
}

fn basic_disabled(host: &str) -> String {
    line(&format!(
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [{host}]"
    ))
}

fn criteria(host: &str) -> String {
    line(&format!(
        "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator. [{host}]"
    ))
}

fn smtp_disabled(host: &str, what: &str) -> String {
    line(&format!(
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the {what}. Visit https://aka.ms/smtp_auth_disabled for more information. [{host}]"
    ))
}

/// The greeting line.
pub(crate) fn greeting(host: &str) -> String {
    let date = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    line(&format!(
        "220 {host} Microsoft ESMTP MAIL Service ready at {date}"
    ))
}

/// `user=<addr>\x01auth=Bearer <token>\x01\x01` → (user, token).
pub(crate) fn parse_xoauth2(raw: &[u8]) -> Option<(String, SecretString)> {
    let mut user = None;
    let mut token = None;
    for part in raw.split(|b| *b == 0x01).filter(|p| !p.is_empty()) {
        let part = std::str::from_utf8(part).ok()?;
        let (k, v) = part.split_once('=')?;
        if k.eq_ignore_ascii_case("user") {
            user = Some(v.trim().to_owned());
        } else if k.eq_ignore_ascii_case("auth") {
            let (scheme, t) = v.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") || t.trim().is_empty() {
                return None;
            }
            token = Some(SecretString::from(t.trim().to_owned()));
        }
    }
    match (user, token) {
        (Some(u), Some(t)) if !u.is_empty() => Some((u, t)),
        _ => None,
    }
}

/// `authzid\0authcid\0password` → (authcid, password).
pub(crate) fn parse_plain(raw: &[u8]) -> Option<(String, SecretString)> {
    let mut parts = raw.split(|b| *b == 0);
    let _authz = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let password = std::str::from_utf8(parts.next()?).ok()?;
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    Some((user.to_owned(), SecretString::from(password.to_owned())))
}

fn b64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    B64.decode(s).ok()
}

/// `FROM:<a> params` / `TO:<a> params` → (address, params). `<>` gives an empty address.
pub(crate) fn parse_path<'a>(args: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let args = args.trim_start();
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args.get(keyword.len()..)?.trim_start();
    if let Some(r) = rest.strip_prefix('<') {
        let end = r.find('>')?;
        let addr = r.get(..end)?;
        // A source route (`<@a,@b:user@d>`) is ignored, as RFC 5321 allows.
        let addr = addr.rsplit_once(':').map_or(addr, |(_, a)| a);
        Some((addr.trim().to_owned(), r.get(end + 1..)?.trim()))
    } else {
        let (addr, params) = rest.split_once(' ').unwrap_or((rest, ""));
        Some((addr.trim().to_owned(), params.trim()))
    }
}

fn valid_mailbox(a: &str) -> bool {
    a.len() <= 320 && !a.contains(['<', '>', ' ', '"', ',']) && crate::config::valid_address(a)
}

impl Session {
    pub(crate) fn new(host: &str) -> Self {
        Session {
            host: host.to_owned(),
            tls: false,
            greeted: false,
            authed: None,
            mail: None,
            errors: 0,
            onprem: None,
        }
    }

    /// After STARTTLS: everything known before is forgotten (RFC 3207).
    pub(crate) fn after_tls(&mut self) {
        self.tls = true;
        self.greeted = false;
        self.authed = None;
        self.mail = None;
    }

    /// After STARTTLS to the name of on-premises server `server` (its index): the session is
    /// that server's (its name in replies, NTLM and LOGIN offered).
    pub(crate) fn at_onprem(&mut self, st: &Inner, server: usize) {
        if let Some(s) = st.servers.get(server) {
            self.onprem = Some(server);
            self.host = s.host.clone();
        }
    }

    fn error(&mut self, reply: &str) -> Step {
        self.errors = self.errors.saturating_add(1);
        if self.errors > MAX_ERRORS {
            return Step::Close(line(
                "421 4.7.0 Too many errors on this connection, closing transmission channel",
            ));
        }
        Step::Reply(line(reply))
    }

    fn ehlo(&self) -> String {
        let mut lines = vec![
            format!("{} Hello [127.0.0.1]", self.host),
            format!("SIZE {ADVERTISED_SIZE}"),
            "PIPELINING".to_owned(),
            "DSN".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if self.tls && self.onprem.is_some() {
            // An on-premises Client Frontend connector with Basic and Integrated Windows
            // authentication (GSSAPI/Kerberos is not played).
            lines.push("AUTH NTLM LOGIN".to_owned());
        } else if self.tls {
            lines.push("AUTH LOGIN XOAUTH2".to_owned());
        } else {
            lines.push("STARTTLS".to_owned());
        }
        for l in ["8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"] {
            lines.push(l.to_owned());
        }
        let n = lines.len();
        lines
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let sep = if k + 1 == n { ' ' } else { '-' };
                format!("250{sep}{l}\r\n")
            })
            .collect()
    }

    /// One command line (without CRLF).
    pub(crate) fn command(&mut self, st: &Inner, raw: &[u8]) -> Step {
        let Ok(text) = std::str::from_utf8(raw) else {
            return self.error(UNRECOGNIZED);
        };
        let (verb, args) = text.split_once(' ').unwrap_or((text, ""));
        let verb = verb.to_ascii_uppercase();
        let args = args.trim();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if args.is_empty() {
                    return self.error("501 5.5.4 Invalid domain name");
                }
                self.greeted = true;
                self.mail = None;
                if verb == "EHLO" {
                    Step::Reply(self.ehlo())
                } else {
                    Step::Reply(line(&format!("250 {} Hello [127.0.0.1]", self.host)))
                }
            }
            "STARTTLS" => {
                if self.tls {
                    return self.error("503 5.5.1 Bad sequence of commands");
                }
                if !args.is_empty() {
                    return self.error("501 5.5.4 Syntax error in parameters or arguments");
                }
                Step::StartTls(line("220 2.0.0 SMTP server ready"))
            }
            "AUTH" => self.auth(st, args),
            "MAIL" => self.mail_from(st, args),
            "RCPT" => self.rcpt(args),
            "DATA" => match &self.mail {
                None => self.error("503 5.5.1 Need mail command"),
                Some(e) if e.rcpts.is_empty() => self.error("503 5.5.1 Need rcpt command"),
                Some(_) => Step::Data(line("354 Start mail input; end with <CRLF>.<CRLF>")),
            },
            "BDAT" => self.bdat(args),
            "RSET" => {
                self.mail = None;
                Step::Reply(line("250 2.0.0 Resetting"))
            }
            "NOOP" => Step::Reply(line("250 2.0.0 OK")),
            "QUIT" => Step::Close(line(CLOSING)),
            "VRFY" => Step::Reply(line("252 2.1.5 Cannot VRFY user")),
            _ => self.error(UNRECOGNIZED),
        }
    }

    fn auth(&mut self, st: &Inner, args: &str) -> Step {
        if !self.tls {
            return self.error(UNRECOGNIZED_AUTH);
        }
        if !self.greeted {
            return self.error(HELLO_FIRST);
        }
        if self.authed.is_some() {
            return self.error("503 5.5.1 Already authenticated");
        }
        if self.mail.is_some() {
            return self.error("503 5.5.1 Bad sequence of commands");
        }
        let (mech, initial) = match args.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim())),
            None => (args.to_ascii_uppercase(), None),
        };
        if self.onprem.is_some() {
            return match (mech.as_str(), initial) {
                // [MS-SMTPNTLM] 3.2.5: "334 NTLM supported" invites the NEGOTIATE_MESSAGE.
                ("NTLM", None) => Step::Challenge(
                    line("334 NTLM supported"),
                    Pending::Ntlm(crate::line_auth::NtlmStep::Start),
                ),
                ("NTLM", Some(i)) => self.sasl(
                    st,
                    Pending::Ntlm(crate::line_auth::NtlmStep::Start),
                    i.as_bytes(),
                ),
                ("LOGIN", None) => Step::Challenge(line("334 VXNlcm5hbWU6"), Pending::LoginUser),
                ("LOGIN", Some(i)) => self.sasl(st, Pending::LoginUser, i.as_bytes()),
                _ => self.error(UNRECOGNIZED_AUTH),
            };
        }
        match (mech.as_str(), initial) {
            ("XOAUTH2", None) => Step::Challenge(line("334 "), Pending::Xoauth2),
            ("XOAUTH2", Some(i)) => self.sasl(st, Pending::Xoauth2, i.as_bytes()),
            ("PLAIN", None) => Step::Challenge(line("334 "), Pending::Plain),
            ("PLAIN", Some(i)) => self.sasl(st, Pending::Plain, i.as_bytes()),
            ("LOGIN", None) => Step::Challenge(line("334 VXNlcm5hbWU6"), Pending::LoginUser),
            ("LOGIN", Some(i)) => self.sasl(st, Pending::LoginUser, i.as_bytes()),
            _ => self.error(UNRECOGNIZED_AUTH),
        }
    }

    /// The client's response to a `334` challenge.
    pub(crate) fn sasl(&mut self, st: &Inner, pending: Pending, raw: &[u8]) -> Step {
        let text = std::str::from_utf8(raw).unwrap_or("\u{0}");
        if text.trim() == "*" {
            return self.error("501 5.0.0 Authentication cancelled");
        }
        let Some(decoded) = b64(text) else {
            return self.error(CANNOT_DECODE);
        };
        let reply = match pending {
            Pending::Ntlm(step) => {
                let server = self.onprem.unwrap_or(usize::MAX);
                match crate::line_auth::ntlm_step(st, server, step, &decoded) {
                    crate::line_auth::NtlmOutcome::Challenge(next, text) => {
                        return Step::Challenge(line(&format!("334 {text}")), Pending::Ntlm(next));
                    }
                    crate::line_auth::NtlmOutcome::Done(Some(i)) => {
                        self.authed = Some(i);
                        line(AUTH_OK)
                    }
                    crate::line_auth::NtlmOutcome::Done(None) => failed(&self.host),
                }
            }
            Pending::Xoauth2 => match parse_xoauth2(&decoded) {
                Some((user, token)) => self.xoauth2(st, &user, &token),
                None => return self.error(CANNOT_DECODE),
            },
            Pending::Plain => match parse_plain(&decoded) {
                Some((user, password)) => self.password(st, &user, &password),
                None => return self.error(CANNOT_DECODE),
            },
            Pending::LoginUser => match String::from_utf8(decoded) {
                Ok(user) if !user.trim().is_empty() => {
                    return Step::Challenge(
                        line("334 UGFzc3dvcmQ6"),
                        Pending::LoginPassword(user.trim().to_owned()),
                    );
                }
                _ => return self.error(CANNOT_DECODE),
            },
            Pending::LoginPassword(user) => match String::from_utf8(decoded) {
                Ok(p) => self.password(st, &user, &SecretString::from(p)),
                Err(_) => return self.error(CANNOT_DECODE),
            },
        };
        if reply.starts_with("235") {
            tracing::debug!("smtp: authenticated");
        } else {
            Counters::bump(&st.counters.auth_failures);
            self.errors = self.errors.saturating_add(1);
        }
        Step::Reply(reply)
    }

    /// XOAUTH2: the token, then the switches, then the right to send.
    fn xoauth2(&mut self, st: &Inner, user: &str, token: &SecretString) -> String {
        let host = self.host.clone();
        let Some((claims, i, m)) = xoauth2_mailbox(st, user, token) else {
            return failed(&host);
        };
        if !st.org(&m.tenant_id).smtp_auth_enabled {
            return smtp_disabled(&host, "Tenant");
        }
        if !m.smtp_auth_enabled {
            return smtp_disabled(&host, "Mailbox");
        }
        if !protocol_right(st, &claims, i, m, "SMTP.Send", "SMTP.SendAsApp") {
            return failed(&host);
        }
        self.authed = Some(i);
        line(AUTH_OK)
    }

    /// AUTH LOGIN / PLAIN.
    fn password(&mut self, st: &Inner, user: &str, password: &SecretString) -> String {
        let host = self.host.clone();
        if let Some(server) = self.onprem {
            return match crate::line_auth::password(st, server, user, password) {
                Some(i) => {
                    self.authed = Some(i);
                    line(AUTH_OK)
                }
                None => failed(&host),
            };
        }
        let upn = user.trim().to_ascii_lowercase();
        let domain = upn.rsplit('@').next().unwrap_or_default();
        let Some(tenant) = st.directory.tenant(domain) else {
            return failed(&host);
        };
        if !st.org(&tenant.id.to_ascii_lowercase()).smtp_auth_enabled {
            return smtp_disabled(&host, "Tenant");
        }
        if !tenant.basic_auth {
            return basic_disabled(&host);
        }
        match st.directory.check_password(&upn, password.expose_secret()) {
            PasswordCheck::Ok => {}
            PasswordCheck::MfaRequired => return criteria(&host),
            _ => return failed(&host),
        }
        let Some((i, m)) = st.find(&upn).and_then(|i| st.mailbox(i).map(|m| (i, m))) else {
            return failed(&host);
        };
        if !m.tenant_id.eq_ignore_ascii_case(&tenant.id) || !m.provisioned || m.server.is_some() {
            return failed(&host);
        }
        if !m.smtp_auth_enabled {
            return smtp_disabled(&host, "Mailbox");
        }
        self.authed = Some(i);
        line(AUTH_OK)
    }

    fn mail_from(&mut self, st: &Inner, args: &str) -> Step {
        if !self.greeted {
            return self.error(HELLO_FIRST);
        }
        let Some(me) = self.authed else {
            return self.error(NOT_AUTHENTICATED);
        };
        if self.mail.is_some() {
            return self.error("503 5.5.2 Sender already specified");
        }
        let Some((from, params)) = parse_path(args, "FROM:") else {
            return self.error("501 5.5.4 Invalid arguments");
        };
        if !valid_mailbox(&from) {
            return self.error("501 5.1.7 Invalid address");
        }
        for p in params.split_whitespace() {
            if let Some(v) = p.get(..5).filter(|k| k.eq_ignore_ascii_case("SIZE=")) {
                let _ = v;
                let n: u64 = p.get(5..).and_then(|n| n.parse().ok()).unwrap_or(0);
                if n > MAX_MESSAGE as u64 {
                    return self.error("552 5.3.4 Message size exceeds fixed maximum message size");
                }
            }
        }
        if st.find(&from) != Some(me) {
            return self.error(SEND_AS_DENIED);
        }
        self.mail = Some(Envelope {
            from,
            ..Envelope::default()
        });
        Step::Reply(line("250 2.1.0 Sender OK"))
    }

    fn rcpt(&mut self, args: &str) -> Step {
        if self.mail.is_none() {
            return self.error("503 5.5.1 Need mail command");
        }
        let Some((to, _params)) = parse_path(args, "TO:") else {
            return self.error("501 5.5.4 Invalid arguments");
        };
        if !valid_mailbox(&to) {
            return self.error("501 5.1.3 Invalid address");
        }
        let Some(env) = self.mail.as_mut() else {
            return self.error("503 5.5.1 Need mail command");
        };
        if env.rcpts.len() >= MAX_RECIPIENTS {
            return Step::Reply(line("452 4.5.3 Too many recipients"));
        }
        env.rcpts.push(to);
        Step::Reply(line("250 2.1.5 Recipient OK"))
    }

    fn bdat(&mut self, args: &str) -> Step {
        let mut it = args.split_whitespace();
        let size = it.next().and_then(|n| n.parse::<usize>().ok());
        let last = match it.next() {
            None => false,
            Some(l) if l.eq_ignore_ascii_case("LAST") => true,
            Some(_) => return Step::Close(line("501 5.5.4 Invalid arguments")),
        };
        let Some(size) = size.filter(|s| *s <= MAX_MESSAGE) else {
            // The chunk cannot be skipped without knowing its size: hang up.
            return Step::Close(line("501 5.5.4 Invalid arguments"));
        };
        let ready = self.mail.as_ref().is_some_and(|e| !e.rcpts.is_empty());
        Step::Bdat {
            size,
            last,
            keep: ready,
        }
    }

    /// A BDAT chunk was read (`data` empty when it was discarded).
    pub(crate) fn chunk(&mut self, st: &Inner, data: &[u8], last: bool, kept: bool) -> Step {
        if !kept {
            return match &self.mail {
                None => self.error("503 5.5.1 Need mail command"),
                Some(_) => self.error("503 5.5.1 Need rcpt command"),
            };
        }
        let Some(env) = self.mail.as_mut() else {
            return self.error("503 5.5.1 Need mail command");
        };
        if env.chunks.len().saturating_add(data.len()) > MAX_MESSAGE {
            env.too_big = true;
            env.chunks = Vec::new();
        } else if !env.too_big {
            env.chunks.extend_from_slice(data);
        }
        if !last {
            return Step::Reply(line(&format!("250 2.0.0 {} octets received", data.len())));
        }
        let all = std::mem::take(&mut env.chunks);
        let too_big = env.too_big;
        Step::Reply(self.finish(st, &all, too_big))
    }

    /// A message read after DATA (dot-unstuffed); `too_big` when it exceeded the limit.
    pub(crate) fn message(&mut self, st: &Inner, data: &[u8], too_big: bool) -> Step {
        Step::Reply(self.finish(st, data, too_big))
    }

    fn finish(&mut self, st: &Inner, data: &[u8], too_big: bool) -> String {
        let Some(env) = self.mail.take() else {
            return line("503 5.5.1 Need mail command");
        };
        if too_big {
            return line("552 5.3.4 Message size exceeds fixed maximum message size");
        }
        let Some(me) = self.authed else {
            return line(NOT_AUTHENTICATED);
        };
        let id = deliver(st, me, &env.from, &env.rcpts, data);
        Counters::bump(&st.counters.smtp_messages);
        line(&format!("250 2.0.0 OK {id} [Hostname={}]", self.host))
    }
}

/// Parsed headers of a submitted message.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub subject: String,
    /// The first address of `From`.
    pub from: Option<Person>,
    pub to: Vec<Person>,
    pub cc: Vec<Person>,
    pub message_id: Option<String>,
    pub body: String,
    pub html: bool,
    pub attachments: Vec<crate::store::Attachment>,
}

impl Parsed {
    /// The message this MIME describes, stored in `folder` of mailbox `i` (received now; its
    /// owner `mbx` as the sender when the MIME names none; a new Message-ID when it has none).
    pub(crate) fn into_message(
        self,
        i: u32,
        mbx: &crate::store::Mailbox,
        folder: Folder,
        is_read: bool,
        is_draft: bool,
    ) -> Message {
        let now = OffsetDateTime::now_utc();
        Message {
            mailbox: i,
            folder,
            n: 0,
            subject: self.subject,
            body: self.body,
            body_is_html: self.html,
            from: self.from.unwrap_or_else(|| Person {
                name: mbx.display_name.clone(),
                address: mbx.address.clone(),
            }),
            to: self.to,
            cc: self.cc,
            received: now,
            sent: now,
            is_read,
            is_draft,
            internet_message_id: self
                .message_id
                .unwrap_or_else(|| format!("<{}@emulator.exgate>", uuid::Uuid::new_v4().simple())),
            key: crate::store::new_key(),
            attachments: self.attachments,
        }
    }
}

/// The values of every `name` header field (unfolded), in order.
pub(crate) fn header_values(data: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let head = text
        .find("\r\n\r\n")
        .or_else(|| text.find("\n\n"))
        .map_or(text.as_ref(), |p| &text[..p]);
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<usize> = None;
    for l in head.lines() {
        if l.starts_with([' ', '\t']) {
            if let Some(k) = current {
                out[k].push(' ');
                out[k].push_str(l.trim());
            }
            continue;
        }
        current = None;
        if let Some((k, v)) = l.split_once(':')
            && k.trim().eq_ignore_ascii_case(name)
        {
            out.push(v.trim().to_owned());
            current = Some(out.len() - 1);
        }
    }
    out
}

/// Reads an RFC 5322 message (MIME, with its encodings) with `mail-parser`: subject, sender,
/// recipients, Message-ID, the body (the HTML part when there is one, else the text part,
/// decoded) and the attachments. Lenient: anything that does not parse is left out.
pub(crate) fn parse_message(data: &[u8]) -> Parsed {
    let Some(msg) = mail_parser::MessageParser::default().parse(data) else {
        return Parsed::default();
    };
    let people = |a: Option<&mail_parser::Address<'_>>| -> Vec<Person> {
        a.map(|a| {
            a.iter()
                .filter_map(|p| {
                    let address = p.address()?.trim().to_owned();
                    valid_mailbox(&address).then(|| Person {
                        name: p
                            .name()
                            .map(str::trim)
                            .filter(|n| !n.is_empty())
                            .unwrap_or(&address)
                            .to_owned(),
                        address,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let html = msg.html_part(0).is_some_and(|p| p.is_text_html());
    let body = if html {
        msg.body_html(0)
    } else {
        msg.body_text(0)
    }
    .map(|b| b.into_owned())
    .unwrap_or_default();
    // Parts whose type or name could not go back into a header are kept with safe values.
    let attachments = msg
        .attachments()
        .map(|part| {
            use mail_parser::MimeHeaders;
            let content_type = part
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream")));
            let name = part.attachment_name().unwrap_or("attachment");
            let inline = part.content_disposition().is_some_and(|d| d.is_inline());
            let contents = part.contents().to_vec();
            crate::store::Attachment::new(
                name,
                content_type.as_deref(),
                contents.clone(),
                inline,
                part.content_id(),
            )
            .or_else(|_| {
                crate::store::Attachment::new(
                    "attachment",
                    Some("application/octet-stream"),
                    contents,
                    inline,
                    None,
                )
            })
        })
        .filter_map(Result::ok)
        .collect();
    Parsed {
        subject: msg.subject().unwrap_or_default().to_owned(),
        from: people(msg.from()).into_iter().next(),
        to: people(msg.to()),
        cc: people(msg.cc()),
        message_id: msg
            .message_id()
            .filter(|m| !m.is_empty() && m.len() <= 996)
            .map(|m| format!("<{m}>")),
        body,
        html,
        attachments,
    }
}

/// `Name <a@b>, c@d` → people (invalid entries dropped).
pub(crate) fn addresses(v: &str) -> Vec<Person> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut angle = false;
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.extend(person(&cur));
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.extend(person(&cur));
    out
}

fn person(s: &str) -> Option<Person> {
    let s = s.trim();
    let (name, addr) = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => (s[..a].trim().trim_matches('"').trim(), &s[a + 1..b]),
        _ => ("", s),
    };
    let addr = addr.trim().to_owned();
    valid_mailbox(&addr).then(|| Person {
        name: if name.is_empty() {
            addr.clone()
        } else {
            name.to_owned()
        },
        address: addr,
    })
}

/// Stores the message in the sender's Sent Items and in the Inbox of every emulated,
/// provisioned recipient. Returns the Internet message id.
pub(crate) fn deliver(
    st: &Inner,
    sender: u32,
    from: &str,
    rcpts: &[String],
    data: &[u8],
) -> String {
    let p = parse_message(data);
    let now = OffsetDateTime::now_utc();
    let id = p
        .message_id
        .clone()
        .unwrap_or_else(|| format!("<{}@emulator.exgate>", uuid::Uuid::new_v4().simple()));
    let from_person = Person {
        name: st
            .mailbox(sender)
            .map_or_else(|| from.to_owned(), |m| m.display_name.clone()),
        address: st
            .mailbox(sender)
            .map_or_else(|| from.to_owned(), |m| m.address.clone()),
    };
    let (to, cc) = if p.to.is_empty() && p.cc.is_empty() {
        let to = rcpts
            .iter()
            .map(|a| Person {
                name: a.clone(),
                address: a.clone(),
            })
            .collect();
        (to, Vec::new())
    } else {
        (p.to, p.cc)
    };
    let message = Message {
        mailbox: sender,
        folder: Folder::SentItems,
        n: 0,
        subject: p.subject,
        body: p.body,
        body_is_html: p.html,
        from: from_person,
        to,
        cc,
        received: now,
        sent: now,
        is_read: true,
        is_draft: false,
        internet_message_id: id.clone(),
        key: crate::store::new_key(),
        attachments: p.attachments,
    };
    let mut seen = Vec::new();
    for r in rcpts {
        if let Some(i) = st.find(r)
            && !seen.contains(&i)
            && st.mailbox(i).is_some_and(|m| m.provisioned)
        {
            seen.push(i);
            let mut copy = message.clone();
            copy.mailbox = i;
            copy.folder = Folder::Inbox;
            copy.is_read = false;
            let _ = st.store(copy);
        }
    }
    let _ = st.store(message);
    id
}

/// Outcome of reading one line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadLine {
    /// A line without its CRLF (or LF).
    Line(Vec<u8>),
    /// The line was longer than allowed (it has been consumed).
    TooLong,
    /// End of stream.
    Eof,
}

/// Reads one line of at most `max` bytes; longer lines are consumed and reported as `TooLong`.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<ReadLine> {
    let mut out = Vec::new();
    let mut too_long = false;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(ReadLine::Eof);
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !too_long {
            let end = if done { take - 1 } else { take };
            out.extend_from_slice(buf.get(..end).unwrap_or_default());
            if out.len() > max {
                too_long = true;
                out = Vec::new();
            }
        }
        r.consume(take);
        if done {
            break;
        }
    }
    if too_long {
        return Ok(ReadLine::TooLong);
    }
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    Ok(ReadLine::Line(out))
}

enum Outcome<S> {
    Done,
    StartTls(S),
}

pub(crate) async fn timed<T>(d: Duration, f: impl Future<Output = io::Result<T>>) -> Option<T> {
    match tokio::time::timeout(d, f).await {
        Ok(Ok(v)) => Some(v),
        _ => None,
    }
}

pub(crate) async fn send<S: AsyncWrite + Unpin>(s: &mut S, text: &str) -> io::Result<()> {
    s.write_all(text.as_bytes()).await?;
    s.flush().await
}

/// Reads DATA up to the lone `.`, dot-unstuffed; `None` on EOF, error or timeout.
async fn read_data<R: AsyncBufRead + Unpin>(r: &mut R, d: Duration) -> Option<(Vec<u8>, bool)> {
    let mut data = Vec::new();
    let mut too_big = false;
    loop {
        match timed(d, read_line(r, MAX_DATA_LINE)).await? {
            ReadLine::Eof => return None,
            ReadLine::TooLong => too_big = true,
            ReadLine::Line(l) => {
                if l == b"." {
                    return Some((data, too_big));
                }
                let l = l.strip_prefix(b".").unwrap_or(&l);
                if data.len().saturating_add(l.len() + 2) > MAX_MESSAGE {
                    too_big = true;
                    data = Vec::new();
                }
                if !too_big {
                    data.extend_from_slice(l);
                    data.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

/// Runs the dialogue on one stream until it ends or asks for TLS.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    st: &Inner,
    session: &mut Session,
    stream: S,
    greet: Option<String>,
    opts: &SmtpOptions,
) -> Outcome<S> {
    let mut io = tokio::io::BufReader::new(stream);
    let d = opts.read_timeout;
    if let Some(g) = greet
        && send(io.get_mut(), &g).await.is_err()
    {
        return Outcome::Done;
    }
    loop {
        let Ok(read) = tokio::time::timeout(d, read_line(&mut io, MAX_LINE)).await else {
            let _ = send(
                io.get_mut(),
                &line("421 4.4.2 Connection timed out, closing transmission channel"),
            )
            .await;
            return Outcome::Done;
        };
        let mut step = match read {
            Err(_) | Ok(ReadLine::Eof) => return Outcome::Done,
            Ok(ReadLine::TooLong) => session.error("500 5.5.6 Line too long"),
            Ok(ReadLine::Line(l)) => session.command(st, &l),
        };
        loop {
            match step {
                Step::Reply(r) => {
                    if send(io.get_mut(), &r).await.is_err() {
                        return Outcome::Done;
                    }
                    break;
                }
                Step::Close(r) => {
                    let _ = send(io.get_mut(), &r).await;
                    let _ = io.get_mut().shutdown().await;
                    return Outcome::Done;
                }
                Step::StartTls(r) => {
                    if send(io.get_mut(), &r).await.is_err() {
                        return Outcome::Done;
                    }
                    // Whatever the client sent after STARTTLS in clear is dropped (RFC 3207).
                    return Outcome::StartTls(io.into_inner());
                }
                Step::Challenge(r, pending) => {
                    if send(io.get_mut(), &r).await.is_err() {
                        return Outcome::Done;
                    }
                    step = match timed(d, read_line(&mut io, MAX_LINE)).await {
                        None | Some(ReadLine::Eof) => return Outcome::Done,
                        Some(ReadLine::TooLong) => session.error(CANNOT_DECODE),
                        Some(ReadLine::Line(l)) => session.sasl(st, pending, &l),
                    };
                }
                Step::Data(r) => {
                    if send(io.get_mut(), &r).await.is_err() {
                        return Outcome::Done;
                    }
                    let Some((data, too_big)) = read_data(&mut io, d).await else {
                        return Outcome::Done;
                    };
                    step = session.message(st, &data, too_big);
                }
                Step::Bdat { size, last, keep } => {
                    let mut buf = Vec::new();
                    let mut take = (&mut io).take(size as u64);
                    let read = if keep {
                        buf.reserve(size.min(1 << 20));
                        timed(d, take.read_to_end(&mut buf)).await
                    } else {
                        timed(d, tokio::io::copy(&mut take, &mut tokio::io::sink()))
                            .await
                            .and_then(|n| usize::try_from(n).ok())
                    };
                    if read != Some(size) {
                        return Outcome::Done;
                    }
                    step = session.chunk(st, &buf, last, keep);
                }
            }
        }
    }
}

async fn connection(
    state: ExchangeState,
    stream: TcpStream,
    tls: tokio_rustls::TlsAcceptor,
    opts: Arc<SmtpOptions>,
) {
    let mut stream = stream;
    match crate::line_faults::before_greeting(&opts.on_connect).await {
        crate::line_faults::Before::Proceed => {}
        crate::line_faults::Before::Stop => return,
        crate::line_faults::Before::Reply(text) => {
            let _ = send(&mut stream, &line(&text)).await;
            let _ = stream.shutdown().await;
            return;
        }
    }
    let st = &state.inner;
    Counters::bump(&st.counters.smtp_sessions);
    let mut session = Session::new(&opts.host);
    let greet = greeting(&opts.host);
    let Outcome::StartTls(plain) = run(st, &mut session, stream, Some(greet), &opts).await else {
        return;
    };
    let Ok(Ok(secure)) = tokio::time::timeout(opts.read_timeout, tls.accept(plain)).await else {
        return;
    };
    session.after_tls();
    let name = secure.get_ref().1.server_name().map(str::to_owned);
    if let Some(server) = crate::line_auth::server_by_name(st, name.as_deref()) {
        session.at_onprem(st, server);
    }
    let _ = run(st, &mut session, secure, None, &opts).await;
}

/// Serves SMTP submission on `listener` until `stop` completes. `tls` is the certificate
/// STARTTLS presents (no ALPN needed). Bind the listener to loopback: the endpoint is for
/// tests.
pub async fn serve_smtp(
    state: ExchangeState,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    options: SmtpOptions,
    stop: impl Future<Output = ()> + Send,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let opts = Arc::new(options);
    let short = Duration::from_secs(10).min(opts.read_timeout);
    crate::accept::accept_loop(
        listener,
        opts.max_connections,
        short,
        stop,
        move |mut stream, admission| {
            let (state, acceptor, opts) = (state.clone(), acceptor.clone(), opts.clone());
            async move {
                let (permit, _turned_away) = admission.split();
                if permit.is_none() {
                    let _ = send(&mut stream, &line(
                        "421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, closing transmission channel",
                    ))
                    .await;
                    return;
                }
                connection(state, stream, acceptor, opts).await;
                drop(permit);
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_payload_is_parsed() {
        let (u, t) = parse_xoauth2(b"user=a@b.c\x01auth=Bearer tok\x01\x01").unwrap_or_else(|| {
            panic!("parse");
        });
        assert_eq!(u, "a@b.c");
        assert_eq!(t.expose_secret(), "tok");
        assert!(parse_xoauth2(b"user=a@b.c\x01auth=Basic tok\x01\x01").is_none());
        assert!(parse_xoauth2(b"auth=Bearer tok\x01\x01").is_none());
    }

    #[test]
    fn paths_are_parsed() {
        assert_eq!(
            parse_path("FROM:<a@b.c> SIZE=10", "FROM:").map(|(a, p)| (a, p.to_owned())),
            Some(("a@b.c".to_owned(), "SIZE=10".to_owned()))
        );
        assert_eq!(
            parse_path("to: <x@y.z>", "TO:").map(|(a, _)| a),
            Some("x@y.z".to_owned())
        );
        assert!(parse_path("FRO", "FROM:").is_none());
    }

    fn empty_state() -> ExchangeState {
        let cfg = crate::ExchangeConfig::from_toml_str("").unwrap_or_else(|e| panic!("{e}"));
        ExchangeState::new(
            cfg,
            Arc::new(crate::InMemoryDirectory::new()),
            crate::TokenVerifier::new(Vec::new()),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_xoauth2(&raw);
            let _ = parse_plain(&raw);
            let _ = parse_message(&raw);
            let text = String::from_utf8_lossy(&raw);
            let _ = parse_path(&text, "FROM:");
            let _ = addresses(&text);
        }

        #[test]
        fn any_command_sequence_gets_an_answer(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
                    proptest::sample::select(vec![
                        b"EHLO x".to_vec(), b"AUTH PLAIN".to_vec(), b"AUTH LOGIN =".to_vec(),
                        b"AUTH XOAUTH2 dXNlcj0BAQ==".to_vec(), b"MAIL FROM:<a@b.cd>".to_vec(),
                        b"RCPT TO:<".to_vec(), b"BDAT 99999999999999999999".to_vec(),
                        b"DATA".to_vec(), b"*".to_vec(), b"BDAT 3 LAST".to_vec(),
                    ]),
                ],
                0..30,
            ),
            tls in proptest::prelude::any::<bool>(),
        ) {
            let state = empty_state();
            let st = &state.inner;
            let mut s = Session::new("localhost");
            if tls {
                s.after_tls();
            }
            let mut pending: Option<Pending> = None;
            for l in &lines {
                let step = match pending.take() {
                    Some(p) => s.sasl(st, p, l),
                    None => s.command(st, l),
                };
                match step {
                    Step::Challenge(r, p) => {
                        proptest::prop_assert!(r.starts_with("334 "));
                        pending = Some(p);
                    }
                    Step::Reply(r) | Step::Close(r) | Step::StartTls(r) | Step::Data(r) => {
                        proptest::prop_assert!(r.ends_with("\r\n") && r.len() > 5);
                    }
                    Step::Bdat { size, last, keep } => {
                        let _ = s.chunk(st, &vec![b'x'; size.min(64)], last, keep);
                    }
                }
            }
        }
    }

    #[test]
    fn headers_are_read() {
        let p = parse_message(
            b"Subject: Hello\r\n there\r\nTo: \"Adele, V\" <adele@contoso.com>, b@c.de\r\n\r\nBody\r\n",
        );
        assert_eq!(p.subject, "Hello there");
        assert_eq!(p.to.len(), 2);
        assert_eq!(p.to[0].name, "Adele, V");
        assert_eq!(p.body, "Body\r\n");
    }
}
