-- conveyor PostgreSQL schema, version 1. {schema} stands for the configured schema
-- (quoted); `conveyor migrate` runs this file in one transaction.
--
-- Times are epoch seconds (double precision) from the database clock, the same as
-- on SQLite, so that one row decoder serves both; to_timestamp(run_at) shows one.
-- One table is the source of truth for jobs; partial indexes keep the hot paths
-- (claim, promotion of due jobs, lease recovery) independent of how many jobs are
-- finished or waiting elsewhere: a finished job is in none of them.

CREATE FUNCTION {schema}.epoch_now() RETURNS double precision
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT extract(epoch FROM now())::double precision $$;

CREATE TABLE {schema}.jobs (
    id            text COLLATE "C" PRIMARY KEY,
    queue         text COLLATE "C" NOT NULL,
    task          text,
    priority      integer NOT NULL DEFAULT 0,
    state         text NOT NULL CHECK (state IN ('scheduled', 'queued', 'running', 'retrying',
                                                  'succeeded', 'poisoned', 'cancelling',
                                                  'cancelled')),
    run_at        double precision NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL,
    retry         jsonb,
    timeout       double precision,
    steps         jsonb NOT NULL,
    current_step  integer NOT NULL DEFAULT 0,
    progress      jsonb,
    result        jsonb,
    errors        jsonb,
    unique_key    text COLLATE "C",
    metadata      jsonb,
    tenant        text,
    version       bigint NOT NULL DEFAULT 1,
    created_at    double precision NOT NULL,
    started_at    double precision,
    finished_at   double precision,
    updated_at    double precision NOT NULL,
    worker_id     text,
    lease_until   double precision,
    -- Held by a worker exactly while running or cancelling: writes of a lease holder
    -- match on worker_id and rely on it.
    CONSTRAINT jobs_held_while_running CHECK (
        (worker_id IS NOT NULL) = (state IN ('running', 'cancelling'))
        AND (lease_until IS NOT NULL) = (state IN ('running', 'cancelling')))
) WITH (
    -- Room on each page for progress writes to stay heap-only (no index change).
    fillfactor = 90,
    -- A queue table turns over all the time: vacuum and analyze after a small
    -- share of it has changed rather than the default 20 % / 10 %.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);

-- claim: the first ready jobs of a queue by priority, then run_at, then id (FIFO).
CREATE INDEX jobs_ready ON {schema}.jobs (queue, priority, run_at, id)
    WHERE state = 'queued';
-- promotion of scheduled / retrying jobs whose time has come.
CREATE INDEX jobs_due ON {schema}.jobs (run_at)
    WHERE state IN ('scheduled', 'retrying');
-- recovery of expired leases; running jobs by worker.
CREATE INDEX jobs_leases ON {schema}.jobs (lease_until)
    WHERE state IN ('running', 'cancelling');
-- listing retrying and finished jobs (CLI, dashboard), newest first, and pruning
-- (ids are time-ordered: a job that finished before T was created before T).
-- Waiting jobs are listed by walking the primary key from its newest end.
CREATE INDEX jobs_listing ON {schema}.jobs (state, id)
    WHERE state IN ('retrying', 'succeeded', 'poisoned', 'cancelled');
-- a unique key is held by at most one active job.
CREATE UNIQUE INDEX jobs_unique_key ON {schema}.jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND state IN ('scheduled', 'queued', 'running', 'retrying', 'cancelling');

CREATE TABLE {schema}.queues (
    name        text COLLATE "C" PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    created_at  double precision NOT NULL
);

CREATE TABLE {schema}.workers (
    id            text COLLATE "C" PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    queues        jsonb NOT NULL,
    concurrency   integer NOT NULL,
    started_at    double precision NOT NULL,
    heartbeat_at  double precision NOT NULL,
    processed     bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0,
    running       jsonb NOT NULL DEFAULT '[]'
);

-- processed / failed totals, in 16 shards per name: workers add to the shard of
-- their id, so that finishing jobs on many workers does not queue on one row lock.
CREATE TABLE {schema}.counters (
    name   text COLLATE "C" NOT NULL,
    shard  integer NOT NULL,
    value  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, shard)
);

