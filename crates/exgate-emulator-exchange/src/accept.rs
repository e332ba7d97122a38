//! The accept loop the line servers (SMTP, IMAP, POP) share: up to `max` sessions at once, as
//! many more turned away with the protocol's "too many connections" answer (each bounded in
//! time), the rest dropped; a short back-off when accepting fails (out of file descriptors);
//! every connection task ends with the server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Whether a connection got one of the server's session slots.
pub(crate) enum Admission {
    /// Served; the permit is held for the session.
    Admitted(OwnedSemaphorePermit),
    /// Over the limit: told so, within the turned-away time limit.
    TurnedAway(OwnedSemaphorePermit),
}

impl Admission {
    /// The session permit (admitted) and the overflow permit (turned away); hold the second
    /// until the connection ends.
    pub(crate) fn split(self) -> (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>) {
        match self {
            Admission::Admitted(p) => (Some(p), None),
            Admission::TurnedAway(p) => (None, Some(p)),
        }
    }
}

/// Accepts connections on `listener` until `stop` completes, handing each to `handle` with its
/// admission; a turned-away connection's task is cut after `turned_away_limit`.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max: usize,
    turned_away_limit: Duration,
    stop: impl Future<Output = ()> + Send,
    handle: F,
) where
    F: Fn(TcpStream, Admission) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max.max(1)));
    let overflow = Arc::new(Semaphore::new(max.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let admission = match slots.clone().try_acquire_owned() {
                    Ok(p) => Admission::Admitted(p),
                    Err(_) => match overflow.clone().try_acquire_owned() {
                        Ok(p) => Admission::TurnedAway(p),
                        // Dropped: closes the socket.
                        Err(_) => continue,
                    },
                };
                let turned_away = matches!(admission, Admission::TurnedAway(_));
                let session = handle(stream, admission);
                connections.spawn(async move {
                    if turned_away {
                        let _ = tokio::time::timeout(turned_away_limit, session).await;
                    } else {
                        session.await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }
    }
    connections.shutdown().await;
}

/// The start of an implicit-TLS line session (IMAP, POP): the injected fault, the handshake,
/// then for a fault's reply, or a connection without a session slot (`busy`, the protocol's
/// "too many connections" line), that one line and the close. `None`: the connection is over.
pub(crate) async fn open_tls(
    stream: TcpStream,
    tls: &tokio_rustls::TlsAcceptor,
    read_timeout: Duration,
    on_connect: &crate::line_faults::OnConnect,
    admitted: bool,
    busy: &str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    use crate::line_faults::{Before, before_greeting};
    use tokio::io::AsyncWriteExt as _;
    let refusal = match before_greeting(on_connect).await {
        Before::Proceed if admitted => None,
        Before::Proceed => Some(busy.to_owned()),
        Before::Stop => return None,
        Before::Reply(text) => Some(text),
    };
    let mut secure = match tokio::time::timeout(read_timeout, tls.accept(stream)).await {
        Ok(Ok(s)) => s,
        _ => return None,
    };
    if let Some(text) = refusal {
        let _ = crate::smtp::send(&mut secure, &format!("{text}\r\n")).await;
        let _ = secure.shutdown().await;
        return None;
    }
    Some(secure)
}

/// Serves an implicit-TLS line protocol (IMAP, POP) on `listener` until `stop` completes: the
/// shared accept loop, each connection handed to `connection` with the TLS acceptor and its
/// session permit (`None`: turned away). Turned-away connections still get a handshake and the
/// refusal, bounded by ten seconds or `read_timeout` if shorter.
pub(crate) async fn serve_implicit_tls<C, Fut>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    max_connections: usize,
    read_timeout: Duration,
    stop: impl Future<Output = ()> + Send,
    connection: C,
) where
    C: Fn(TcpStream, tokio_rustls::TlsAcceptor, Option<OwnedSemaphorePermit>) -> Fut
        + Clone
        + Send
        + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let short = Duration::from_secs(10).min(read_timeout);
    accept_loop(
        listener,
        max_connections,
        short,
        stop,
        move |stream, admission| {
            let (acceptor, connection) = (acceptor.clone(), connection.clone());
            async move {
                let (permit, _turned_away) = admission.split();
                connection(stream, acceptor, permit).await;
            }
        },
    )
    .await;
}
