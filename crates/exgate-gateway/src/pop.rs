//! POP3 toward devices: `USER`/`PASS` (or `AUTH PLAIN`) answered here against the local
//! account; then the gateway opens the upstream session with XOAUTH2 as the account's mailbox
//! (`POP.AccessAsApp`) and relays the rest byte for byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use exgate_mail::pop::{PopOptions, open};
use secrecy::SecretString;
use tokio::net::TcpStream;

use crate::Shared;
use crate::config::Service;
use crate::relay::{Conn, OpenFailure, open_upstream, relay};
use crate::smtp::decode_plain;

/// Longest line before login.
const MAX_LINE: usize = 8192;
/// Protocol errors before the gateway hangs up.
const MAX_ERRORS: u32 = 20;

/// How a listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// STLS offered; USER/PASS refused until then (port 110).
    StartTls,
    /// TLS from the first byte (port 995).
    Tls,
}

/// A command before login.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `CAPA`.
    Capa,
    /// `USER name`.
    User(String),
    /// `PASS password` (the rest of the line, spaces included).
    Pass(String),
    /// `AUTH mechanism [initial-response]`.
    Auth(String, Option<String>),
    /// `STLS`.
    Stls,
    /// `QUIT`.
    Quit,
    /// `NOOP`.
    Noop,
    /// Anything else.
    Other,
}

/// Parses one line before login.
pub fn parse_command(line: &str) -> Command {
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "CAPA" => Command::Capa,
        "USER" if !rest.trim().is_empty() => Command::User(rest.trim().to_owned()),
        "PASS" => Command::Pass(rest.to_owned()),
        "AUTH" => {
            let mut p = rest.split_whitespace();
            match p.next() {
                Some(m) => Command::Auth(m.to_ascii_uppercase(), p.next().map(str::to_owned)),
                None => Command::Other,
            }
        }
        "STLS" => Command::Stls,
        "QUIT" => Command::Quit,
        "NOOP" => Command::Noop,
        _ => Command::Other,
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
    let mut user: Option<String> = None;
    let mut errors = 0;
    if !conn.send("+OK exgate gateway POP3 ready").await {
        return;
    }
    loop {
        if errors >= MAX_ERRORS {
            conn.send("-ERR Too many errors").await;
            return;
        }
        let Some(line) = conn.line(MAX_LINE).await else {
            return;
        };
        let credentials = match parse_command(&line) {
            Command::Capa => {
                let mut caps = vec!["+OK Capability list follows", "TOP", "UIDL", "RESP-CODES"];
                if tls {
                    caps.extend(["USER", "SASL PLAIN"]);
                } else {
                    caps.push("STLS");
                }
                caps.push(".");
                if !conn.send(&caps.join("\r\n")).await {
                    return;
                }
                None
            }
            Command::Noop => {
                if !conn.send("+OK").await {
                    return;
                }
                None
            }
            Command::Quit => {
                conn.send("+OK exgate gateway signing off").await;
                return;
            }
            Command::Stls => {
                if mode != Mode::StartTls || tls {
                    errors += 1;
                    if !conn.send("-ERR STLS not available").await {
                        return;
                    }
                    continue;
                }
                if !conn.send("+OK Begin TLS negotiation").await {
                    return;
                }
                if !conn.start_tls(&acceptor).await {
                    return;
                }
                tls = true;
                user = None;
                None
            }
            Command::User(_) | Command::Pass(_) | Command::Auth(..) if !tls => {
                if !conn.send("-ERR [SYS/PERM] Use STLS first").await {
                    return;
                }
                None
            }
            Command::User(name) => {
                user = Some(name);
                if !conn.send("+OK").await {
                    return;
                }
                None
            }
            Command::Pass(password) => match user.take() {
                Some(name) => Some((name, SecretString::from(password))),
                None => {
                    errors += 1;
                    if !conn.send("-ERR USER first").await {
                        return;
                    }
                    None
                }
            },
            Command::Auth(mech, initial) => {
                if mech != "PLAIN" {
                    if !conn.send("-ERR Unsupported mechanism").await {
                        return;
                    }
                    continue;
                }
                let response = match initial {
                    Some(r) => r,
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
                    Some(c) => Some(c),
                    None => {
                        errors += 1;
                        if !conn
                            .send("-ERR Authentication aborted or undecodable")
                            .await
                        {
                            return;
                        }
                        None
                    }
                }
            }
            Command::Other => {
                errors += 1;
                if !conn.send("-ERR Command not valid before login").await {
                    return;
                }
                None
            }
        };
        let Some((name, password)) = credentials else {
            continue;
        };
        let account = match shared
            .sign_in(&name, password, peer.ip(), Service::Pop)
            .await
        {
            Ok(a) => a,
            Err(r) => {
                let reply = if r.temporary() {
                    "-ERR [IN-USE] Temporary authentication failure, try later"
                } else {
                    "-ERR [AUTH] Invalid credentials"
                };
                if !conn.send(reply).await {
                    return;
                }
                continue;
            }
        };
        let up = shared.config().upstream.clone();
        let options = PopOptions {
            host: up.pop_host,
            port: up.pop_port,
            connect_to: up.pop_connect,
            extra_root_pem: shared.upstream_ca.clone(),
            timeout: Duration::from_secs(up.timeout_secs.max(1)),
        };
        let opened = open_upstream(&shared, &account, Service::Pop, async |auth| {
            open(&options, &auth)
                .await
                .map(|c| c.stream)
                .map_err(|t| OpenFailure::of_step(t.failure()))
        })
        .await;
        match opened {
            Ok(upstream) => {
                if conn.send("+OK Logged in").await {
                    relay(&shared, Service::Pop, conn, upstream, &account.name).await;
                }
                return;
            }
            Err(reason) => {
                if !conn.send(&format!("-ERR [SYS/TEMP] {reason}")).await {
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
    fn commands() {
        assert_eq!(
            parse_command("user scanner"),
            Command::User("scanner".into())
        );
        assert_eq!(parse_command("PASS a b c"), Command::Pass("a b c".into()));
        assert_eq!(
            parse_command("AUTH plain AGEAYg=="),
            Command::Auth("PLAIN".into(), Some("AGEAYg==".into()))
        );
        assert_eq!(parse_command("RETR 1"), Command::Other);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,120}") {
            let _ = parse_command(&s);
        }
    }
}
