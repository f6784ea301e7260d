"""What the dashboard's tests read and do in the store directly (through the API's own
loop), to set a scene and to check what the browser did: never through the dashboard."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from conveyor.backends.base import QueueInfo
from conveyor.job import Job, State
from tests.api.server import RunningApi
from tests.dashboard import tasks

T = TypeVar("T")


def call(api: RunningApi, method: str, *args: Any) -> Any:
    async def run() -> Any:
        return await getattr(await api.app.backend(), method)(*args)

    return api.call(run())


def job(api: RunningApi, job_id: str) -> Job:
    found: Job = call(api, "get", job_id)
    return found


def queue(api: RunningApi, name: str) -> QueueInfo:
    found: list[QueueInfo] = call(api, "list_queues")
    return next(q for q in found if q.name == name)


def enqueue(api: RunningApi, task: Callable[..., Any], *args: Any, **options: Any) -> str:
    """A job of ``task`` (a function of tests.dashboard.tasks) with these options; its id."""
    kwargs = options.pop("kwargs", {})
    handle = api.app.get_task(task).with_options(**options).enqueue(*args, **kwargs)
    return handle.id


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_state(api: RunningApi, job_id: str, state: State, timeout: float = 20) -> Job:
    return wait_for(
        f"job {job_id} {state}",
        lambda: found if (found := job(api, job_id)).state is state else None,
        timeout,
    )


__all__ = ["call", "enqueue", "job", "queue", "tasks", "wait_for", "wait_state"]
