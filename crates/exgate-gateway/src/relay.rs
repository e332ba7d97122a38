//! What the three device-facing protocols share: the line connection toward the device (bounded
//! reads, timed writes, TLS from the first byte or after STARTTLS/STLS), and, for IMAP and POP3
//! once the device signed in locally, opening the upstream session as the account's mailbox
//! (every refusal diagnosed) and relaying bytes both ways.

use std::future::Future;
use std::time::{Duration, Instant};

use exgate_diagnose::Protocol;
use exgate_mail::sasl::SaslAuth;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Shared;
use crate::config::{AccountConfig, Service};
use crate::explain::{SignedInAs, explain, short};

pub(crate) type Stream = Box<dyn exgate_mail::ByteStream>;

/// One line read from the device.
pub(crate) enum Read {
    Line(String),
    TooLong,
    Closed,
    Idle,
}

/// A device's connection: buffered, every read and write limited by the idle time.
pub(crate) struct Conn {
    pub(crate) io: BufReader<Stream>,
    pub(crate) idle: Duration,
}

impl Conn {
    /// Wraps `tcp`, in TLS from the first byte when `tls` is given; `None` when the handshake
    /// fails or times out.
    pub(crate) async fn open(
        tcp: TcpStream,
        tls: Option<&tokio_rustls::TlsAcceptor>,
        idle: Duration,
    ) -> Option<Conn> {
        let _ = tcp.set_nodelay(true);
        let stream: Stream = match tls {
            Some(acceptor) => match tokio::time::timeout(idle, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Box::new(s),
                _ => return None,
            },
            None => Box::new(tcp),
        };
        Some(Conn {
            io: BufReader::new(stream),
            idle,
        })
    }

    /// Upgrades to TLS (after the `STARTTLS`/`STLS` answer was sent). Whatever the client sent
    /// in clear after the command is dropped (RFC 3207 4.2). `false`: the handshake failed.
    pub(crate) async fn start_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> bool {
        let plain = std::mem::replace(&mut self.io, BufReader::new(Box::new(tokio::io::empty())));
        match tokio::time::timeout(self.idle, acceptor.accept(plain.into_inner())).await {
            Ok(Ok(tls)) => {
                self.io = BufReader::new(Box::new(tls));
                true
            }
            _ => false,
        }
    }

    /// One line of at most `max` bytes, without its line ending (lossy UTF-8).
    pub(crate) async fn read(&mut self, max: usize) -> Read {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(self.idle, async {
            let mut limited = (&mut self.io).take(max as u64 + 1);
            limited.read_until(b'\n', &mut buf).await
        })
        .await;
        match r {
            Err(_) => Read::Idle,
            Ok(Err(_) | Ok(0)) => Read::Closed,
            Ok(Ok(_)) if !buf.ends_with(b"\n") && buf.len() > max => Read::TooLong,
            Ok(Ok(_)) => Read::Line(
                String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
        }
    }

    /// One line, or `None` when the client went away, went silent or sent too long a line.
    pub(crate) async fn line(&mut self, max: usize) -> Option<String> {
        match self.read(max).await {
            Read::Line(l) => Some(l),
            _ => None,
        }
    }

    /// Sends `text` and CRLF; `false` when the client is gone.
    pub(crate) async fn send(&mut self, text: &str) -> bool {
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

/// Why opening an upstream session failed: the text Exchange (or the transport) gave, and
/// whether it was Exchange's answer (then the token is dropped).
pub(crate) struct OpenFailure {
    pub(crate) text: String,
    pub(crate) answered: bool,
}

impl OpenFailure {
    /// From the failed step of an IMAP or POP session (the server's answer, else the transport
    /// error).
    pub(crate) fn of_step(f: Option<&exgate_mail::imap::ImapStep>) -> OpenFailure {
        OpenFailure {
            text: f
                .and_then(|f| f.response.clone().or_else(|| f.error.clone()))
                .unwrap_or_else(|| "no answer".into()),
            answered: f.is_some_and(|f| f.response.is_some()),
        }
    }
}

/// Opens the upstream session of `service` as `account`'s mailbox with `open` (XOAUTH2 with
/// the profile's token, or the account's upstream password). Every failure is diagnosed, logged
/// and counted; the `Err` is a short, secret-free reason for the device.
pub(crate) async fn open_upstream<F, Fut>(
    shared: &Shared,
    account: &AccountConfig,
    service: Service,
    open: F,
) -> Result<exgate_mail::BufferedStream, String>
where
    F: FnOnce(SaslAuth) -> Fut,
    Fut: Future<Output = Result<exgate_mail::BufferedStream, OpenFailure>>,
{
    let (protocol, opened, sessions) = match service {
        Service::Pop => (Protocol::Pop, "pop_open", "pop_sessions"),
        _ => (Protocol::Imap, "imap_open", "imap_sessions"),
    };
    let started = Instant::now();
    let (auth, token) = match shared.upstreams.sasl(account).await {
        Ok(x) => x,
        Err(e) => {
            let why = explain(
                protocol,
                &e.to_string(),
                &account.mailbox,
                SignedInAs::Unknown,
            );
            tracing::error!(account = %account.name, protocol = service.name(), cause = %why.summary(), "no token for the upstream session");
            shared
                .metrics
                .count("upstream_auth", &account.name, "no_token");
            return Err(format!(
                "The gateway could not get a token from Entra ID ({})",
                short(&why.title)
            ));
        }
    };
    match open(auth).await {
        Ok(stream) => {
            shared
                .metrics
                .observe(opened, started.elapsed().as_secs_f64());
            shared.metrics.count(sessions, &account.name, "opened");
            Ok(stream)
        }
        Err(f) => {
            if f.answered {
                shared.upstreams.invalidate(account);
            }
            let why = explain(
                protocol,
                &f.text,
                &account.mailbox,
                SignedInAs::of(account, token.as_ref()),
            );
            tracing::error!(account = %account.name, protocol = service.name(), upstream = %short(&f.text), cause = %why.summary(), "Exchange refused the upstream sign-in");
            shared
                .metrics
                .count("upstream_auth", &account.name, "refused");
            let reason = if why.title.is_empty() {
                short(&f.text)
            } else {
                short(&why.title)
            };
            Err(format!("Exchange refused the gateway: {reason}"))
        }
    }
}

/// Whether a chunk from Exchange (with the tail of the previous one) carries a throttling
/// answer: IMAP's `NO Request is throttled. Suggested Backoff Time: ...`, POP's `-ERR ...
/// throttled`, or a `[THROTTLED]` response code. Returns the line that says so.
pub(crate) fn throttle_line(window: &[u8]) -> Option<String> {
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
pub(crate) async fn relay(
    shared: &Shared,
    service: Service,
    client: Conn,
    mut upstream: exgate_mail::BufferedStream,
    account: &str,
) {
    let protocol = service.name();
    let pending = client.io.buffer().to_vec();
    let mut client = client.io.into_inner();
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

    proptest::proptest! {
        #[test]
        fn throttle_line_never_panics(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = throttle_line(&s);
        }
    }
}
