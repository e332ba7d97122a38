-- State of exgate verify: runs, line items (one row per mailbox line) and their history.
-- Portable between SQLite and PostgreSQL: times are BIGINT epoch milliseconds, ids are TEXT,
-- flags are BIGINT 0/1, JSON is TEXT.

CREATE TABLE IF NOT EXISTS verify_runs (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    all_items BIGINT NOT NULL,
    write_check BIGINT NOT NULL,
    selected BIGINT NOT NULL,
    ok BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    blocked BIGINT NOT NULL DEFAULT 0,
    cancelled BIGINT NOT NULL DEFAULT 0,
    faults TEXT
);

CREATE INDEX IF NOT EXISTS verify_runs_project ON verify_runs (project, started_at);

CREATE TABLE IF NOT EXISTS line_items (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_run_id TEXT,
    last_status TEXT,
    last_verified_at BIGINT,
    write_checked BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project, id)
);

CREATE TABLE IF NOT EXISTS item_runs (
    run_id TEXT NOT NULL,
    project TEXT NOT NULL,
    item_id TEXT NOT NULL,
    status TEXT NOT NULL,
    ms BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, item_id)
);

CREATE INDEX IF NOT EXISTS item_runs_item ON item_runs (project, item_id, finished_at);

CREATE TABLE IF NOT EXISTS step_results (
    run_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    detail TEXT,
    item_count BIGINT,
    error TEXT,
    causes TEXT NOT NULL,
    evidence TEXT,
    blocked_by TEXT,
    PRIMARY KEY (run_id, item_id, seq)
);
