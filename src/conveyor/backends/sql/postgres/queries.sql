-- Named queries of the PostgreSQL backend. Each starts with a "-- name: <name>" line.
-- Joins of a batch to jobs say `j.id = ANY (ARRAY(SELECT id FROM batch))`: that makes
-- the primary key the way in, whatever the planner believes about the table (with
-- stale statistics it would hash the whole table for a join of a hundred rows).
-- Writes by a lease holder match on (id, worker_id, attempts) without naming the
-- states: a worker_id is set exactly while a job is running or cancelling (a CHECK of
-- the table holds it), and a state condition would invite the planner to walk the
-- partial index of every running job instead of the primary key.
-- {schema} stands for the configured schema (quoted); parameters are psycopg's
-- %(name)s. Batches travel as one JSON parameter, so every statement is static,
-- prepared once per connection, and one round trip whatever the batch size.
-- Statements that make jobs ready send one NOTIFY per queue (the payload is the
-- queue's name), not one per job; a NOTIFY is delivered when its transaction commits.

-- New jobs. The database clock decides: run_at 0 means now, a later run_at
-- stores the job scheduled. ON CONFLICT (unique_key) ... DO NOTHING skips a job whose
-- unique key an active job holds (the caller then looks that job up). It names that
-- index alone on purpose: a job whose id is taken is not skipped but fails the whole
-- statement (jobs_pkey), so that a batch is stored whole or not at all (the caller
-- turns that into InvalidJob("id")). Answers one row: the
-- clock, how many were stored, the stored ids that had a unique key, how many
-- NOTIFYs went out, and whether a worker waits for a hand-off now (0006_hand_offs.sql:
-- the process's next single enqueue then takes insert_job_hand_off). %(new_queues)s:
-- also write the rows of the stored jobs' queues (false when this process has written
-- them already); a job skipped for its unique key makes no queue, as on other stores.
-- For one job the ids are not needed (stored or not says it all) and are not
-- gathered: a subquery less in every single enqueue.
-- name: insert_job
WITH t AS (SELECT {schema}.epoch_now() AS now),
inserted AS (
    INSERT INTO {schema}.jobs (id, queue, task, priority, state, run_at, max_attempts, retry,
                               timeout, steps, unique_key, metadata, tenant, created_at,
                               updated_at)
    SELECT %(id)s, %(queue)s, %(task)s, %(priority)s,
           CASE WHEN %(run_at)s > t.now THEN 'scheduled' ELSE 'queued' END,
           CASE WHEN %(run_at)s > 0 THEN %(run_at)s ELSE t.now END,
           %(max_attempts)s, %(retry)s, %(timeout)s, %(steps)s, %(unique_key)s, %(metadata)s,
           %(tenant)s, t.now, t.now
    FROM t
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
        AND state IN ('scheduled', 'queued', 'running', 'retrying', 'cancelling')
        DO NOTHING
    RETURNING queue, state
),
new_queue AS (
    INSERT INTO {schema}.queues (name, paused, created_at)
    SELECT inserted.queue, false, t.now FROM inserted, t WHERE %(new_queues)s
    ON CONFLICT DO NOTHING
)
SELECT t.now,
       (SELECT count(*) FROM inserted),
       NULL::text[],
       (SELECT count(pg_notify(%(channel)s, queue)) FROM inserted WHERE state = 'queued'),
       EXISTS (SELECT 1 FROM {schema}.waiters w WHERE w.job_id IS NULL AND w.until > t.now)
FROM t;

-- insert_job, and a job ready now without a unique key goes to the worker waiting
-- longest on its queue, if any (0006_hand_offs.sql): stored running for it, and
-- [token of the wait, row] sent to the worker's channel instead of a wake-up to all
-- (the row in get_job's column order, jsonb as text; just the id when the row is too
-- long for a notification). Never past a job ready in a queue the worker lists before
-- this one, nor into a paused queue. Only on conveyor's own connections, and only
-- while workers wait: it costs more than insert_job (about 30 us here).
-- name: insert_job_hand_off
WITH t AS (SELECT {schema}.epoch_now() AS now),
waiter AS (
    UPDATE {schema}.waiters w SET job_id = %(id)s
    WHERE w.worker_id = (
        SELECT c.worker_id FROM {schema}.waiters c, t
        WHERE %(unique_key)s::text IS NULL AND %(run_at)s <= t.now
          AND c.job_id IS NULL AND c.until > t.now AND %(queue)s = ANY (c.queues)
          AND NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.name = %(queue)s AND q.paused)
          AND NOT EXISTS (
              SELECT 1 FROM unnest(c.queues[1:array_position(c.queues, %(queue)s) - 1]) AS e(name)
              WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.name = e.name AND q.paused)
                AND EXISTS (SELECT 1 FROM {schema}.jobs j
                            WHERE j.queue = e.name AND j.state = 'queued'))
        ORDER BY c.since
        LIMIT 1
        FOR UPDATE OF c SKIP LOCKED)
    RETURNING w.worker_id, w.lease, w.channel, w.token
),
inserted AS (
    INSERT INTO {schema}.jobs (id, queue, task, priority, state, run_at, attempts,
                               max_attempts, retry, timeout, steps, unique_key, metadata,
                               tenant, version, created_at, started_at, updated_at,
                               worker_id, lease_until)
    SELECT %(id)s, %(queue)s, %(task)s, %(priority)s,
           CASE WHEN waiter.worker_id IS NOT NULL THEN 'running'
                WHEN %(run_at)s > t.now THEN 'scheduled' ELSE 'queued' END,
           CASE WHEN %(run_at)s > 0 THEN %(run_at)s ELSE t.now END,
           CASE WHEN waiter.worker_id IS NOT NULL THEN 1 ELSE 0 END,
           %(max_attempts)s, %(retry)s, %(timeout)s, %(steps)s, %(unique_key)s, %(metadata)s,
           %(tenant)s, CASE WHEN waiter.worker_id IS NOT NULL THEN 2 ELSE 1 END,
           t.now, CASE WHEN waiter.worker_id IS NOT NULL THEN t.now END, t.now,
           waiter.worker_id, t.now + waiter.lease
    FROM t LEFT JOIN waiter ON true
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
        AND state IN ('scheduled', 'queued', 'running', 'retrying', 'cancelling')
        DO NOTHING
    RETURNING queue, state, worker_id
),
new_queue AS (
    INSERT INTO {schema}.queues (name, paused, created_at)
    SELECT inserted.queue, false, t.now FROM inserted, t WHERE %(new_queues)s
    ON CONFLICT DO NOTHING
),
handed AS (
    SELECT pg_notify(waiter.channel, json_build_array(
               waiter.token,
               CASE WHEN octet_length(r.row::text) < 7800 THEN r.row
                    ELSE to_json(%(id)s::text) END)::text)
    FROM inserted i JOIN waiter ON i.worker_id = waiter.worker_id, t,
         LATERAL (SELECT json_build_array(
             %(id)s::text, %(queue)s::text, %(task)s::text, %(priority)s::integer, i.state,
             CASE WHEN %(run_at)s > 0 THEN %(run_at)s ELSE t.now END,  -- run_at
             1, %(max_attempts)s::integer, %(retry)s::text, %(timeout)s::float8,
             %(steps)s::text, 0, NULL, NULL, NULL, NULL,  -- current_step .. unique_key
             %(metadata)s::text, %(tenant)s::text, 2, t.now, t.now, NULL, t.now,
             waiter.worker_id, t.now + waiter.lease)) AS r(row)
)
SELECT t.now,
       (SELECT count(*) FROM inserted),
       NULL::text[],
       (SELECT count(pg_notify(%(channel)s, queue)) FROM inserted WHERE state = 'queued')
         + (SELECT count(*) FROM handed),
       EXISTS (SELECT 1 FROM {schema}.waiters w WHERE w.job_id IS NULL AND w.until > t.now)
