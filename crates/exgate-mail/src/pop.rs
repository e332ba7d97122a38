//! POP3 check (RFC 1939, CAPA RFC 2449, SASL RFC 5034 with XOAUTH2, USER/PASS): what a
//! scanner-to-mail or ticketing system does against `outlook.office365.com:995`, step by step,
//! with every answer kept so a refusal (`-ERR Logon failure: unknown user name or bad
//! password.`, which Exchange never details) can be diagnosed.
//!
//! [`check`] connects in TLS, reads the greeting, asks CAPA, authenticates, asks STAT and QUITs;
//! [`open`] stops after authenticating and hands over the connection (a gateway relays the rest).
//! The AUTH and PASS lines are never recorded.

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::io::BufReader;

use crate::tls::{LineIo, connect_implicit_tls, read_line, write_line};

/// Longest line read.
const MAX_LINE: usize = 16 * 1024;
/// Most lines of a multi-line answer kept.
const MAX_LINES: usize = 1000;

/// Where to connect.
#[derive(Debug, Clone)]
pub struct PopOptions {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// TCP port (995: TLS from the first byte).
    pub port: u16,
    /// Connect to this address instead of resolving `host`.
    pub connect_to: Option<std::net::SocketAddr>,
    /// Extra root certificates (PEM) to trust besides the platform's.
    pub extra_root_pem: Option<Vec<u8>>,
    /// Limit for each network step.
    pub timeout: Duration,
}

