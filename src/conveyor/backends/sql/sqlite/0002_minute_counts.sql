-- conveyor SQLite schema, version 2: counts per queue and minute, for the dashboard's
-- throughput and queue-depth chart (Backend.minute_counts).
--
-- finish and recover_expired add the runs they end to the row of the current minute
-- (one upsert per queue and batch, in the transaction that writes the outcomes);
-- sample_depth sets `depth` (queued jobs) once a minute and deletes the rows older
-- than the backend's keep_counts (25 hours by default), as prune does. Rows are few
-- (queues x minutes kept), ordered by minute for the reads (since ...) and deletes.

CREATE TABLE IF NOT EXISTS minute_counts (
    minute     INTEGER NOT NULL,  -- start of the minute, epoch seconds (a multiple of 60)
    queue      TEXT NOT NULL,
    processed  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    depth      INTEGER,           -- NULL: not sampled in that minute
    PRIMARY KEY (minute, queue)
) WITHOUT ROWID;