FROM t;

-- name: insert_jobs
WITH t AS (SELECT {schema}.epoch_now() AS now),
b AS (
    SELECT * FROM json_to_recordset(%(batch)s::json) AS b(
        id text, queue text, task text, priority integer, run_at double precision,
        max_attempts integer, retry jsonb, timeout double precision, steps jsonb,
        unique_key text, metadata jsonb, tenant text)
),
inserted AS (
    INSERT INTO {schema}.jobs (id, queue, task, priority, state, run_at, max_attempts, retry,
                               timeout, steps, unique_key, metadata, tenant, created_at,
                               updated_at)
    SELECT b.id, b.queue, b.task, b.priority,
           CASE WHEN b.run_at > t.now THEN 'scheduled' ELSE 'queued' END,
           CASE WHEN b.run_at > 0 THEN b.run_at ELSE t.now END,
           b.max_attempts, b.retry, b.timeout, b.steps, b.unique_key, b.metadata, b.tenant,
           t.now, t.now
    FROM b, t
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
        AND state IN ('scheduled', 'queued', 'running', 'retrying', 'cancelling')
        DO NOTHING
    RETURNING id, queue, state, unique_key
),
new_queues AS (
    INSERT INTO {schema}.queues (name, paused, created_at)
    SELECT DISTINCT inserted.queue, false, t.now FROM inserted, t WHERE %(new_queues)s
    ON CONFLICT DO NOTHING
),
notified AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'queued') AS q
)
SELECT t.now,
       (SELECT count(*) FROM inserted),
       (SELECT array_agg(id) FROM inserted WHERE unique_key IS NOT NULL),
       (SELECT count(*) FROM notified)
