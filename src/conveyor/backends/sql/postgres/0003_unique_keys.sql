-- conveyor PostgreSQL schema, version 3: the jobs of a unique key in every state, for
-- Backend.find_unique (the HTTP API's Idempotency-Key holds as long as its job is
-- stored, finished or not).
--
-- jobs_unique_key holds only active jobs (it makes a key unique among them), so it
-- cannot find a finished one. This index holds every job that has a unique key, in
-- id order within a key: the newest is its last entry. Jobs without a key stay out.
-- Its columns never change, so progress writes stay heap-only (HOT) as before.
-- Building it reads the whole jobs table and holds back writes to it meanwhile
-- (`conveyor migrate` runs in one transaction): see docs/postgres.md.

CREATE INDEX jobs_by_unique_key ON {schema}.jobs (unique_key, id)
    WHERE unique_key IS NOT NULL;
