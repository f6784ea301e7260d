-- conveyor PostgreSQL schema, version 6: hand-offs. A job enqueued while a worker
-- waits for work goes to that worker already claimed, in the notification that wakes
-- it, instead of waking every listening worker to race for it with a claim each: the
-- claim's round trip leaves the path from an enqueue to the job's start (W3).
--
-- waiters: a worker waiting on its queues registers here for `until` (the end of its
-- wait, by the database clock), with the lease a job handed to it gets, the channel
-- its process listens on and a token of the wait. While workers wait, a single
-- enqueue through conveyor's own connection that makes a job ready now (no unique
-- key) takes the registration waiting longest for the job's queue (FOR UPDATE SKIP
-- LOCKED), stores the job running for that worker, marks the registration with the
-- job's id (one job per wait) and sends [token, row] to the worker's channel. Never
-- past a job ready in a queue the worker lists before this one, nor into a paused
-- queue (queries.sql: insert_job_hand_off).
--
-- The registration marked with a job is the hand-off's record until the worker's next
-- claim deletes it: the claim that follows every wait, which also answers the job when
-- the notification did not bring it in time (after the wait ended, or lost with the
-- listening connection). A registration that still holds a job means the worker has
-- not claimed since: a worker that stops gives the job back (unpark_waiter,
-- give_back_handed), and so does lease recovery for one that died waiting
-- (recover_expired), with no attempt spent. That worker may also have died
-- after the notification brought the job, before its claim; but only a new job is
-- handed over, so a job is given back that way once at most, and a job that kills its
-- worker still runs out of attempts. Unlogged:
-- registrations live for a wait; after a crash of the server they are gone, and a job
-- handed just before is recovered with its lease like any running job.
--
-- claim() now starts by deleting the worker's registration; otherwise the same.

CREATE UNLOGGED TABLE {schema}.waiters (
    worker_id  text COLLATE "C" PRIMARY KEY,
    queues     text[] NOT NULL,
    channel    text NOT NULL,
    token      text NOT NULL,
    lease      double precision NOT NULL,
    until      double precision NOT NULL,
    since      double precision NOT NULL,
    job_id     text COLLATE "C"
);

CREATE OR REPLACE FUNCTION {schema}.claim(p_queues text[], p_worker text, p_limit integer,
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
    v_taken integer;
    v_handed text;
BEGIN
    -- A claim does not wait for its WAL flush (this transaction only; see version 1).
    PERFORM set_config('synchronous_commit', 'off', true);
    -- The worker waits no longer: no job is handed to it from here on. One handed to
    -- it before is answered with the claimed ones (the worker drops it when its
    -- notification brought it already).
    DELETE FROM {schema}.waiters WHERE worker_id = p_worker RETURNING job_id INTO v_handed;
    IF v_handed IS NOT NULL THEN
        RETURN QUERY SELECT * FROM {schema}.jobs
                     WHERE id = v_handed AND worker_id = p_worker
                       AND state IN ('running', 'cancelling');
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        v_left := v_left - v_taken;
    END IF;
    WITH due AS MATERIALIZED (
        SELECT ctid FROM {schema}.jobs
        WHERE state IN ('scheduled', 'retrying') AND run_at <= v_now
        ORDER BY run_at
        LIMIT 1000
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {schema}.jobs j
    SET state = 'queued', version = j.version + 1, updated_at = v_now
    WHERE j.ctid = ANY (ARRAY(SELECT ctid FROM due));

    FOR i IN 1 .. coalesce(array_length(p_queues, 1), 0) LOOP
        v_queue := p_queues[i];
        CONTINUE WHEN EXISTS (SELECT 1 FROM {schema}.queues WHERE name = v_queue AND paused);
        -- Two statements, not one with "p_after_id[i] IS NULL OR (...) > (...)": the
        -- plan PL/pgSQL caches must be able to start the index scan at `after`.
        IF p_after_id[i] IS NULL THEN
            RETURN QUERY
                WITH picked AS (
                    SELECT ctid FROM {schema}.jobs
                    WHERE queue = v_queue AND state = 'queued'
                    ORDER BY priority, run_at, id
                    LIMIT v_left
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE {schema}.jobs j
                SET state = 'running', attempts = j.attempts + 1, worker_id = p_worker,
                    lease_until = v_now + p_lease, started_at = coalesce(j.started_at, v_now),
                    version = j.version + 1, updated_at = v_now
                WHERE j.ctid = ANY (ARRAY(SELECT ctid FROM picked))
                RETURNING j.*;
        ELSE
            RETURN QUERY
                WITH picked AS (
                    SELECT ctid FROM {schema}.jobs
                    WHERE queue = v_queue AND state = 'queued'
                      AND (priority, run_at, id) > (p_after_priority[i], p_after_run_at[i],
                                                    p_after_id[i])
                    ORDER BY priority, run_at, id
                    LIMIT v_left
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE {schema}.jobs j
                SET state = 'running', attempts = j.attempts + 1, worker_id = p_worker,
                    lease_until = v_now + p_lease, started_at = coalesce(j.started_at, v_now),
                    version = j.version + 1, updated_at = v_now
                WHERE j.ctid = ANY (ARRAY(SELECT ctid FROM picked))
                RETURNING j.*;
        END IF;
        -- RETURN QUERY sets ROW_COUNT to the rows it added.
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        v_left := v_left - v_taken;
        EXIT WHEN v_left <= 0;
    END LOOP;
END
$$;