FROM t;

-- A large batch without unique keys: COPY in a transaction ({columns} is filled in by
-- the code), then the queues' rows and the wake-ups.
-- name: copy_jobs
COPY {schema}.jobs ({columns}) FROM STDIN;

-- name: after_copy
WITH new_queues AS (
    INSERT INTO {schema}.queues (name, paused, created_at)
    SELECT q, false, {schema}.epoch_now() FROM unnest(%(new_queues)s::text[]) AS q
    ON CONFLICT DO NOTHING
)
SELECT count(pg_notify(%(channel)s, q)) FROM unnest(%(ready_queues)s::text[]) AS q;

-- name: active_by_unique_keys
SELECT * FROM {schema}.jobs
WHERE unique_key = ANY(%(keys)s)
  AND state IN ('scheduled', 'queued', 'running', 'retrying', 'cancelling');

-- The newest job of a unique key, in any state (0003_unique_keys.sql): the last
-- entry of the key in jobs_by_unique_key.
-- name: newest_by_unique_key
SELECT * FROM {schema}.jobs
WHERE unique_key = %(key)s
ORDER BY id DESC
LIMIT 1;

-- Backend.enqueue_once: one key's calls take turns (a transaction-scoped advisory
-- lock; the two-key form, whose keys never meet the migration lock's one-key form).
-- name: lock_unique_key
SELECT pg_advisory_xact_lock(hashtext('{schema}.unique_key'), hashtext(%(key)s));

-- name: now
SELECT {schema}.epoch_now();

-- name: claim
SELECT * FROM {schema}.claim(%(queues)s::text[], %(worker)s::text, %(limit)s::integer,
                             %(lease)s::double precision,
                             %(after_priority)s::integer[],
                             %(after_run_at)s::double precision[], %(after_id)s::text[]);

