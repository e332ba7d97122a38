//! Local sign-in: the password file (argon2id hashes), source networks, protocols, and the
//! lockout after repeated failures. Every decision is one audit line (target
//! `exgate::audit`) with the name, the source address, the protocol and the outcome; never the
//! password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{AccountConfig, GatewayConfig, Service};

/// An error in the password file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}\n  fix: {fix}")]
pub struct PasswordFileError {
    /// The file.
    pub file: String,
    /// 1-based line, 0 for the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// `NAME:HASH` lines; `#` comments and blank lines allowed.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    entries: Vec<(String, String)>,
}

impl PasswordFile {
    /// Reads `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => PasswordFile::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PasswordFile::default()),
            Err(e) => Err(PasswordFileError {
                file: path.display().to_string(),
                line: 0,
                message: format!("cannot read: {e}"),
                fix: "check the `passwords` path in [gateway] and the file's permissions".into(),
            }),
        }
    }

    /// Parses the text of a password file.
    pub fn parse(text: &str, path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: &str| PasswordFileError {
                file: path.display().to_string(),
                line: i + 1,
                message: message.to_owned(),
                fix: "set the password again with `exgate gateway passwd NAME`".into(),
            };
            let (name, hash) = line.split_once(':').ok_or_else(|| err("not `NAME:HASH`"))?;
            if !hash.starts_with("$argon2id$") || PasswordHash::new(hash).is_err() {
                return Err(err("the hash is not an argon2id PHC string"));
            }
            entries.push((name.to_owned(), hash.to_owned()));
        }
        Ok(PasswordFile { entries })
    }

    /// The hash for `name` (case-insensitive).
    pub fn hash(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, h)| h.as_str())
    }

    /// Sets (or replaces) the hash for `name`.
    pub fn set(&mut self, name: &str, hash: String) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.entries.push((name.to_owned(), hash));
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# exgate gateway passwords (argon2id); set with `exgate gateway passwd NAME`\n",
        );
        for (n, h) in &self.entries {
            out.push_str(n);
            out.push(':');
            out.push_str(h);
            out.push('\n');
        }
        out
    }
}

/// An argon2id hash (PHC string) of `password`, with a random salt and the crate's default
/// parameters (19 MiB, 2 passes, 1 lane: OWASP's recommendation).
pub fn hash_password(password: &SecretString) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

fn verify(hash: &str, password: &SecretString) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &h)
            .is_ok()
    })
}

/// A hash verified when the name is unknown, so an unknown name takes as long as a wrong
/// password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password(&SecretString::from("exgate-decoy-password".to_owned())).unwrap_or_default()
    })
}

/// Why a sign-in was refused (for the audit line; the client only ever hears "invalid").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such account, or it has no password set.
    UnknownUser,
    /// The password does not match.
    WrongPassword,
    /// Too many recent failures from this address for this name.
    LockedOut,
    /// The source address is outside the account's networks.
    NetworkNotAllowed,
    /// The account may not use this protocol.
    ProtocolNotAllowed,
}

