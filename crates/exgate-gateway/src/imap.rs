//! IMAP toward devices: the client's LOGIN (or AUTHENTICATE PLAIN) is answered here against
//! the local account; then the gateway opens the upstream session with XOAUTH2 as the account's
//! mailbox and relays the rest of the session byte for byte, so everything Exchange says
//! (throttling included) reaches the client unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use exgate_mail::imap::{ImapOptions, open};
use secrecy::SecretString;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::Shared;
use crate::config::Service;
use crate::relay::{Conn, OpenFailure, open_upstream, relay};
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

/// A command read with its literals.
enum Command {
    Tokens(Vec<String>),
    Bad(&'static str),
    Closed,
}

/// One command with its literals read in (a synchronizing literal gets `+` first).
async fn read_command(conn: &mut Conn) -> Command {
    let mut tokens = Vec::new();
    let Some(mut line) = conn.line(MAX_LINE).await else {
        return Command::Closed;
    };
    loop {
        let Some((size, plus)) = literal_at_end(&line) else {
            let Some(t) = tokenize(&line) else {
                return Command::Bad("BAD Malformed quoted string");
            };
            tokens.extend(t);
            return Command::Tokens(tokens);
        };
        let head = &line[..line.rfind('{').unwrap_or(line.len())];
        let Some(t) = tokenize(head) else {
            return Command::Bad("BAD Malformed quoted string");
        };
        tokens.extend(t);
        if size > MAX_LITERAL {
            return Command::Bad("BAD Literal too large");
        }
        if !plus && !conn.send("+ Ready for literal data").await {
            return Command::Closed;
        }
        let mut buf = vec![0u8; size];
        let ok = tokio::time::timeout(conn.idle, conn.io.read_exact(&mut buf))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ok {
            return Command::Closed;
        }
        tokens.push(String::from_utf8_lossy(&buf).into_owned());
        let Some(rest) = conn.line(MAX_LINE).await else {
            return Command::Closed;
        };
        line = rest;
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
    let idle = Duration::from_secs(shared.config().gateway.idle_secs.max(1));
    let Some(acceptor) = shared.tls.clone() else {
        return;
    };
    let first = (mode == Mode::Tls).then_some(&acceptor);
    let Some(mut conn) = Conn::open(tcp, first, idle).await else {
        return;
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
        let tokens = match read_command(&mut conn).await {
            Command::Tokens(t) => t,
            Command::Bad(r) => {
                errors += 1;
                if !conn.send(&format!("* {r}")).await {
                    return;
                }
                continue;
            }
            Command::Closed => return,
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
                    if !conn.start_tls(&acceptor).await {
                        return;
                    }
                    tls = true;
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
                            match conn.line(MAX_LINE).await {
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
        let up = shared.config().upstream.clone();
        let options = ImapOptions {
            host: up.imap_host,
            port: up.imap_port,
            connect_to: up.imap_connect,
            extra_root_pem: shared.upstream_ca.clone(),
            timeout: Duration::from_secs(up.timeout_secs.max(1)),
        };
        let opened = open_upstream(&shared, &account, Service::Imap, async |auth| {
            open(&options, &auth)
                .await
                .map(|c| c.stream)
                .map_err(|t| OpenFailure::of_step(t.failure()))
        })
        .await;
        match opened {
            Ok(upstream) => {
                if conn.send(&format!("{tag} OK LOGIN completed")).await {
                    relay(&shared, Service::Imap, conn, upstream, &account.name).await;
                }
                return;
            }
            Err(reason) => {
                if !conn.send(&format!("{tag} NO [UNAVAILABLE] {reason}")).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let _ = tokenize(&s);
            let _ = literal_at_end(&s);
        }
    }
}