-- A waiting worker registers for hand-offs until %(seconds)s from now (0006_hand_offs.sql)
-- and, in the same statement, looks: whether one of its queues (not paused) has a job
-- ready, whether a job was handed to it already (a registration its last claim did not
-- take: it claims first), the earliest run_at of a scheduled or retrying job (NULL:
-- none), and the clock.
-- name: register_waiter
WITH t AS (SELECT {schema}.epoch_now() AS now),
registered AS (
    INSERT INTO {schema}.waiters AS w (worker_id, queues, channel, token, lease, until, since)
    SELECT %(worker)s, %(queues)s::text[], %(channel)s, %(token)s, %(lease)s,
           t.now + %(seconds)s, t.now
    FROM t
    ON CONFLICT (worker_id) DO UPDATE
    SET queues = excluded.queues, channel = excluded.channel, token = excluded.token,
        lease = excluded.lease, until = excluded.until, since = excluded.since
    WHERE w.job_id IS NULL
    RETURNING w.job_id
)
SELECT EXISTS (
           SELECT 1 FROM unnest(%(queues)s::text[]) AS n(name)
           WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.name = n.name AND q.paused)
             AND EXISTS (SELECT 1 FROM {schema}.jobs j
                         WHERE j.queue = n.name AND j.state = 'queued'))
         OR NOT EXISTS (SELECT 1 FROM registered),
       (SELECT run_at FROM {schema}.jobs
        WHERE state IN ('scheduled', 'retrying')
        ORDER BY run_at LIMIT 1),
       t.now
FROM t;

-- A worker that stops waiting without claiming (a cancelled wait, its stop): its
-- registration goes, answering the job handed to it by then, if any.
-- name: unpark_waiter
DELETE FROM {schema}.waiters WHERE worker_id = %(worker)s RETURNING job_id;

-- Jobs handed to a worker that it will not start (unpark_waiter's, and those a
-- cancelled wait had taken from their notification) wait again as they were before:
-- no attempt spent, not started. A statement of its own: it must see a hand-off that
-- committed while unpark_waiter waited for the registration's lock, which a
-- statement that began before could not.
-- name: give_back_handed
WITH given_back AS (
    UPDATE {schema}.jobs j
    SET state = CASE j.state WHEN 'cancelling' THEN 'cancelled' ELSE 'queued' END,
        finished_at = CASE j.state WHEN 'cancelling' THEN {schema}.epoch_now() END,
        attempts = j.attempts - 1, started_at = NULL, worker_id = NULL, lease_until = NULL,
        version = j.version + 1, updated_at = {schema}.epoch_now()
    WHERE j.id = ANY (%(ids)s::text[]) AND j.worker_id = %(worker)s
      AND j.state IN ('running', 'cancelling')
    RETURNING j.queue, j.state
)
SELECT count(pg_notify(%(channel)s, queue)) FROM given_back WHERE state = 'queued';

-- Whether a queue of the list (not paused) has a job ready now.
-- name: ready_in
SELECT EXISTS (
    SELECT 1 FROM unnest(%(queues)s::text[]) AS n(name)
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues q WHERE q.name = n.name AND q.paused)
      AND EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.queue = n.name AND j.state = 'queued'));

-- The earliest run_at of a scheduled or retrying job (NULL: none), and the clock.
-- name: next_due
SELECT (SELECT run_at FROM {schema}.jobs
        WHERE state IN ('scheduled', 'retrying')
        ORDER BY run_at LIMIT 1),
       {schema}.epoch_now();

-- Leases of a worker's jobs, extended: [id, state, extended] for each job the worker
-- still holds. A row that another statement has locked is skipped rather than waited
-- for (extended false: its lease is extended next time): the worker's outcome writer,
-- on another connection, locks rows of the same jobs, and two statements that each
-- wait for a row the other holds deadlock, whatever order each takes its rows in (a
-- scan's order is its plan's; a churn benchmark saw 31 deadlocks in 15 minutes, each
-- stalling both statements for deadlock_timeout). Never waiting, this one cannot.
-- name: extend_leases
WITH mine AS (
    SELECT id, state FROM {schema}.jobs WHERE id = ANY(%(ids)s) AND worker_id = %(worker)s
),
free AS (
    SELECT ctid FROM {schema}.jobs
    WHERE id = ANY(%(ids)s) AND worker_id = %(worker)s
    FOR UPDATE SKIP LOCKED
),
extended AS (
    UPDATE {schema}.jobs j SET lease_until = {schema}.epoch_now() + %(lease)s
    WHERE j.ctid = ANY (ARRAY(SELECT ctid FROM free))
    RETURNING j.id, j.state
)
SELECT id, state, true FROM extended
UNION ALL
SELECT id, state, false FROM mine WHERE id NOT IN (SELECT id FROM extended);