impl Refusal {
    /// A word for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown_user",
            Refusal::WrongPassword => "wrong_password",
            Refusal::LockedOut => "locked_out",
            Refusal::NetworkNotAllowed => "network_not_allowed",
            Refusal::ProtocolNotAllowed => "protocol_not_allowed",
        }
    }

    /// Whether the client should be told to try later (a lockout) rather than "invalid".
    pub fn temporary(self) -> bool {
        self == Refusal::LockedOut
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// How long a verified password is remembered (as a keyed MAC, in memory only).
const VERIFIED_TTL: Duration = Duration::from_secs(3600);

/// Decides sign-ins: holds the accounts, the password file and the failure counters.
///
/// argon2id costs 19 MiB and tens of milliseconds per verification by design; devices that
/// connect for every message would pay it each time. After a successful verification the
/// gateway remembers an HMAC-SHA256 (under a random key that never leaves the process) of the
/// name, the stored hash and the password for an hour, and compares later sign-ins against it in
/// constant time; a changed password file or a wrong password goes through argon2 again. At
/// most one argon2 verification per CPU runs at a time, which bounds memory.
pub struct Authenticator {
    accounts: Vec<Arc<AccountConfig>>,
    passwords: PasswordFile,
    max_failures: u32,
    lockout: Duration,
    failures: Mutex<HashMap<(String, IpAddr), Failures>>,
    mac_key: aws_lc_rs::hmac::Key,
    verified: Mutex<HashMap<String, (aws_lc_rs::hmac::Tag, Instant)>>,
    argon2_slots: tokio::sync::Semaphore,
    argon2_runs: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

fn mac_message(name: &str, hash: &str, password: &SecretString) -> Vec<u8> {
    let mut m = Vec::with_capacity(name.len() + hash.len() + 64);
    m.extend_from_slice(name.to_ascii_lowercase().as_bytes());
    m.push(0);
    m.extend_from_slice(hash.as_bytes());
    m.push(0);
    m.extend_from_slice(password.expose_secret().as_bytes());
    m
}

impl Authenticator {
    /// From the configuration and its password file.
    pub fn new(config: &GatewayConfig, passwords: PasswordFile) -> Authenticator {
        Authenticator {
            accounts: config.accounts.iter().cloned().map(Arc::new).collect(),
            passwords,
            max_failures: config.gateway.max_failures.max(1),
            lockout: Duration::from_secs(config.gateway.lockout_secs),
            failures: Mutex::new(HashMap::new()),
            mac_key: {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng).unwrap_or_else(
                    |_| {
                        // The system RNG failing is not recoverable in a useful way; a key from
                        // the clock still keeps the cache process-private and short-lived.
                        let t = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
                        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &t.to_le_bytes())
                    },
                )
            },
            verified: Mutex::new(HashMap::new()),
            argon2_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            argon2_runs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether `password` was verified for `name` against `hash` within the last hour.
    fn remembered(&self, name: &str, hash: &str, password: &SecretString) -> bool {
        let v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        v.get(&name.to_ascii_lowercase())
            .filter(|(_, at)| at.elapsed() < VERIFIED_TTL)
            .is_some_and(|(tag, _)| {
                aws_lc_rs::hmac::verify(
                    &self.mac_key,
                    &mac_message(name, hash, password),
                    tag.as_ref(),
                )
                .is_ok()
            })
    }

    fn remember(&self, name: &str, hash: &str, password: &SecretString) {
        let tag = aws_lc_rs::hmac::sign(&self.mac_key, &mac_message(name, hash, password));
        let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        v.insert(name.to_ascii_lowercase(), (tag, Instant::now()));
    }

    /// How many argon2 verifications ran since the start.
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The names of accounts that have no password yet.
    pub fn without_password(&self) -> Vec<String> {
        self.accounts
            .iter()
            .filter(|a| self.passwords.hash(&a.name).is_none())
            .map(|a| a.name.clone())
            .collect()
    }

    /// Checks a sign-in. Runs argon2 on a blocking thread; always verifies a hash (a decoy for
    /// an unknown name), so timing does not tell which names exist.
    pub async fn sign_in(
        &self,
        name: &str,
        password: SecretString,
        source: IpAddr,
        service: Service,
    ) -> Result<Arc<AccountConfig>, Refusal> {
        let key = (name.to_ascii_lowercase(), source);
        let locked = {
            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            match f.get(&key).and_then(|x| x.locked_until) {
                Some(until) if until > Instant::now() => true,
                Some(_) => {
                    f.remove(&key);
                    false
                }
                None => false,
            }
        };
        let account = self
            .accounts
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .cloned();
        let hash = account
            .as_ref()
            .and_then(|a| self.passwords.hash(&a.name))
            .map(str::to_owned);
        let outcome = if locked {
            Err(Refusal::LockedOut)
        } else {
            let known = hash.is_some();
            let h = hash.unwrap_or_else(|| decoy_hash().to_owned());
            let ok = if known && self.remembered(name, &h, &password) {
                true
            } else {
                let _slot = self.argon2_slots.acquire().await;
                // Devices reconnecting together (after a restart) wait here with the same
                // password: the first verification serves the others.
                if known && self.remembered(name, &h, &password) {
                    true
                } else {
                    self.argon2_runs
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (h2, pw2) = (h.clone(), password.clone());
                    let ok = tokio::task::spawn_blocking(move || verify(&h2, &pw2))
                        .await
                        .unwrap_or(false);
                    if ok && known {
                        self.remember(name, &h, &password);
                    }
                    ok
                }
            };
            match (known, ok, account) {
                (false, _, _) | (_, _, None) => Err(Refusal::UnknownUser),
                (true, false, _) => Err(Refusal::WrongPassword),
                (true, true, Some(a)) => {
                    if !a.networks.is_empty() && !a.networks.iter().any(|n| n.contains(&source)) {
                        Err(Refusal::NetworkNotAllowed)
                    } else if !a.protocols.contains(&service) {
                        Err(Refusal::ProtocolNotAllowed)
                    } else {
                        Ok(a)
                    }
                }
            }
        };
        match &outcome {
            Ok(a) => {
                self.failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                tracing::info!(target: "exgate::audit", name, mailbox = %a.mailbox, source = %source, protocol = service.name(), decision = "accepted", "sign-in");
            }
            Err(r) => {
                if matches!(r, Refusal::UnknownUser | Refusal::WrongPassword) {
                    self.record_failure(key);
                }
                tracing::warn!(target: "exgate::audit", name, source = %source, protocol = service.name(), decision = "refused", reason = r.name(), "sign-in");
            }
        }
        outcome
    }

    fn record_failure(&self, key: (String, IpAddr)) {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bound the table: forget the oldest unlocked entries past 100,000 keys.
        if f.len() > 100_000 {
            f.retain(|_, v| v.locked_until.is_some_and(|u| u > now));
        }
        let e = f.entry(key).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
        });
        if now.duration_since(e.first) > self.lockout {
            e.count = 0;
            e.first = now;
        }
        e.count += 1;
        if e.count >= self.max_failures {
            e.locked_until = Some(now + self.lockout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(networks: &str) -> GatewayConfig {
        let text = format!(
            r#"
[gateway]
max_failures = 3
[listen]
smtp = []
[profiles.p]
tenant = "contoso.com"
client_id = "c"
[[accounts]]
name = "scanner"
mailbox = "scanner@contoso.com"
networks = [{networks}]
"#
        );
        GatewayConfig::from_toml_str(&text, Path::new("g.toml")).unwrap()
    }

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn devices_signing_in_together_share_one_verification() {
        let mut file = PasswordFile::default();
        file.set("scanner", hash_password(&pw("right")).unwrap());
        let auth = Arc::new(Authenticator::new(&config(""), file));
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let auth = Arc::clone(&auth);
            tasks.push(tokio::spawn(async move {
                auth.sign_in("scanner", pw("right"), lan, Service::Smtp)
                    .await
                    .is_ok()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        assert!(
            auth.argon2_runs() <= slots,
            "{} argon2 runs for one password",
            auth.argon2_runs()
        );
        // A wrong password is verified, never served from memory.
        assert!(
            auth.sign_in("scanner", pw("wrong"), lan, Service::Smtp)
                .await
                .is_err()
        );
        assert!(auth.argon2_runs() <= slots + 1);
    }

    #[tokio::test]
    async fn decisions_and_lockout() {
        let mut file = PasswordFile::default();
        file.set("scanner", hash_password(&pw("right")).unwrap());
        let text = file.to_text();
        let file = PasswordFile::parse(&text, Path::new("p")).unwrap();
        let auth = Authenticator::new(&config(""), file);
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        assert!(
            auth.sign_in("Scanner", pw("right"), lan, Service::Smtp)
                .await
                .is_ok()
        );
        assert_eq!(
            auth.sign_in("scanner", pw("right"), lan, Service::Imap)
                .await
                .unwrap_err(),
            Refusal::ProtocolNotAllowed
        );
        assert_eq!(
            auth.sign_in("nobody", pw("right"), lan, Service::Smtp)
                .await
                .unwrap_err(),
            Refusal::UnknownUser
        );
        for _ in 0..3 {
            assert_eq!(
                auth.sign_in("scanner", pw("wrong"), lan, Service::Smtp)
                    .await
                    .unwrap_err(),
                Refusal::WrongPassword
            );
        }
        // Locked for this address, even with the right password; another address is not.
        assert_eq!(
            auth.sign_in("scanner", pw("right"), lan, Service::Smtp)
                .await
                .unwrap_err(),
            Refusal::LockedOut
        );
        let other: IpAddr = "192.168.1.6".parse().unwrap();
        assert!(
            auth.sign_in("scanner", pw("right"), other, Service::Smtp)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn networks_are_enforced() {
        let mut file = PasswordFile::default();
        file.set("scanner", hash_password(&pw("right")).unwrap());
        let auth = Authenticator::new(&config("\"10.0.0.0/8\""), file);
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "192.168.1.5".parse().unwrap();
        assert!(
            auth.sign_in("scanner", pw("right"), inside, Service::Smtp)
                .await
                .is_ok()
        );
        assert_eq!(
            auth.sign_in("scanner", pw("right"), outside, Service::Smtp)
                .await
                .unwrap_err(),
            Refusal::NetworkNotAllowed
        );
    }

    #[test]
    fn password_file_errors_name_the_line() {
        let e =
            PasswordFile::parse("# c\n\nscanner:plaintext\n", Path::new("gw.passwd")).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(!e.to_string().contains("plaintext"), "{e}");
        assert!(PasswordFile::parse("no colon\n", Path::new("p")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn password_file_parser_never_panics(s in "\\PC{0,200}") {
            let _ = PasswordFile::parse(&s, Path::new("p"));
        }
    }
}
