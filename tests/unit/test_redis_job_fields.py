"""The claim script answers a job's hash fields by position: its list (JOB_FIELDS in
_prelude.lua) and the list that reads them back (redis_rows.JOB_FIELDS) are one list."""

from __future__ import annotations

import re
from importlib import resources

from conveyor.backends.redis_rows import JOB_FIELDS


def test_the_lua_and_python_job_field_lists_are_the_same() -> None:
    # Given the prelude of the Redis scripts
    prelude = resources.files("conveyor.backends.lua").joinpath("_prelude.lua").read_text()

    # When its JOB_FIELDS and the positions it reads are taken from it
    listed = re.search(r"local JOB_FIELDS = \{(.*?)\}", prelude, re.S)
    assert listed is not None
    lua_fields = tuple(re.findall(r"'(\w+)'", listed.group(1)))
    positions = re.search(
        r"local F_STATE, F_ATTEMPTS, F_VERSION, F_STARTED_AT = (\d+), (\d+), (\d+), (\d+)",
        prelude,
    )
    assert positions is not None

    # Then they are Python's list, and the positions (1-based) name the fields they say
    assert lua_fields == JOB_FIELDS
    named = [JOB_FIELDS[int(n) - 1] for n in positions.groups()]
    assert named == ["state", "attempts", "version", "started_at"]
