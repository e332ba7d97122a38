//! IMAP toward devices: the client's LOGIN (or AUTHENTICATE PLAIN) is answered here against
//! the local account; then the gateway opens the upstream session with XOAUTH2 as the account's
//! mailbox and relays the rest of the session byte for byte, so everything Exchange says
//! (throttling included) reaches the client unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use exgate_diagnose::Protocol;
use exgate_mail::imap::{ImapOptions, open};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Shared;
use crate::config::Service;
use crate::explain::explain;
use crate::smtp::decode_plain;

/// Longest command line before login.
const MAX_LINE: usize = 8192;
/// Largest literal before login (a user name or a password).
const MAX_LITERAL: usize = 8192;
/// Protocol errors before the gateway hangs up.
const MAX_ERRORS: u32 = 20;

/// How a listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// STARTTLS offered; LOGIN disabled until then.
    StartTls,
    /// TLS from the first byte.
    Tls,
}

/// Splits a command segment into atoms and quoted strings; `None` on a malformed quote.
pub fn tokenize(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            return Some(out);
        };
        if c == '"' {
            chars.next();
            let mut t = String::new();
            loop {
                match chars.next()? {
                    '\\' => t.push(chars.next()?),
                    '"' => break,
                    c => t.push(c),
                }
            }
            out.push(t);
        } else {
            let mut t = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                t.push(c);
                chars.next();
            }
            out.push(t);
        }
    }
}

/// `{n}` or `{n+}` at the end of a line: the size and whether it is non-synchronizing.
pub fn literal_at_end(line: &str) -> Option<(usize, bool)> {
    let body = line.strip_suffix('}')?;
    let open = body.rfind('{')?;
    let n = &body[open + 1..];
    let (n, plus) = match n.strip_suffix('+') {
        Some(n) => (n, true),
        None => (n, false),
    };
    Some((n.parse().ok()?, plus))
}

type Stream = Box<dyn exgate_mail::ByteStream>;

struct Conn {
    io: BufReader<Stream>,
    idle: Duration,
}

enum Read {
    Tokens(Vec<String>),
    Bad(&'static str),
    Closed,
}

impl Conn {
    async fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(self.idle, async {
            let mut limited = (&mut self.io).take(MAX_LINE as u64 + 1);
            limited.read_until(b'\n', &mut buf).await
        })
        .await
        .ok()?
        .ok()?;
        if n == 0 || (!buf.ends_with(b"\n") && buf.len() > MAX_LINE) {
            return None;
        }
        Some(
            String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        )
    }

    /// One command with its literals read in.
    async fn command(&mut self) -> Read {
        let mut tokens = Vec::new();
        let Some(mut line) = self.line().await else {
            return Read::Closed;
        };
        loop {
            match literal_at_end(&line) {
                Some((size, plus)) => {
                    let head = &line[..line.rfind('{').unwrap_or(line.len())];
                    let Some(t) = tokenize(head) else {
                        return Read::Bad("BAD Malformed quoted string");
                    };
                    tokens.extend(t);
                    if size > MAX_LITERAL {
                        return Read::Bad("BAD Literal too large");
                    }
                    if !plus && !self.send("+ Ready for literal data").await {
                        return Read::Closed;
                    }
                    let mut buf = vec![0u8; size];
                    let ok = tokio::time::timeout(self.idle, self.io.read_exact(&mut buf))
                        .await
                        .is_ok_and(|r| r.is_ok());
                    if !ok {
                        return Read::Closed;
                    }
                    tokens.push(String::from_utf8_lossy(&buf).into_owned());
                    let Some(rest) = self.line().await else {
                        return Read::Closed;
                    };
                    line = rest;
                }
                None => {
                    let Some(t) = tokenize(&line) else {
                        return Read::Bad("BAD Malformed quoted string");
                    };
                    tokens.extend(t);
                    return Read::Tokens(tokens);
                }
            }
        }
    }

    async fn send(&mut self, text: &str) -> bool {
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        let w = self.io.get_mut();
        tokio::time::timeout(self.idle, async {
            w.write_all(&bytes).await?;
            w.flush().await
        })
        .await
        .is_ok_and(|r| r.is_ok())
    }
}

