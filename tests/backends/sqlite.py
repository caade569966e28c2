from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

from agenda_decl.backends.sqlite import SQLiteBackend


@asynccontextmanager
async def make_backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    """A fresh file per call under ``tmp_path`` (WAL needs a real file for several workers)."""
    backend = SQLiteBackend(tmp_path / f"agenda-{uuid4().hex[:8]}.db")
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.disconnect()


def backend_spec(backend: SQLiteBackend) -> dict[str, object]:
    """What a worker process needs to open the same store (JSON)."""
    repository = backend.repository
    return {"path": repository.path, "table_name": repository.table_name}


def backend_from_spec(spec: dict[str, Any]) -> SQLiteBackend:
    return SQLiteBackend(spec["path"], table_name=spec["table_name"])
