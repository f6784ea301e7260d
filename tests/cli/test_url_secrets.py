"""`conveyor ... --url URL` with a password: stderr never shows it, however the URL
spells it (see tests/unit/test_url_redaction.py for the library's side)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.test_url_redaction import SECRET_URLS, free_port


@pytest.mark.parametrize(("template", "secrets"), SECRET_URLS)
def test_jobs_list_never_prints_the_password_of_the_url(template: str, secrets: list[str]) -> None:
    # Given a store URL with a password, naming a port nobody listens on
    url = template.format(port=free_port())

    # When `conveyor jobs list --url URL` runs
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "jobs", "list", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it fails in one line (2: a URL that does not parse, 1: no answer) naming the
    # store with *** for the password, and no part of the password is printed
    assert done.returncode in (1, 2), done.stderr
    assert done.stderr.startswith("error: "), done.stderr
    assert "***" in done.stderr
    for secret in secrets:
        assert secret not in done.stderr + done.stdout, done.stderr
