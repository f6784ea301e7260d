"""Purging the cache in front of the API when a job changes.

With ``CONVEYOR_CACHE_PURGE_URL`` set (the cache's own address, e.g.
``http://127.0.0.1:6081``), each change to an HTTP job sends ``PURGE <purge
url>/v1/jobs/<id>`` with the header ``X-Conveyor-Job: <id>``: the API's (delete,
retry, cancel), and the workers' (the job started, a step done, its outcome), which
they send in the background (:meth:`Purger.soon`). A cached document is keyed by its full URL, read
token included, which the API does not keep per cache entry: the cache should
drop every entry whose path is ``/v1/jobs/<id>`` (docs/caching.md has the
Varnish and nginx configurations that do).

A purge is best effort: it is logged when it fails, and the short ``max-age``
of active jobs bounds what a lost purge costs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from conveyor.backends import redact_url
from conveyor.exceptions import ConfigError

if TYPE_CHECKING:  # imported when the first purge is sent: workers without one never need it
    import aiohttp

logger = logging.getLogger("conveyor.api")


#: The environment variable naming the cache to purge.
ENV = "CONVEYOR_CACHE_PURGE_URL"


def check_purge_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; ConfigError naming ``ENV`` otherwise
    (at start-up: a bad one would fail every purge, quietly, for as long as it ran)."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # port: a bad one raises only when asked
    except ValueError as exc:
        raise ConfigError(ENV, f"not a URL ({exc}): {redact_url(url)!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(ENV, f"expected http://host[:port], got {redact_url(url)!r}")
    return url


class Purger:
    def __init__(self, base_url: str | None, timeout: float = 2.0) -> None:
        self.base_url = check_purge_url(base_url).rstrip("/") if base_url else None
        #: The URL as logs show it: without its password.
        self.shown_url = redact_url(self.base_url) if self.base_url else None
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._waiting: set[str] = set()  # purges asked for, not started
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.base_url is not None

    async def purge(self, job_id: str) -> None:
        if self.base_url is None:
            return
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        url = f"{self.base_url}/v1/jobs/{job_id}"
        shown = f"{self.shown_url}/v1/jobs/{job_id}"
        try:
            async with self._session.request(
                "PURGE", url, headers={"X-Conveyor-Job": job_id}
            ) as answer:
                if answer.status >= 400 and answer.status != 404:
                    logger.warning("cache purge of %s answered %d", shown, answer.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # aiohttp's message names the URL too: shown as the rest of the line is
            problem = str(exc).replace(url, shown) or type(exc).__name__
            logger.warning("cache purge of %s failed: %s", shown, problem)

    def soon(self, job_id: str) -> None:
        """Purge in the background: a worker does not wait for the cache. Changes to one
        job made in one turn of the event loop share a purge."""
        if self.base_url is None or job_id in self._waiting:
            return
        self._waiting.add(job_id)
        task = asyncio.get_running_loop().create_task(self._purge_soon(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _purge_soon(self, job_id: str) -> None:
        await asyncio.sleep(0)
        self._waiting.discard(job_id)  # a change from here on needs a purge of its own
        await self.purge(job_id)

    async def aclose(self, grace: float = 0.0) -> None:
        """Wait up to ``grace`` seconds for the background purges, then drop the rest."""
        if self._tasks and grace > 0:
            await asyncio.wait(set(self._tasks), timeout=grace)
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
