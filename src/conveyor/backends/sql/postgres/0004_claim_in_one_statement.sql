-- conveyor PostgreSQL schema, version 4: claim() picks and updates a queue's jobs in
-- one statement.
--
-- Version 1 selected a queue's ids (FOR UPDATE SKIP LOCKED) into an array, then
-- updated them by that array: two statements per queue, and PL/pgSQL's executor
-- start-up for each. A claim after 20 ms of idleness is the pickup latency of a
-- worker that was waiting (W3); measured on this schema's claim of one job through a
-- connection of its own: 969 us (version 3) against 741 (docs/benchmarks.md).
-- Same signature, same answers, same order; see 0001_initial.sql for what `after`
-- is for. Replacing a function takes no lock on the jobs table.

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
BEGIN
    -- A claim does not wait for its WAL flush (this transaction only; see version 1).
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
        -- Two statements, not one with "p_after_id[i] IS NULL OR (...) > (...)": the
        -- plan PL/pgSQL caches must be able to start the index scan at `after`.
        IF p_after_id[i] IS NULL THEN
            RETURN QUERY
                WITH picked AS (
                    SELECT id FROM {schema}.jobs
                    WHERE queue = v_queue AND state = 'queued'
                    ORDER BY priority, run_at, id
                    LIMIT v_left
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE {schema}.jobs j
                SET state = 'running', attempts = j.attempts + 1, worker_id = p_worker,
                    lease_until = v_now + p_lease, started_at = coalesce(j.started_at, v_now),
                    version = j.version + 1, updated_at = v_now
                WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
                RETURNING j.*;
        ELSE
            RETURN QUERY
                WITH picked AS (
                    SELECT id FROM {schema}.jobs
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
                WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
                RETURNING j.*;
        END IF;
        -- RETURN QUERY sets ROW_COUNT to the rows it added.
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        v_left := v_left - v_taken;
        EXIT WHEN v_left <= 0;
    END LOOP;
END
$$;
