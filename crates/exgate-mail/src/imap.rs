//! IMAP check (RFC 3501 subset, SASL XOAUTH2 with SASL-IR, LOGIN): what an archiver or a sync
//! daemon does against `outlook.office365.com:993`, step by step, with every tagged answer kept
//! so a refusal (`NO AUTHENTICATE failed.`, which Exchange never details) can be diagnosed.
//!
//! [`check`] connects in TLS, reads the greeting, asks CAPABILITY, authenticates, SELECTs the
//! folder (reading `* n EXISTS`) and LOGs OUT. It stops at the first refused step and never
//! fails as a whole. The AUTHENTICATE and LOGIN lines are never recorded.

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, BufReader};

use crate::tls::{LineIo, connect_implicit_tls, read_line, write_line};

/// Longest response line read.
const MAX_LINE: usize = 16 * 1024;
/// Most untagged lines kept before a tagged answer.
const MAX_UNTAGGED: usize = 10_000;
/// Largest literal (`{n}`) read inside a response.
const MAX_LITERAL: usize = 1024 * 1024;

/// Where to connect.
#[derive(Debug, Clone)]
pub struct ImapOptions {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// TCP port (993: TLS from the first byte).
    pub port: u16,
    /// Connect to this address instead of resolving `host` (tests, emulators).
    pub connect_to: Option<std::net::SocketAddr>,
    /// Extra root certificates (PEM) to trust besides the platform's.
    pub extra_root_pem: Option<Vec<u8>>,
    /// Limit for each network step.
    pub timeout: Duration,
}

impl ImapOptions {
    /// Exchange Online: `outlook.office365.com:993`.
    pub fn exchange_online() -> Self {
        ImapOptions {
            host: "outlook.office365.com".to_owned(),
            port: 993,
            connect_to: None,
            extra_root_pem: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// How to authenticate (XOAUTH2 or a password). Secrets never appear in `Debug`.
pub use crate::sasl::SaslAuth as ImapAuth;

/// One step of a line-protocol check (IMAP here, POP3 in [`crate::pop`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapStep {
    /// IMAP: `connect`, `greeting`, `capability`, `authenticate`, `select`, `logout`; POP3:
    /// `connect`, `greeting`, `capa`, `auth`, `stat`, `quit`.
    pub name: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// The server's answer line (`a2 NO AUTHENTICATE failed.` with the tag, `-ERR ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// What went wrong without an answer (connection, TLS, timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds.
    pub ms: u64,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapTranscript {
    /// `host:port`.
    pub server: String,
    /// The mechanism used.
    pub mechanism: String,
    /// The server's capabilities.
    pub capabilities: Vec<String>,
    /// The folder selected.
    pub folder: String,
    /// Messages in it (`* n EXISTS`), when SELECT succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<u64>,
    /// Every step, in order, up to the first failure (then `logout`).
    pub steps: Vec<ImapStep>,
}

impl ImapTranscript {
    /// `true` when every step succeeded.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
    }

    /// The first failed step.
    pub fn failure(&self) -> Option<&ImapStep> {
        self.steps.iter().find(|s| !s.ok)
    }
}

/// A tagged answer and the untagged lines before it.
#[derive(Debug)]
struct Answer {
    untagged: Vec<String>,
    status: String,
    line: String,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status == "OK"
    }

    /// The answer a tagged `line` (for `tag`) gives, with no untagged lines before it.
    fn tagged(tag: &str, line: String) -> Answer {
        let status = line
            .strip_prefix(tag)
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        Answer {
            untagged: Vec::new(),
            status,
            line,
        }
    }
}

struct Session {
    io: LineIo,
    timeout: Duration,
    next_tag: u32,
}

impl Session {
    async fn read_line(&mut self) -> Result<String, String> {
        let mut line = read_line(&mut self.io, MAX_LINE, self.timeout).await?;
        // A literal `{n}` at the end: its bytes, then the rest of the line.
        if let Some(size) = literal_size(&line) {
            if size > MAX_LITERAL {
                return Err("a literal larger than the limit".into());
            }
            let mut buf = vec![0u8; size];
            tokio::time::timeout(self.timeout, self.io.read_exact(&mut buf))
                .await
                .map_err(|_| "no answer within the timeout".to_owned())?
                .map_err(|e| format!("reading a literal: {e}"))?;
            line.push_str(&String::from_utf8_lossy(&buf));
            let rest = Box::pin(self.read_line()).await?;
            line.push_str(&rest);
        }
        Ok(line)
    }

    async fn send_line(&mut self, line: &str) -> Result<(), String> {
        write_line(&mut self.io, line, self.timeout).await
    }

    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("a{}", self.next_tag)
    }