fn capabilities(mode: Mode, tls: bool) -> String {
    if mode == Mode::StartTls && !tls {
        "IMAP4rev1 STARTTLS LOGINDISABLED".to_owned()
    } else {
        "IMAP4rev1 SASL-IR AUTH=PLAIN".to_owned()
    }
}

/// Serves one client connection.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, mode: Mode) {
    let _ = tcp.set_nodelay(true);
    let idle = Duration::from_secs(shared.config().gateway.idle_secs.max(1));
    let Some(acceptor) = shared.tls.clone() else {
        return;
    };
    let stream: Stream = match mode {
        Mode::Tls => match tokio::time::timeout(idle, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Box::new(tls),
            _ => return,
        },
        Mode::StartTls => Box::new(tcp),
    };
    let mut conn = Conn {
        io: BufReader::new(stream),
        idle,
    };
    let mut tls = mode == Mode::Tls;
    let mut errors = 0;
    if !conn
        .send(&format!(
            "* OK [CAPABILITY {}] exgate gateway ready",
            capabilities(mode, tls)
        ))
        .await
    {
        return;
    }
    loop {
        if errors >= MAX_ERRORS {
            conn.send("* BYE Too many errors").await;
            return;
        }
        let tokens = match conn.command().await {
            Read::Tokens(t) => t,
            Read::Bad(r) => {
                errors += 1;
                if !conn.send(&format!("* {r}")).await {
                    return;
                }
                continue;
            }
            Read::Closed => return,
        };
        let (Some(tag), Some(verb)) = (tokens.first(), tokens.get(1)) else {
            errors += 1;
            if !conn.send("* BAD Missing command").await {
                return;
            }
            continue;
        };
        let tag = tag.clone();
        let args = &tokens[2..];
        let credentials: Option<(String, SecretString)> = match verb.to_ascii_uppercase().as_str() {
            "CAPABILITY" => {
                let ok = conn
                    .send(&format!("* CAPABILITY {}", capabilities(mode, tls)))
                    .await
                    && conn.send(&format!("{tag} OK CAPABILITY completed")).await;
                if !ok {
                    return;
                }
                None
            }
            "NOOP" => {
                if !conn.send(&format!("{tag} OK NOOP completed")).await {
                    return;
                }
                None
            }
            "LOGOUT" => {
                conn.send("* BYE exgate gateway logging out").await;
                conn.send(&format!("{tag} OK LOGOUT completed")).await;
                return;
            }
            "STARTTLS" => {
                if mode != Mode::StartTls || tls {
                    if !conn
                        .send(&format!("{tag} BAD STARTTLS not available"))
                        .await
                    {
                        return;
                    }
                    None
                } else {
                    if !conn
                        .send(&format!("{tag} OK Begin TLS negotiation now"))
                        .await
                    {
                        return;
                    }
                    let io = std::mem::replace(
                        &mut conn.io,
                        BufReader::new(Box::new(tokio::io::empty())),
                    );
                    match tokio::time::timeout(idle, acceptor.accept(io.into_inner())).await {
                        Ok(Ok(s)) => {
                            conn.io = BufReader::new(Box::new(s));
                            tls = true;
                        }
                        _ => return,
                    }
                    None
                }
            }
            "LOGIN" if !tls => {
                if !conn
                    .send(&format!(
                        "{tag} NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS"
                    ))
                    .await
                {
                    return;
                }
                None
            }
            "LOGIN" => match args {
                [user, password] => Some((user.clone(), SecretString::from(password.clone()))),
                _ => {
                    errors += 1;
                    if !conn
                        .send(&format!("{tag} BAD Syntax: LOGIN user password"))
                        .await
                    {
                        return;
                    }
                    None
                }
            },
            "AUTHENTICATE" if !tls => {
                if !conn
                    .send(&format!("{tag} NO [PRIVACYREQUIRED] STARTTLS first"))
                    .await
                {
                    return;
                }
                None
            }
            "AUTHENTICATE" => {
                let mech = args.first().map(|m| m.to_ascii_uppercase());
                if mech.as_deref() != Some("PLAIN") {
                    if !conn
                        .send(&format!("{tag} NO Unsupported authentication mechanism"))
                        .await
                    {
                        return;
                    }
                    None
                } else {
                    let response = match args.get(1) {
                        Some(r) => r.clone(),
                        None => {
                            if !conn.send("+ ").await {
                                return;
                            }
                            match conn.line().await {
                                Some(l) => l,
                                None => return,
                            }
                        }
                    };
                    match decode_plain(&response) {
                        Some(c) if response != "*" => Some(c),
                        _ => {
                            if !conn
                                .send(&format!("{tag} BAD Authentication aborted or undecodable"))
                                .await
                            {
                                return;
                            }
                            None
                        }
                    }
                }
            }
            _ => {
                errors += 1;
                if !conn
                    .send(&format!(
                        "{tag} BAD Command unrecognized or not valid before login"
                    ))
                    .await
                {
                    return;
                }
                None
            }
        };
        let Some((user, password)) = credentials else {
            continue;
        };
        let account = match shared
            .sign_in(&user, password, peer.ip(), Service::Imap)
            .await
        {
            Ok(a) => a,
            Err(r) => {
                let reply = if r.temporary() {
                    format!("{tag} NO [UNAVAILABLE] Temporary authentication failure, try later")
                } else {
                    format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials")
                };
                if !conn.send(&reply).await {
                    return;
                }
                continue;
            }
        };
        // Upstream, as the account's mailbox.
        let started = Instant::now();
        let (auth, token) = match shared.upstreams.sasl(&account).await {
            Ok(x) => x,
            Err(e) => {
                let why = explain(Protocol::Imap, &e.to_string(), &account.mailbox, None);
                tracing::error!(account = %account.name, cause = %why.summary(), "no token for IMAP");
                shared
                    .metrics
                    .count("upstream_auth", &account.name, "no_token");
                if !conn
                    .send(&format!(
                        "{tag} NO [UNAVAILABLE] The gateway could not get a token from Entra ID ({})",
                        crate::explain::short(&why.title)
                    ))
                    .await
                {
                    return;
                }
                continue;
            }
        };
        let up = &shared.config().upstream;
        let options = ImapOptions {
            host: up.imap_host.clone(),
            port: up.imap_port,
            connect_to: up.imap_connect,
            extra_root_pem: shared.upstream_ca.clone(),
            timeout: Duration::from_secs(up.timeout_secs.max(1)),
        };
        match open(&options, &auth).await {
            Ok(upstream) => {
                shared
                    .metrics
                    .observe("imap_open", started.elapsed().as_secs_f64());
                shared
                    .metrics
                    .count("imap_sessions", &account.name, "opened");
                if !conn.send(&format!("{tag} OK LOGIN completed")).await {
                    return;
                }
                relay(&shared, conn, upstream.stream, &account.name).await;
                return;
            }
            Err(t) => {
                let failure = t.failure();
                let text = failure
                    .and_then(|f| f.response.clone().or_else(|| f.error.clone()))
                    .unwrap_or_else(|| "no answer".into());
                let refused = failure.is_some_and(|f| f.response.is_some());
                let why = explain(Protocol::Imap, &text, &account.mailbox, token.as_ref());
                if refused {
                    shared.upstreams.invalidate(&account);
                }
                tracing::error!(account = %account.name, upstream = %crate::explain::short(&text), cause = %why.summary(), "Exchange refused the IMAP sign-in");
                shared
                    .metrics
                    .count("upstream_auth", &account.name, "refused");
                let reason = if why.title.is_empty() {
                    crate::explain::short(&text)
                } else {
                    crate::explain::short(&why.title)
                };
                if !conn
                    .send(&format!(
                        "{tag} NO [UNAVAILABLE] Exchange refused the gateway: {reason}"
                    ))
                    .await
                {
                    return;
                }
            }
        }
    }
}

