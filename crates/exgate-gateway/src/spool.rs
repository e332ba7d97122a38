//! The durable queue of accepted messages.
//!
//! Layout under the spool directory (0700):
//! - `tmp/`: files being written;
//! - `queue/<id>.eml`: the message as the device sent it;
//! - `queue/<id>.json`: its envelope and delivery state; **its presence is the commit**: a
//!   message is accepted (and the device hears `250`) only after both files are written, synced
//!   and renamed into `queue/` and the directory is synced;
//! - `queue/<id>.handover`: written and synced just before the message's bytes go upstream;
//! - `failed/`: messages returned to their sender, kept for inspection.
//!
//! Delivery removes `<id>.json` first (the commit of "delivered"), then the other files. After
//! a crash, [`Spool::recover`] finds every committed message again; an incomplete pair (one of
//! `.eml` and `.json` without the other) was never acknowledged and is removed. A message with a `.handover` marker may or may not
//! have reached Exchange (the crash fell between handing it over and recording the answer): it
//! is sent again and logged as a possible duplicate; that window is the few milliseconds
//! between the final `.` and Exchange's reply.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The envelope and delivery state of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Spool id.
    pub id: String,
    /// The local account that submitted it.
    pub account: String,
    /// The upstream mailbox it is sent as.
    pub mailbox: String,
    /// `MAIL FROM`.
    pub from: String,
    /// Recipients still to deliver.
    pub to: Vec<String>,
    /// Unix seconds when accepted.
    pub received: i64,
    /// Delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds of the next attempt.
    #[serde(default)]
    pub next_attempt: i64,
    /// The last failure, secret-free, with its diagnosed cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The cause id of the last failure (from exgate-diagnose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cause: Option<String>,
    /// A delivery status notification (never itself bounced).
    #[serde(default)]
    pub dsn: bool,
    /// The message had been handed over when the gateway stopped (set by recovery).
    #[serde(default)]
    pub maybe_sent: bool,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories can be opened and synced on Unix; elsewhere this is a no-op.
    match File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Spool {
    /// Opens (creating) the spool at `dir`.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        for sub in ["tmp", "queue", "failed"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Spool {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn queue(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join("queue").join(format!("{id}.{ext}"))
    }

    /// Writes a new message durably; returns when it is safe to answer `250`: both files
    /// written and synced, renamed into `queue/`, and that directory synced once. Until that
    /// last sync nothing has been acknowledged, so recovery drops a half-renamed pair.
    pub fn accept(&self, envelope: &Envelope, data: &[u8]) -> io::Result<()> {
        if !valid_id(&envelope.id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad spool id"));
        }
        let tmp = self.dir.join("tmp");
        let eml_tmp = tmp.join(format!("{}.eml", envelope.id));
        let json_tmp = tmp.join(format!("{}.json", envelope.id));
        write_synced(&eml_tmp, data)?;
        write_synced(&json_tmp, &serde_json::to_vec(envelope)?)?;
        std::fs::rename(&eml_tmp, self.queue(&envelope.id, "eml"))?;
        std::fs::rename(&json_tmp, self.queue(&envelope.id, "json"))?;
        sync_dir(&self.dir.join("queue"))
    }

    /// Rewrites a message's state (attempts, next attempt, last error) atomically.
    pub fn update(&self, envelope: &Envelope) -> io::Result<()> {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.json.up", envelope.id));
        let _ = std::fs::remove_file(&tmp);
        write_synced(&tmp, &serde_json::to_vec(envelope)?)?;
        std::fs::rename(&tmp, self.queue(&envelope.id, "json"))?;
        sync_dir(&self.dir.join("queue"))
    }

    /// The message's bytes.
    pub fn data(&self, id: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.queue(id, "eml"))
    }

    /// Records that the message is being handed over upstream.
    pub fn mark_handover(&self, id: &str) -> io::Result<()> {
        let path = self.queue(id, "handover");
        let _ = std::fs::remove_file(&path);
        write_synced(&path, b"")?;
        sync_dir(&self.dir.join("queue"))
    }

    /// Removes the handover marker (the attempt ended without Exchange taking the message).
    pub fn clear_handover(&self, id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.queue(id, "handover")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(&self.dir.join("queue")),
        }
    }

    /// Records delivery: the message leaves the queue (again: nothing happens).
    pub fn complete(&self, id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.queue(id, "json")) {
            Ok(()) => sync_dir(&self.dir.join("queue"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = std::fs::remove_file(self.queue(id, "eml"));
        let _ = std::fs::remove_file(self.queue(id, "handover"));
        Ok(())
    }

    /// Moves a message that was returned to its sender to `failed/`.
    pub fn fail(&self, envelope: &Envelope) -> io::Result<()> {
        let failed = self.dir.join("failed");
        let _ = std::fs::rename(
            self.queue(&envelope.id, "eml"),
            failed.join(format!("{}.eml", envelope.id)),
        );
        std::fs::write(
            failed.join(format!("{}.json", envelope.id)),
            serde_json::to_vec_pretty(envelope)?,
        )?;
        std::fs::remove_file(self.queue(&envelope.id, "json"))?;
        let _ = std::fs::remove_file(self.queue(&envelope.id, "handover"));
        sync_dir(&self.dir.join("queue"))
    }

    /// Every committed message, after a start or a crash; removes what was never committed.
    /// Unreadable state files are reported, not dropped.
    pub fn recover(&self) -> io::Result<(Vec<Envelope>, Vec<String>)> {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for e in std::fs::read_dir(self.dir.join("tmp"))? {
            let _ = std::fs::remove_file(e?.path());
        }
        let queue = self.dir.join("queue");
        let mut ids = std::collections::BTreeSet::new();
        for e in std::fs::read_dir(&queue)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some((id, _)) = name.split_once('.') {
                ids.insert(id.to_owned());
            }
        }
        for id in ids {
            let json = self.queue(&id, "json");
            if !json.exists() || !self.queue(&id, "eml").exists() {
                // Never acknowledged: the pair was not complete when the directory was synced.
                let _ = std::fs::remove_file(&json);
                let _ = std::fs::remove_file(self.queue(&id, "eml"));
                let _ = std::fs::remove_file(self.queue(&id, "handover"));
                continue;
            }
            match std::fs::read(&json)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Envelope>(&b).map_err(|e| e.to_string()))
            {
                Ok(mut env) => {
                    if self.queue(&id, "handover").exists() {
                        env.maybe_sent = true;
                    }
                    found.push(env);
                }
                Err(e) => problems.push(format!("{}: {e}", json.display())),
            }
        }
        Ok((found, problems))
    }

    /// The committed messages, read without changing anything (for `exgate gateway status`).
    pub fn list(&self) -> io::Result<Vec<Envelope>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.join("queue"))? {
            let path = e?.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Ok(b) = std::fs::read(&path)
                && let Ok(env) = serde_json::from_slice::<Envelope>(&b)
            {
                out.push(env);
            }
        }
        out.sort_by(|a, b| (a.received, &a.id).cmp(&(b.received, &b.id)));
        Ok(out)
    }

    /// Messages returned to their senders.
    pub fn failed(&self) -> io::Result<Vec<Envelope>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.join("failed"))? {
            let path = e?.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Ok(b) = std::fs::read(&path)
                && let Ok(env) = serde_json::from_slice::<Envelope>(&b)
            {
                out.push(env);
            }
        }
        out.sort_by(|a, b| (a.received, &a.id).cmp(&(b.received, &b.id)));
        Ok(out)
    }
}

