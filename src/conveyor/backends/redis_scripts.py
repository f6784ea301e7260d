"""The Redis backend's Lua scripts: kept as ``.lua`` files, loaded once by SHA.

Each script is ``_prelude.lua`` (the key layout, the clock, shared helpers)
followed by its own file. A call sends ``EVALSHA``; a server that does not know the
script (new, restarted, ``SCRIPT FLUSH``) answers NOSCRIPT, and the script is loaded
and the call sent again: nothing is loaded at start-up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

_PACKAGE = "conveyor.backends.lua"


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    text: str
    sha: str


def _load_all() -> dict[str, Script]:
    files = resources.files(_PACKAGE)
    prelude = files.joinpath("_prelude.lua").read_text(encoding="utf-8")
    scripts: dict[str, Script] = {}
    for entry in files.iterdir():
        if entry.name.endswith(".lua") and not entry.name.startswith("_"):
            name = entry.name.removesuffix(".lua")
            text = f"{prelude}\n-- {entry.name}\n{entry.read_text(encoding='utf-8')}"
            scripts[name] = Script(name, text, hashlib.sha1(text.encode()).hexdigest())
    return scripts


SCRIPTS = _load_all()


class Scripts:
    """Calls the scripts for one key prefix. ``routing_key`` is a key of the prefix's
    slot: scripts declare it so that a cluster client sends them to the right node."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.routing_key = f"{prefix}queues"

    def args(self, name: str, *argv: Any) -> tuple[Any, ...]:
        """The ``EVALSHA`` arguments of a call (for pipelines)."""
        return (SCRIPTS[name].sha, 1, self.routing_key, self.prefix, *argv)

    async def call(self, client: Any, name: str, *argv: Any) -> Any:
        try:
            return await client.evalsha(*self.args(name, *argv))
        except NoScriptError:
            await client.script_load(SCRIPTS[name].text)
            return await client.evalsha(*self.args(name, *argv))

    def call_sync(self, client: Any, name: str, *argv: Any) -> Any:
        try:
            return client.evalsha(*self.args(name, *argv))
        except NoScriptError:
            client.script_load(SCRIPTS[name].text)
            return client.evalsha(*self.args(name, *argv))