impl PopOptions {
    /// Exchange Online: `outlook.office365.com:995`.
    pub fn exchange_online() -> Self {
        PopOptions {
            host: "outlook.office365.com".to_owned(),
            port: 995,
            connect_to: None,
            extra_root_pem: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// How to authenticate (XOAUTH2 or USER/PASS). Secrets never appear in `Debug`.
pub use crate::sasl::SaslAuth as PopAuth;

/// One step: the same record as IMAP's.
pub use crate::imap::ImapStep as PopStep;

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopTranscript {
    /// `host:port` (and where the connection really went).
    pub server: String,
    /// `xoauth2` or `login`.
    pub mechanism: String,
    /// What CAPA listed.
    pub capabilities: Vec<String>,
    /// Messages in the maildrop (STAT).
    pub messages: Option<u64>,
    /// Every step, up to the first failure (then `quit`).
    pub steps: Vec<PopStep>,
}

impl PopTranscript {
    /// `true` when every step succeeded.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
    }

    /// The first failed step.
    pub fn failure(&self) -> Option<&PopStep> {
        self.steps.iter().find(|s| !s.ok)
    }
}

struct Session {
    io: LineIo,
    timeout: Duration,
}

impl Session {
    async fn line(&mut self) -> Result<String, String> {
        read_line(&mut self.io, MAX_LINE, self.timeout).await
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        write_line(&mut self.io, line, self.timeout).await
    }

    /// Sends `line` and reads the status line; `+OK` is success.
    async fn command(&mut self, line: &str) -> Result<(bool, String), String> {
        self.send(line).await?;
        let l = self.line().await?;
        Ok((l.starts_with("+OK"), l))
    }

    /// The lines of a multi-line answer up to the lone `.`.
    async fn multiline(&mut self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await?;
            if l == "." {
                return Ok(out);
            }
            if out.len() < MAX_LINES {
                out.push(l.strip_prefix('.').map_or(l.clone(), str::to_owned));
            }
        }
    }
}

fn ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn push(
    t: &mut PopTranscript,
    name: &str,
    start: Instant,
    r: &Result<(bool, String), String>,
) -> bool {
    let (ok, response, error) = match r {
        Ok((ok, l)) => (*ok, Some(l.clone()), None),
        Err(e) => (false, None, Some(e.clone())),
    };
    t.steps.push(PopStep {
        name: name.to_owned(),
        ok,
        response,
        error,
        ms: ms(start),
    });
    ok
}

fn transcript(o: &PopOptions, auth: &PopAuth) -> PopTranscript {
    PopTranscript {
        server: match o.connect_to {
            Some(addr) => format!("{}:{} via {addr}", o.host, o.port),
            None => format!("{}:{}", o.host, o.port),
        },
        mechanism: auth.mechanism().to_owned(),
        capabilities: Vec::new(),
        messages: None,
        steps: Vec::new(),
    }
}

/// Runs the check. See the module documentation.
pub async fn check(options: &PopOptions, auth: &PopAuth) -> PopTranscript {
    let mut t = transcript(options, auth);
    if let Some(mut s) = run(options, auth, &mut t).await {
        if t.ok() {
            let start = Instant::now();
            let r = s.command("STAT").await;
            if let Ok((true, l)) = &r {
                t.messages = l.split_whitespace().nth(1).and_then(|n| n.parse().ok());
            }
            push(&mut t, "stat", start, &r);
        }
        let start = Instant::now();
        let r = s.command("QUIT").await;
        push(&mut t, "quit", start, &r);
    }
    t
}

/// An authenticated POP3 connection handed to the caller, with the steps that opened it.
pub struct PopConnection {
    /// The TLS stream, after the `+OK` to the sign-in.
    pub stream: crate::BufferedStream,
    /// Connect, greeting, capa and auth.
    pub transcript: PopTranscript,
}

/// Connects and authenticates; on success returns the open connection, otherwise the
/// transcript up to the refused step.
pub async fn open(options: &PopOptions, auth: &PopAuth) -> Result<PopConnection, PopTranscript> {
    let mut t = transcript(options, auth);
    match run(options, auth, &mut t).await {
        Some(s) if t.ok() => Ok(PopConnection {
            stream: s.io,
            transcript: t,
        }),
        Some(mut s) => {
            let _ = s.command("QUIT").await;
            Err(t)
        }
        None => Err(t),
    }
}

async fn run(o: &PopOptions, auth: &PopAuth, t: &mut PopTranscript) -> Option<Session> {
    let start = Instant::now();
    let connected = async {
        let tls = connect_implicit_tls(
            &o.host,
            o.port,
            o.connect_to,
            o.extra_root_pem.as_deref(),
            o.timeout,
        )
        .await?;
        Ok::<_, String>(Session {
            io: BufReader::new(tls),
            timeout: o.timeout,
        })
    }
    .await;
    let mut s = match connected {
        Ok(s) => s,
        Err(e) => {
            push(t, "connect", start, &Err(e));
            return None;
        }
    };
    push(t, "connect", start, &Ok((true, String::new())));
    if let Some(step) = t.steps.last_mut() {
        step.response = None;
    }

    let start = Instant::now();
    let greeting = s.line().await.map(|l| (l.starts_with("+OK"), l));
    if !push(t, "greeting", start, &greeting) {
        return None;
    }

    let start = Instant::now();
    let r = s.command("CAPA").await;
    if let Ok((true, _)) = &r {
        match s.multiline().await {
            Ok(lines) => t.capabilities = lines,
            Err(e) => {
                push(t, "capa", start, &Err(e));
                return None;
            }
        }
    }
    // CAPA is optional (RFC 2449): a refusal does not stop the check.
    let _ = push(t, "capa", start, &r.map(|(_, l)| (true, l)));

    let start = Instant::now();
    let r = match auth {
        PopAuth::Xoauth2 { user, token } => {
            let encoded = crate::sasl::xoauth2_response(user, token);
            match s.send(&format!("AUTH XOAUTH2 {encoded}")).await {
                Ok(()) => match s.line().await {
                    // An error challenge: an empty response brings the final answer.
                    Ok(l) if l.starts_with('+') && !l.starts_with("+OK") => {
                        match s.send("").await {
                            Ok(()) => s.line().await.map(|l| (l.starts_with("+OK"), l)),
                            Err(e) => Err(e),
                        }
                    }
                    Ok(l) => Ok((l.starts_with("+OK"), l)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        PopAuth::Ntlm(creds) => {
            // AUTH NTLM: "+", NEGOTIATE, "+ CHALLENGE", AUTHENTICATE, "+OK".
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let negotiate = crate::ntlm::negotiate_message();
            let exchange = async {
                s.send("AUTH NTLM").await?;
                let l = s.line().await?;
                if !l.starts_with('+') || l.starts_with("+OK") {
                    return Ok((false, l));
                }
                s.send(&b64.encode(&negotiate)).await?;
                let l = s.line().await?;
                let text = match l.strip_prefix('+') {
                    Some(t) if !l.starts_with("+OK") => t.to_owned(),
                    _ => return Ok((false, l)),
                };
                match crate::ntlm::answer_challenge(creds, &negotiate, &text) {
                    Some(answer) => s.send(&b64.encode(answer)).await?,
                    None => s.send("*").await?,
                }
                s.line().await.map(|l| (l.starts_with("+OK"), l))
            };
            exchange.await
        }
        PopAuth::Login { user, password } => match s.command(&format!("USER {user}")).await {
            Ok((true, _)) => {
                s.command(&format!("PASS {}", password.expose_secret()))
                    .await
            }
            other => other,
        },
    };
    push(t, "auth", start, &r);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_names_the_failure() {
        let auth = PopAuth::Login {
            user: "u".into(),
            password: secrecy::SecretString::from("CANARY-pop"),
        };
        let mut t = transcript(&PopOptions::exchange_online(), &auth);
        push(
            &mut t,
            "greeting",
            Instant::now(),
            &Ok((true, "+OK".into())),
        );
        push(
            &mut t,
            "auth",
            Instant::now(),
            &Ok((
                false,
                "-ERR Logon failure: unknown user name or bad password.".into(),
            )),
        );
        assert_eq!(t.failure().map(|f| f.name.as_str()), Some("auth"));
        assert!(!format!("{t:?}{auth:?}").contains("CANARY"));
    }
}
