//! SMTP submission toward devices (RFC 5321, STARTTLS RFC 3207, AUTH PLAIN/LOGIN RFC 4954 and
//! 4616, PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES). A message is accepted only after the
//! spool has it on disk; then it is queued for delivery upstream.
//!
//! The command parsers are pure functions, property-tested; the session loop bounds line
//! length, message size, idle time and protocol errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::net::TcpStream;

use crate::Shared;
use crate::accounts::Refusal;
use crate::config::{AccountConfig, Service};
use crate::relay::{Conn, Read};
use crate::spool::{Envelope, new_id};

/// Longest command line.
const MAX_LINE: usize = 4096;
/// Longest line inside DATA (RFC 5321 says 1000; devices send longer).
const MAX_DATA_LINE: usize = 1 << 20;
/// Recipients per message (Exchange Online's limit).
const MAX_RECIPIENTS: usize = 500;
/// Protocol errors before the gateway hangs up.
const MAX_ERRORS: u32 = 20;

/// How a listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// STARTTLS offered, required before AUTH.
    StartTls,
    /// TLS from the first byte.
    Tls,
    /// No TLS at all (an isolated device network, `allow_plain`).
    Plain,
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `EHLO name`.
    Ehlo(String),
    /// `HELO name`.
    Helo(String),
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth(String, Option<String>),
    /// `MAIL FROM:<path> [params]`: the address and the `SIZE=` parameter.
    Mail(String, Option<u64>),
    /// `RCPT TO:<path>`.
    Rcpt(String),
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`/`EXPN`.
    Vrfy,
    /// `HELP`.
    Help,
    /// A known verb with bad arguments: the reply to send.
    Syntax(&'static str),
    /// Anything else.
    Unknown,
}

/// Parses one command line (without CRLF).
pub fn parse_command(line: &str) -> Command {
    let (verb, args) = match line.split_once(' ') {
        Some((v, a)) => (v, a.trim()),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" if !args.is_empty() => Command::Ehlo(args.to_owned()),
        "HELO" if !args.is_empty() => Command::Helo(args.to_owned()),
        "EHLO" | "HELO" => Command::Syntax("501 5.5.4 Syntax: EHLO hostname"),
        "STARTTLS" if args.is_empty() => Command::StartTls,
        "AUTH" => {
            let mut parts = args.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(m), initial, None) => {
                    Command::Auth(m.to_ascii_uppercase(), initial.map(str::to_owned))
                }
                _ => Command::Syntax("501 5.5.4 Syntax: AUTH mechanism [initial-response]"),
            }
        }
        "MAIL" => match parse_path(args, "FROM:") {
            Some((addr, params)) => {
                let size = params.split_whitespace().find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.eq_ignore_ascii_case("SIZE").then(|| v.parse().ok())?
                });
                Command::Mail(addr, size)
            }
            None => Command::Syntax("501 5.5.4 Syntax: MAIL FROM:<address>"),
        },
        "RCPT" => match parse_path(args, "TO:") {
            Some((addr, _)) if valid_address(&addr) => Command::Rcpt(addr),
            Some(_) => Command::Syntax("501 5.1.3 Bad recipient address syntax"),
            None => Command::Syntax("501 5.5.4 Syntax: RCPT TO:<address>"),
        },
        "DATA" => Command::Data,
        "RSET" => Command::Rset,
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        "VRFY" | "EXPN" => Command::Vrfy,
        "HELP" => Command::Help,
        _ => Command::Unknown,
    }
}

/// `FROM:<a@b> SIZE=10` after the keyword: the address and the rest.
pub fn parse_path<'a>(args: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = &rest[..end];
    if addr.contains(['<', ' ', '\t']) {
        return None;
    }
    Some((addr.to_owned(), rest[end + 1..].trim()))
}

/// `local@domain`, printable, without spaces or brackets.
pub fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && a.len() <= 254
        && a.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '<' && c != '>')
}

/// Decodes an AUTH PLAIN response: `authzid NUL authcid NUL password`.
pub fn decode_plain(b64: &str) -> Option<(String, SecretString)> {
    let raw = B64.decode(b64.trim()).ok()?;
    let mut parts = raw.split(|b| *b == 0);
    let _authz = parts.next()?;
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    Some((user, SecretString::from(password)))
}

fn decode_text(b64: &str) -> Option<String> {
    String::from_utf8(B64.decode(b64.trim()).ok()?).ok()
}

/// What the session knows.
struct State {
    helo: Option<String>,
    tls: bool,
    account: Option<Arc<AccountConfig>>,
    from: Option<String>,
    rcpts: Vec<String>,
    errors: u32,
}

/// Serves one client connection until QUIT, an error or the idle limit.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, mode: Mode) {
    let idle = Duration::from_secs(shared.config().gateway.idle_secs.max(1));
    let first = if mode == Mode::Tls {
        match &shared.tls {
            Some(acceptor) => Some(acceptor),
            None => return,
        }
    } else {
        None
    };
    let Some(mut conn) = Conn::open(tcp, first, idle).await else {
        return;
    };
    let mut st = State {
        helo: None,
        tls: mode == Mode::Tls,
        account: None,
        from: None,
        rcpts: Vec::new(),
        errors: 0,
    };
    let host = shared.config().gateway.hostname.clone();
    if !conn
        .send(&format!("220 {host} ESMTP exgate gateway ready"))
        .await
    {
        return;
    }
    loop {
        if st.errors >= MAX_ERRORS {
            conn.send("421 4.7.0 Too many errors, closing connection")
                .await;
            return;
        }
        let line = match conn.read(MAX_LINE).await {
            Read::Line(l) => l,
            Read::TooLong => {
                conn.send("500 5.5.6 Line too long").await;
                return;
            }
            Read::Idle => {
                conn.send(&format!(
                    "421 4.4.2 {host} Idle timeout, closing connection"
                ))
                .await;
                return;
            }
            Read::Closed => return,
        };
        let cmd = parse_command(&line);
        let reply: String = match cmd {
            Command::Ehlo(name) => {
                st.helo = Some(name.clone());
                st.from = None;
                st.rcpts.clear();
                let mut lines = vec![
                    format!("{host} Hello [{}]", peer.ip()),
                    "PIPELINING".to_owned(),
                    format!("SIZE {}", shared.config().gateway.max_message_bytes),
                    "8BITMIME".to_owned(),
                    "ENHANCEDSTATUSCODES".to_owned(),
                ];
                if mode == Mode::StartTls && !st.tls {
                    lines.push("STARTTLS".to_owned());
                }
                if st.tls || mode == Mode::Plain {
                    lines.push("AUTH PLAIN LOGIN".to_owned());
                }
                multiline(250, &lines)
            }
            Command::Helo(name) => {
                st.helo = Some(name);
                st.from = None;
                st.rcpts.clear();
                format!("250 {host}")
            }
            Command::StartTls => {
                if mode != Mode::StartTls {
                    "502 5.5.1 STARTTLS not available on this port".to_owned()
                } else if st.tls {
                    "503 5.5.1 TLS already active".to_owned()
                } else {
                    let Some(acceptor) = shared.tls.clone() else {
                        return;
                    };
                    if !conn.send("220 2.0.0 Ready to start TLS").await {
                        return;
                    }
                    if !conn.start_tls(&acceptor).await {
                        return;
                    }
                    st = State {
                        tls: true,
                        errors: st.errors,
                        helo: None,
                        account: None,
                        from: None,
                        rcpts: Vec::new(),
                    };
                    continue;
                }
            }
            Command::Auth(mech, initial) => {
                if st.helo.is_none() {
                    "503 5.5.1 Send EHLO first".to_owned()
                } else if !st.tls && mode != Mode::Plain {
                    "530 5.7.0 Must issue a STARTTLS command first".to_owned()
                } else if st.account.is_some() {
                    "503 5.5.1 Already authenticated".to_owned()
                } else {
                    match sasl(&mut conn, &mech, initial).await {
                        Sasl::Closed => return,
                        Sasl::Reply(r) => r,
                        Sasl::Credentials(user, password) => {
                            match shared.sign_in(&user, password, peer.ip(), Service::Smtp).await {
                                Ok(a) => {
                                    st.account = Some(a);
                                    "235 2.7.0 Authentication successful".to_owned()
                                }
                                Err(r) if r.temporary() => {
                                    "454 4.7.0 Temporary authentication failure, try later"
                                        .to_owned()
                                }
                                Err(Refusal::NetworkNotAllowed | Refusal::ProtocolNotAllowed) => {
                                    "535 5.7.8 Authentication credentials invalid (not allowed from here or for SMTP)".to_owned()
                                }
                                Err(_) => "535 5.7.8 Authentication credentials invalid".to_owned(),
                            }
                        }
                    }
                }
            }
            Command::Mail(from, size) => match &st.account {
                None => "530 5.7.0 Authentication required".to_owned(),
                Some(_) if st.from.is_some() => "503 5.5.1 Sender already specified".to_owned(),
                Some(a) => {
                    let max = shared.config().gateway.max_message_bytes;
                    if size.is_some_and(|s| s > max as u64) {
                        "552 5.3.4 Message size exceeds fixed maximum message size".to_owned()
                    } else if !a.send_as.iter().any(|s| s.eq_ignore_ascii_case(&from)) {
                        tracing::warn!(target: "exgate::audit", name = %a.name, source = %peer.ip(), sender = %from, decision = "refused", reason = "sender_not_allowed", "mail from");
                        shared.metrics.count("senders_refused", &a.name, "refused");
                        "550 5.7.1 Sender address not allowed for this account".to_owned()
                    } else {
                        st.from = Some(from);
                        "250 2.1.0 Sender OK".to_owned()
                    }
                }
            },
            Command::Rcpt(to) => {
                if st.from.is_none() {
                    "503 5.5.1 Need MAIL command".to_owned()
                } else if st.rcpts.len() >= MAX_RECIPIENTS {
                    "452 4.5.3 Too many recipients".to_owned()
                } else {
                    st.rcpts.push(to);
                    "250 2.1.5 Recipient OK".to_owned()
                }
            }
            Command::Data => {
                if st.rcpts.is_empty() || st.from.is_none() {
                    "503 5.5.1 Need RCPT command".to_owned()
                } else {
                    if !conn
                        .send("354 Start mail input; end with <CRLF>.<CRLF>")
                        .await
                    {
                        return;
                    }
                    let max = shared.config().gateway.max_message_bytes;
                    let Some((data, too_big)) = read_data(&mut conn, max).await else {
                        return;
                    };
                    let (Some(account), Some(from)) = (st.account.clone(), st.from.take()) else {
                        return;
                    };
                    let rcpts = std::mem::take(&mut st.rcpts);
                    if too_big {
                        "552 5.3.4 Message size exceeds fixed maximum message size".to_owned()
                    } else {
                        accept(
                            &shared,
                            &account,
                            &host,
                            st.helo.as_deref(),
                            peer,
                            from,
                            rcpts,
                            data,
                        )
                        .await
                    }
                }
            }
            Command::Rset => {
                st.from = None;
                st.rcpts.clear();
                "250 2.0.0 OK".to_owned()
            }
            Command::Noop => "250 2.0.0 OK".to_owned(),
            Command::Quit => {
                conn.send(&format!("221 2.0.0 {host} closing connection"))
                    .await;
                return;
            }
            Command::Vrfy => "252 2.5.0 Cannot VRFY user".to_owned(),
            Command::Help => "214 2.0.0 See RFC 5321".to_owned(),
            Command::Syntax(r) => {
                st.errors += 1;
                r.to_owned()
            }
            Command::Unknown => {
                st.errors += 1;
                "500 5.5.2 Command not recognized".to_owned()
            }
        };
        if !conn.send(&reply).await {
            return;
        }
    }
}

fn multiline(code: u16, lines: &[String]) -> String {
    let last = lines.len().saturating_sub(1);
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{code}{}{l}", if i == last { ' ' } else { '-' }))
        .collect::<Vec<_>>()
        .join("\r\n")
}

enum Sasl {
    Credentials(String, SecretString),
    Reply(String),
    Closed,
}

async fn sasl(conn: &mut Conn, mech: &str, initial: Option<String>) -> Sasl {
    let bad = || Sasl::Reply("501 5.5.2 Cannot decode response".to_owned());
    let next = async |conn: &mut Conn, prompt: &str| -> Option<String> {
        if !conn.send(prompt).await {
            return None;
        }
        match conn.read(MAX_LINE).await {
            Read::Line(l) => Some(l),
            _ => None,
        }
    };
    match mech {
        "PLAIN" => {
            let response = match initial {
                Some(i) if i != "=" => i,
                _ => match next(conn, "334 ").await {
                    Some(l) => l,
                    None => return Sasl::Closed,
                },
            };
            if response == "*" {
                return Sasl::Reply("501 5.0.0 Authentication aborted".to_owned());
            }
            match decode_plain(&response) {
                Some((u, p)) => Sasl::Credentials(u, p),
                None => bad(),
            }
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => i,
                None => match next(conn, "334 VXNlcm5hbWU6").await {
                    Some(l) => l,
                    None => return Sasl::Closed,
                },
            };
            if user == "*" {
                return Sasl::Reply("501 5.0.0 Authentication aborted".to_owned());
            }
            let Some(user) = decode_text(&user) else {
                return bad();
            };
            let password = match next(conn, "334 UGFzc3dvcmQ6").await {
                Some(l) => l,
                None => return Sasl::Closed,
            };
            if password == "*" {
                return Sasl::Reply("501 5.0.0 Authentication aborted".to_owned());
            }
            match decode_text(&password) {
                Some(p) => Sasl::Credentials(user, SecretString::from(p)),
                None => bad(),
            }
        }
        _ => Sasl::Reply("504 5.5.4 Unrecognized authentication type".to_owned()),
    }
}

/// Reads DATA up to the lone `.`, dot-unstuffed, CRLF line endings; `None` when the client
/// went away. Past `max` bytes the rest is read and dropped (`too_big`).
async fn read_data(conn: &mut Conn, max: usize) -> Option<(Vec<u8>, bool)> {
    let mut data = Vec::new();
    let mut too_big = false;
    loop {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(conn.idle, async {
            let mut limited = (&mut conn.io).take(MAX_DATA_LINE as u64);
            limited.read_until(b'\n', &mut buf).await
        })
        .await
        .ok()?
        .ok()?;
        if n == 0 {
            return None;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"." {
            return Some((data, too_big));
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if data.len() + line.len() + 2 > max {
            too_big = true;
            data.clear();
            continue;
        }
        if !too_big {
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept(
    shared: &Arc<Shared>,
    account: &AccountConfig,
    host: &str,
    helo: Option<&str>,
    peer: SocketAddr,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
) -> String {
    let id = new_id();
    let now = time::OffsetDateTime::now_utc();
    let date = now
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let helo: String = helo
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect();
    // A trace header (RFC 5321 4.4).
    let mut message = format!(
        "Received: from {helo} ([{}])\r\n\tby {host} (exgate gateway) with ESMTPSA id {id};\r\n\t{date}\r\n",
        peer.ip()
    )
    .into_bytes();
    message.extend_from_slice(&data);
    let envelope = Envelope {
        id: id.clone(),
        account: account.name.clone(),
        mailbox: account.mailbox.clone(),
        from,
        to,
        received: now.unix_timestamp(),
        attempts: 0,
        next_attempt: 0,
        last_error: None,
        last_cause: None,
        dsn: false,
        maybe_sent: false,
    };
    let spool = shared.spool.clone();
    let env = envelope.clone();
    let stored = tokio::task::spawn_blocking(move || spool.accept(&env, &message)).await;
    match stored {
        Ok(Ok(())) => {
            shared.metrics.count("messages", &account.name, "accepted");
            tracing::info!(id = %id, account = %account.name, recipients = envelope.to.len(), "message accepted into the spool");
            shared.delivery.enqueue(envelope);
            format!("250 2.0.0 OK queued as {id}")
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the spool could not store a message");
            shared
                .metrics
                .count("messages", &account.name, "spool_error");
            "451 4.3.0 Temporary local problem, try again later".to_owned()
        }
        Err(_) => "451 4.3.0 Temporary local problem, try again later".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_parsed() {
        assert_eq!(
            parse_command("ehlo printer"),
            Command::Ehlo("printer".into())
        );
        assert_eq!(
            parse_command("MAIL FROM:<a@b.c> SIZE=100 BODY=8BITMIME"),
            Command::Mail("a@b.c".into(), Some(100))
        );
        assert_eq!(
            parse_command("MAIL FROM: <a@b.c>"),
            Command::Mail("a@b.c".into(), None)
        );
        assert_eq!(
            parse_command("RCPT TO:<x@y.z>"),
            Command::Rcpt("x@y.z".into())
        );
        assert!(matches!(parse_command("RCPT TO:<x>"), Command::Syntax(_)));
        assert!(matches!(
            parse_command("MAIL FROM:a@b.c"),
            Command::Syntax(_)
        ));
        assert_eq!(
            parse_command("AUTH plain AGEAYg=="),
            Command::Auth("PLAIN".into(), Some("AGEAYg==".into()))
        );
        assert_eq!(parse_command("BDAT 10 LAST"), Command::Unknown);
        let (u, p) = decode_plain(&B64.encode("\0scanner\0CANARY-pw")).unwrap();
        assert_eq!(u, "scanner");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&p), "CANARY-pw");
        assert!(decode_plain(&B64.encode("scanner")).is_none());
        assert!(decode_plain("***").is_none());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,120}") {
            let _ = parse_command(&s);
            let _ = parse_path(&s, "FROM:");
            let _ = decode_plain(&s);
            let _ = valid_address(&s);
        }
    }
}