-- name: save_running
UPDATE {schema}.jobs
SET steps = %(steps)s, current_step = %(current_step)s, progress = %(progress)s,
    version = version + 1, updated_at = {schema}.epoch_now()
WHERE id = %(id)s AND worker_id = %(worker)s AND attempts = %(held_attempts)s
RETURNING updated_at;

-- Outcomes of a batch of runs, one statement. %(batch)s is the JSON array built by
-- rows.finish_batch: [id, worker, held_attempts, state, delay, attempts, steps,
-- current_step, progress, result (JSON text), errors, failed]. Compare-and-set on
-- (id, worker, attempts); answers the ids written. A job asked to cancel while it
-- ran is not run again: a retry outcome ends it cancelled. The counters of the
-- caller's shard grow in the same statement.
-- The batch is read as jsonb, parsed once: each ->> of a json value parses its text
-- again (twelve times per row), which took about a sixth of the statement's time.
-- Steps, progress and errors are taken as jsonb values as they are (a JSON null is no
-- value); the result arrives as JSON text (a result may be a bare string).
-- name: finish_batch
WITH b AS (
    SELECT e->>0 AS id, e->>1 AS worker, (e->>2)::integer AS held_attempts,
           e->>3 AS state, (e->>4)::double precision AS delay, (e->>5)::integer AS attempts,
           e->6 AS steps, (e->>7)::integer AS current_step,
           nullif(e->8, 'null') AS progress, (e->>9)::jsonb AS result,
           nullif(e->10, 'null') AS errors, (e->>11)::integer AS failed
    FROM jsonb_array_elements(%(batch)s::jsonb) AS e
),
done AS (
    UPDATE {schema}.jobs j
    SET state = CASE WHEN j.state = 'cancelling' AND b.state IN ('queued', 'retrying')
                     THEN 'cancelled' ELSE b.state END,
        finished_at = CASE WHEN b.state NOT IN ('queued', 'retrying') OR j.state = 'cancelling'
                           THEN {schema}.epoch_now() END,
        run_at = CASE WHEN b.state IN ('queued', 'retrying')
                      THEN {schema}.epoch_now() + b.delay ELSE j.run_at END,
        attempts = b.attempts, steps = b.steps, current_step = b.current_step,
        progress = b.progress, result = b.result, errors = b.errors,
        worker_id = NULL, lease_until = NULL, version = j.version + 1,
        updated_at = {schema}.epoch_now()
    FROM b
    WHERE j.id = ANY (ARRAY(SELECT b.id FROM b)) AND j.id = b.id
      AND j.worker_id = b.worker AND j.attempts = b.held_attempts
    RETURNING j.id, j.queue, j.state, b.failed
),
counted AS (
    UPDATE {schema}.counters c SET value = c.value + d.n
    FROM (SELECT 'processed' AS name, count(*) AS n FROM done
          UNION ALL
          SELECT 'failed', coalesce(sum(failed), 0) FROM done) AS d
    WHERE c.name = d.name AND c.shard = %(shard)s AND d.n > 0
),
-- Queues in name order: two batches upserting the same rows lock them in one order.
minutes AS (
    INSERT INTO {schema}.minute_counts AS m (minute, queue, shard, processed, failed)
    SELECT floor({schema}.epoch_now() / 60)::bigint * 60, queue, %(shard)s, count(*),
           sum(failed)
    FROM done GROUP BY queue ORDER BY queue
    ON CONFLICT (minute, queue, shard) DO UPDATE
    SET processed = m.processed + excluded.processed, failed = m.failed + excluded.failed
),
notified AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT DISTINCT queue FROM done WHERE state = 'queued') AS q
)
-- The condition makes the NOTIFYs run (a SELECT in WITH runs only when read).
SELECT id FROM done WHERE (SELECT count(*) FROM notified) >= 0;