    /// Reads until the answer tagged `tag`; `+` continuations are answered with an empty line
    /// (an XOAUTH2 error challenge) so the server sends its final answer.
    async fn answer(&mut self, tag: &str) -> Result<Answer, String> {
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.starts_with('+') {
                self.send_line("").await?;
                continue;
            }
            if line.strip_prefix(tag).is_some_and(|r| r.starts_with(' ')) {
                return Ok(Answer {
                    untagged,
                    ..Answer::tagged(tag, line)
                });
            }
            if untagged.len() >= MAX_UNTAGGED {
                return Err("too many lines before the answer".into());
            }
            untagged.push(line);
        }
    }

    async fn command(&mut self, text: &str) -> Result<Answer, String> {
        let tag = self.tag();
        self.send_line(&format!("{tag} {text}")).await?;
        self.answer(&tag).await
    }
}

/// `{n}` (or `{n+}`) at the end of a line.
fn literal_size(line: &str) -> Option<usize> {
    let body = line.strip_suffix('}')?;
    let open = body.rfind('{')?;
    body[open + 1..].trim_end_matches('+').parse().ok()
}

/// An IMAP quoted string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn push(t: &mut ImapTranscript, name: &str, start: Instant, r: &Result<Answer, String>) -> bool {
    let (ok, response, error) = match r {
        Ok(a) => (a.ok(), Some(a.line.clone()), None),
        Err(e) => (false, None, Some(e.clone())),
    };
    t.steps.push(ImapStep {
        name: name.to_owned(),
        ok,
        response,
        error,
        ms: ms(start),
    });
    ok
}

/// Runs the check on `folder` (usually `INBOX`). See the module documentation.
pub async fn check(options: &ImapOptions, auth: &ImapAuth, folder: &str) -> ImapTranscript {
    let mut t = transcript(options, auth, folder);
    if let Some(mut s) = run(options, auth, Some(folder), &mut t).await {
        let start = Instant::now();
        let r = s.command("LOGOUT").await;
        push(&mut t, "logout", start, &r);
    }
    t
}

/// An authenticated IMAP connection handed to the caller (a gateway relays the rest of the
/// session over it), with the steps that opened it.
pub struct ImapConnection {
    /// The TLS stream, positioned after the tagged answer to AUTHENTICATE or LOGIN.
    pub stream: crate::BufferedStream,
    /// Connect, greeting, capability and authenticate.
    pub transcript: ImapTranscript,
}

/// Connects, reads the greeting, asks CAPABILITY and authenticates; on success returns the open
/// connection, otherwise the transcript up to the refused step (then LOGOUT).
pub async fn open(
    options: &ImapOptions,
    auth: &ImapAuth,
) -> Result<ImapConnection, ImapTranscript> {
    let mut t = transcript(options, auth, "");
    match run(options, auth, None, &mut t).await {
        Some(s) if t.ok() => Ok(ImapConnection {
            stream: s.io,
            transcript: t,
        }),
        Some(mut s) => {
            let start = Instant::now();
            let r = s.command("LOGOUT").await;
            push(&mut t, "logout", start, &r);
            Err(t)
        }
        None => Err(t),
    }
}

fn transcript(options: &ImapOptions, auth: &ImapAuth, folder: &str) -> ImapTranscript {
    ImapTranscript {
        // The name the TLS certificate must carry, and where the connection really goes.
        server: match options.connect_to {
            Some(addr) => format!("{}:{} via {addr}", options.host, options.port),
            None => format!("{}:{}", options.host, options.port),
        },
        mechanism: auth.mechanism().to_owned(),
        capabilities: Vec::new(),
        folder: folder.to_owned(),
        exists: None,
        steps: Vec::new(),
    }
}

