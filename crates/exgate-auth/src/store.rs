//! The persistent token store: refresh tokens and app tokens in one AES-256-GCM encrypted file,
//! written atomically with mode 0600. A store that cannot be decrypted is reported (cause
//! `local_token_store_key_mismatch`) and never silently replaced.
//!
//! File layout: `EXGS1` magic (5 bytes), a 12-byte random nonce, then the sealed JSON document
//! with its 16-byte tag. The magic is the associated data.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

const MAGIC: &[u8; 5] = b"EXGS1";

/// The environment variable a store key is read from by default.
pub const STORE_KEY_ENV: &str = "EXGATE_TOKEN_STORE_KEY";

/// A 256-bit store key. `Debug` never shows it.
#[derive(Clone)]
pub struct StoreKey([u8; 32]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

impl StoreKey {
    /// A new random key.
    pub fn generate() -> Result<StoreKey, StoreError> {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k)
            .map_err(|_| StoreError::Key("the system random generator failed".into()))?;
        Ok(StoreKey(k))
    }

    /// Parses a key written as base64 (44 characters) or hex (64 characters).
    pub fn from_text(text: &str) -> Result<StoreKey, StoreError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..64)
                .step_by(2)
                .map(|i| {
                    text.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
        } else {
            STANDARD.decode(text).ok()
        };
        let bytes = bytes.ok_or_else(|| {
            StoreError::Key("the key is neither base64 nor hex (fix: generate one with `exgate token get --new-store-key FILE`, or `openssl rand -base64 32`)".into())
        })?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            StoreError::Key("the key must be 32 bytes (fix: `openssl rand -base64 32`)".into())
        })?;
        Ok(StoreKey(arr))
    }

    /// Reads the key from an environment variable.
    pub fn from_env(var: &str) -> Result<StoreKey, StoreError> {
        let v = std::env::var(var)
            .map_err(|_| StoreError::Key(format!("environment variable {var} is not set")))?;
        StoreKey::from_text(&v).map_err(|e| StoreError::Key(format!("{var}: {e}")))
    }

    /// Reads the key from a file that only its owner may read (mode 0600 or stricter).
    pub fn from_file(path: &Path) -> Result<StoreKey, StoreError> {
        check_private(path)?;
        let bytes = std::fs::read(path).map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if bytes.len() == 32 {
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes);
            return Ok(StoreKey(k));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| StoreError::Key(format!("{}: not a key file", path.display())))?;
        StoreKey::from_text(&text).map_err(|e| StoreError::Key(format!("{}: {e}", path.display())))
    }

    /// Writes this key (base64) to a new file with mode 0600.
    pub fn write_new_file(&self, path: &Path) -> Result<(), StoreError> {
        let text = STANDARD.encode(self.0);
        write_private_new(path, text.as_bytes())
    }
}

/// The service name under which store keys are kept in the OS keyring.
pub const KEYRING_SERVICE: &str = "exgate-token-store";

/// The OS keyring, reached through its command-line tool: the Secret Service through
/// `secret-tool` (libsecret) on Linux and other Unix desktops, the login keychain through
/// `security` on macOS. Headless machines usually have neither; use a key file or variable there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    program: PathBuf,
    kind: KeyringKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyringKind {
    SecretTool,
    MacSecurity,
}

impl Keyring {
    /// The platform's keyring tool, when it is installed.
    pub fn detect() -> Option<Keyring> {
        let (name, kind) = if cfg!(target_os = "macos") {
            ("security", KeyringKind::MacSecurity)
        } else {
            ("secret-tool", KeyringKind::SecretTool)
        };
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .map(|program| Keyring { program, kind })
    }

    /// A `secret-tool`-compatible program at `program` (tests, unusual installs).
    pub fn secret_tool(program: impl Into<PathBuf>) -> Keyring {
        Keyring {
            program: program.into(),
            kind: KeyringKind::SecretTool,
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, StoreError> {
        use std::process::{Command, Stdio};
        let fail =
            |m: String| StoreError::Key(format!("OS keyring ({}): {m}", self.program.display()));
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(data).map_err(|e| fail(e.to_string()))?;
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(fail(format!(
                "no key stored under account `{}`{}",
                args.last().copied().unwrap_or_default(),
                if err.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", err.trim())
                }
            )));
        }
        Ok(out.stdout)
    }

    /// Reads the key stored under `account`.
    pub fn load(&self, account: &str) -> Result<StoreKey, StoreError> {
        let out = match self.kind {
            KeyringKind::SecretTool => self.run(
                &["lookup", "service", KEYRING_SERVICE, "account", account],
                None,
            )?,
            KeyringKind::MacSecurity => self.run(
                &[
                    "find-generic-password",
                    "-s",
                    KEYRING_SERVICE,
                    "-w",
                    "-a",
                    account,
                ],
                None,
            )?,
        };
        let text = String::from_utf8(out)
            .map_err(|_| StoreError::Key("the keyring entry is not text".into()))?;
        StoreKey::from_text(&text)
    }

