"""``conveyor migrate``: create or upgrade the store's schema."""

from __future__ import annotations

import asyncio

from conveyor.backends import create_backend, redact_url
from conveyor.cli.common import IncludeOption, JsonOption, UrlOption, console, print_json, store_url


def migrate(
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create or upgrade the store's schema to this conveyor's version.

    PostgreSQL: run it once before the first `conveyor worker` or `conveyor api`,
    and after each upgrade of conveyor; workers, the API and every command refuse
    an older schema. Safe to run from several machines at once, and again when
    there is nothing to do.
    The schema name comes from the URL (?schema=NAME, default conveyor).
    SQLite upgrades its file on open; this command first reads the whole file
    (PRAGMA quick_check: a damaged one exits 2, left as it is), then does that and
    reports it.
    Redis has no schema: this command only checks that the server answers.
    """
    target = store_url(includes, url)
    backend = create_backend(target)  # a bad URL fails here, before anything is touched
    before, after = asyncio.run(backend.migrate())
    where = redact_url(target)
    if json_out:
        print_json({"url": where, "from_version": before, "to_version": after})
        return
    if before == after == 0:
        console().print(
            f"{where} has no schema to migrate; the server answers.", soft_wrap=True, markup=False
        )
    elif before == after:
        console().print(
            f"Schema at {where} is up to date (version {after}).", soft_wrap=True, markup=False
        )
    else:
        console().print(
            f"Migrated {where} from version {before} to {after}.", soft_wrap=True, markup=False
        )
