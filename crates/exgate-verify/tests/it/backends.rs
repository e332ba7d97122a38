//! The databases every store test runs on: a temporary SQLite file, and PostgreSQL when
//! `EXGATE_TEST_DATABASE_URL` names a server that answers (in a schema of its own, dropped after).

use std::sync::atomic::{AtomicU32, Ordering};

use exgate_verify::store::{Store, sqlite_url};

/// A store under test and what to clean up afterwards.
pub(crate) struct Backend {
    pub name: &'static str,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Backend {
    /// Closes the store and removes what the test created.
    pub(crate) async fn cleanup(self) {
        self.store.close().await;
        if let Some((url, schema)) = self.pg {
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .expect("reconnect to drop the test schema");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&pool)
            .await
            .expect("drop the test schema");
            pool.close().await;
        }
    }
}

pub(crate) async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state dir?#%").join("p.exgate.sqlite");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let store = Store::open(&sqlite_url(&path)).await.expect("open sqlite");
    assert_eq!(store.backend(), exgate_verify::store::Backend::Sqlite);
    Backend {
        name: "sqlite",
        store,
        _dir: Some(dir),
        pg: None,
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// PostgreSQL, or `None` (with a loud message) when no server is configured or answers.
pub(crate) async fn postgres() -> Option<Backend> {
    sqlx::any::install_default_drivers();
    let url = match std::env::var("EXGATE_TEST_DATABASE_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => {
            eprintln!(
                "\n!!!!! PostgreSQL tests did NOT run: EXGATE_TEST_DATABASE_URL is not set \
                 (e.g. postgres://postgres@127.0.0.1:5432/test) !!!!!\n"
            );
            return None;
        }
    };
    // A quick TCP probe, so that a machine without a server does not wait for the pool timeout.
    if let Some(addr) = host_port(&url) {
        let reachable = std::net::ToSocketAddrs::to_socket_addrs(&addr.as_str())
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| {
                std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
            });
        if !reachable {
            eprintln!(
                "\n!!!!! PostgreSQL tests did NOT run: nothing answers at {addr} ({}) !!!!!\n",
                exgate_verify::store::redact_url(&url)
            );
            return None;
        }
    }
    let schema = format!(
        "exgate_verify_test_{}_{}_{}",
        std::process::id(),
        exgate_verify::now_ms(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    match Store::open_in_schema(&url, Some(&schema)).await {
        Ok(store) => {
            assert_eq!(store.backend(), exgate_verify::store::Backend::Postgres);
            Some(Backend {
                name: "postgres",
                store,
                _dir: None,
                pg: Some((url, schema)),
            })
        }
        Err(e) => {
            eprintln!(
                "\n!!!!! PostgreSQL tests did NOT run: {} does not answer: {e} !!!!!\n",
                exgate_verify::store::redact_url(&url)
            );
            None
        }
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL (port 5432 when absent).
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() {
        return None;
    }
    Some(if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    })
}

/// Runs `suite` on every available backend.
#[macro_export]
macro_rules! on_every_backend {
    ($suite:ident) => {{
        let b = $crate::backends::sqlite().await;
        $suite(&b).await;
        b.cleanup().await;
        if let Some(b) = $crate::backends::postgres().await {
            $suite(&b).await;
            b.cleanup().await;
        }
    }};
}
