"""Purging the cache in front of the API when a job changes.

With ``CONVEYOR_CACHE_PURGE_URL`` set (the cache's own address, e.g.
``http://127.0.0.1:6081``), each change the API makes to a job (delete, retry,
cancel) sends ``PURGE <purge url>/v1/jobs/<id>`` with the header
``X-Conveyor-Job: <id>``. A cached document is keyed by its full URL, read
token included, which the API does not keep per cache entry: the cache should
drop every entry whose path is ``/v1/jobs/<id>`` (docs/caching.md has the
Varnish and nginx configurations that do).

A purge is best effort: it is logged when it fails, and the short ``max-age``
of active jobs bounds what a lost purge costs.
"""

from __future__ import annotations

import logging

import aiohttp

logger = logging.getLogger("conveyor.api")


class Purger:
    def __init__(self, base_url: str | None, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return self.base_url is not None

    async def purge(self, job_id: str) -> None:
        if self.base_url is None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        url = f"{self.base_url}/v1/jobs/{job_id}"
        try:
            async with self._session.request(
                "PURGE", url, headers={"X-Conveyor-Job": job_id}
            ) as answer:
                if answer.status >= 400 and answer.status != 404:
                    logger.warning("cache purge of %s answered %d", url, answer.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("cache purge of %s failed: %s", url, exc or type(exc).__name__)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