-- Released at shutdown: waiting again without spending the attempt; a job that was
-- asked to cancel meanwhile ends cancelled instead.
-- name: release_job
UPDATE {schema}.jobs
SET state = CASE state WHEN 'cancelling' THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE state WHEN 'cancelling' THEN {schema}.epoch_now() END,
    attempts = attempts - 1, steps = %(steps)s, current_step = %(current_step)s,
    progress = %(progress)s, worker_id = NULL, lease_until = NULL,
    version = version + 1, updated_at = {schema}.epoch_now()
WHERE id = %(id)s AND worker_id = %(worker)s AND attempts = %(held_attempts)s
RETURNING queue, state;

-- name: notify_queues
SELECT pg_notify(%(channel)s, q) FROM unnest(%(queues)s::text[]) AS q;

-- name: get_job
SELECT * FROM {schema}.jobs WHERE id = %(id)s;

-- name: job_head
SELECT id, version, state, tenant, metadata FROM {schema}.jobs WHERE id = %(id)s;

-- name: job_version
SELECT version FROM {schema}.jobs WHERE id = %(id)s;

-- Waiting → cancelled (the reason joins the errors); running → cancelling.
-- name: cancel_job
UPDATE {schema}.jobs
SET state = CASE WHEN state = 'running' THEN 'cancelling' ELSE 'cancelled' END,
    finished_at = CASE WHEN state = 'running' THEN finished_at ELSE {schema}.epoch_now() END,
    errors = CASE WHEN state = 'running' THEN errors
             ELSE coalesce(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                 'attempt', attempts, 'at', {schema}.epoch_now(), 'type', 'Cancelled',
                 'message', %(reason)s::text)) END,
    version = version + 1, updated_at = {schema}.epoch_now()
WHERE id = %(id)s AND state IN ('scheduled', 'queued', 'retrying', 'running')
RETURNING *;

-- name: delete_job
-- %(states)s: NULL, or the states the job must be in (checked with the removal).
DELETE FROM {schema}.jobs
WHERE id = %(id)s AND state NOT IN ('running', 'cancelling')
  AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
RETURNING id;

-- name: job_state
SELECT state FROM {schema}.jobs WHERE id = %(id)s;

-- name: lock_job
SELECT * FROM {schema}.jobs WHERE id = %(id)s FOR UPDATE;

-- name: retry_job
UPDATE {schema}.jobs
SET state = 'queued', attempts = 0, run_at = {schema}.epoch_now(), steps = %(steps)s,
    finished_at = NULL, worker_id = NULL, lease_until = NULL, version = version + 1,
    updated_at = {schema}.epoch_now()
WHERE id = %(id)s AND state IN ('poisoned', 'cancelled')
RETURNING *;

