//! Several processes writing one token store: every entry survives. Each child process is this
//! test binary run again with `EXGATE_STORE_WORKER` set, so the test needs nothing but itself.

use std::process::Command;

use exgate_auth::{StoreKey, TokenStore};
use secrecy::{ExposeSecret as _, SecretString};

const PROCESSES: usize = 6;
const ROUNDS: usize = 10;

/// The body of one child process: `ROUNDS` writes of its own keys.
#[test]
fn worker() {
    let (Ok(path), Ok(key), Ok(id)) = (
        std::env::var("EXGATE_STORE_WORKER"),
        std::env::var("EXGATE_STORE_WORKER_KEY"),
        std::env::var("EXGATE_STORE_WORKER_ID"),
    ) else {
        return; // Run as a normal test: nothing to do.
    };
    let key = StoreKey::from_text(&key).expect("key");
    let store = TokenStore::open(&path, &key).expect("open");
    for round in 0..ROUNDS {
        store
            .put_refresh_token(
                &format!("worker-{id}-{round}"),
                &SecretString::from(format!("rt-{id}-{round}")),
            )
            .expect("put");
    }
}

#[test]
fn concurrent_processes_keep_every_entry() {
    if std::env::var_os("EXGATE_STORE_WORKER").is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.bin");
    let key_file = dir.path().join("store.key");
    let key = StoreKey::generate().expect("key");
    key.write_new_file(&key_file).expect("key file");
    let key_text = std::fs::read_to_string(&key_file).expect("read key");
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..PROCESSES)
        .map(|id| {
            Command::new(&exe)
                .args(["--exact", "worker", "--test-threads", "1"])
                .env("EXGATE_STORE_WORKER", &path)
                .env("EXGATE_STORE_WORKER_KEY", key_text.trim())
                .env("EXGATE_STORE_WORKER_ID", id.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success(), "a worker failed");
    }
    let store =
        TokenStore::open(&path, &StoreKey::from_text(key_text.trim()).expect("key")).expect("open");
    let mut kept = 0;
    for id in 0..PROCESSES {
        for round in 0..ROUNDS {
            if let Some(t) = store
                .refresh_token(&format!("worker-{id}-{round}"))
                .expect("read")
            {
                assert_eq!(t.expose_secret(), format!("rt-{id}-{round}"));
                kept += 1;
            }
        }
    }
    assert_eq!(kept, PROCESSES * ROUNDS, "entries lost across processes");
}
