"""One module per backend, each with ``make_backend(tmp_path)`` (and, for backends with a
notification channel, ``make_channel_pair(tmp_path)``). The conformance suite runs over all of
them; adding a backend to the suite is adding its module name to ``BACKENDS``."""

from __future__ import annotations

import asyncio
import importlib
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from agenda_decl.interfaces import AgendaBackend, NotificationChannel

BACKENDS: list[str] = [
    "memory", "sqlite", "mongo", "postgres", "postgres_pgbouncer", "redis", "redis_cluster",
]
#: Backends whose store is shared by several processes (multi-worker tests).
MULTIPROCESS_BACKENDS: list[str] = [
    "sqlite", "postgres", "postgres_pgbouncer", "redis", "redis_cluster",
]
#: Backends with a notification channel of their own (channel suite).
CHANNELS: list[str] = ["memory", "postgres", "postgres_pgbouncer", "redis", "redis_cluster"]
#: The PostgreSQL backends: direct, and through PgBouncer in transaction pooling mode.
POSTGRES_KINDS = ("postgres", "postgres_pgbouncer")


class BackendModule(Protocol):
    def make_backend(self, tmp_path: Path) -> AbstractAsyncContextManager[AgendaBackend]: ...


def load(name: str) -> Any:
    return importlib.import_module(f"tests.backends.{name}")


ChannelPair = tuple[NotificationChannel, NotificationChannel]


class Inbox:
    """A notification subscriber that keeps what it hears, for a test to wait on."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    @property
    def names(self) -> list[str]:
        """The job name of each notification heard, in order."""
        return [item.job_name for item in self.items]

    async def wait_for(self, count: int, timeout: float = 10) -> list[Any]:
        """Until ``count`` notifications were heard: all of them."""
        await self._until(lambda: len(self.items) >= count, timeout)
        return self.items

    async def wait_for_name(self, name: str, timeout: float = 10) -> None:
        """Until a notification of the job name ``name`` was heard."""
        await self._until(lambda: name in self.names, timeout)

    async def _until(self, done: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()
