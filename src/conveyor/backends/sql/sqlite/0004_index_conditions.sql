-- conveyor SQLite schema, version 4: the conditions of two partial indexes written
-- as ORs of equalities instead of IN lists; the same indexes, cheaper to keep.
--
-- SQLite checks the condition of every partial index of the table on each INSERT,
-- and on each UPDATE of a column it names (state), for the old row and the new one.
-- A constant IN list of more than two values is checked through a small temporary
-- b-tree that is built once per statement run, and an executemany runs its statement
-- once per row: one such list cost about 1.6 us of the 7.7 us of a job's INSERT in a
-- batch of 1,000 (SQLite 3.40), and twice that on each change of state (claim,
-- finish). Equalities joined by OR are compared in place.
--
-- A query uses a partial index only when its WHERE repeats the index's condition
-- (or a term that implies it): the queries that use these two indexes repeat these
-- ORs word for word.

DROP INDEX IF EXISTS jobs_listing;
CREATE INDEX jobs_listing ON jobs (state, id)
    WHERE (state = 'retrying' OR state = 'succeeded' OR state = 'poisoned'
           OR state = 'cancelled');

DROP INDEX IF EXISTS jobs_unique_key;
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND (state = 'scheduled' OR state = 'queued' OR state = 'running'
           OR state = 'retrying' OR state = 'cancelling');