/// Relays bytes both ways until either side closes. Bytes the client already sent (pipelined
/// after LOGIN) go upstream first.
async fn relay(shared: &Shared, conn: Conn, upstream: exgate_mail::BufferedStream, account: &str) {
    relay_streams(shared, "imap", conn.io, upstream, account).await;
}

/// Whether a chunk from Exchange (with the tail of the previous one) carries a throttling
/// answer: IMAP's `NO Request is throttled. Suggested Backoff Time: ...`, POP's `-ERR ...
/// throttled`, or a `[THROTTLED]` response code. Returns the line that says so.
pub fn throttle_line(window: &[u8]) -> Option<String> {
    let lower = window.to_ascii_lowercase();
    let at = lower.windows(9).position(|w| w == b"throttled")?;
    let start = lower[..at]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let end = lower[at..]
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .map_or(window.len(), |p| at + p);
    Some(crate::explain::short(&String::from_utf8_lossy(
        &window[start..end],
    )))
}

/// Relays a client's buffered stream and an upstream one both ways until either closes;
/// throttling answers from Exchange are passed on unchanged, logged and counted.
pub(crate) async fn relay_streams(
    shared: &Shared,
    protocol: &'static str,
    client: BufReader<Stream>,
    mut upstream: exgate_mail::BufferedStream,
    account: &str,
) {
    use tokio::io::AsyncReadExt as _;
    let pending = client.buffer().to_vec();
    let mut client = client.into_inner();
    if !pending.is_empty() && upstream.get_mut().write_all(&pending).await.is_err() {
        return;
    }
    // Bytes Exchange sent after its answer are already buffered upstream.
    let early = upstream.buffer().to_vec();
    if !early.is_empty() && client.write_all(&early).await.is_err() {
        return;
    }
    let upstream = upstream.into_inner();
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let to_exchange = async {
        let r = tokio::io::copy(&mut client_read, &mut up_write).await;
        let _ = up_write.shutdown().await;
        r.unwrap_or(0)
    };
    let to_client = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut tail: Vec<u8> = Vec::new();
        let mut total = 0u64;
        loop {
            let n = match up_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            total += n as u64;
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(&buf[..n]);
            if let Some(line) = throttle_line(&window) {
                tracing::warn!(account, protocol, upstream = %line, "Exchange is throttling this mailbox; the answer was passed to the client");
                shared.metrics.count("throttled", account, protocol);
                window.clear();
            }
            let keep = window.len().saturating_sub(64);
            tail = window.split_off(keep);
        }
        let _ = client_write.shutdown().await;
        total
    };
    let (up, down) = tokio::join!(to_exchange, to_client);
    tracing::debug!(
        account,
        protocol,
        bytes_up = up,
        bytes_down = down,
        "relayed session ended"
    );
}

