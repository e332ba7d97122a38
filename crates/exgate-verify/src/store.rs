//! The state store: runs, line items and their history, in SQLite or PostgreSQL.
//!
//! One code path serves both databases through `sqlx::Any` with runtime queries: times are
//! stored as BIGINT epoch milliseconds, ids as TEXT, flags as BIGINT, JSON as TEXT. The schema is
//! created by the migrations in `migrations/`, embedded at build time.
//!
//! Re-running a project selects only the line items that failed, were blocked, changed (their
//! fingerprint differs), were never verified, or were verified without the write check when one
//! is now asked; `all` selects everything.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Row, SqlSafeStr};

use crate::model::{Fault, MailboxResult, Side, Status, StepName, StepResult, now_ms};
use crate::project::{LineItem, Project};

/// The migrations, embedded.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "verify state",
        include_str!("../migrations/0001_verify_state.sql"),
    ),
    (
        2,
        "report order",
        include_str!("../migrations/0002_report_order.sql"),
    ),
];

/// An error of the state store. The database URL is shown without its password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("{url}: unsupported database URL (use sqlite://PATH or postgres://USER@HOST/DB)")]
    UnsupportedUrl {
        /// The URL, password removed.
        url: String,
    },
    /// The database could not be opened.
    #[error("cannot open the state database {url}: {source}")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// The driver error.
        source: sqlx::Error,
    },
    /// The schema could not be created or upgraded.
    #[error("cannot prepare the schema of the state database {url}: {source}")]
    Migrate {
        /// The URL, password removed.
        url: String,
        /// The migration error.
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("state database: {what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The driver error.
        source: sqlx::Error,
    },
    /// A stored value cannot be read back.
    #[error("state database: {what}")]
    Corrupt {
        /// What is wrong.
        what: String,
    },
    /// A result read from the database could not be written out (to a report).
    #[error("cannot write the report: {source}")]
    Output {
        /// The write error.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The state of one line item as last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    /// Line-item id.
    pub id: String,
    /// Source address.
    pub source: String,
    /// Destination address (`None` in a one-sided project).
    pub destination: Option<String>,
    /// Fingerprint when last verified.
    pub fingerprint: String,
    /// Last status, if ever verified.
    pub last_status: Option<Status>,
    /// Last run that verified it.
    pub last_run_id: Option<String>,
    /// When it was last verified (epoch ms).
    pub last_verified_at: Option<i64>,
    /// Whether the last verification included the write check.
    pub write_checked: bool,
}

/// Why a line item is verified in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Never verified.
    New,
    /// Last run failed.
    Failed,
    /// Last run was blocked by an endpoint fault.
    Blocked,
    /// The line changed since it was verified.
    Changed,
    /// Verified ok, but without the write check now asked for.
    WriteCheck,
    /// `--all` was given.
    Forced,
}

/// The line items a run will verify, and those it skips (borrowed from the project).
#[derive(Debug, Clone, Default)]
pub struct Selection<'p> {
    /// To verify, in project order, with the reason.
    pub verify: Vec<(&'p LineItem, Reason)>,
    /// Verified ok before and unchanged: skipped.
    pub skipped: Vec<&'p LineItem>,
}

/// What selection needs of a recorded line item.
struct Recorded {
    /// [`key_of`] the fingerprint.
    fingerprint: u64,
    last_status: Option<Status>,
    write_checked: bool,
}

/// A 64-bit key of a line-item id or fingerprint, for the in-memory map of a selection: ids
/// are 16 hexadecimal digits (their own value); anything else is hashed. A collision of two
/// fingerprints could only skip re-verifying a changed line; at 64 bits it is not expected
/// below billions of lines.
pub(crate) fn key_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    if text.len() == 16
        && let Ok(v) = u64::from_str_radix(text, 16)
    {
        return v;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Which mailboxes a report lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listing {
    /// Every line item of the project with its latest result; results of earlier runs are
    /// marked with their run.
    #[default]
    Project,
    /// Only the mailboxes verified in the run.
    RunOnly,
}

/// One past run of one line item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRun {
    /// The run.
    pub run_id: String,
    /// The outcome.
    pub status: Status,
    /// Wall time.
    pub ms: u64,
    /// When it finished (epoch ms).
    pub finished_at: i64,
    /// The steps, in order.
    pub steps: Vec<StepResult>,
}

