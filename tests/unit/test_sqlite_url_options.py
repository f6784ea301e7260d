"""The SQLite URL's ``busy_timeout`` is SQLite's own busy timeout, a whole number of
milliseconds that fits a C ``int``. A value outside it used to be taken and turned into
0 without a word (``1e-4``, or anything past about 24.8 days: ``busy_timeout=1e10``),
so that every write failed at once with "database is locked" while another process
wrote, the opposite of what was asked. Real SQLite files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.exceptions import ConfigError


@pytest.mark.parametrize("value", ["0.0001", "0.0009", "2147484", "1e10", "1e300"])
def test_a_busy_timeout_sqlite_cannot_keep_is_refused_naming_the_option(
    tmp_path: Path, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a URL whose busy_timeout is under a millisecond or past SQLite's limit
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    url = f"sqlite:///{tmp_path}/jobs.db?busy_timeout={value}"
    # When an app is made on it
    with pytest.raises(ConfigError) as error:
        Conveyor(url)
    # Then the error names the option and its range, and no file was made
    assert error.value.field == "url.busy_timeout"
    assert "0.001" in str(error.value) and "2147483" in str(error.value)
    assert not (tmp_path / "jobs.db").exists()


@pytest.mark.parametrize(("value", "ms"), [("0.001", 1), ("2.5", 2500), ("2147483", 2147483000)])
def test_a_busy_timeout_in_range_is_the_connections_busy_timeout(
    tmp_path: Path, value: str, ms: int
) -> None:
    # Given a URL whose busy_timeout SQLite can keep
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/jobs.db?busy_timeout={value}")

    async def busy_timeouts() -> list[int]:
        # When the backend is opened
        await backend.open()
        try:
            conns = [backend._conn, backend._watch_conn]
            return [c.execute("PRAGMA busy_timeout").fetchone()[0] for c in conns if c]
        finally:
            await backend.close()

    # Then both its connections wait that long for a lock
    assert asyncio.run(busy_timeouts()) == [ms, ms]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("sqlite:///jobs.db ", "white space"),
        ("sqlite:/// jobs.db", "white space"),
        ("sqlite:///jobs.db\x00", "NUL"),
        ("sqlite:///jo\x00bs.db?poll=1", "NUL"),
    ],
)
def test_a_path_no_one_means_is_refused_naming_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, said: str
) -> None:
    # Given a URL whose path has white space at an end (a value copied with a stray
    # space, from a .env file say) or a NUL character
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    # When an app is made on it
    with pytest.raises(ConfigError) as error:
        Conveyor(url)
    # Then the error names the URL and what is wrong with it, and no file was made:
    # before, the space became part of a new file's name (another process, given the
    # URL without it, used another file), and a NUL came out of the first call as a
    # ValueError
    assert error.value.field == "url"
    assert said in str(error.value)
    assert not any(tmp_path.iterdir())


def test_a_path_naming_a_folder_is_refused_naming_the_url(tmp_path: Path) -> None:
    # Given a URL whose path names a folder (a file name left out)
    backend = SQLiteBackend(f"sqlite:///{tmp_path}")
    # When it is opened
    with pytest.raises(ConfigError) as error:
        asyncio.run(backend.open())
    # Then the error names the URL and says it is a folder (it said "unable to open
    # database file", as for a store that is down: exit code 1, not 2), and nothing
    # was made in the folder
    assert error.value.field == "url"
    assert "is a folder" in str(error.value)
    assert not any(tmp_path.iterdir())