/// Base64 of `\0user\0password` (tests, clients).
pub fn plain_response(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_answers_are_found_across_chunks() {
        let w = b"* 1 EXISTS\r\na5 NO Request is throttled. Suggested Backoff Time: 2562 milliseconds\r\n";
        assert_eq!(
            throttle_line(w).as_deref(),
            Some("a5 NO Request is throttled. Suggested Backoff Time: 2562 milliseconds")
        );
        assert_eq!(throttle_line(b"a1 OK FETCH completed.\r\n"), None);
        assert!(throttle_line(b"-ERR [SYS/TEMP] Throttled").is_some());
    }

    #[test]
    fn tokens_and_literals() {
        assert_eq!(
            tokenize(r#"a1 LOGIN "scan ner" "p\"w""#).unwrap(),
            ["a1", "LOGIN", "scan ner", "p\"w"]
        );
        assert_eq!(tokenize("a1 LOGIN x y").unwrap(), ["a1", "LOGIN", "x", "y"]);
        assert!(tokenize("a1 LOGIN \"open").is_none());
        assert_eq!(literal_at_end("a1 LOGIN {7}"), Some((7, false)));
        assert_eq!(literal_at_end("a1 LOGIN x {12+}"), Some((12, true)));
        assert_eq!(literal_at_end("a1 NOOP"), None);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,120}") {
            let _ = throttle_line(s.as_bytes());
            let _ = tokenize(&s);
            let _ = literal_at_end(&s);
        }
    }
}
