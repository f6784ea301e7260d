"""`conveyor migrate` on a SQLite file reads every page of it (``PRAGMA quick_check``)
before it changes anything. Opening reads only the first page (the header, the tables,
the schema's version): a file whose other pages are damaged passed `migrate` as "up to
date", and failed at the first claim. Real SQLite files, garbled as a bad disk or copy
leaves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.backends import sqlite as sqlite_module
from conveyor.backends.sqlite import SCHEMA_VERSION
from tests.migrations import schema_stopped_at
from tests.unit.test_sqlite_damaged_file import conveyors_file, garbled_pages

from .conftest import Cli, Store


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix != ".py"}


@pytest.mark.parametrize("version", [SCHEMA_VERSION, 1], ids=["current", "older"])
def test_migrate_refuses_a_file_whose_first_page_is_whole_and_others_damaged(
    cli: Cli, tmp_path: Path, version: int
) -> None:
    # Given a conveyor file (of this schema, or an older one that migrate would
    # upgrade) whose first page is whole and whose other pages are noise
    path = tmp_path / "garbled.db"
    with schema_stopped_at(sqlite_module, version):
        garbled_pages(path)
    before = _files(tmp_path)

    # When the operator checks and upgrades it
    result = cli("migrate", "--url", f"sqlite:///{path}")

    # Then it exits 2 in one line naming the file and what quick_check found
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: url: "), lines
    assert repr(str(path)) in lines[0]
    assert "is damaged (PRAGMA quick_check: Page " in lines[0], lines
    assert "restore it from a backup" in lines[0]
    # And nothing beside the file or in it changed: not migrated, not switched, not added to
    assert _files(tmp_path) == before


def test_migrate_still_upgrades_a_sound_file_of_an_older_schema(cli: Cli, store: Store) -> None:
    # Given a sound conveyor file with jobs, made by a conveyor of schema version 1
    path = cli.dir / "jobs.db"
    assert cli.url == f"sqlite:///{path}"
    with schema_stopped_at(sqlite_module, 1):
        conveyors_file(path, jobs=300)

    # When the operator checks and upgrades it, and then does so again
    first = cli("migrate")
    second = cli("migrate", "--json")

    # Then the first upgrades it to this conveyor's schema, the second finds it current,
    # and its jobs are all there
    assert first.exit_code == 0, (first.stdout, first.stderr)
    assert f"from version 1 to {SCHEMA_VERSION}." in first.stdout
    assert second.exit_code == 0, (second.stdout, second.stderr)
    assert f'"from_version": {SCHEMA_VERSION}' in second.stdout
    assert store.count() == 300


def test_migrate_makes_a_new_file(cli: Cli) -> None:
    # Given no file at the URL's path (nothing for quick_check to read)
    path = cli.dir / "new.db"

    # When the operator migrates it
    result = cli("migrate", "--url", f"sqlite:///{path}")

    # Then it is made, at this conveyor's schema
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert f"from version 0 to {SCHEMA_VERSION}." in result.stdout
    assert path.is_file()