/// Totals of a finished run, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTotals {
    /// Mailboxes ok.
    pub ok: u64,
    /// Mailboxes failed.
    pub failed: u64,
    /// Mailboxes blocked.
    pub blocked: u64,
    /// The run was stopped early.
    pub cancelled: bool,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// When it started (epoch ms).
    pub started_at: i64,
    /// When it finished (epoch ms), if it did.
    pub finished_at: Option<i64>,
    /// Line items selected.
    pub selected: u64,
    /// Totals.
    pub totals: RunTotals,
}

/// The state store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

/// Removes the password from a database URL, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

/// The `sqlite://` URL of a file path (created if missing).
pub fn sqlite_url(path: &Path) -> String {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut encoded = String::new();
    for c in abs.to_string_lossy().chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            ' ' => encoded.push_str("%20"),
            c => encoded.push(c),
        }
    }
    format!("sqlite://{encoded}?mode=rwc")
}

/// The default state file of a project: `PROJECT.exgate.sqlite` beside the project file.
pub fn default_state_path(project_file: &Path) -> std::path::PathBuf {
    let stem = project_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".to_owned());
    project_file.with_file_name(format!("{stem}.exgate.sqlite"))
}

/// Rows per multi-row `INSERT` (at most 14 columns: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 bind parameters).
const ROWS_PER_INSERT: usize = 200;

