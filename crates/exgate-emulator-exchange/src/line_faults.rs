//! Faults a line server (SMTP, IMAP, POP) plays on a new connection, as the embedding emulator's
//! `[[faults]]` decide through a hook: added latency before the greeting, a server that never
//! answers, a connection dropped at once, or another greeting (a `421`, a `* BYE`, an `-ERR`)
//! after which the server closes, as a busy or failing Exchange front end does.

use std::sync::Arc;
use std::time::Duration;

/// What a connection meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectAction {
    /// The normal session (after the delay).
    Proceed,
    /// Accept and never send a byte.
    Hang,
    /// Close at once, before any greeting (and before a TLS handshake).
    Reset,
    /// Send this line instead of the greeting, then close.
    Reply(String),
}

/// One connection's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFault {
    /// What happens.
    pub action: ConnectAction,
    /// Waited before it (and before the greeting of a normal session).
    pub delay: Duration,
}

/// Asked once per accepted connection; `None`: nothing injected.
pub type ConnectHook = Arc<dyn Fn() -> Option<ConnectFault> + Send + Sync>;

/// What the connection does after the hook: go on, stop, or greet with this line and close.
pub(crate) enum Before {
    Proceed,
    Stop,
    Reply(String),
}

/// Runs the hook: waits the delay, hangs or stops as asked.
pub(crate) async fn before_greeting(hook: &OnConnect) -> Before {
    let Some(fault) = hook.0.as_ref().and_then(|h| h()) else {
        return Before::Proceed;
    };
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    match fault.action {
        ConnectAction::Proceed => Before::Proceed,
        // The task is aborted when the server stops.
        ConnectAction::Hang => std::future::pending().await,
        ConnectAction::Reset => Before::Stop,
        ConnectAction::Reply(text) => Before::Reply(text),
    }
}

/// The hook of a line server's options, when the emulator gives one.
#[derive(Clone, Default)]
pub struct OnConnect(pub Option<ConnectHook>);

impl std::fmt::Debug for OnConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OnConnect(<hook>)"
        } else {
            "OnConnect(None)"
        })
    }
}