-- Running jobs whose lease ran out: waiting again (the claim counted the attempt),
-- poisoned when attempts are spent, cancelled when a cancel was asked. The lost run
-- counts as processed and failed, as a raising task would.
-- Except a job handed to a worker that died before its next claim (0006_hand_offs.sql:
-- its registration still holds the job; gone with the registrations of waits long
-- over): it most likely never started, and waits again as it was, no attempt spent.
-- Only a new job is handed over, so this happens to a job once at most: a job that
-- kills its worker as it starts still runs out of attempts. Such a job asked to cancel
-- meanwhile ends cancelled, and is answered with the jobs the recovery finished (the
-- worker calls back for those). One statement: recovery runs in every worker's lease
-- keeper.
-- name: recover_expired
WITH gone AS (
    DELETE FROM {schema}.waiters w
    WHERE w.until + w.lease < {schema}.epoch_now()
       OR EXISTS (SELECT 1 FROM {schema}.jobs j
                  WHERE j.id = w.job_id AND j.worker_id = w.worker_id
                    AND j.lease_until < {schema}.epoch_now())
    RETURNING w.worker_id, w.job_id
),
given_back AS (
    UPDATE {schema}.jobs j
    SET state = CASE j.state WHEN 'cancelling' THEN 'cancelled' ELSE 'queued' END,
        finished_at = CASE j.state WHEN 'cancelling' THEN {schema}.epoch_now() END,
        attempts = j.attempts - 1, started_at = NULL, worker_id = NULL, lease_until = NULL,
        version = j.version + 1, updated_at = {schema}.epoch_now()
    FROM gone
    WHERE j.id = gone.job_id AND j.worker_id = gone.worker_id
      AND j.state IN ('running', 'cancelling') AND j.lease_until < {schema}.epoch_now()
    RETURNING j.*
),
expired AS MATERIALIZED (
    SELECT id FROM {schema}.jobs
    WHERE state IN ('running', 'cancelling') AND lease_until < {schema}.epoch_now()
      AND id <> ALL (ARRAY(SELECT job_id FROM gone WHERE job_id IS NOT NULL))
    ORDER BY lease_until
    LIMIT 500
    FOR UPDATE SKIP LOCKED
),
recovered AS (
    UPDATE {schema}.jobs j
    SET state = CASE WHEN j.state = 'cancelling' THEN 'cancelled'
                     WHEN j.attempts >= j.max_attempts THEN 'poisoned'
                     ELSE 'queued' END,
        run_at = CASE WHEN j.state = 'running' AND j.attempts < j.max_attempts
                      THEN {schema}.epoch_now() ELSE j.run_at END,
        finished_at = CASE WHEN j.state = 'cancelling' OR j.attempts >= j.max_attempts
                           THEN {schema}.epoch_now() END,
        errors = coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'step', j.steps -> j.current_step ->> 'name',
            'at', {schema}.epoch_now(), 'type', 'LeaseExpired',
            'message', 'lease expired: worker ' || j.worker_id || ' stopped heartbeating')),
        worker_id = NULL, lease_until = NULL, version = j.version + 1,
        updated_at = {schema}.epoch_now()
    FROM expired WHERE j.id = ANY (ARRAY(SELECT id FROM expired)) AND j.id = expired.id
    RETURNING j.*
),
counted AS (
    UPDATE {schema}.counters c SET value = c.value + (SELECT count(*) FROM recovered)
    WHERE c.name IN ('processed', 'failed') AND c.shard = %(shard)s
      AND EXISTS (SELECT 1 FROM recovered)
),
minutes AS (
    INSERT INTO {schema}.minute_counts AS m (minute, queue, shard, processed, failed)
    SELECT floor({schema}.epoch_now() / 60)::bigint * 60, queue, %(shard)s, count(*), count(*)
    FROM recovered GROUP BY queue ORDER BY queue
    ON CONFLICT (minute, queue, shard) DO UPDATE
    SET processed = m.processed + excluded.processed, failed = m.failed + excluded.failed
),
notified AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT queue FROM recovered WHERE state = 'queued'
          UNION SELECT queue FROM given_back WHERE state = 'queued') AS q
)
SELECT * FROM recovered WHERE (SELECT count(*) FROM notified) >= 0
UNION ALL
SELECT * FROM given_back WHERE state = 'cancelled';

-- %(cut)s is an id made a little after %(before)s: every job that finished before
-- %(before)s was created (and so has an id) before it, if conveyor made its id (ids are
-- in time order). Ids given by hand may sort anywhere: those above every id conveyor
-- has made (%(above)s, a day past now) are pruned by prune_finished_above. The literal
-- state list lets the planner use the partial index jobs_listing.
-- name: prune_finished
DELETE FROM {schema}.jobs
WHERE id IN (SELECT id FROM {schema}.jobs
             WHERE state IN ('retrying', 'succeeded', 'poisoned', 'cancelled')
               AND state = ANY(%(states)s) AND id < %(cut)s AND finished_at < %(before)s
             LIMIT 5000);

-- name: prune_finished_above
DELETE FROM {schema}.jobs
WHERE id IN (SELECT id FROM {schema}.jobs
             WHERE state IN ('retrying', 'succeeded', 'poisoned', 'cancelled')
               AND state = ANY(%(states)s) AND id > %(above)s AND finished_at < %(before)s
             LIMIT 5000);