INSERT INTO {schema}.counters (name, shard, value)
SELECT name, shard, 0
FROM unnest(ARRAY['processed', 'failed']) AS name, generate_series(0, 15) AS shard;

-- claim(queues, worker, limit, lease[, after]): take up to `limit` ready jobs, queues
-- in the order given (paused ones skipped), priority then run_at then id within a
-- queue. Due scheduled / retrying jobs are made ready first, in the same call. SKIP
-- LOCKED: concurrent claimers take different rows instead of waiting for each other.
-- The rows picked are updated through the primary key (`id = ANY (v_ids)`), never by
-- a join the planner could turn into a scan of the table.
--
-- `after` (priority, run_at, id per queue; NULLs for none) starts a queue's scan
-- past that key instead of at its front. Every claimed job leaves a dead entry at
-- the front of jobs_ready until vacuum removes it, and vacuum cannot while an old
-- transaction may still see the row: under a long transaction each scan from the
-- front steps over more and more of them. The caller passes the last key it took
-- while that happens (see PostgresBackend.claim), and scans from the front now and
-- then for jobs that became ready before that key.
CREATE FUNCTION {schema}.claim(p_queues text[], p_worker text, p_limit integer,
                               p_lease double precision,
                               p_after_priority integer[] DEFAULT NULL,
                               p_after_run_at double precision[] DEFAULT NULL,
                               p_after_id text[] DEFAULT NULL)
RETURNS SETOF {schema}.jobs
LANGUAGE plpgsql
AS $$
DECLARE
    v_now   double precision := {schema}.epoch_now();
    v_queue text;
    v_left  integer := p_limit;
    v_ids   text[];
BEGIN
    -- A claim does not wait for its WAL flush (this transaction only; enqueues and
    -- outcomes always wait). A database crash can forget a claim of its last moments:
    -- the job is then queued again with the attempt not counted, and its outcome,
    -- if that run ends, is refused by the compare-and-set, so it runs again: the
    -- at-least-once of a worker crash, no job lost. It takes a flush (about a
    -- quarter of a millisecond here) off every pickup.
    PERFORM set_config('synchronous_commit', 'off', true);
    WITH due AS MATERIALIZED (
        SELECT id FROM {schema}.jobs
        WHERE state IN ('scheduled', 'retrying') AND run_at <= v_now
        ORDER BY run_at
        LIMIT 1000
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {schema}.jobs j
    SET state = 'queued', version = j.version + 1, updated_at = v_now
    WHERE j.id = ANY (ARRAY(SELECT id FROM due));

    FOR i IN 1 .. coalesce(array_length(p_queues, 1), 0) LOOP
        v_queue := p_queues[i];
        CONTINUE WHEN EXISTS (SELECT 1 FROM {schema}.queues WHERE name = v_queue AND paused);
        IF p_after_id[i] IS NULL THEN
            SELECT array_agg(id) INTO v_ids FROM (
                SELECT id FROM {schema}.jobs
                WHERE queue = v_queue AND state = 'queued'
                ORDER BY priority, run_at, id
                LIMIT v_left
                FOR UPDATE SKIP LOCKED) AS picked;
        ELSE
            SELECT array_agg(id) INTO v_ids FROM (
                SELECT id FROM {schema}.jobs
                WHERE queue = v_queue AND state = 'queued'
                  AND (priority, run_at, id) > (p_after_priority[i], p_after_run_at[i],
                                                p_after_id[i])
                ORDER BY priority, run_at, id
                LIMIT v_left
                FOR UPDATE SKIP LOCKED) AS picked;
        END IF;
        CONTINUE WHEN v_ids IS NULL;
        RETURN QUERY
            UPDATE {schema}.jobs j
            SET state = 'running', attempts = j.attempts + 1, worker_id = p_worker,
                lease_until = v_now + p_lease, started_at = coalesce(j.started_at, v_now),
                version = j.version + 1, updated_at = v_now
            WHERE j.id = ANY (v_ids)
            RETURNING j.*;
        v_left := v_left - cardinality(v_ids);
        EXIT WHEN v_left <= 0;
    END LOOP;
END
$$;
