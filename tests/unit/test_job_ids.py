"""Job ids are UUIDv7 text (RFC 9562): the millisecond, version 7, the process's
sequence in rand_a, the RFC variant, random bits; increasing within a process."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given
from hypothesis import strategies as st

from conveyor import job as job_module
from conveyor.job import _format_id, id_floor, new_job_id, new_job_ids


@given(ms=st.integers(0, 2**48 - 1), seq=st.integers(0, 0xFFF))
def test_an_id_holds_its_millisecond_version_sequence_and_variant(ms: int, seq: int) -> None:
    # Given a millisecond and a sequence number; When an id is made of them
    text = _format_id(ms, seq)

    # Then it is canonical UUID text whose fields are those, version 7, RFC variant
    value = uuid.UUID(text)
    assert str(value) == text
    assert (value.version, value.variant) == (7, uuid.RFC_4122)
    assert value.int >> 80 == ms
    assert (value.int >> 64) & 0xFFF == seq


def test_ids_made_one_after_another_increase() -> None:
    # Given ids made in a burst (many within each millisecond); Then each sorts after the last
    ids = [new_job_id() for _ in range(20_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert len(set(ids)) == len(ids)


def test_ids_made_in_runs_and_one_by_one_interleaved_increase() -> None:
    # Given runs of ids (as enqueue_many takes them) between single ids, sizes beyond
    # one millisecond's 4,096 included
    ids = []
    for count in (1, 0, 5, 1_000, 5_000, 2, 10_000):
        ids.append(new_job_id())
        ids.extend(new_job_ids(count))

    # Then every id sorts after the one before, none twice, each canonical UUIDv7 text
    assert len(ids) == 7 + 16_008
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert len(set(ids)) == len(ids)
    for text in ids[::97]:
        value = uuid.UUID(text)
        assert str(value) == text
        assert (value.version, value.variant) == (7, uuid.RFC_4122)


def test_a_run_that_spends_a_milliseconds_counter_goes_on_in_the_next(monkeypatch) -> None:
    # Given a clock that stands still, with this millisecond's counter near its end
    monkeypatch.setattr(job_module.time, "time", lambda: 1_800_000_000.0)
    monkeypatch.setattr(job_module, "_last_ms", 1_800_000_000_000)
    monkeypatch.setattr(job_module, "_seq", 0xFFD)

    # When a run of ids is made, then one more
    run = new_job_ids(4)
    after = new_job_id()

    # Then the run ends the counter and goes on at the next millisecond's first value,
    # and the single id after it goes on from there
    fields = [(uuid.UUID(t).int >> 80, (uuid.UUID(t).int >> 64) & 0xFFF) for t in [*run, after]]
    assert fields == [
        (1_800_000_000_000, 0xFFE),
        (1_800_000_000_000, 0xFFF),
        (1_800_000_000_001, 0),
        (1_800_000_000_001, 1),
        (1_800_000_000_001, 2),
    ]


def test_an_id_of_another_time_sorts_by_that_time() -> None:
    # Given ids made for given times, interleaved; Then they sort by time, above the floor
    late, early = new_job_id(now=1_900_000_000.5), new_job_id(now=1_800_000_000.25)
    assert id_floor(1_800_000_000.25) <= early < id_floor(1_800_000_000.3) < late
    assert uuid.UUID(late).int >> 80 == 1_900_000_000_500
