"""One module per backend, each with ``make_backend(tmp_path)`` (and, for backends with a
notification channel, ``make_channel_pair(tmp_path)``). The conformance suite runs over all of
them; adding a backend to the suite is adding its module name to ``BACKENDS``."""

from __future__ import annotations

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