/// A new spool id: time-ordered, unique.
pub fn new_id() -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("{now:x}-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str) -> Envelope {
        Envelope {
            id: id.into(),
            account: "scanner".into(),
            mailbox: "scanner@contoso.com".into(),
            from: "scanner@contoso.com".into(),
            to: vec!["alice@contoso.com".into()],
            received: 1,
            attempts: 0,
            next_attempt: 0,
            last_error: None,
            last_cause: None,
            dsn: false,
            maybe_sent: false,
        }
    }

    #[test]
    fn accept_recover_complete() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = new_id();
        spool.accept(&env(&a), b"Subject: a\r\n\r\nhi\r\n").unwrap();
        let b = new_id();
        spool.accept(&env(&b), b"Subject: b\r\n\r\nhi\r\n").unwrap();
        spool.mark_handover(&b).unwrap();
        // Messages written but never committed (a crash before the 250).
        std::fs::write(dir.path().join("queue/zzz.eml"), b"x").unwrap();
        std::fs::write(dir.path().join("queue/yyy.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("tmp/half.json"), b"{").unwrap();

        let spool = Spool::open(dir.path()).unwrap();
        let (found, problems) = spool.recover().unwrap();
        assert!(problems.is_empty());
        let ids: Vec<_> = found.iter().map(|e| (e.id.clone(), e.maybe_sent)).collect();
        assert_eq!(ids, [(a.clone(), false), (b.clone(), true)]);
        assert!(!dir.path().join("queue/zzz.eml").exists());
        assert!(!dir.path().join("queue/yyy.json").exists());
        assert_eq!(spool.data(&a).unwrap(), b"Subject: a\r\n\r\nhi\r\n");

        spool.complete(&a).unwrap();
        let mut e = env(&b);
        e.last_error = Some("550 5.1.1 unknown".into());
        spool.fail(&e).unwrap();
        assert!(spool.list().unwrap().is_empty());
        assert_eq!(
            spool.failed().unwrap()[0].last_error.as_deref(),
            Some("550 5.1.1 unknown")
        );
        assert!(spool.accept(&env("../x"), b"").is_err());
    }
}