/// `{head}($1, …, $cols), ($cols+1, …), …{tail}`: placeholders only, never data. SQLite gets
/// plain `?` placeholders: binding a named (`$N`) parameter makes SQLite search the names
/// linearly, which is quadratic in a statement with thousands of parameters.
fn values_sql(backend: Backend, head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 6);
    sql.push_str(head);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// `sqlite://PATH[?mode=rwc]`, `postgres://…` and `postgresql://…` are accepted.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_in_schema(url, None).await
    }

    /// Like [`Store::open`]; on PostgreSQL, keeps every table in `schema` (created if needed),
    /// so that several projects or test runs can share one database.
    pub async fn open_in_schema(url: &str, schema: Option<&str>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let shown = redact_url(url);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl { url: shown });
        };
        // A SQLite file that does not exist yet is created (`sqlx` refuses it without `mode`).
        let url = &match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let mut options = AnyPoolOptions::new().max_connections(match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        });
        if backend == Backend::Sqlite {
            // Results are written in batches as they arrive: write-ahead logging keeps each
            // commit to one append instead of rewriting pages twice.
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous=NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    // Results go into indexes keyed by hashed ids, so inserts land on random
                    // pages: a page cache of 32 MiB (SQLite's default is 2 MiB) keeps the
                    // indexes of a large project in memory.
                    sqlx::query("PRAGMA cache_size=-32768")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            });
        }
        // One direct connection first: an unreachable server fails at once with the driver's
        // own error (connection refused, authentication failed) instead of a pool timeout.
        let mut first =
            AnyConnection::connect(url)
                .await
                .map_err(|source| StoreError::Connect {
                    url: shown.clone(),
                    source,
                })?;
        if let Some(schema) = schema {
            if backend != Backend::Postgres {
                return Err(StoreError::UnsupportedUrl { url: shown });
            }
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(StoreError::Corrupt {
                    what: format!("schema name `{schema}` must be lower-case letters, digits, _"),
                });
            }
            let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
            let set = format!("SET search_path TO {schema}");
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&mut first)
                .await
                .map_err(q("create schema"))?;
            options = options.after_connect(move |conn, _meta| {
                let set = set.clone();
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(set)).execute(conn).await?;
                    Ok(())
                })
            });
        }
        // Closing is best effort; the pool opens its own connections.
        let _ = first.close().await;
        // The report's read of every result is one long statement by design: sqlx's warning
        // about slow statements would print in the middle of a report.
        let connect = url
            .parse::<sqlx::any::AnyConnectOptions>()
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?
            .log_slow_statements(log::LevelFilter::Off, std::time::Duration::from_secs(1));
        let pool = options
            .connect_with(connect)
            .await
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    Cow::Borrowed(*d),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(*sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: shown.clone(),
                source,
            })?;
        Ok(Self {
            pool,
            backend,
            url: shown,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the pool, waiting for writes to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The recorded state of every line item of a project.
    pub async fn items(&self, project: &str) -> Result<HashMap<String, ItemState>> {
        let rows = sqlx::query(
            "SELECT id, source, destination, fingerprint, last_status, last_run_id, \
             last_verified_at, write_checked FROM line_items WHERE project = $1",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read line items"))?;
        let mut out = HashMap::new();
        for row in rows {
            let state = item_state(&row)?;
            out.insert(state.id.clone(), state);
        }
        Ok(out)
    }

    /// Chooses what a run verifies: failed, blocked, changed and new items (everything with
    /// `all`; items not yet write-checked when `write_check` is asked).
    pub async fn select<'p>(
        &self,
        project: &'p Project,
        all: bool,
        write_check: bool,
    ) -> Result<Selection<'p>> {
        let states = if all {
            HashMap::new()
        } else {
            self.selection_states(&project.name).await?
        };
        let mut sel = Selection::default();
        for item in &project.mailboxes {
            let reason = match states.get(&key_of(&item.id)) {
                _ if all => Some(Reason::Forced),
                None => Some(Reason::New),
                Some(s) => match s.last_status {
                    None => Some(Reason::New),
                    Some(_) if s.fingerprint != key_of(&item.fingerprint()) => {
                        Some(Reason::Changed)
                    }
                    Some(Status::Failed) => Some(Reason::Failed),
                    Some(Status::Blocked) => Some(Reason::Blocked),
                    Some(Status::Ok) if write_check && !s.write_checked => Some(Reason::WriteCheck),
                    Some(Status::Ok) => None,
                },
            };
            match reason {
                Some(r) => sel.verify.push((item, r)),
                None => sel.skipped.push(item),
            }
        }
        Ok(sel)
    }

    /// What [`Store::select`] needs of every recorded line item, in a few bytes per item (a
    /// project of a million mailboxes is selected in tens of megabytes).
    async fn selection_states(&self, project: &str) -> Result<HashMap<u64, Recorded>> {
        use futures_util::TryStreamExt as _;
        let mut rows = sqlx::query(
            "SELECT id, fingerprint, last_status, write_checked FROM line_items WHERE project = $1",
        )
        .bind(project)
        .fetch(&self.pool);
        let mut out = HashMap::new();
        while let Some(row) = rows.try_next().await.map_err(q("read line items"))? {
            let id: String = row.try_get("id").map_err(q("read line items"))?;
            let fingerprint: String = row.try_get("fingerprint").map_err(q("read line items"))?;
            let last_status: Option<String> =
                row.try_get("last_status").map_err(q("read line items"))?;
            out.insert(
                key_of(&id),
                Recorded {
                    fingerprint: key_of(&fingerprint),
                    last_status: last_status.as_deref().map(parse_status).transpose()?,
                    write_checked: row
                        .try_get::<i64, _>("write_checked")
                        .map_err(q("read line items"))?
                        != 0,
                },
            );
        }
        Ok(out)
    }

    /// Records the start of a run and returns its id.
    pub async fn begin_run(
        &self,
        project: &str,
        all: bool,
        write_check: bool,
        selected: usize,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        // A run that never finished (the process was killed) is closed now with the counts of
        // what it recorded, marked as cancelled.
        sqlx::query(
            "UPDATE verify_runs SET \
               finished_at = COALESCE((SELECT MAX(i.finished_at) FROM item_runs i \
                                       WHERE i.run_id = verify_runs.id), started_at), \
               ok = (SELECT COUNT(*) FROM item_runs i WHERE i.run_id = verify_runs.id AND i.status = 'ok'), \
               failed = (SELECT COUNT(*) FROM item_runs i WHERE i.run_id = verify_runs.id AND i.status = 'failed'), \
               blocked = (SELECT COUNT(*) FROM item_runs i WHERE i.run_id = verify_runs.id AND i.status = 'blocked'), \
               cancelled = 1 \
             WHERE project = $1 AND finished_at IS NULL",
        )
        .bind(project)
        .execute(&self.pool)
        .await
        .map_err(q("close the runs that never finished"))?;
        // Runs are ordered by their start: two runs of a project never share a millisecond, so
        // the order never falls back on the (random) id.
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(started_at) FROM verify_runs WHERE project = $1")
                .bind(project)
                .fetch_one(&self.pool)
                .await
                .map_err(q("read the last run"))?;
        let started = last.map_or(now_ms(), |l| now_ms().max(l + 1));
        sqlx::query(
            "INSERT INTO verify_runs (id, project, started_at, all_items, write_check, selected) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(project)
        .bind(started)
        .bind(flag(all))
        .bind(flag(write_check))
        .bind(i64::try_from(selected).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(q("record run start"))?;
        Ok(id)
    }

    /// Records finished mailboxes of a run, in one transaction. Each result is paired with its
    /// line item (for the fingerprint). Rows are written with multi-row `INSERT`s.
    pub async fn record(
        &self,
        project: &str,
        run_id: &str,
        write_check: bool,
        batch: &[(&LineItem, &MailboxResult)],
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(q("begin transaction"))?;
        for chunk in batch.chunks(ROWS_PER_INSERT) {
            let sql = values_sql(
                self.backend,
                "INSERT INTO line_items (project, id, source, destination, fingerprint, \
                 first_seen_at, last_run_id, last_status, last_verified_at, write_checked) VALUES ",
                10,
                chunk.len(),
                " ON CONFLICT (project, id) DO UPDATE SET source = excluded.source, \
                 destination = excluded.destination, fingerprint = excluded.fingerprint, \
                 last_run_id = excluded.last_run_id, last_status = excluded.last_status, \
                 last_verified_at = excluded.last_verified_at, \
                 write_checked = excluded.write_checked",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (item, result) in chunk {
                let wrote = write_check
                    && result
                        .steps
                        .iter()
                        .any(|s| s.name == StepName::WriteProbe && s.status == Status::Ok);
                query = query
                    .bind(project.to_owned())
                    .bind(result.id.clone())
                    .bind(result.source.clone())
                    // The column is NOT NULL: a one-sided project stores the empty string.
                    .bind(result.destination.clone().unwrap_or_default())
                    .bind(item.fingerprint())
                    .bind(result.finished_at_ms)
                    .bind(run_id.to_owned())
                    .bind(result.status.as_str())
                    .bind(result.finished_at_ms)
                    .bind(flag(wrote));
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(q("record line items"))?;

            let sql = values_sql(
                self.backend,
                "INSERT INTO item_runs (run_id, project, item_id, status, ms, finished_at) VALUES ",
                6,
                chunk.len(),
                "",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (_, result) in chunk {
                query = query
                    .bind(run_id.to_owned())
                    .bind(project.to_owned())
                    .bind(result.id.clone())
                    .bind(result.status.as_str())
                    .bind(to_i64(result.ms))
                    .bind(result.finished_at_ms);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(q("record item runs"))?;
        }

        let steps: Vec<(&MailboxResult, usize, &StepResult)> = batch
            .iter()
            .flat_map(|(_, r)| r.steps.iter().enumerate().map(move |(i, s)| (*r, i, s)))
            .collect();
        for chunk in steps.chunks(ROWS_PER_INSERT) {
            let sql = values_sql(
                self.backend,
                "INSERT INTO step_results (run_id, item_id, seq, endpoint, name, status, ms, \
                 attempts, detail, item_count, error, causes, evidence, blocked_by) VALUES ",
                14,
                chunk.len(),
                "",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (result, seq, step) in chunk {
                let causes =
                    serde_json::to_string(&step.causes).map_err(|e| StoreError::Corrupt {
                        what: format!("cannot encode causes: {e}"),
                    })?;
                let evidence = step
                    .evidence
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt {
                        what: format!("cannot encode evidence: {e}"),
                    })?;
                query = query
                    .bind(run_id.to_owned())
                    .bind(result.id.clone())
                    .bind(i64::try_from(*seq).unwrap_or(i64::MAX))
                    .bind(step.endpoint.as_str())
                    .bind(step.name.as_str())
                    .bind(step.status.as_str())
                    .bind(to_i64(step.ms))
                    .bind(i64::from(step.attempts))
                    .bind(step.detail.clone())
                    .bind(step.item_count.map(to_i64))
                    .bind(step.error.clone())
                    .bind(causes)
                    .bind(evidence)
                    .bind(step.blocked_by.clone());
            }
            query.execute(&mut *tx).await.map_err(q("record steps"))?;
        }
        tx.commit().await.map_err(q("commit results"))?;
        Ok(())
    }

    /// Records the end of a run.
    pub async fn finish_run(
        &self,
        run_id: &str,
        totals: &RunTotals,
        faults: &[Fault],
    ) -> Result<()> {
        let faults = serde_json::to_string(faults).map_err(|e| StoreError::Corrupt {
            what: format!("cannot encode faults: {e}"),
        })?;
        sqlx::query(
            "UPDATE verify_runs SET finished_at = $1, ok = $2, failed = $3, blocked = $4, \
             cancelled = $5, faults = $6 WHERE id = $7",
        )
        .bind(now_ms())
        .bind(to_i64(totals.ok))
        .bind(to_i64(totals.failed))
        .bind(to_i64(totals.blocked))
        .bind(flag(totals.cancelled))
        .bind(faults)
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(q("record run end"))?;
        Ok(())
    }

    /// The runs of a project, oldest first.
    pub async fn runs(&self, project: &str) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT id, started_at, finished_at, selected, ok, failed, blocked, cancelled \
             FROM verify_runs WHERE project = $1 ORDER BY started_at, id",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read runs"))?;
        rows.iter()
            .map(|r| {
                Ok(RunRecord {
                    id: r.try_get("id").map_err(q("read run id"))?,
                    started_at: r.try_get("started_at").map_err(q("read run start"))?,
                    finished_at: r.try_get("finished_at").map_err(q("read run end"))?,
                    selected: to_u64(r.try_get("selected").map_err(q("read run size"))?),
                    totals: RunTotals {
                        ok: to_u64(r.try_get("ok").map_err(q("read run totals"))?),
                        failed: to_u64(r.try_get("failed").map_err(q("read run totals"))?),
                        blocked: to_u64(r.try_get("blocked").map_err(q("read run totals"))?),
                        cancelled: r
                            .try_get::<i64, _>("cancelled")
                            .map_err(q("read run totals"))?
                            != 0,
                    },
                })
            })
            .collect()
    }

    /// Reads the latest result of every line item of `project` (only those of `run_id` with
    /// [`Listing::RunOnly`]) whose id `keep` accepts, sorted by source then destination, and
    /// gives them to `each` one at a time: a report of a million mailboxes is written without
    /// being held in memory. A result of a run other than `run_id` carries that run in
    /// [`MailboxResult::earlier_run`]. Returns how many results were given.
    pub async fn each_result(
        &self,
        project: &str,
        run_id: &str,
        listing: Listing,
        keep: &(dyn Fn(&str) -> bool + Sync),
        each: &mut dyn FnMut(MailboxResult) -> std::io::Result<()>,
    ) -> Result<u64> {
        use futures_util::TryStreamExt as _;

        // Byte order on both databases, so the order is the same as the in-memory report's.
        let order = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " COLLATE \"C\"",
        };
        let only_run = match listing {
            Listing::Project => "",
            Listing::RunOnly => " AND r.run_id = $2",
        };
        let sql = format!(
            "SELECT li.id AS item_id, li.source AS source, li.destination AS destination, \
             r.run_id AS run_id, r.status AS item_status, r.ms AS item_ms, \
             r.finished_at AS finished_at, s.endpoint, s.name, s.status, s.ms, s.attempts, \
             s.detail, s.item_count, s.error, s.causes, s.evidence, s.blocked_by \
             FROM line_items li \
             JOIN item_runs r ON r.run_id = li.last_run_id AND r.item_id = li.id \
             LEFT JOIN step_results s ON s.run_id = r.run_id AND s.item_id = r.item_id \
             WHERE li.project = $1{only_run} \
             ORDER BY li.source{order}, li.destination{order}, li.id, s.seq"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(project);
        if listing == Listing::RunOnly {
            query = query.bind(run_id);
        }
        let mut rows = query.fetch(&self.pool);
        let mut current: Option<MailboxResult> = None;
        let mut given = 0u64;
        let mut give = |m: MailboxResult| -> Result<()> {
            if keep(&m.id) {
                given += 1;
                each(m).map_err(|source| StoreError::Output { source })?;
            }
            Ok(())
        };
        while let Some(row) = rows.try_next().await.map_err(q("read results"))? {
            let id: String = row.try_get("item_id").map_err(q("read results"))?;
            if current.as_ref().is_none_or(|m| m.id != id) {
                if let Some(done) = current.take() {
                    give(done)?;
                }
                let run: String = row.try_get("run_id").map_err(q("read results"))?;
                let status = parse_status(
                    &row.try_get::<String, _>("item_status")
                        .map_err(q("read results"))?,
                )?;
                current = Some(MailboxResult {
                    id,
                    source: row.try_get("source").map_err(q("read results"))?,
                    destination: Some(
                        row.try_get::<String, _>("destination")
                            .map_err(q("read results"))?,
                    )
                    .filter(|d| !d.is_empty()),
                    ok: status == Status::Ok,
                    status,
                    ms: to_u64(row.try_get("item_ms").map_err(q("read results"))?),
                    finished_at_ms: row.try_get("finished_at").map_err(q("read results"))?,
                    steps: Vec::new(),
                    earlier_run: (run != run_id).then_some(run),
                });
            }
            let has_step = row
                .try_get::<Option<String>, _>("endpoint")
                .map_err(q("read results"))?
                .is_some();
            if has_step && let Some(m) = current.as_mut() {
                m.steps.push(step_row(&row)?);
            }
        }
        if let Some(done) = current.take() {
            give(done)?;
        }
        Ok(given)
    }

    /// The history of one line item, oldest run first, with every step.
    pub async fn history(&self, project: &str, item_id: &str) -> Result<Vec<ItemRun>> {
        let runs = sqlx::query(
            // In the order the runs started (never the same millisecond, see `begin_run`): two
            // runs can record an item in the same millisecond.
            "SELECT i.run_id, i.status, i.ms, i.finished_at FROM item_runs i \
             LEFT JOIN verify_runs r ON r.id = i.run_id \
             WHERE i.project = $1 AND i.item_id = $2 \
             ORDER BY COALESCE(r.started_at, i.finished_at), i.finished_at, i.run_id",
        )
        .bind(project)
        .bind(item_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read item history"))?;
        let mut out = Vec::new();
        for r in runs {
            let run_id: String = r.try_get("run_id").map_err(q("read item history"))?;
            let status: String = r.try_get("status").map_err(q("read item history"))?;
            let steps = sqlx::query(
                "SELECT endpoint, name, status, ms, attempts, detail, item_count, error, causes, \
                 evidence, blocked_by FROM step_results WHERE run_id = $1 AND item_id = $2 \
                 ORDER BY seq",
            )
            .bind(&run_id)
            .bind(item_id)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read steps"))?;
            out.push(ItemRun {
                status: parse_status(&status)?,
                ms: to_u64(r.try_get("ms").map_err(q("read item history"))?),
                finished_at: r.try_get("finished_at").map_err(q("read item history"))?,
                steps: steps.iter().map(step_row).collect::<Result<_>>()?,
                run_id,
            });
        }
        Ok(out)
    }
}

fn parse_status(s: &str) -> Result<Status> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: format!("unknown status `{s}`"),
    })
}

fn item_state(row: &AnyRow) -> Result<ItemState> {
    let last_status: Option<String> = row.try_get("last_status").map_err(q("read line item"))?;
    Ok(ItemState {
        id: row.try_get("id").map_err(q("read line item"))?,
        source: row.try_get("source").map_err(q("read line item"))?,
        destination: Some(
            row.try_get::<String, _>("destination")
                .map_err(q("read line item"))?,
        )
        .filter(|d| !d.is_empty()),
        fingerprint: row.try_get("fingerprint").map_err(q("read line item"))?,
        last_status: last_status.as_deref().map(parse_status).transpose()?,
        last_run_id: row.try_get("last_run_id").map_err(q("read line item"))?,
        last_verified_at: row
            .try_get("last_verified_at")
            .map_err(q("read line item"))?,
        write_checked: row
            .try_get::<i64, _>("write_checked")
            .map_err(q("read line item"))?
            != 0,
    })
}

fn step_row(row: &AnyRow) -> Result<StepResult> {
    let endpoint: String = row.try_get("endpoint").map_err(q("read step"))?;
    let name: String = row.try_get("name").map_err(q("read step"))?;
    let status: String = row.try_get("status").map_err(q("read step"))?;
    let causes: String = row.try_get("causes").map_err(q("read step"))?;
    let evidence: Option<String> = row.try_get("evidence").map_err(q("read step"))?;
    let status = parse_status(&status)?;
    let corrupt = |what: String| StoreError::Corrupt { what };
    Ok(StepResult {
        name: StepName::parse(&name).ok_or_else(|| corrupt(format!("unknown step `{name}`")))?,
        endpoint: match endpoint.as_str() {
            "source" => Side::Source,
            "destination" => Side::Destination,
            other => return Err(corrupt(format!("unknown endpoint `{other}`"))),
        },
        ok: status == Status::Ok,
        status,
        ms: to_u64(row.try_get("ms").map_err(q("read step"))?),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(q("read step"))?)
            .unwrap_or(0),
        detail: row.try_get("detail").map_err(q("read step"))?,
        item_count: row
            .try_get::<Option<i64>, _>("item_count")
            .map_err(q("read step"))?
            .map(to_u64),
        error: row.try_get("error").map_err(q("read step"))?,
        causes: serde_json::from_str(&causes)
            .map_err(|e| corrupt(format!("stored causes unreadable: {e}")))?,
        evidence: evidence
            .map(|e| serde_json::from_str(&e))
            .transpose()
            .map_err(|e| corrupt(format!("stored evidence unreadable: {e}")))?,
        blocked_by: row.try_get("blocked_by").map_err(q("read step"))?,
    })
}
