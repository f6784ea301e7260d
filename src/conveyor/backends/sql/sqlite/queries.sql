-- Named queries of the SQLite backend. Each starts with a "-- name: <name>" line.
-- Lists of ids or queue names travel as one JSON array parameter (json_each),
-- so every statement here is static and prepared once.

-- name: insert_job
INSERT INTO jobs (id, queue, task, priority, state, run_at, attempts, max_attempts, retry,
                  timeout, steps, current_step, progress, result, errors, unique_key, metadata,
                  tenant, version, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, 0, NULL, NULL, NULL, ?, ?, ?, 1, ?, ?)
ON CONFLICT DO NOTHING;

-- name: ensure_queue
INSERT OR IGNORE INTO queues (name, paused, created_at) VALUES (?, 0, ?);

-- name: active_by_unique_key
SELECT * FROM jobs
WHERE unique_key = ?
  AND (state = 'scheduled' OR state = 'queued' OR state = 'running'
       OR state = 'retrying' OR state = 'cancelling');

-- The newest job of a unique key, in any state (0003_unique_keys.sql): the last
-- entry of the key in jobs_by_unique_key.
-- name: newest_by_unique_key
SELECT * FROM jobs INDEXED BY jobs_by_unique_key
WHERE unique_key = ?
ORDER BY id DESC
LIMIT 1;

-- INDEXED BY pins the partial indexes: without statistics the planner would
-- rather walk jobs_listing, whose cost grows with the number of such jobs.

-- name: promote_due
UPDATE jobs INDEXED BY jobs_due SET state = 'queued', version = version + 1, updated_at = :now
WHERE state IN ('scheduled', 'retrying') AND run_at <= :now;

-- Whether a claim would find work: a ready job in a queue that is not paused, or a
-- due one anywhere (a claim promotes every due job).
-- name: ready_probe
SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_ready
               WHERE state = 'queued'
                 AND queue IN (SELECT value FROM json_each(:queues)
                               WHERE value NOT IN (SELECT name FROM queues WHERE paused = 1)))
    OR EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_due
               WHERE state IN ('scheduled', 'retrying') AND run_at <= :now);

-- The earliest run_at of a scheduled or retrying job (NULL: none).
-- name: next_due
SELECT min(run_at) FROM jobs INDEXED BY jobs_due WHERE state IN ('scheduled', 'retrying');

-- name: paused_queues
SELECT name FROM queues WHERE paused = 1 AND name IN (SELECT value FROM json_each(?));

-- name: claim_queue
UPDATE jobs
SET state = 'running', attempts = attempts + 1, worker_id = :worker, lease_until = :lease_until,
    started_at = coalesce(started_at, :now), version = version + 1, updated_at = :now
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_ready
             WHERE queue = :queue AND state = 'queued'
             ORDER BY priority, run_at, id
             LIMIT :limit)
RETURNING *;

-- name: extend_lease
UPDATE jobs SET lease_until = :lease_until
WHERE worker_id = :worker AND state IN ('running', 'cancelling')
  AND id IN (SELECT value FROM json_each(:ids))
RETURNING id, state;

-- name: save_running
UPDATE jobs
SET steps = :steps, current_step = :current_step, progress = :progress,
    version = version + 1, updated_at = :now
WHERE id = :id AND worker_id = :worker AND attempts = :held_attempts
  AND state IN ('running', 'cancelling');

-- Outcomes of a batch of runs, one statement. Each row of b is one run: the values
-- of rows.outcome_rows(as_text=True) (steps, progress, result and errors as JSON
-- text), prepared before the transaction so that no Python runs while the write lock
-- is held. The backend repeats the row of VALUES for a batch (a row of NULLs
-- matches no job) and numbers :now after them. Rows as parameters, not one JSON array
-- taken apart by json_each: 5.9 against 9.6 us a job (SQLite 3.40, 100 runs).
-- Compare-and-set on (id, worker, attempts); RETURNING names the rows written. A job
-- asked to cancel while it ran is not run again: a retry outcome ends it cancelled
-- (the executor cannot see a cancel that arrived after its last lease check).
-- name: finish_rows
WITH b (id, worker, held_attempts, state, delay, attempts, steps, current_step, progress,
        result, errors) AS (VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))
UPDATE jobs
SET state = CASE WHEN jobs.state = 'cancelling' AND b.state IN ('queued', 'retrying')
                 THEN 'cancelled' ELSE b.state END,
    finished_at = CASE WHEN b.state NOT IN ('queued', 'retrying') OR jobs.state = 'cancelling'
                       THEN :now END,
    run_at = CASE WHEN b.state IN ('queued', 'retrying') THEN :now + b.delay
                  ELSE jobs.run_at END,
    attempts = b.attempts, steps = b.steps, current_step = b.current_step,
    progress = b.progress, result = b.result, errors = b.errors,
    worker_id = NULL, lease_until = NULL, version = jobs.version + 1, updated_at = :now
FROM b
WHERE jobs.id = b.id AND jobs.worker_id = b.worker AND jobs.attempts = b.held_attempts
  AND jobs.state IN ('running', 'cancelling')
RETURNING jobs.id;

-- Released at shutdown: waiting again without spending the attempt; a job that was
-- asked to cancel meanwhile ends cancelled instead.
-- name: release_job
UPDATE jobs
SET state = CASE state WHEN 'cancelling' THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE state WHEN 'cancelling' THEN :now ELSE NULL END,
    attempts = attempts - 1, steps = :steps, current_step = :current_step,
    progress = :progress, worker_id = NULL, lease_until = NULL,
    version = version + 1, updated_at = :now
WHERE id = :id AND worker_id = :worker AND attempts = :held_attempts
  AND state IN ('running', 'cancelling');

