"""Large batches go to PostgreSQL as COPY text written by conveyor
(conveyor.backends.postgres_copy): the server must read from it exactly the rows
psycopg's own row writer sends, for any job, and a user gets back what was enqueued."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import Conveyor, Priority, State
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres_copy import CHUNK, COLUMNS, copy_chunks, escape
from conveyor.backends.postgres_enqueue import COPY_MIN
from conveyor.backends.rows import prepare_insert
from conveyor.job import RetryPolicy
from tests.pg import fresh_schema, libpq_url, server_url
from tests.strategies import json_values

app = Conveyor(server_url())  # makes jobs here; stores none


@app.task(name="plain")
def plain(*args: object, **kwargs: object) -> None: ...


# PostgreSQL's text and jsonb hold no NUL, and UTF-8 no lone surrogate; anything else
# goes (tabs, newlines, backslashes).
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


def storable(value: object) -> bool:
    text = json.dumps(value, ensure_ascii=False)
    return "\\u0000" not in text and text.encode(errors="replace").decode() == text


json_text = json_values.filter(storable)
queues = st.text(
    st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs")), min_size=1
).filter(
    lambda q: "," not in q and not any(c.isspace() or c < " " or "\x7f" <= c <= "\x9f" for c in q)
)
options = st.fixed_dictionaries(
    {},
    optional={
        "queue": queues,
        "priority": st.sampled_from(list(Priority)) | st.integers(-(2**31), 2**31 - 1),
        "delay": st.floats(0, 3600),
        "max_attempts": st.integers(1, 1_000_000),
        "retry": st.builds(RetryPolicy, base=st.floats(0, 10), exponent=st.floats(1, 5)),
        "timeout": st.integers(1, 3600) | st.floats(0.001, 3600),
        "metadata": st.dictionaries(text, json_text, max_size=3),
    },
)


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection]:
    with fresh_schema() as url, psycopg.connect(libpq_url(url), autocommit=True) as conn:
        schema = PostgresBackend(url).schema
        for table in ("ours", "theirs"):
            conn.execute(f'CREATE TEMP TABLE {table} (LIKE "{schema}".jobs INCLUDING DEFAULTS)')
        yield conn


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(st.lists(json_text, max_size=3), min_size=1, max_size=CHUNK + 5),
    chosen=options,
    task_name=text,
    tenant=st.none() | text,
    now=st.floats(1e9, 3e9),
)
def test_the_server_reads_the_rows_psycopg_would_send(
    conn: psycopg.Connection,
    calls: list[list[object]],
    chosen: dict,
    task_name: str,
    tenant: str | None,
    now: float,
) -> None:
    # Given jobs of a batch, with any arguments, options, task name and tenant, twice
    jobs = plain.with_options(**chosen).prepare_many(calls)
    for job in jobs:
        job.steps[0].task = task_name
        job.tenant = tenant
    twins = [job.copy() for job in jobs]

    # When one set is copied as conveyor's text, the other by psycopg's row writer
    conn.execute("TRUNCATE ours, theirs")
    with conn.cursor().copy(f"COPY ours ({COLUMNS}) FROM STDIN") as copy:
        for chunk in copy_chunks(jobs, now):
            copy.write(chunk)
    with conn.cursor().copy(f"COPY theirs ({COLUMNS}) FROM STDIN") as copy:
        for job in twins:
            copy.write_row(prepare_insert(job, now))

    # Then the tables hold the same rows, and the jobs are stamped alike
    differ = conn.execute(
        f"SELECT count(*) FROM ((SELECT {COLUMNS} FROM ours EXCEPT SELECT {COLUMNS} FROM theirs)"
        f" UNION ALL (SELECT {COLUMNS} FROM theirs EXCEPT SELECT {COLUMNS} FROM ours)) AS d"
    ).fetchone()
    assert differ == (0,)
    assert conn.execute("SELECT count(*) FROM ours").fetchone() == (len(jobs),)
    assert [(j.state, j.run_at, j.created_at) for j in jobs] == [
        (t.state, t.run_at, t.created_at) for t in twins
    ]


def test_a_batch_goes_out_in_chunks_of_whole_lines() -> None:
    jobs = plain.prepare_many([[i] for i in range(2 * CHUNK + 1)])
    chunks = list(copy_chunks(jobs, 1_800_000_000.5))
    assert [chunk.count("\n") for chunk in chunks] == [CHUNK, CHUNK, 1]
    assert all(chunk.endswith("\n") for chunk in chunks)


def test_escapes_are_those_of_the_text_format() -> None:
    assert escape(None) == "\\N"
    assert escape("a\\b\tc\nd\re") == "a\\\\b\\tc\\nd\\re"
    assert escape("plain é") == "plain é"


def test_a_copied_batch_reads_back_as_enqueued(pg_url: str) -> None:
    user = Conveyor(pg_url)

    @user.task(name="awkward\ttask\\name")
    def awkward(text: str, number: float, nested: object = None) -> None: ...

    # Given a batch large enough to go by COPY, of awkward arguments and options
    values = ["tab\there", "line\nbreak", "back\\slash", 'quote"s', "crlf\r\n", "é ✓ 🚀", "\\N"]
    calls = [
        {"text": values[i % len(values)], "number": i / 7, "nested": {"k\\": [values[i % 3]]}}
        for i in range(COPY_MIN + 36)
    ]
    task = awkward.with_options(
        queue="q-ü", priority=-3, timeout=2.5, metadata={"who": "a\tb\\c"}, delay=600
    )
    try:
        handles = task.enqueue_many(calls)

        # Then every job reads back with its arguments and options, scheduled
        for handle, call in zip(handles, calls, strict=True):
            job = user.job(handle.id).job
            assert job.steps[0].kwargs == call
            assert job.task == "awkward\ttask\\name"
            assert (job.queue, job.priority, job.timeout) == ("q-ü", -3, 2.5)
            assert job.metadata == {"who": "a\tb\\c"}
            assert job.state is State.SCHEDULED
            assert math.isclose(job.run_at, job.created_at + 600, abs_tol=1.0)
            assert (job.run_at, job.created_at) == (handle.job.run_at, handle.job.created_at)
    finally:
        user.close()


def test_jobs_of_a_batch_are_stamped_by_the_store_clock() -> None:
    job = plain.prepare(1)
    (line,) = copy_chunks([job], 1_800_000_000.25)
    assert job.state is State.QUEUED and job.run_at == job.created_at == 1_800_000_000.25
    assert line.split("\t")[5] == repr(1_800_000_000.25)
