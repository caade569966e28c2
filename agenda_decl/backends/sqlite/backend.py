"""The SQLite backend: the embedded default, one file, no server.

    agenda = Agenda(backend=SQLiteBackend(path="jobs.db"))

``path=":memory:"`` works for a single repository in one process, which is handy in tests;
several processes need a file on a local disk.
"""

from __future__ import annotations

import os
from datetime import timedelta

from agenda_decl._job_log import JobLogRetention
from agenda_decl.backends.base import StoreBackend
from agenda_decl.backends.sqlite.job_log import SQLiteJobLogger
from agenda_decl.backends.sqlite.repository import SQLiteJobRepository
from agenda_decl.interfaces import NotificationChannel


class SQLiteBackend(StoreBackend[SQLiteJobRepository, NotificationChannel]):
    """The embedded default backend: storage only (no notification channel of its own).

    ``read_only=True`` is for inspecting (``agenda-decl plan``, ``jobs``): the file is never
    created or written, a missing file or table reads as an empty store, writes are refused.

    ``logger`` is the job log in ``log_table_name`` of the same file (see
    :class:`SQLiteJobLogger`); ``logging=True`` makes an Agenda on this backend write to it.
    The table is created only by an Agenda that logs.
    """

    name = "SQLite"

    def __init__(
        self,
        path: str | os.PathLike[str] = "agenda.db",
        *,
        table_name: str = "agenda_jobs",
        busy_timeout: int | float | timedelta | str = "5 seconds",
        read_only: bool = False,
        logging: bool = False,
        log_table_name: str = "agenda_logs",
        log_retention: JobLogRetention | None = None,
    ) -> None:
        repository = SQLiteJobRepository(
            path, table_name=table_name, busy_timeout=busy_timeout, read_only=read_only
        )
        logger = SQLiteJobLogger(repository.connector, table_name=log_table_name,
                                 retention=log_retention, read_only=read_only)
        super().__init__(repository, logger=logger, logging=logging)

    def __repr__(self) -> str:
        repository = self._repository
        return f"SQLiteBackend(path={repository.path!r}, table_name={repository.table_name!r})"

    async def close(self) -> None:
        await self.disconnect()