-- name: add_counter
UPDATE counters SET value = value + ? WHERE name = ?;

-- name: get_job
SELECT * FROM jobs WHERE id = ?;

-- name: job_head
SELECT id, version, state, tenant, metadata FROM jobs WHERE id = ?;

-- name: job_version
SELECT version FROM jobs WHERE id = ?;

-- name: cancel_waiting
UPDATE jobs
SET state = 'cancelled', finished_at = :now, errors = :errors, version = version + 1,
    updated_at = :now
WHERE id = :id AND state IN ('scheduled', 'queued', 'retrying');

-- name: cancel_running
UPDATE jobs SET state = 'cancelling', version = version + 1, updated_at = :now
WHERE id = :id AND state = 'running';

-- name: delete_job
DELETE FROM jobs WHERE id = ? AND state NOT IN ('running', 'cancelling');

-- name: retry_job
UPDATE jobs
SET state = 'queued', attempts = 0, run_at = :now, steps = :steps, finished_at = NULL,
    worker_id = NULL, lease_until = NULL, version = version + 1, updated_at = :now
WHERE id = :id AND state IN ('poisoned', 'cancelled');

-- name: expired_leases
SELECT * FROM jobs INDEXED BY jobs_leases
WHERE state IN ('running', 'cancelling') AND lease_until < ?
ORDER BY lease_until
LIMIT 500;

-- name: recover_job
UPDATE jobs
SET state = :state, run_at = :run_at, errors = :errors, finished_at = :finished_at,
    worker_id = NULL, lease_until = NULL, version = version + 1, updated_at = :now
WHERE id = :id AND worker_id = :worker AND attempts = :attempts
  AND state IN ('running', 'cancelling') AND lease_until < :now;

-- :cut is an id made a little after :before: every job that finished before
-- :before was created (and so has an id) before it, if conveyor made its id (ids are in
-- time order). Ids given by hand may sort anywhere: those above every id conveyor has
-- made (:above, a day past now) are pruned by prune_finished_above.
-- name: prune_finished
DELETE FROM jobs
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_listing
             WHERE (state = 'retrying' OR state = 'succeeded' OR state = 'poisoned'
                    OR state = 'cancelled')
               AND state IN (SELECT value FROM json_each(:states))
               AND id < :cut AND finished_at < :before
             LIMIT 5000);

-- name: prune_finished_above
DELETE FROM jobs
WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_listing
             WHERE (state = 'retrying' OR state = 'succeeded' OR state = 'poisoned'
                    OR state = 'cancelled')
               AND state IN (SELECT value FROM json_each(:states))
               AND id > :above AND finished_at < :before
             LIMIT 5000);

-- A queue exists by its row, or by its jobs: a queue dropped while one of its jobs ran
-- has that job, which may wait again (released, retried), and is listed by it.
-- name: queue_exists
SELECT 1 WHERE EXISTS (SELECT 1 FROM queues WHERE name = :name)
            OR EXISTS (SELECT 1 FROM jobs WHERE queue = :name);

-- name: set_queue_paused
INSERT INTO queues (name, paused, created_at) VALUES (:name, :paused, :now)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused;

-- name: empty_queue
DELETE FROM jobs WHERE queue = ? AND state IN ('scheduled', 'queued', 'retrying');

-- name: drop_queue_jobs
DELETE FROM jobs WHERE queue = ? AND state NOT IN ('running', 'cancelling');

-- name: drop_queue
DELETE FROM queues WHERE name = ?;

-- name: list_queues
SELECT name, paused, created_at FROM queues ORDER BY name;

-- name: count_by_queue_state
SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

-- name: count_by_state
SELECT state, count(*) FROM jobs GROUP BY state;

-- name: upsert_worker
INSERT INTO workers (id, host, pid, queues, concurrency, started_at, heartbeat_at,
                     processed, failed, running)
VALUES (:id, :host, :pid, :queues, :concurrency, :now, :now, :processed, :failed, :running)
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = :now, processed = :processed, failed = :failed, running = :running;

-- name: delete_worker
DELETE FROM workers WHERE id = ?;

-- name: forget_worker
DELETE FROM workers WHERE id = ? AND heartbeat_at < ?;

-- name: list_workers
SELECT * FROM workers ORDER BY started_at, id;

-- name: counters
SELECT name, value FROM counters;

-- Counts per queue and minute (0002_minute_counts.sql).
-- name: add_minute_counts
INSERT INTO minute_counts (minute, queue, processed, failed) VALUES (?, ?, ?, ?)
ON CONFLICT (minute, queue) DO UPDATE
SET processed = processed + excluded.processed, failed = failed + excluded.failed;

-- name: minute_counts
SELECT minute, queue, processed, failed, depth FROM minute_counts
WHERE minute >= :since AND (:queue IS NULL OR queue = :queue)
ORDER BY minute, queue;

-- Queues without a depth in minute ?: when there are none, the minute is sampled.
-- name: depth_missing
SELECT EXISTS (SELECT 1 FROM queues
               WHERE name NOT IN (SELECT queue FROM minute_counts
                                  WHERE minute = ? AND depth IS NOT NULL));

-- Queued jobs per queue, through the claim index (every queue, 0 for none).
-- name: queue_depths
SELECT name, (SELECT count(*) FROM jobs INDEXED BY jobs_ready
              WHERE state = 'queued' AND queue = queues.name)
FROM queues;

-- name: set_depth
INSERT INTO minute_counts (minute, queue, depth) VALUES (?, ?, ?)
ON CONFLICT (minute, queue) DO UPDATE SET depth = excluded.depth;

-- name: prune_minute_counts
DELETE FROM minute_counts WHERE minute < ?;
