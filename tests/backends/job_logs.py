"""The built-in job logger of each backend, on a store of its own per test: a backend from
``tests.backends.<kind>.make_backend`` with its log table or collection renamed uniquely (the
default ``agenda_logs`` would be shared by every test of a server), connected, and dropped
afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

from agenda_decl.interfaces import AgendaBackend, JobLogger
from tests.backends import POSTGRES_KINDS, load


def _unique() -> str:
    return f"agenda_logs_{uuid4().hex[:12]}"


def with_log_name(kind: str) -> dict[str, Any]:
    """Backend options that give its job log a name of its own (none for Redis and memory,
    whose logs live under the backend's own key prefix or object)."""
    if kind in (*POSTGRES_KINDS, "sqlite"):
        return {"log_table_name": _unique()}
    if kind == "mongo":
        return {"log_collection": _unique()}
    return {}


@asynccontextmanager
async def make_logged_backend(kind: str, tmp_path: Path, **options: Any
                              ) -> AsyncIterator[AgendaBackend]:
    """A connected backend of ``kind`` whose logger has its own table or collection, its
    storage created (``logger.connect()``), and dropped at the end."""
    options = {**with_log_name(kind), **options}
    async with _backend(kind, tmp_path, options) as backend:
        assert backend.logger is not None
        await backend.logger.connect()
        try:
            yield backend
        finally:
            await drop_log(kind, backend.logger)


@asynccontextmanager
async def _backend(kind: str, tmp_path: Path, options: dict[str, Any]
                   ) -> AsyncIterator[AgendaBackend]:
    if kind in (*POSTGRES_KINDS, "redis", "redis_cluster"):
        async with load(kind).make_backend(tmp_path, **options) as made:
            yield made
        return
    if kind == "mongo":
        async with _mongo_backend(options) as made:
            yield made
        return
    backend: AgendaBackend
    if kind == "sqlite":
        from agenda_decl.backends.sqlite import SQLiteBackend

        backend = SQLiteBackend(tmp_path / f"agenda-{uuid4().hex[:8]}.db", **options)
    else:
        from agenda_decl.testing import InMemoryBackend

        backend = InMemoryBackend(**options)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.disconnect()


@asynccontextmanager
async def _mongo_backend(options: dict[str, Any]) -> AsyncIterator[AgendaBackend]:
    from agenda_decl.backends.mongo import MongoBackend
    from tests.backends.mongo import database, unique_collection

    with database() as db:
        collection = unique_collection()
        backend = MongoBackend(mongo=db, collection=collection, **options)
        await backend.connect()
        try:
            yield backend
        finally:
            await backend.disconnect()
            db.drop_collection(collection)
            if "log_collection" in options:
                db.drop_collection(options["log_collection"])


async def drop_log(kind: str, logger: JobLogger) -> None:
    """Drop the log table (PostgreSQL; Redis keys go with the backend's prefix, the SQLite
    file with the test's directory, the Mongo collection with its database)."""
    if kind in POSTGRES_KINDS:
        from tests.backends.postgres import drop_table

        await drop_table(logger.table_name)  # type: ignore[attr-defined]
