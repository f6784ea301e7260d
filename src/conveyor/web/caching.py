"""HTTP caching of job documents: strong ETags from the version, Cache-Control by state.

An active job changes often, so a cache may keep its document one second (and
serve it two more while it fetches a fresh one); a finished job changes only by
an explicit retry or a delete, so it may be kept long (``CONVEYOR_FINAL_MAX_AGE``).
With ``CONVEYOR_CACHE_PURGE_URL`` set, every change the API and the workers make
purges the cache, so a shared cache may keep an active document
``PURGED_S_MAXAGE`` seconds (browsers still one): the purge, not the age, ends it.

Only answers to the read token (a capability URL) are ``public``: an answer to
an API key is ``private``, so that a shared cache never hands one tenant's
document to another request.
"""

from __future__ import annotations

from conveyor.job import State

ACTIVE_PUBLIC = "public, max-age=1, s-maxage=1, stale-while-revalidate=2"
#: How long a shared cache that is purged on changes keeps an active document: what a
#: lost purge (or a change made around the API and the workers, by the CLI) costs.
PURGED_S_MAXAGE = 30
ACTIVE_PUBLIC_PURGED = f"public, max-age=1, s-maxage={PURGED_S_MAXAGE}, stale-while-revalidate=2"
ACTIVE_PRIVATE = "private, max-age=1"


def etag_of(version: int) -> str:
    return f'"{version}"'


def matches_etag(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison for If-None-Match: ``*``, a list, ``W/`` prefixes."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def cache_control(state: State, *, public: bool, final_max_age: int, purged: bool = False) -> str:
    """``purged``: the cache in front is purged on every change."""
    if not state.is_final:
        if not public:
            return ACTIVE_PRIVATE
        return ACTIVE_PUBLIC_PURGED if purged else ACTIVE_PUBLIC
    if public:
        return f"public, max-age={final_max_age}, s-maxage={final_max_age}"
    return f"private, max-age={final_max_age}"
