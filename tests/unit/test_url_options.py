"""Store URL options every store reads alike: one given twice, and a poll too short."""

from __future__ import annotations

import pytest

from conveyor import Conveyor
from conveyor.backends import create_backend
from conveyor.exceptions import ConfigError

URLS = {
    "sqlite": "sqlite:///{tmp}/jobs.db",
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
    "redis": "redis://127.0.0.1:6379/0",
}


@pytest.mark.parametrize("store", sorted(URLS))
def test_an_option_given_twice_is_refused_naming_it(store: str, tmp_path: object) -> None:
    # Given a store URL that sets one option twice (the last value was taken, unsaid)
    url = URLS[store].format(tmp=tmp_path) + "?poll=1&poll=2"

    # When an app is made on it, Then it is refused naming the option, nothing opened
    with pytest.raises(ConfigError) as refused:
        Conveyor(url)
    assert refused.value.field == "url.poll"
    assert "given more than once" in str(refused.value)


@pytest.mark.parametrize("store", sorted(URLS))
@pytest.mark.parametrize("poll", ["1e-300", "0.0005"])
def test_a_poll_shorter_than_a_millisecond_is_refused(
    store: str, poll: str, tmp_path: object
) -> None:
    # Given a store URL whose poll would make an idle worker look for work without pause
    url = URLS[store].format(tmp=tmp_path) + f"?poll={poll}"

    # When an app is made on it, Then it is refused naming the option and the least
    with pytest.raises(ConfigError) as refused:
        Conveyor(url)
    assert refused.value.field == "url.poll"
    assert "at least 0.001" in str(refused.value)


@pytest.mark.parametrize("store", sorted(URLS))
def test_a_poll_of_a_millisecond_is_taken(store: str, tmp_path: object) -> None:
    backend = create_backend(URLS[store].format(tmp=tmp_path) + "?poll=0.001")
    settings = getattr(backend, "settings", None)
    assert (getattr(backend, "poll_interval", None) if settings is None else settings.poll) == 0.001
