"""Redis backend: Resque-class speed, and a claimed job is never only in a worker's memory.

Every state change is one Lua script (``lua/*.lua``, loaded once by SHA, see
:mod:`conveyor.backends.redis_scripts`), so it is atomic and one round trip. A
claimed job stays in the store, in a lease set scored by its lease's end, until
its worker records the outcome (a compare-and-set on the lease holder); a lease
that runs out is recovered by any worker. Every time comes from Redis' ``TIME``.

An idle worker blocks (BLPOP) on its queues' wake-up lists, where each job made
ready leaves a token: one token wakes one worker, and a token waits for a worker
that is not blocked yet, so no wake-up is lost. A job enqueued while a worker
waits is handed to it instead, claimed, on a list of the worker's own that the
same BLPOP watches (``wait_for_jobs``).

Finished jobs are kept for a while and then removed by the scripts that finish
jobs (URL options ``keep_succeeded``, ``keep_failed``), so the store stays bounded
without a sweeper; ``prune`` removes them sooner.

URL: ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS), with
redis-py's options as query parameters and conveyor's own: ``prefix`` (the
namespace, default ``conveyor``; keys are ``{<prefix>}:...``), ``keep_succeeded``
(seconds, default a day; 0 keeps them until pruned), ``keep_failed`` (poisoned and
cancelled jobs, default 30 days), ``max_payload`` (bytes of arguments and metadata
per job, default 1 MiB), ``poll`` (seconds between checks of a watched job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import redis as redis_sync
import redis.asyncio as redis_async
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    ClusterError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.retry import Retry as SyncRetry

from conveyor.backends import redact_url, scrub
from conveyor.backends.base import (
    DEAD_WORKER_S,
    Backend,
    JobFilter,
    JobHead,
    LeaseStatus,
    MinuteCount,
    Page,
    QueueInfo,
    RetriedAll,
    Stats,
    WorkerInfo,
    could_exist,
    delete_refused,
    known_id,
    known_queue,
    matches_nothing,
    unique_key_of,
)
from conveyor.backends.redis_direct import DirectAsyncClient, DirectClient
from conveyor.backends.redis_packing import connection_class
from conveyor.backends.redis_rows import (
    FINISH_WIDTH,
    RELEASE_WIDTH,
    enqueue_calls,
    finish_args,
    first_sending,
    hash_to_job,
    refusal,
    release_args,
    resending,
    save_args,
    values_to_job,
)
from conveyor.backends.redis_scripts import SCRIPTS, Scripts
from conveyor.backends.redis_url import parse_redis_url
from conveyor.backends.rows import dumps, loads, retried_steps, retry_filter
from conveyor.exceptions import (
    BackendUnavailable,
    ConfigError,
    ConveyorError,
    JobNotFound,
    JobStateError,
    QueueNotFound,
    UniqueKeyHeld,
)
from conveyor.forks import ForkGuard
from conveyor.job import FINAL_STATES, STATE_OF, WAITING_STATES, Job, Outcome, State

logger = logging.getLogger("conveyor.backends.redis")

_ALL_STATES = [s.value for s in State]
#: States whose jobs are indexed by the lease set, not by a state index.
_HELD = frozenset({State.RUNNING.value, State.CANCELLING.value})
#: Jobs per enqueue script call: a bigger batch goes as several calls in one
#: MULTI/EXEC (all or nothing, one round trip) so no single script holds the server
#: for long.
_ENQUEUE_CHUNK = 1000
#: Jobs removed per script call by prune and by empty / drop of a queue.
_REMOVE_CHUNK = 1000
#: Errors that mean the server did not answer.
_DOWN = (
    ConnectionError,
    TimeoutError,
    OSError,
    redis_sync.ConnectionError,
    redis_sync.TimeoutError,
    # A Redis Cluster whose nodes do not answer: once the client's look for another node
    # failed, redis-py raises RedisClusterUnreachableError, which is no RedisError (nor is
    # SlotNotCoveredError), or ClusterError after too many redirections. Taken raw, they
    # stopped a worker's loops within seconds of a restart of the cluster.
    RedisClusterException,
    ClusterError,
)
#: Seconds one BLPOP of a waiting worker blocks at most (below the socket timeout).
_BLOCK_S = 2.0


def _block_seconds(socket_timeout: float | None) -> float:
    """Seconds one BLPOP blocks at most with this socket timeout: well below it, or every
    idle wait would end in a timeout of its own connection, taken for Redis gone (a new
    connection per wait, and no hand-off ever reaching the worker)."""
    return _BLOCK_S if socket_timeout is None else min(_BLOCK_S, socket_timeout / 2)


#: Durability warnings already given, per URL (once per process).
_WARNED: set[str] = set()


class RedisBackend(Backend):
    schemes = ("redis", "rediss")

    def __init__(self, url: str) -> None:
        self.url = url
        self.settings = parse_redis_url(url)
        self.where = redact_url(url)
        self.prefix = self.settings.prefix
        self._scripts = Scripts(self.prefix)
        self._block_s = _block_seconds(self.settings.socket_timeout)
        # redis.asyncio.Redis, or RedisCluster with ?cluster=true: both take the same
        # commands here (every key of a namespace is in one slot).
        self._client: Any = None
        self._direct: DirectAsyncClient | None = None
        self._sync_client: Any = None
        self._sync_lock = threading.Lock()
        self._fork = ForkGuard()
        #: Workers registered through this backend: a heartbeat that finds one of them
        #: unknown to Redis means the namespace lost its keys (see heartbeat_worker).
        self._registered: set[str] = set()

    # -- lifecycle -------------------------------------------------------------
    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "decode_responses": True,
            "socket_connect_timeout": self.settings.connect_timeout,
            "socket_keepalive": True,
            "health_check_interval": 10,
        }

    async def open(self) -> None:
        if self._client is not None:
            return
        # No retries inside the client: a script sent again after a lost answer could
        # run twice. The caller (the worker) retries whole operations.
        retry = AsyncRetry(NoBackoff(), 0)
        client: Any
        if self.settings.cluster:
            client = redis_async.RedisCluster.from_url(
                self.settings.url, retry=retry, **self._client_kwargs()
            )
        else:
            client = redis_async.Redis.from_url(
                self.settings.url,
                retry=retry,
                **connection_class(self.settings.url),
                **self._client_kwargs(),
            )
        try:
            await client.ping()
        except AuthenticationError as exc:
            await client.aclose()
            raise BackendUnavailable(
                f"cannot connect to Redis at {self.where}: authentication failed "
                f"({scrub(str(exc), self.url)})"
            ) from None
        except (RedisError, *_DOWN) as exc:
            await client.aclose()
            raise self._no_database(exc) or BackendUnavailable(
                f"cannot connect to Redis at {self.where}: {scrub(str(exc), self.url)}"
            ) from None
        self._client = client
        if not self.settings.cluster:
            self._direct = DirectAsyncClient.from_url(
                self.settings.url, retry=retry, **self._client_kwargs()
            )

    async def warn_about_setup(self) -> None:
        """Warn (once per URL and process) when the server would lose jobs: no
        persistence, or an eviction policy (see docs/redis.md)."""
        if self.url in _WARNED:
            return
        was_open = self._client is not None
        await self.open()
        try:
            async with self._redis() as client:
                config = await _durability_settings(client, self._node(client))
        finally:
            if not was_open:
                await self.close()
        _WARNED.add(self.url)
        for warning in durability_warnings(config):
            logger.warning("Redis at %s: %s", self.where, warning)

    async def close(self) -> None:
        client, self._client = self._client, None
        direct, self._direct = self._direct, None
        if direct is not None:
            await direct.close()
        if client is not None:
            await client.aclose()
        with self._sync_lock:
            sync_client, self._sync_client = self._sync_client, None
            if sync_client is not None:
                sync_client.close()

    async def migrate(self) -> tuple[int, int]:
        """Nothing to create (keys are made as they are needed): checks that the server
        answers, so that ``conveyor migrate`` reports a bad URL or password."""
        was_open = self._client is not None
        await self.open()
        if not was_open:
            await self.close()
        return (0, 0)

    async def now(self) -> float:
        async with self._redis() as client:
            seconds, micros = await client.time(**self._node(client))
        return float(seconds) + float(micros) / 1e6

    # -- plumbing ----------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(f"Redis at {self.where}: {scrub(str(exc), self.url)}")

    def _refused(self, exc: ResponseError) -> BackendUnavailable:
        """The server answered with an error (out of memory, a replica read-only after a
        failover, a failed RDB save): the store's trouble, not the caller's, and not a
        reason for a worker's loops to end (they take BackendUnavailable in their
        stride, a raw driver error stopped them)."""
        return BackendUnavailable(f"Redis at {self.where} refused: {scrub(str(exc), self.url)}")

    def _no_database(self, exc: BaseException) -> ConfigError | None:
        """The URL's mistake, not the server's trouble, when the server has no database
        of the URL's number (its SELECT answers "DB index is out of range")."""
        if not isinstance(exc, ResponseError) or "DB index is out of range" not in str(exc):
            return None
        return ConfigError(
            "url",
            f"Redis at {self.where} has no database {self.settings.db}: a server numbers "
            "its databases from 0 to its `databases` setting less one (0 to 15 by default)",
        )

    def _node(self, client: Any) -> dict[str, Any]:
        """For a command without keys (TIME, INFO, CONFIG): the node of the namespace's
        slot on a cluster."""
        if not self.settings.cluster:
            return {}
        return {"target_nodes": client.get_node_from_key(self._scripts.routing_key)}

    @contextlib.asynccontextmanager
    async def _redis(self, direct: bool = False) -> AsyncIterator[Any]:
        """The client; with ``direct``, for script calls and BLPOP, the connections used
        without redis-py's client layer where there are some (see redis_direct)."""
        client = self._client
        if client is None:
            raise BackendUnavailable(f"Redis backend {self.where} is not open")
        try:
            yield self._direct if direct and self._direct is not None else client
        except ResponseError as exc:
            raise self._refused(exc) from exc
        except _DOWN as exc:
            # After a restart of Redis every idle connection is dead and would fail on
            # its first use, one call at a time: drop them now, the next call connects.
            pool = getattr(client, "connection_pool", None)  # (a cluster client has none)
            if pool is not None:
                with contextlib.suppress(Exception):
                    await pool.disconnect(inuse_connections=False)
            if self._direct is not None:
                await self._direct.close()
            raise self._unavailable(exc) from exc

    async def _call(self, script: str, *argv: Any) -> Any:
        async with self._redis(direct=True) as client:
            return await self._scripts.call(client, script, *argv)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- enqueue -------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        if not jobs:
            return []
        calls = enqueue_calls(jobs, self.settings.max_payload, _ENQUEUE_CHUNK)
        try:
            return await self._enqueue(jobs, first_sending(calls, jobs, _ENQUEUE_CHUNK))
        except BackendUnavailable:
            # Once more, on a new connection: the failed one may have died with a
            # restart of Redis. Safe: a job whose id is stored is not stored again.
            return await self._enqueue(jobs, resending(calls))

    async def enqueue_once(self, job: Job) -> Job:
        unique_key_of(job)
        (call,) = enqueue_calls([job], self.settings.max_payload, _ENQUEUE_CHUNK)
        once = [f"o{call[0]}", *call[1:]]  # enqueue.lua: the key's newest stored job
        try:
            (stored,) = await self._enqueue([job], [once])
        except BackendUnavailable:
            (stored,) = await self._enqueue([job], resending([once]))
        return stored

    async def _enqueue(self, jobs: Sequence[Job], calls: list[list[str]]) -> list[Job]:
        async with self._redis() as client:
            if len(calls) == 1:
                caller = self._direct or client  # (see redis_direct)
                answers = [await self._scripts.call(caller, "enqueue", *calls[0])]
            elif not self.settings.cluster:
                try:
                    answers = await self._enqueue_transaction(client, calls)
                except NoScriptError:
                    # Redis lost its scripts (a restart, a failover, SCRIPT FLUSH). No chunk
                    # ran, as they all name that script: load it and send them again.
                    await client.script_load(SCRIPTS["enqueue"].text)
                    answers = await self._enqueue_transaction(client, calls)
            else:
                # A cluster client pipelines no scripts: chunk after chunk, each atomic.
                # Sent again after a failure, the chunks already stored store nothing
                # twice (their ids exist).
                answers = [await self._scripts.call(client, "enqueue", *call) for call in calls]
            stored, others = _stored(jobs, answers)
            if others:
                pipe = client.pipeline(transaction=False)
                for job_id in others:
                    pipe.hgetall(self._key("job", job_id))
                found = await pipe.execute()
        return _with_others(stored, others, found if others else [])

    async def _enqueue_transaction(self, client: Any, calls: list[list[str]]) -> list[Any]:
        """The enqueue script calls in one MULTI/EXEC."""
        pipe = client.pipeline(transaction=True)
        for call in calls:
            pipe.evalsha(*self._scripts.args("enqueue", *call))
        return list(await pipe.execute())

    def enqueue_blocking(self, jobs: Sequence[Job]) -> list[Job] | None:
        """Enqueue without an event loop, on a connection of its own (sync callers)."""
        if not jobs or len(jobs) > _ENQUEUE_CHUNK:
            return None
        (call,) = enqueue_calls(jobs, self.settings.max_payload, _ENQUEUE_CHUNK)
        self._fork.check(self._forget_parent)
        with self._sync_lock:
            try:
                return self._enqueue_sync(jobs, call)
            except BackendUnavailable:  # once more, as enqueue() does
                (again,) = resending([call])
                return self._enqueue_sync(jobs, again)

    def _forget_parent(self) -> None:
        """In a forked child: a lock held at the fork stays held; a new one (the sync
        connection checks its process for itself, see redis_direct)."""
        self._sync_lock = threading.Lock()

    def _enqueue_sync(self, jobs: Sequence[Job], call: list[str]) -> list[Job]:
        with self._sync() as client:
            answer = self._scripts.call_sync(client, "enqueue", *call)
            stored, others = _stored(jobs, [answer])
            found = [client.hgetall(self._key("job", job_id)) for job_id in others]
        return _with_others(stored, others, found)

    @contextlib.contextmanager
    def _sync(self) -> Iterator[Any]:
        if self._sync_client is None:
            # One connection, without the client layer's cost (see redis_direct); a
            # cluster client routes the commands.
            kind = redis_sync.RedisCluster if self.settings.cluster else DirectClient
            self._sync_client = kind.from_url(
                self.settings.url, retry=SyncRetry(NoBackoff(), 0), **self._client_kwargs()
            )
        try:
            yield self._sync_client
        except ResponseError as exc:
            raise self._no_database(exc) or self._refused(exc) from exc
        except AuthenticationError as exc:
            raise BackendUnavailable(
                f"cannot connect to Redis at {self.where}: authentication failed "
                f"({scrub(str(exc), self.url)})"
            ) from None
        except _DOWN as exc:
            pool = getattr(self._sync_client, "connection_pool", None)
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.disconnect(inuse_connections=False)
            raise self._unavailable(exc) from exc

    # -- claims and outcomes ---------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: float
    ) -> list[Job]:
        if limit <= 0 or not queues:
            return []
        names = list(queues)
        answer = await self._call("claim", worker_id, repr(float(lease)), limit, *names)
        now, lease_until = float(answer[0]), float(answer[1])
        try:
            return [_claimed(values, worker_id, now, lease_until) for values in answer[2:]]
        except _UNREADABLE:
            return _readable(answer[2:], worker_id, now, lease_until)

    async def extend(self, job_ids: Sequence[str], worker_id: str, lease: float) -> LeaseStatus:
        ids = list(job_ids)
        if not ids:
            return LeaseStatus([], [], [])
        states = await self._call("extend", worker_id, repr(float(lease)), *ids)
        held = {i: s for i, s in zip(ids, states, strict=True) if s}
        return LeaseStatus(
            extended=[i for i in ids if i in held],
            cancelling=[i for i in ids if held.get(i) == State.CANCELLING.value],
            lost=[i for i in ids if i not in held],
        )

    async def save(self, job: Job) -> bool:
        updated_at = await self._call("save", *save_args(job))
        if not updated_at:
            return False
        job.version += 1
        job.updated_at = float(updated_at)
        return True

    async def finish(self, items: Sequence[tuple[Job, Outcome]]) -> list[bool]:
        if not items:
            return []
        written = await self._call(
            "finish",
            repr(self.settings.keep_succeeded),
            repr(self.settings.keep_failed),
            repr(float(self.keep_counts)),
            FINISH_WIDTH,
            *finish_args(items),
        )
        return [bool(w) for w in written]

    async def release(self, jobs: Sequence[Job]) -> int:
        if not jobs:
            return 0
        return int(await self._call("release", RELEASE_WIDTH, *release_args(jobs)))

    # -- reading -------------------------------------------------------------------
    async def get(self, job_id: str) -> Job:
        known_id(job_id)
        async with self._redis() as client:
            fields = await client.hgetall(self._key("job", job_id))
        if not fields:
            raise JobNotFound(job_id)
        return hash_to_job(fields)

    async def head(self, job_id: str) -> JobHead:
        known_id(job_id)
        async with self._redis() as client:
            found, version, state, tenant, metadata = await client.hmget(
                self._key("job", job_id), ["id", "version", "state", "tenant", "metadata"]
            )
        if found is None:
            raise JobNotFound(job_id)
        return JobHead(
            found, int(version), State(state), tenant or None, loads(metadata) if metadata else {}
        )

    async def find_unique(self, unique_key: str) -> Job | None:
        fields = await self._call("find_unique", unique_key)
        return hash_to_job(fields) if fields else None

    async def list_jobs(
        self, filter: JobFilter | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page:
        if matches_nothing(filter, cursor):
            return Page([], None)
        wanted = filter or JobFilter()
        states = sorted(s.value for s in (wanted.states or State))
        async with self._redis() as client:
            queues = [wanted.queue] if wanted.queue is not None else await self._queues(client)
            # Waiting and finished jobs: the state indexes, in id order. Running and
            # cancelling ones: the lease set (as many as workers run at once).
            indexes = [self._key("queue", q, s) for q in queues for s in states if s not in _HELD]
            held: list[str] = []
            if any(s in _HELD for s in states):
                held = sorted(await client.zrange(self._key("leases"), 0, -1), reverse=True)
            jobs: list[Job] = []
            after = cursor
            batch = max(limit + 1, 100)
            while len(jobs) <= limit:
                pipe = client.pipeline(transaction=False)
                for index in indexes:
                    pipe.zrevrangebylex(index, f"({after}" if after else "+", "-", 0, batch)
                found = {i for ids in await pipe.execute() for i in ids}
                found.update(i for i in held if after is None or i < after)
                ids = sorted(found, reverse=True)[:batch]
                if not ids:
                    break
                pipe = client.pipeline(transaction=False)
                for job_id in ids:
                    pipe.hgetall(self._key("job", job_id))
                for fields in await pipe.execute():
                    if fields and _matches(fields, wanted, states):
                        jobs.append(hash_to_job(fields))
                after = ids[-1]
                if len(ids) < batch:
                    break
        page = jobs[:limit]
        more = len(jobs) > limit
        return Page(page, page[-1].id if more and page else None)

    # -- changes by hand -------------------------------------------------------------
    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        known_id(job_id)
        fields = await self._call("cancel", job_id, reason)
        if not fields:
            raise JobNotFound(job_id)
        return hash_to_job(fields)

    async def delete(self, job_id: str, states: Sequence[State] | None = None) -> bool:
        if not could_exist(job_id):
            return False
        only = ("any",) if states is None else ("only", *(s.value for s in states))
        answer = await self._call("delete", job_id, *only)
        if isinstance(answer, str):
            raise delete_refused(job_id, answer, states)
        return bool(answer)

    async def retry(self, job_id: str) -> Job:
        known_id(job_id)
        for _ in range(10):
            job = await self.get(job_id)
            if job.state not in (State.POISONED, State.CANCELLED):
                break
            answer = await self._call("retry", job_id, job.version, retried_steps(job))
            if answer[0] == "ok":
                return hash_to_job(answer[1])
            if answer[0] == "missing":
                raise JobNotFound(job_id)
            if answer[0] == "unique":
                raise UniqueKeyHeld(job_id, job.state.value, job.unique_key)
            # "state" or "changed": it moved since it was read; look again
        raise JobStateError(job_id, job.state.value, "retry (only poisoned or cancelled)")

    async def retry_all(self, filter: JobFilter) -> RetriedAll:
        wanted = retry_filter(filter)
        retried = held = 0
        cursor: str | None = None
        while True:
            page = await self.list_jobs(wanted, cursor, 500)
            for job in page.jobs:
                try:
                    await self.retry(job.id)
                except UniqueKeyHeld:
                    held += 1
                    continue
                except (JobStateError, JobNotFound):
                    continue
                retried += 1
            if page.next_cursor is None:
                return RetriedAll(retried, held)
            cursor = page.next_cursor

    async def recover_expired(self) -> list[Job]:
        answer = await self._call("recover", 500, repr(float(self.keep_counts)))
        recovered: list[Job] = []
        for fields in answer:
            try:
                recovered.append(hash_to_job(fields))
            except _UNREADABLE as exc:
                # Recovered all the same; raised, it stopped the worker that recovered it.
                logger.error(
                    "recovered job %s, which could not be read (%s: %s)",
                    fields[fields.index("id") + 1] if "id" in fields else "?",
                    type(exc).__name__,
                    exc,
                )
        return recovered

    async def prune(self, before: float, states: Sequence[State] | None = None) -> int:
        wanted = [s.value for s in (states or FINAL_STATES) if s in FINAL_STATES]
        async with self._redis() as client:
            queues = await self._queues(client)
        total = 0
        for queue in queues:
            for state in wanted:
                after = "-"
                while after:  # the script answers the last id it looked at, '' at the end
                    count, after = await self._call(
                        "prune", f"{before:.6f}", _REMOVE_CHUNK, queue, state, after
                    )
                    total += int(count)
        return total

    # -- queues -------------------------------------------------------------------
    async def _queues(self, client: Any) -> list[str]:
        """The names of every queue that may hold jobs: those with their entry, and those
        dropped while some of their jobs ran, which exist by their jobs (see
        queue_jobs.lua)."""
        pipe = client.pipeline(transaction=False)
        pipe.hkeys(self._key("queues"))
        pipe.smembers(self._key("dropped"))
        named, dropped = await pipe.execute()
        return sorted(set(map(str, named)) | set(map(str, dropped)))

    async def create_queue(self, name: str) -> None:
        async with self._redis() as client:
            seconds, micros = await client.time(**self._node(client))
            await client.hsetnx(self._key("queues"), name, f"{seconds + micros / 1e6:.6f}")

    async def _set_paused(self, name: str, paused: bool) -> None:
        if not await self._call("queue_paused", name, "1" if paused else "0"):
            raise QueueNotFound(name)

    async def pause_queue(self, name: str) -> None:
        known_queue(name)
        await self._set_paused(name, True)

    async def resume_queue(self, name: str) -> None:
        known_queue(name)
        await self._set_paused(name, False)

    async def _remove_from_queue(self, name: str, mode: str, states: Sequence[State]) -> int:
        total = 0
        while True:
            removed = int(
                await self._call(
                    "queue_jobs", name, mode, _REMOVE_CHUNK, *(s.value for s in states)
                )
            )
            if removed < 0:
                raise QueueNotFound(name)
            total += removed
            if removed < _REMOVE_CHUNK:
                return total

    async def empty_queue(self, name: str) -> int:
        known_queue(name)
        return await self._remove_from_queue(name, "empty", sorted(WAITING_STATES))

    async def drop_queue(self, name: str) -> int:
        known_queue(name)
        kept = (State.RUNNING, State.CANCELLING)
        return await self._remove_from_queue(name, "drop", [s for s in State if s not in kept])

    async def list_queues(self) -> list[QueueInfo]:
        rows = await self._call("queues", *_ALL_STATES)
        return sorted(
            (
                QueueInfo(
                    name,
                    bool(paused),
                    dict(zip(_ALL_STATES, (int(n) for n in counts), strict=True)),
                    float(created_at),
                )
                for name, created_at, paused, *counts in rows
            ),
            key=lambda q: q.name,
        )

    # -- workers and counters -------------------------------------------------
    async def register_worker(self, worker: WorkerInfo) -> None:
        await self._beat(worker)
        self._registered.add(worker.id)

    async def heartbeat_worker(self, worker: WorkerInfo) -> None:
        previous = worker.heartbeat_at
        if not await self._beat(worker) or worker.id not in self._registered:
            return
        if previous and worker.heartbeat_at - previous > DEAD_WORKER_S:
            # Silent that long (cut off, stopped), it was removed by the live workers.
            logger.warning(
                "worker %s registered again after %.0f s without a heartbeat",
                worker.id,
                worker.heartbeat_at - previous,
            )
        else:
            # Only this worker's unregistering removes its start (or other workers', after
            # DEAD_WORKER_S of silence): the namespace lost its keys. Said once per loss
            # (the heartbeat wrote the start again).
            logger.error(
                "Redis at %s lost this namespace's data: the registration of worker %s is "
                "gone (a restart of Redis that lost its last writes, a FLUSHALL or FLUSHDB, "
                "or keys evicted). What was stored since Redis last saved it is gone "
                "(without persistence, or after a flush: every job); the jobs running here "
                "end with their leases lost and no outcome recorded. Run Redis with "
                "`appendonly yes` and `maxmemory-policy noeviction` (see docs/redis.md)",
                self.where,
                worker.id,
            )

    async def _beat(self, worker: WorkerInfo) -> bool:
        """Write the worker's heartbeat; whether its start time was missing."""
        doc = worker.to_dict()
        del doc["started_at"], doc["heartbeat_at"]
        started, beat, fresh = await self._call("heartbeat", worker.id, dumps(doc))
        worker.started_at, worker.heartbeat_at = float(started), float(beat)
        return bool(int(fresh))

    async def unregister_worker(self, worker_id: str) -> None:
        self._registered.discard(worker_id)
        # A job handed to the worker after its last wait is given back first.
        await self._call("unpark", worker_id, "0")
        async with self._redis() as client:
            pipe = client.pipeline(transaction=True)
            pipe.hdel(self._key("workers"), worker_id)
            pipe.hdel(self._key("workers", "started"), worker_id)
            await pipe.execute()

    async def forget_worker(self, worker_id: str, silent_before: float) -> bool:
        if not int(await self._call("forget_worker", worker_id, repr(silent_before))):
            return False
        self._registered.discard(worker_id)
        await self._call("unpark", worker_id, "0")  # what was handed to it goes back
        return True

    async def list_workers(self) -> list[WorkerInfo]:
        async with self._redis() as client:
            docs = await client.hvals(self._key("workers"))
        workers = [WorkerInfo(**loads(doc)) for doc in docs]
        return sorted(workers, key=lambda w: (w.started_at, w.id))

    async def stats(self) -> Stats:
        queues = await self.list_queues()
        async with self._redis() as client:
            counters = await client.hgetall(self._key("counters"))
            info = await client.info(**self._node(client))
        counts = dict.fromkeys(_ALL_STATES, 0)
        for queue in queues:
            for state, n in queue.counts.items():
                counts[state] += n
        return Stats(
            processed=int(counters.get("processed", 0)),
            failed=int(counters.get("failed", 0)),
            counts=counts,
            store={
                "backend": "redis",
                "url": self.where,
                "prefix": self.prefix,
                "server_version": info.get("redis_version"),
                "used_memory_bytes": info.get("used_memory"),
                "appendonly": bool(info.get("aof_enabled")),
                "maxmemory_policy": info.get("maxmemory_policy"),
            },
        )

    # -- counts per minute --------------------------------------------------------
    async def minute_counts(self, since: float, queue: str | None = None) -> list[MinuteCount]:
        rows = await self._call(
            "minutes", repr(float(since)), repr(float(self.keep_counts)), queue or ""
        )
        counts = [
            MinuteCount(float(m), q, int(p), int(f), int(d) if d != "" else None)
            for m, q, p, f, d in rows
        ]
        counts.sort(key=lambda c: (c.minute, c.queue))  # Lua orders names by locale
        return counts

    async def sample_depth(self) -> None:
        await self._call("depth", repr(float(self.keep_counts)))

    # -- wake-ups -----------------------------------------------------------------
    async def wait(self, queues: Sequence[str], timeout: float) -> bool:
        """Block on the queues' wake-up lists (BLPOP): each job made ready leaves a
        token there, and each token wakes one waiting worker. Tokens stay until taken,
        so none is missed between a claim and the wait that follows, nor while a
        connection was down."""
        woke, _ = await self._wait(list(queues), timeout)
        return woke

    async def wait_for_jobs(
        self, queues: Sequence[str], worker_id: str, lease: float, timeout: float
    ) -> tuple[bool, list[Job]]:
        """``wait``, and the worker is registered for hand-offs: a job enqueued while it
        blocks comes claimed, in the answer to its BLPOP (on its own hand-off list),
        instead of as a token to claim after. A cancelled wait gives back what it was
        handed (see ``_leave``)."""
        return await self._wait(list(queues), timeout, (worker_id, lease))

    async def _wait(
        self, names: list[str], timeout: float, waiter: tuple[str, float] | None = None
    ) -> tuple[bool, list[Job]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        worker, lease = waiter or ("", 0.0)
        keys = [self._key("wake", q) for q in names]
        if worker:
            keys.insert(0, self._key("handoff", worker))  # BLPOP takes the first non-empty
        pop: asyncio.Future[Any] | None = None
        try:
            try:
                ready, next_due, now = await self._call(
                    "ready", worker, repr(float(lease)), repr(float(timeout)), *names
                )
            except BackendUnavailable:
                await asyncio.sleep(min(_BLOCK_S / 2, timeout))
                return True, []
            if int(ready):
                return True, []
            # No longer than until the next scheduled or retrying job is due: the claim
            # that follows makes it ready.
            if next_due:
                deadline = min(deadline, loop.time() + max(0.005, float(next_due) - float(now)))
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return False, []
                # Blocks a connection of its own; in steps shorter than the socket timeout
                # and at least 10 ms (a timeout that rounds to 0 ms blocks for ever).
                async with self._redis(direct=True) as client:
                    # Shielded: a cancelled wait first stops the BLPOP by a push, so that
                    # a job it pops is not lost with its connection (_leave).
                    pop = asyncio.ensure_future(
                        client.blpop(keys, timeout=min(max(left, 0.01), self._block_s))
                    )
                    popped = await asyncio.shield(pop)
                    pop = None
                if popped:
                    return True, self._handed(popped, worker)
        except BackendUnavailable:
            # Redis is away: poll. The caller's claim says so, and backs off.
            await asyncio.sleep(min(_BLOCK_S / 2, max(deadline - loop.time(), 0.0)))
            return True, []
        except asyncio.CancelledError:
            if worker:
                await self._leave(worker, pop)
            raise

    def _handed(self, popped: Sequence[str], worker: str) -> list[Job]:
        """The job in a BLPOP's answer if it came from the worker's hand-off list."""
        key, value = popped
        if not worker or key != self._key("handoff", worker) or value == "stop":
            return []
        now, lease_until, values = loads(value)
        # cjson writes a field the hash does not have as false
        fields = [None if v is False else v for v in values]
        return _readable([fields], worker, float(now), float(lease_until))

    async def _leave(self, worker: str, pop: asyncio.Future[Any] | None) -> None:
        """A cancelled wait's way out: the registration goes, and every job handed to
        the worker is given back, one in a BLPOP's answer on its way here too (a
        'stop' pushed to the list ends a BLPOP still blocked)."""
        try:
            await self._call("unpark", worker, "0" if pop is None else "1")
            if pop is not None:
                popped = await asyncio.wait_for(pop, _BLOCK_S)
                taken = self._handed(popped, worker) if popped else []
                if taken:
                    await self._call("unpark", worker, "0", taken[0].id)
        except (ConveyorError, RedisError, *_DOWN) as exc:
            # The registration lapses with the wait's timeout; a job handed over
            # meanwhile is given back when its lease runs out (recover.lua).
            logger.warning("worker %s left its wait without a word to Redis: %s", worker, exc)
        finally:
            if pop is not None:
                if pop.done():
                    if not pop.cancelled():
                        pop.exception()  # retrieved: asyncio would log it as lost
                else:
                    pop.cancel()

    async def watch(self, job_id: str, version: int, timeout: float) -> Job | None:
        known_id(job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        key = self._key("job", job_id)
        while True:
            async with self._redis() as client:
                current = await client.hget(key, "version")
            if current is None:
                raise JobNotFound(job_id)
            if int(current) > version:
                return await self.get(job_id)
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(self.settings.poll, left))


# -- helpers ---------------------------------------------------------------------------
def _claimed(values: Sequence[Any], worker_id: str, now: float, lease_until: float) -> Job:
    """A job from a claim's answer: its fields before the claim, with what the claim
    changed applied (the script sends the fields before, which saves it a read)."""
    job = values_to_job(values)
    job.state = State.RUNNING
    job.worker_id = worker_id
    job.lease_until = lease_until
    job.attempts += 1
    job.version += 1
    job.updated_at = now
    if job.started_at is None:
        job.started_at = now
    return job


#: What reading a job may raise for a job this process cannot read: JSON nested deeper
#: than its json module goes (Python 3.13 writes 9,997 levels, 3.11 reads fewer than
#: 1,000), or fields an other version of conveyor wrote.
_UNREADABLE = (ValueError, TypeError, KeyError, RecursionError)


def _readable(
    rows: Sequence[Sequence[Any]], worker_id: str, now: float, lease_until: float
) -> list[Job]:
    """The jobs of a claim's answer that this process can read. One it cannot stays
    claimed here and runs out its lease (then it runs again elsewhere, an attempt
    spent, or ends poisoned): raised, it lost the rest of the batch, claimed, with the
    worker it stopped."""
    jobs: list[Job] = []
    for values in rows:
        try:
            jobs.append(_claimed(values, worker_id, now, lease_until))
        except _UNREADABLE as exc:
            logger.error(
                "job %s could not be read (%s: %s): left to its lease, after which it runs "
                "again where it can be read, or ends poisoned",
                values[0],
                type(exc).__name__,
                exc,
            )
    return jobs


def _stored(
    jobs: Sequence[Job], answers: Sequence[Sequence[str]]
) -> tuple[list[Job | None], list[str]]:
    """What enqueue.lua answered, per job: the job stamped as stored, or None and
    the id of the job returned in its place (in ``others``)."""
    refused = refusal(answers)
    if refused is not None:
        raise refused
    stored: list[Job | None] = []
    others: list[str] = []
    index = 0
    for answer in answers:
        now = float(answer[0])
        for state in answer[1:]:
            job = jobs[index]
            index += 1
            if state.startswith("="):
                stored.append(None)
                others.append(state[1:])
                continue
            job.created_at = job.updated_at = now
            if not job.run_at:
                job.run_at = now
            job.state = STATE_OF[state]  # a dict look-up: State(state) took 0.2 us a job
            job.version = 1
            stored.append(job)
    return stored, others


def _with_others(
    stored: list[Job | None], others: list[str], found: Sequence[Mapping[Any, Any]]
) -> list[Job]:
    """The answer of enqueue: the stored jobs, and in place of the others the jobs
    that hold their unique keys (or ids), as they are now."""
    replacements = iter(zip(others, found, strict=True))
    result: list[Job] = []
    for job in stored:
        if job is None:
            job_id, fields = next(replacements)
            if not fields:  # finished and removed in the meantime
                raise JobNotFound(job_id)
            job = hash_to_job(fields)
        result.append(job)
    return result


def _matches(fields: Mapping[Any, Any], wanted: JobFilter, states: Sequence[str]) -> bool:
    """Whether a job (its hash) passes the filter; its state may have moved since the
    index was read."""
    return (
        fields.get("state") in states
        and (wanted.queue is None or fields.get("queue") == wanted.queue)
        and (wanted.task is None or fields.get("task") == wanted.task)
        and (wanted.tenant is None or fields.get("tenant") == wanted.tenant)
    )


async def _durability_settings(client: Any, node: dict[str, Any]) -> dict[str, str]:
    """appendonly, save and maxmemory-policy, from CONFIG GET or (where CONFIG is
    refused, as on managed services) from INFO."""
    try:
        found = await client.config_get("appendonly", "save", "maxmemory-policy", **node)
        return {str(key): str(value) for key, value in found.items()}
    except ResponseError:
        info = await client.info("persistence", **node)
        memory = await client.info("memory", **node)
        # INFO does not tell whether RDB snapshots are configured.
        return {
            "appendonly": "yes" if info.get("aof_enabled") else "no",
            "save": "unknown",
            "maxmemory-policy": str(memory.get("maxmemory_policy", "")),
        }


def durability_warnings(config: dict[str, str]) -> list[str]:
    """What a Redis with these settings risks losing, one sentence per risk."""
    warnings: list[str] = []
    save = config.get("save", "").strip()
    if config.get("appendonly", "no") != "yes":
        if not save:
            warnings.append(
                "no persistence (appendonly no, no RDB snapshots): a restart of Redis loses "
                "every job, queued or finished; set `appendonly yes` (see docs/redis.md)"
            )
        elif save == "unknown":
            warnings.append(
                "appendonly is off (and CONFIG is disabled, so RDB snapshots cannot be "
                "checked): a restart of Redis loses at least the jobs since the last "
                "snapshot; set `appendonly yes` (see docs/redis.md)"
            )
    policy = config.get("maxmemory-policy", "noeviction")
    if policy and policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy!r}: when memory runs out Redis evicts keys, "
            "that is jobs and their indexes; use `maxmemory-policy noeviction`"
        )
    return warnings
