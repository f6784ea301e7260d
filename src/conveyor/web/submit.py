"""From a validated ``POST /v1/jobs`` body to the :class:`Job` that is stored.

The checks that span fields live here: unique step names, placeholders that
name earlier steps, destinations the SSRF guard refuses (when the URL's host is
known at submit time), ``delay`` with ``run_at``, ``credentials`` with
``token``. Each problem carries a JSON pointer; any problem and nothing is stored.

What the API keeps about a job for itself sits in ``metadata["conveyor.http"]``
and never leaves the API (see :func:`conveyor.web.documents.public_metadata`):
``read`` (the read token), ``request`` (a digest of the body, for
``Idempotency-Key``), ``auth`` (the ``Authorization`` value for the steps,
sealed by :class:`~conveyor.secrets.SecretBox`) and ``callback``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from conveyor.job import Job, Step, new_job_id
from conveyor.steps import templates
from conveyor.steps.guard import BlockedDestination
from conveyor.storable import problem
from conveyor.web.auth import Principal, new_read_token
from conveyor.web.documents import PRIVATE
from conveyor.web.models import JobIn, StepIn
from conveyor.web.problems import Problem, field_error
from conveyor.web.settings import ApiSettings

_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")


def request_digest(body: Any) -> str:
    """The same JSON body, however its keys are ordered or spaced, has one digest."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def unstorable(body: Any, location: list[str | int] | None = None) -> list[dict[str, Any]]:
    """A problem ``errors`` entry for each string of the body (key or value) that some
    store cannot keep: a NUL character, a lone surrogate (see conveyor.storable)."""
    location = location or []
    if isinstance(body, str):
        why = problem(body)
        return [] if why is None else [field_error(location, why)]
    errors: list[dict[str, Any]] = []
    if isinstance(body, dict):
        for key, value in body.items():
            why = problem(key)
            if why is not None:
                errors.append(field_error([*location, key], f"the key {why}"))
            errors += unstorable(value, [*location, key])
    elif isinstance(body, list):
        for index, value in enumerate(body):
            errors += unstorable(value, [*location, index])
    return errors


def check(spec: JobIn, settings: ApiSettings) -> list[dict[str, Any]]:
    """Every cross-field problem of a job, as problem ``errors`` entries."""
    errors: list[dict[str, Any]] = []
    if len(spec.steps) > settings.max_steps:
        errors.append(
            field_error(["steps"], f"at most {settings.max_steps} steps, got {len(spec.steps)}")
        )
    seen: set[str] = set()
    for index, step in enumerate(spec.steps):
        if step.name in seen:
            errors.append(
                field_error(["steps", index, "name"], f"duplicate step name {step.name!r}")
            )
        seen.add(step.name)
        errors += _destination(step, index, settings)
    raw_steps = [
        step.model_dump(include={"name", "url", "headers", "query", "body"}) for step in spec.steps
    ]
    errors += [
        {"pointer": where, "detail": what} for where, what in templates.check_steps(raw_steps)
    ]
    if spec.delay is not None and spec.run_at is not None:
        errors.append(field_error(["run_at"], "give delay or run_at, not both"))
    if spec.credentials is not None and spec.token is not None:
        errors.append(field_error(["token"], "give credentials or token, not both"))
    if spec.credentials is not None or spec.token is not None:
        for index, step in enumerate(spec.steps):
            if any(name.lower() == "authorization" for name in step.headers):
                errors.append(
                    field_error(
                        ["steps", index, "headers", "Authorization"],
                        "the job's credentials or token already set Authorization",
                    )
                )
    if spec.callback is not None:
        errors += _guarded(spec.callback, ["callback"], settings)
    return errors


def _destination(step: StepIn, index: int, settings: ApiSettings) -> list[dict[str, Any]]:
    # A placeholder before the path makes the host unknown until the step runs: the
    # guard then judges it at connect time, and a refusal fails the step instead.
    head = step.url.split("/", 3)[:3]
    if any("{{" in part for part in head):
        return []
    # Placeholders later in the URL stand for path or query text: judge the rest.
    return _guarded(_PLACEHOLDER.sub("x", step.url), ["steps", index, "url"], settings)


def _guarded(url: str, location: list[str | int], settings: ApiSettings) -> list[dict[str, Any]]:
    try:
        settings.guard.check_url(url)
    except BlockedDestination as exc:
        return [field_error(location, str(exc))]
    except ValueError as exc:
        return [field_error(location, str(exc))]
    return []


def build_job(
    spec: JobIn,
    principal: Principal,
    settings: ApiSettings,
    *,
    digest: str,
    idempotency_key: str | None,
    now: float,
) -> tuple[Job, str]:
    """The job to store and its read token."""
    token = new_read_token()
    private: dict[str, Any] = {"read": token, "request": digest}
    if spec.credentials is not None:
        private["auth"] = settings.secrets.seal("Basic " + spec.credentials)
    elif spec.token is not None:
        private["auth"] = settings.secrets.seal("Bearer " + spec.token)
    if spec.callback is not None:
        private["callback"] = spec.callback
    steps = [Step(name=step.name, kind="http", request=_request(step)) for step in spec.steps]
    if spec.run_at is not None:
        run_at = spec.run_at.timestamp()
    elif spec.delay:
        run_at = now + spec.delay
    else:
        run_at = 0.0
    job = Job(
        id=new_job_id(),
        queue=spec.queue or settings.default_queue,
        steps=steps,
        priority=int(spec.priority),
        run_at=run_at,
        # Each step counts its own attempts; the job's bound only stops a job that
        # keeps killing its workers.
        max_attempts=sum(step.max_attempts for step in spec.steps),
        unique_key=_unique_key(principal, idempotency_key),
        metadata={**spec.metadata, PRIVATE: private},
        tenant=principal.tenant,
    )
    return job, token


def _unique_key(principal: Principal, idempotency_key: str | None) -> str | None:
    if idempotency_key is None:
        return None
    owner = principal.tenant if principal.tenant is not None else "_admin"
    return f"idempotency:{owner}:{idempotency_key}"


def _request(step: StepIn) -> dict[str, Any]:
    request: dict[str, Any] = {
        "method": step.method,
        "url": step.url,
        "headers": step.headers,
        "query": {key: _query_value(value) for key, value in step.query.items()},
        "timeout": step.timeout,
        "expect": step.expect,
        "max_attempts": step.max_attempts,
        "retry_exponent": step.retry_exponent,
    }
    if step.body is not None:
        request["body"] = step.body
    return request


def _query_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def same_request(job: Job, digest: str) -> bool:
    private = job.metadata.get(PRIVATE)
    return isinstance(private, dict) and private.get("request") == digest


def reject(errors: list[dict[str, Any]]) -> Problem:
    count = len(errors)
    return Problem(422, f"the job has {count} problem{'s' if count > 1 else ''}", errors)