async fn run(
    o: &ImapOptions,
    auth: &ImapAuth,
    folder: Option<&str>,
    t: &mut ImapTranscript,
) -> Option<Session> {
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
            next_tag: 0,
        })
    }
    .await;
    let mut s = match connected {
        Ok(s) => {
            t.steps.push(ImapStep {
                name: "connect".into(),
                ok: true,
                response: None,
                error: None,
                ms: ms(start),
            });
            s
        }
        Err(e) => {
            t.steps.push(ImapStep {
                name: "connect".into(),
                ok: false,
                response: None,
                error: Some(e),
                ms: ms(start),
            });
            return None;
        }
    };

    let start = Instant::now();
    let greeting = s.read_line().await;
    let ok = matches!(&greeting, Ok(l) if l.starts_with("* OK") || l.starts_with("* PREAUTH"));
    t.steps.push(ImapStep {
        name: "greeting".into(),
        ok,
        response: greeting.as_ref().ok().cloned(),
        error: greeting.err(),
        ms: ms(start),
    });
    if !ok {
        return None;
    }

    let start = Instant::now();
    let r = s.command("CAPABILITY").await;
    if let Ok(a) = &r {
        t.capabilities = a
            .untagged
            .iter()
            .filter_map(|l| l.strip_prefix("* CAPABILITY "))
            .flat_map(|l| l.split_whitespace().map(str::to_owned))
            .collect();
    }
    if !push(t, "capability", start, &r) {
        return Some(s);
    }

    let start = Instant::now();
    let r = match auth {
        ImapAuth::Xoauth2 { user, token } => {
            let encoded = crate::sasl::xoauth2_response(user, token);
            let tag = s.tag();
            let sasl_ir = t
                .capabilities
                .iter()
                .any(|c| c.eq_ignore_ascii_case("SASL-IR"));
            let sent = if sasl_ir {
                s.send_line(&format!("{tag} AUTHENTICATE XOAUTH2 {encoded}"))
                    .await
            } else {
                match s.send_line(&format!("{tag} AUTHENTICATE XOAUTH2")).await {
                    Ok(()) => match s.read_line().await {
                        Ok(l) if l.starts_with('+') => s.send_line(&encoded).await,
                        Ok(l) => Err(format!("expected a continuation, got: {l:.80}")),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            };
            match sent {
                Ok(()) => s.answer(&tag).await,
                Err(e) => Err(e),
            }
        }
        ImapAuth::Ntlm(creds) => {
            // AUTHENTICATE NTLM: "+", NEGOTIATE, "+ CHALLENGE", AUTHENTICATE, the tagged answer.
            // A tagged answer instead of a continuation is the server's refusal, kept as such.
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let tag = s.tag();
            let negotiate = crate::ntlm::negotiate_message();
            let tagged = |l: &str| l.starts_with(&format!("{tag} "));
            let exchange: Result<Option<String>, String> = async {
                s.send_line(&format!("{tag} AUTHENTICATE NTLM")).await?;
                let l = s.read_line().await?;
                if tagged(&l) {
                    return Ok(Some(l));
                }
                if !l.starts_with('+') {
                    return Err(format!("expected a continuation, got: {l:.80}"));
                }
                s.send_line(&b64.encode(&negotiate)).await?;
                let l = s.read_line().await?;
                if tagged(&l) {
                    return Ok(Some(l));
                }
                let Some(text) = l.strip_prefix('+') else {
                    return Err(format!("expected an NTLM challenge, got: {l:.80}"));
                };
                match crate::ntlm::answer_challenge(creds, &negotiate, text) {
                    Some(answer) => s.send_line(&b64.encode(answer)).await?,
                    None => s.send_line("*").await?,
                }
                Ok(None)
            }
            .await;
            match exchange {
                Ok(None) => s.answer(&tag).await,
                Ok(Some(line)) => Ok(Answer::tagged(&tag, line)),
                Err(e) => Err(e),
            }
        }
        ImapAuth::Login { user, password } => {
            let tag = s.tag();
            let line = format!(
                "{tag} LOGIN {} {}",
                quoted(user),
                quoted(password.expose_secret())
            );
            match s.send_line(&line).await {
                Ok(()) => s.answer(&tag).await,
                Err(e) => Err(e),
            }
        }
    };
    if !push(t, "authenticate", start, &r) {
        return Some(s);
    }
    let Some(folder) = folder else {
        return Some(s);
    };

    let start = Instant::now();
    let r = s.command(&format!("SELECT {}", quoted(folder))).await;
    if let Ok(a) = &r
        && a.ok()
    {
        t.exists = a.untagged.iter().find_map(|l| {
            let rest = l.strip_prefix("* ")?;
            let (n, word) = rest.split_once(' ')?;
            word.eq_ignore_ascii_case("EXISTS")
                .then(|| n.parse().ok())?
        });
    }
    push(t, "select", start, &r);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_quoting() {
        assert_eq!(literal_size("* LIST () \"/\" {5}"), Some(5));
        assert_eq!(literal_size("* 1 FETCH (BODY[] {12+}"), Some(12));
        assert_eq!(literal_size("a1 OK done"), None);
        assert_eq!(literal_size("{x}"), None);
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        let a = ImapAuth::Login {
            user: "u".into(),
            password: secrecy::SecretString::from("CANARY-imap-pw"),
        };
        assert!(!format!("{a:?}").contains("CANARY"));
    }

    proptest::proptest! {
        #[test]
        fn literal_size_never_panics(s in "\\PC{0,60}") {
            let _ = literal_size(&s);
            let _ = quoted(&s);
        }
    }
}
