-- conveyor PostgreSQL schema, version 5: claim() updates the rows it locked by their
-- physical address (ctid), not by id.
--
-- Version 4 locked the picked rows (FOR UPDATE SKIP LOCKED), then found each of them
-- again through the primary key (`id = ANY (...)`): a descent of the index per job. A row
-- locked by this transaction cannot move before it ends, so its ctid, which the lock
-- step answers, is where the UPDATE finds it: a TID scan, no index. Measured on a claim
-- of 100 jobs (the statement alone, alternating with version 4 on one table): 3.18-3.73
-- against 3.49-3.99 ms at the median (docs/benchmarks.md).
--
-- When a picked row was changed and committed by another transaction after this
-- statement's snapshot (it is still waiting, so the lock step follows it to its new
-- version and answers that version's ctid), the UPDATE does not see that version and
-- leaves the row alone: the claim answers one job fewer and the row stays waiting for
-- the next claim; nothing is claimed twice or lost. Version 4 updated the new version.
-- Same signature and answers otherwise; the rows come out in the order of their ctids,
-- not their ids (the backend sorts a claim's jobs itself). Replacing a function takes no
-- lock on the jobs table.

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
