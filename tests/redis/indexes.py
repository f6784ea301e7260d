"""What the Redis key layout promises, checked key by key against the jobs' hashes.

Each waiting or finished job is in exactly one state index (``queue:<q>:<state>``),
the one of its queue and state, and each running or cancelling job is in the lease
set instead; the claim indexes hold exactly the jobs they should (ready: queued;
due: scheduled and retrying); the unique-key map points only at active jobs that
carry the key, and each key's set (``unique:<k>``) holds exactly the stored jobs that
carry it, in any state; no index names a job that does not exist.
"""

from __future__ import annotations

from collections import defaultdict

import redis

from conveyor.job import ACTIVE_STATES, State


def _ready_member(run_at: str, job_id: str) -> str:
    return f"{round(float(run_at) * 1_000_000):016d}{job_id}"


def check_indexes(client: redis.Redis, namespace: str) -> int:
    """Assert the layout's promises for ``namespace``; the number of jobs seen."""
    p = f"{{{namespace}}}:"
    keys = list(client.scan_iter(match=f"{p}job:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    jobs = {k.removeprefix(f"{p}job:"): f for k, f in zip(keys, pipe.execute(), strict=True)}
    queues = sorted(set(client.hkeys(f"{p}queues")) | {j["queue"] for j in jobs.values()})

    listed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    held = {State.RUNNING, State.CANCELLING}
    places = [(q, state.value) for q in queues for state in State if state not in held]
    pipe = client.pipeline(transaction=False)
    for q, state in places:
        pipe.zrange(f"{p}queue:{q}:{state}", 0, -1)
    for place, ids in zip(places, pipe.execute(), strict=True):
        for job_id in ids:
            listed[job_id].append(place)
    for job_id, where in listed.items():
        assert job_id in jobs, f"state index lists {job_id}, which does not exist"
        assert len(where) == 1, f"{job_id} is listed in {where}"
    for job_id, job in jobs.items():
        if State(job["state"]) in held:
            assert job_id not in listed, f"{job_id} ({job['state']}) is in {listed[job_id]}"
            continue
        assert listed.get(job_id) == [(job["queue"], job["state"])], (
            f"{job_id} ({job['queue']}, {job['state']}) is listed in {listed.get(job_id)}"
        )

    def having(*states: State) -> set[str]:
        return {i for i, j in jobs.items() if State(j["state"]) in states}

    ready: dict[str, float] = {}
    due: dict[str, float] = {}
    for q in queues:
        for member, score in client.zrange(f"{p}queue:{q}:ready", 0, -1, withscores=True):
            ready[member[16:]] = score
            job = jobs.get(member[16:])
            assert job is not None and member == _ready_member(job["run_at"], job["id"])
        for job_id, score in client.zrange(f"{p}queue:{q}:due", 0, -1, withscores=True):
            due[job_id] = score
    assert set(ready) == having(State.QUEUED)
    assert all(ready[i] == int(jobs[i]["priority"]) for i in ready)
    assert set(due) == having(State.SCHEDULED, State.RETRYING)
    assert all(abs(due[i] - float(jobs[i]["run_at"])) < 1e-5 for i in due)

    leases = dict(client.zrange(f"{p}leases", 0, -1, withscores=True))
    assert set(leases) == having(*held)
    assert all(abs(leases[i] - float(jobs[i]["lease_until"])) < 1e-5 for i in leases)

    unique = client.hgetall(f"{p}unique")
    for key, job_id in unique.items():
        job = jobs.get(job_id)
        assert job is not None and job.get("unique_key") == key
    for job_id, job in jobs.items():
        if State(job["state"]) in ACTIVE_STATES and job.get("unique_key"):
            assert unique.get(job["unique_key"]) == job_id

    keyed: dict[str, set[str]] = defaultdict(set)
    for job_id, job in jobs.items():
        if job.get("unique_key"):
            keyed[job["unique_key"]].add(job_id)
    sets = list(client.scan_iter(match=f"{p}unique:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in sets:
        pipe.zrange(key, 0, -1)
    found = {
        k.removeprefix(f"{p}unique:"): set(ids) for k, ids in zip(sets, pipe.execute(), strict=True)
    }
    assert found == keyed, "the sets of unique keys do not hold exactly the jobs with the key"
    return len(jobs)