-- name: ensure_queue
INSERT INTO {schema}.queues (name, paused, created_at)
VALUES (%(name)s, false, {schema}.epoch_now())
ON CONFLICT DO NOTHING;

-- A queue exists when it has a row or jobs (a row dropped while a producer that
-- had written it kept enqueueing is written again here).
-- name: set_queue_paused
INSERT INTO {schema}.queues (name, paused, created_at)
SELECT %(name)s, %(paused)s, {schema}.epoch_now()
WHERE EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(name)s)
   OR EXISTS (SELECT 1 FROM {schema}.jobs WHERE queue = %(name)s)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused
RETURNING name;

-- name: queue_exists
SELECT 1 WHERE EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(name)s)
            OR EXISTS (SELECT 1 FROM {schema}.jobs WHERE queue = %(name)s);

-- name: empty_queue
DELETE FROM {schema}.jobs WHERE queue = %(name)s AND state IN ('scheduled', 'queued', 'retrying');

-- name: drop_queue_jobs
DELETE FROM {schema}.jobs WHERE queue = %(name)s AND state NOT IN ('running', 'cancelling');

-- name: drop_queue
DELETE FROM {schema}.queues WHERE name = %(name)s;

-- name: list_queues
SELECT name, paused, created_at FROM {schema}.queues ORDER BY name;

-- name: count_by_queue_state
SELECT queue, state, count(*) FROM {schema}.jobs GROUP BY queue, state;

-- name: count_by_state
SELECT state, count(*) FROM {schema}.jobs GROUP BY state;

-- name: upsert_worker
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency, started_at, heartbeat_at,
                              processed, failed, running)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, {schema}.epoch_now(),
        {schema}.epoch_now(), %(processed)s, %(failed)s, %(running)s)
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = excluded.heartbeat_at, processed = excluded.processed,
    failed = excluded.failed, running = excluded.running
RETURNING started_at, heartbeat_at;

-- name: delete_worker
DELETE FROM {schema}.workers WHERE id = %(id)s;

-- name: forget_worker
DELETE FROM {schema}.workers WHERE id = %(id)s AND heartbeat_at < %(before)s;

-- name: list_workers
SELECT * FROM {schema}.workers ORDER BY started_at, id;

-- name: counters
SELECT name, sum(value)::bigint FROM {schema}.counters GROUP BY name;

-- name: store_figures
SELECT pg_total_relation_size('{schema}.jobs'::regclass), current_setting('server_version'),
       current_setting('synchronous_commit');

-- Counts per queue and minute (0002_minute_counts.sql): the shards summed.
-- name: minute_counts
SELECT minute, queue, sum(processed)::bigint, sum(failed)::bigint, max(depth)
FROM {schema}.minute_counts
WHERE minute >= %(since)s AND (%(queue)s::text IS NULL OR queue = %(queue)s)
GROUP BY minute, queue
ORDER BY minute, queue;

-- Whether some queue has no depth yet in the current minute (then it is sampled).
-- name: depth_missing
SELECT EXISTS (
    SELECT 1 FROM {schema}.queues q
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.minute_counts m
                      WHERE m.minute = floor({schema}.epoch_now() / 60)::bigint * 60
                        AND m.queue = q.name AND m.shard = 0 AND m.depth IS NOT NULL));

-- Queued jobs per queue (every queue, 0 for none), into shard 0 of the current minute.
-- name: sample_depth
INSERT INTO {schema}.minute_counts AS m (minute, queue, shard, depth)
SELECT floor({schema}.epoch_now() / 60)::bigint * 60, d.queue, 0, max(d.n)
FROM (SELECT name AS queue, 0 AS n FROM {schema}.queues
      UNION ALL
      SELECT queue, count(*) FROM {schema}.jobs WHERE state = 'queued' GROUP BY queue) AS d
GROUP BY d.queue
ORDER BY d.queue
ON CONFLICT (minute, queue, shard) DO UPDATE SET depth = excluded.depth;

-- name: prune_minute_counts
DELETE FROM {schema}.minute_counts WHERE minute < {schema}.epoch_now() - %(keep)s;
