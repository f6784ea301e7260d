-- conveyor SQLite schema, version 1.
-- One table is the source of truth for jobs; partial indexes keep the hot paths
-- (claim, promotion of due jobs, lease recovery) independent of how many jobs
-- are finished or waiting elsewhere.

CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    queue         TEXT NOT NULL,
    task          TEXT,
    priority      INTEGER NOT NULL DEFAULT 0,
    state         TEXT NOT NULL,
    run_at        REAL NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    retry         TEXT,
    timeout       REAL,
    steps         TEXT NOT NULL,
    current_step  INTEGER NOT NULL DEFAULT 0,
    progress      TEXT,
    result        TEXT,
    errors        TEXT,
    unique_key    TEXT,
    metadata      TEXT,
    tenant        TEXT,
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    updated_at    REAL NOT NULL,
    worker_id     TEXT,
    lease_until   REAL
) WITHOUT ROWID;

-- claim: the first ready job of a queue by priority, then run_at, then id (FIFO).
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, priority, run_at, id)
    WHERE state = 'queued';
-- promotion of scheduled / retrying jobs whose time has come.
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (run_at)
    WHERE state IN ('scheduled', 'retrying');
-- recovery of expired leases.
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_until)
    WHERE state IN ('running', 'cancelling');
-- listing retrying and finished jobs (CLI, dashboard), newest first, and pruning
-- (ids are time-ordered: a job that finished before T was created before T).
-- Every index a job enters is one more page written per change of state, so the
-- states with an index of their own stay out: waiting jobs are listed by walking
-- the table from its newest end (where a backlog's newest jobs are), running ones
-- through jobs_leases.
CREATE INDEX IF NOT EXISTS jobs_listing ON jobs (state, id)
    WHERE state IN ('retrying', 'succeeded', 'poisoned', 'cancelled');
-- a unique key is held by at most one active job.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND state IN ('scheduled', 'queued', 'running', 'retrying', 'cancelling');

CREATE TABLE IF NOT EXISTS queues (
    name        TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL
) WITHOUT ROWID;

-- Enqueueing into a new queue creates it (as in Resque); a trigger keeps that inside
-- the INSERT, so a single enqueue is one statement.
CREATE TRIGGER IF NOT EXISTS jobs_create_queue AFTER INSERT ON jobs
BEGIN
    INSERT OR IGNORE INTO queues (name, paused, created_at) VALUES (NEW.queue, 0, NEW.created_at);
END;

CREATE TABLE IF NOT EXISTS workers (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    queues        TEXT NOT NULL,
    concurrency   INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL,
    processed     INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    running       TEXT NOT NULL DEFAULT '[]'
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT OR IGNORE INTO counters (name, value) VALUES ('processed', 0), ('failed', 0);
