-- conveyor PostgreSQL schema, version 2: counts per queue and minute, for the
-- dashboard's throughput and queue-depth chart (Backend.minute_counts).
--
-- finish_batch and recover_expired add the runs they end to the current minute, in
-- the statement that writes the outcomes: one upsert per queue and batch, into the
-- worker's shard (the shard of its counters rows), so that workers finishing jobs
-- of one queue at once do not queue on one row lock. sample_depth writes `depth`
-- (queued jobs) into shard 0 once a minute and deletes the minutes older than the
-- backend's keep_counts (25 hours by default), as prune does. A read sums the shards.

CREATE TABLE {schema}.minute_counts (
    minute     bigint NOT NULL,   -- start of the minute, epoch seconds (a multiple of 60)
    queue      text COLLATE "C" NOT NULL,
    shard      integer NOT NULL,
    processed  bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0,
    depth      bigint,            -- NULL: not sampled (always NULL outside shard 0)
    PRIMARY KEY (minute, queue, shard)
);
