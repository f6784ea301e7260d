"""Store URLs in messages: every password shown as ***, however the URL spells it, and
drivers' messages that quote (a piece of) it scrubbed, on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import socket

import pytest

from conveyor import Conveyor
from conveyor.backends import create_backend, redact_url, scrub
from conveyor.exceptions import ConveyorError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: (URL with {port} for a port nobody listens on, the texts that must never be shown)
SECRET_URLS = [
    ("postgresql://bob:Se#cret7@127.0.0.1:{port}/test", ["Se#cret7", "cret7"]),
    ("postgresql://bob:Se?cret7@127.0.0.1:{port}/test", ["Se?cret7", "cret7"]),
    ("postgresql://bob:Se/cret7@127.0.0.1:{port}/test", ["Se/cret7", "cret7"]),
    ("postgresql://bob:Se%cret7@127.0.0.1:{port}/test", ["Se%cret7", "cret7"]),
    ("postgresql://bob:Se@cret7@127.0.0.1:{port}/test", ["Se@cret7", "cret7"]),
    ("postgresql://bob:plainS3cret@127.0.0.1:{port}/test", ["plainS3cret"]),
    ("postgresql://bob@127.0.0.1:{port}/test?password=s3cretQS", ["s3cretQS"]),
    ("postgresql://bob@127.0.0.1:{port}/test?sslmode=disable&password=s3cretQS", ["s3cretQS"]),
    ("redis://:Se#cret7@127.0.0.1:{port}/5", ["Se#cret7", "cret7"]),
    ("redis://:Se?cret7@127.0.0.1:{port}/5", ["Se?cret7", "cret7"]),
    ("redis://:Se/cret7@127.0.0.1:{port}/5", ["Se/cret7", "cret7"]),
    ("redis://:Se%cret7@127.0.0.1:{port}/5", ["Se%cret7", "cret7"]),
    ("redis://bob:Se#cret7@127.0.0.1:{port}/5", ["Se#cret7", "cret7"]),
    ("redis://127.0.0.1:{port}/5?password=s3cretRQ", ["s3cretRQ"]),
    ("rediss://127.0.0.1:{port}/5?ssl_password=KEYPASS1", ["KEYPASS1"]),
]


@pytest.mark.parametrize(("template", "secrets"), SECRET_URLS)
def test_redact_url_masks_the_password_however_it_is_spelled(
    template: str, secrets: list[str]
) -> None:
    # Given a store URL with a password, written as users write them
    url = template.format(port=5999)

    # When it is redacted for a message
    shown = redact_url(url)

    # Then no part of the password is left, and the mask says where it was
    assert "***" in shown
    for secret in secrets:
        assert secret not in shown, shown


@pytest.mark.parametrize(("template", "secrets"), SECRET_URLS)
def test_the_error_of_a_store_that_cannot_be_used_never_shows_the_password(
    template: str, secrets: list[str]
) -> None:
    # Given a URL with a password, naming a port nobody listens on
    url = template.format(port=free_port())

    # When the store is made and opened (a URL that does not parse fails at the first,
    # one that does at the second)
    with pytest.raises(ConveyorError) as failed:
        asyncio.run(create_backend(url).open())

    # Then the error names the store with *** for the password, and neither conveyor's
    # words nor the driver's quote any of it
    message = str(failed.value)
    assert "***" in message
    for secret in secrets:
        assert secret not in message, message


def test_scrub_removes_a_password_a_driver_quotes_and_its_pieces_only_as_words() -> None:
    # Given driver messages quoting a password, a decoded one, and pieces a parser cut
    url = "postgresql://bob:Se#cret%2B7@h/db?password=q%20s"
    said = 'bad token "Se#cret%2B7", decoded Se#cret+7, password "q s", as \'Se\'; Servname'

    # When they are scrubbed
    clean = scrub(said, url)

    # Then each is masked, and a word that merely starts like a piece is left alone
    assert clean == 'bad token "***", decoded ***, password "***", as \'***\'; Servname'


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://bob:plainS3cret@127.0.0.1:{port}/test", ["plainS3cret"]),
        ("postgresql://bob:Se%23cret7@127.0.0.1:{port}/test", ["Se%23cret7", "Se#cret7"]),
        ("postgresql://bob@127.0.0.1:{port}/test?password=s3cretQS", ["s3cretQS"]),
        ("redis://:plainS3cret@127.0.0.1:{port}/5", ["plainS3cret"]),
        ("redis://127.0.0.1:{port}/5?password=s3cretRQ", ["s3cretRQ"]),
    ],
)
def test_the_app_and_its_tasks_show_their_url_without_the_password(
    url: str, secrets: list[str]
) -> None:
    # Given an app on a URL with a password, and one of its tasks
    app = Conveyor(url.format(port=free_port()))

    @app.task
    def noop() -> None: ...

    # When they are shown (a debugger, a log line with %r, an error tracker's locals)
    shown = f"{app!r} {noop!r} {noop.with_options(queue='other')!r}"
    # Then the URL is there, its password hidden
    assert "***@127.0.0.1" in shown or "password=***" in shown
    for secret in secrets:
        assert secret not in shown