    /// Stores `key` under `account` (Secret Service only; on macOS add it with
    /// `security add-generic-password -s exgate-token-store -a ACCOUNT -w`).
    pub fn save(&self, account: &str, key: &StoreKey) -> Result<(), StoreError> {
        match self.kind {
            KeyringKind::SecretTool => {
                let text = STANDARD.encode(key.0);
                self.run(
                    &[
                        "store",
                        "--label",
                        "exgate token store key",
                        "service",
                        KEYRING_SERVICE,
                        "account",
                        account,
                    ],
                    Some(text.as_bytes()),
                )
                .map(|_| ())
            }
            KeyringKind::MacSecurity => Err(StoreError::Key(format!(
                "add the key yourself: security add-generic-password -s {KEYRING_SERVICE} -a {account} -w"
            ))),
        }
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Key(format!(
            "{} has mode {mode:o}; a key file must be readable by its owner only (fix: chmod 600 {})",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

fn open_private(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut f = open_private(path, true).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, fsync, rename),
/// with mode 0600.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = open_private(&tmp, true)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// An app token kept in the store.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredToken {
    /// The token.
    #[serde(with = "secret_serde")]
    pub token: SecretString,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
    /// Scopes.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

mod secret_serde {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose_secret())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::from)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct StoreData {
    version: u32,
    #[serde(default)]
    refresh_tokens: BTreeMap<String, String>,
    #[serde(default)]
    app_tokens: BTreeMap<String, StoredToken>,
}

/// The encrypted token store. Cheap to clone; writes are serialised within the process (a mutex)
/// and across processes (an OS lock on `<store>.lock`), so concurrent writers never lose one
/// another's entries.
#[derive(Clone)]
pub struct TokenStore {
    path: PathBuf,
    key: Arc<LessSafeKey>,
    lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Opens (or prepares to create) the store at `path`. An existing file is decrypted now, so
    /// a wrong key is reported at once.
    pub fn open(path: impl Into<PathBuf>, key: &StoreKey) -> Result<TokenStore, StoreError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &key.0)
            .map_err(|_| StoreError::Key("invalid AES-256 key".into()))?;
        let store = TokenStore {
            path: path.into(),
            key: Arc::new(LessSafeKey::new(unbound)),
            lock: Arc::default(),
        };
        store.load()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<StoreData, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreData::default()),
            Err(e) => {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    message: e.to_string(),
                });
            }
        };
        let mismatch = |reason: &str| StoreError::KeyMismatch {
            path: self.path.clone(),
            reason: reason.into(),
        };
        if bytes.len() < MAGIC.len() + NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(mismatch(
                "the file is too short to be a token store (corrupt)",
            ));
        }
        let (magic, rest) = bytes.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(mismatch(
                "the file is not an exgate token store (corrupt or foreign)",
            ));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| mismatch("bad nonce (corrupt)"))?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(MAGIC), &mut buf)
            .map_err(|_| mismatch("decryption failed: the key differs from the one the store was written with, or the file was altered"))?;
        serde_json::from_slice(plain)
            .map_err(|_| mismatch("the decrypted document is not valid (corrupt)"))
    }

    fn save(&self, data: &StoreData) -> Result<(), StoreError> {
        let mut plain = serde_json::to_vec(data).map_err(|e| StoreError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let mut nonce_bytes = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce_bytes)
            .map_err(|_| StoreError::Key("the system random generator failed".into()))?;
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(MAGIC), &mut plain)
            .map_err(|_| StoreError::Key("encryption failed".into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + plain.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&plain);
        write_atomic_private(&self.path, &out)
    }

    /// The lock file beside the store (the store itself is replaced by rename on every write,
    /// so it cannot carry the lock): an OS advisory lock on it serialises read-modify-write
    /// across processes, as the mutex does within one.
    fn lock_file(&self, exclusive: bool) -> Result<std::fs::File, StoreError> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let path = self.path.with_file_name(name);
        let io = |e: std::io::Error| StoreError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(io)?;
        if exclusive {
            file.lock().map_err(io)?;
        } else {
            file.lock_shared().map_err(io)?;
        }
        Ok(file)
    }

    fn update<T>(&self, f: impl FnOnce(&mut StoreData) -> T) -> Result<T, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // Held until the new file is in place; closing the file releases the lock.
        let _file_lock = self.lock_file(true)?;
        let mut data = self.load()?;
        data.version = 1;
        let out = f(&mut data);
        self.save(&data)?;
        Ok(out)
    }

    /// The refresh token stored under `key`.
    pub fn refresh_token(&self, key: &str) -> Result<Option<SecretString>, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let _file_lock = self.lock_file(false)?;
        Ok(self
            .load()?
            .refresh_tokens
            .get(key)
            .map(|s| SecretString::from(s.clone())))
    }

    /// Stores (replaces) the refresh token under `key`. Called after every rotation.
    pub fn put_refresh_token(&self, key: &str, token: &SecretString) -> Result<(), StoreError> {
        self.update(|d| {
            d.refresh_tokens
                .insert(key.to_string(), token.expose_secret().to_string());
        })
    }

    /// The app token stored under `key`.
    pub fn app_token(&self, key: &str) -> Result<Option<StoredToken>, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let _file_lock = self.lock_file(false)?;
        Ok(self.load()?.app_tokens.get(key).cloned())
    }

    /// Stores an app token under `key`.
    pub fn put_app_token(&self, key: &str, token: StoredToken) -> Result<(), StoreError> {
        self.update(|d| {
            d.app_tokens.insert(key.to_string(), token);
        })
    }

    /// Removes everything stored under `key`.
    pub fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.update(|d| {
            d.refresh_tokens.remove(key);
            d.app_tokens.remove(key);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_encrypted_atomic_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.bin");
        let key = StoreKey::generate().expect("key");
        let store = TokenStore::open(&path, &key).expect("open");
        let canary = "CANARY-refresh-0.AXoA-secret";
        store
            .put_refresh_token("k", &SecretString::from(canary))
            .expect("put");
        let raw = std::fs::read(&path).expect("read");
        assert!(raw.starts_with(MAGIC));
        assert!(!raw.windows(canary.len()).any(|w| w == canary.as_bytes()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = TokenStore::open(&path, &key).expect("reopen");
        assert_eq!(
            again
                .refresh_token("k")
                .expect("get")
                .map(|s| s.expose_secret().to_string()),
            Some(canary.to_string())
        );
        // Rotation replaces.
        again
            .put_refresh_token("k", &SecretString::from("second"))
            .expect("put");
        assert_eq!(
            store
                .refresh_token("k")
                .expect("get")
                .map(|s| s.expose_secret().to_string()),
            Some("second".to_string())
        );
        // No temporary files are left behind: the store and its lock file only.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["tokens.bin", "tokens.bin.lock"]);
        assert!(!format!("{store:?}").contains(canary));
    }

    #[test]
    fn wrong_key_and_corruption_are_reported_not_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.bin");
        let key = StoreKey::generate().expect("key");
        TokenStore::open(&path, &key)
            .expect("open")
            .put_refresh_token("k", &SecretString::from("v"))
            .expect("put");
        let before = std::fs::read(&path).expect("read");
        let other = StoreKey::generate().expect("key");
        let err = TokenStore::open(&path, &other).expect_err("mismatch");
        assert_eq!(err.cause_id(), Some("local_token_store_key_mismatch"));
        assert!(err.to_string().contains("local_token_store_key_mismatch"));
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "left untouched"
        );
        let mut corrupt = before.clone();
        if let Some(last) = corrupt.last_mut() {
            *last ^= 1;
        }
        std::fs::write(&path, &corrupt).expect("write");
        let err = TokenStore::open(&path, &key).expect_err("corrupt");
        assert_eq!(err.cause_id(), Some("local_token_store_key_mismatch"));
        std::fs::write(&path, b"junk").expect("write");
        assert!(matches!(
            TokenStore::open(&path, &key),
            Err(StoreError::KeyMismatch { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn keyring_through_a_secret_tool_compatible_program() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let script = dir.path().join("secret-tool");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$3\" = {KEYRING_SERVICE} ] || [ \"$5\" = {KEYRING_SERVICE} ] || exit 3\ncase \"$1\" in\n lookup) cat \"{db}.$5\" 2>/dev/null || exit 1;;\n store) cat > \"{db}.$7\";;\n *) exit 2;;\nesac\n",
                db = db.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let keyring = Keyring::secret_tool(&script);
        let err = keyring.load("daemon").expect_err("nothing stored yet");
        assert!(err.to_string().contains("daemon"), "{err}");
        let key = StoreKey::generate().expect("key");
        keyring.save("daemon", &key).expect("save");
        assert_eq!(keyring.load("daemon").expect("load").0, key.0);
        let missing = Keyring::secret_tool(dir.path().join("absent"));
        assert!(missing.load("daemon").is_err());
    }

    #[test]
    fn key_sources() {
        let k = StoreKey::generate().expect("key");
        let text = STANDARD.encode(k.0);
        assert_eq!(StoreKey::from_text(&text).expect("b64").0, k.0);
        let hex: String = k.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(StoreKey::from_text(&hex).expect("hex").0, k.0);
        assert!(StoreKey::from_text("short").is_err());
        assert!(!format!("{k:?}").contains(&text));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        k.write_new_file(&path).expect("write");
        assert_eq!(StoreKey::from_file(&path).expect("read").0, k.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = StoreKey::from_file(&path).expect_err("too open");
            assert!(err.to_string().contains("chmod 600"));
        }
    }

    proptest::proptest! {
        #[test]
        fn opening_arbitrary_files_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let dir = tempfile::tempdir().map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let path = dir.path().join("s");
            std::fs::write(&path, &bytes).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let key = StoreKey([7u8; 32]);
            proptest::prop_assert!(TokenStore::open(&path, &key).is_err());
        }

        #[test]
        fn key_text_never_panics(s in ".{0,80}") {
            let _ = StoreKey::from_text(&s);
        }
    }
}
