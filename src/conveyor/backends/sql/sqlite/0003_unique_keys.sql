-- conveyor SQLite schema, version 3: the jobs of a unique key in every state, for
-- Backend.find_unique (the HTTP API's Idempotency-Key holds as long as its job is
-- stored, finished or not).
--
-- jobs_unique_key holds only active jobs (it makes a key unique among them), so it
-- cannot find a finished one. This index holds every job that has a unique key, in
-- id order within a key: the newest is its last entry. Jobs without a key stay out,
-- and a change of state does not touch it (SQLite writes an index only when a column
-- it names changes, and unique_key and id never do).

CREATE INDEX IF NOT EXISTS jobs_by_unique_key ON jobs (unique_key, id)
    WHERE unique_key IS NOT NULL;
