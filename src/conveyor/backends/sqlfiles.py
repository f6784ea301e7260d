"""Named SQL queries and numbered migrations kept as ``.sql`` files beside the code."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """``-- name: foo`` sections of a SQL file → ``{"foo": "SELECT ..."}``."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


def load_migrations(package: str) -> list[tuple[int, str]]:
    """``0001_initial.sql``, ``0002_...sql`` → ``[(1, sql), (2, sql)]``, in order."""
    found: list[tuple[int, str]] = []
    for entry in resources.files(package).iterdir():
        match = re.match(r"^(\d{4})_\w+\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)
