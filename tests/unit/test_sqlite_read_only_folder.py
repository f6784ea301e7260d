"""A SQLite file in a folder that cannot be written (a read-only mount, a folder of
another user) cannot be opened in WAL mode: SQLite makes ``-wal`` and ``-shm`` files
beside it. The error says so; before, it said only SQLite's "unable to open database
file", as for any other failure. Real files on a read-only tmpfs (as root) or a
folder without write permission (as another user)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SQLiteBackend
from conveyor.exceptions import BackendUnavailable


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only for this process, within."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    # Root writes any folder whatever its mode: a read-only mount holds even root.
    mount = ["mount", "-o", "remount,ro,bind", str(folder), str(folder)]
    if subprocess.run(["mount", "--bind", str(folder), str(folder)]).returncode != 0:
        pytest.skip("as root, this needs a bind mount, which failed here")
    try:
        if subprocess.run(mount).returncode != 0:
            pytest.skip("as root, this needs a read-only bind mount, which failed here")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_file_in_a_folder_that_cannot_be_written_is_an_error_saying_so(tmp_path: Path) -> None:
    # Given a conveyor file, in a folder that then cannot be written
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "jobs.db"

    async def make() -> None:
        backend = SQLiteBackend(f"sqlite:///{path}")
        await backend.open()
        await backend.close()

    asyncio.run(make())
    with _read_only(folder):
        # When it is opened
        backend = SQLiteBackend(f"sqlite:///{path}")
        with pytest.raises(BackendUnavailable) as error:
            asyncio.run(backend.open())
        # Then the error names the folder, and why SQLite needs to write it
        assert f"the folder {str(folder)!r} cannot be written" in str(error.value)
        assert "jobs.db-wal" in str(error.value)
