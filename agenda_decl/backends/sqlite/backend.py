"""The SQLite backend: the embedded default, one file, no server.

    agenda = Agenda(backend=SQLiteBackend(path="jobs.db"))

``path=":memory:"`` works for a single repository in one process, which is handy in tests;
several processes need a file on a local disk.
"""

from __future__ import annotations

import functools
import os
from datetime import timedelta

from agenda_decl._job_log import JobLogRetention
from agenda_decl.backends.base import StoreBackend
from agenda_decl.backends.sqlite.job_log import SQLiteJobLogger
from agenda_decl.backends.sqlite.queries import waiting_jobs
from agenda_decl.backends.sqlite.repository import SQLiteJobRepository
from agenda_decl.connectors.sqlite import IN_MEMORY
from agenda_decl.notifications.sqlite import SQLiteChangeChannel
from agenda_decl.timing import Duration, parse_duration


class SQLiteBackend(StoreBackend[SQLiteJobRepository, SQLiteChangeChannel]):
    """The embedded default backend: one file, no server.

    ``watch_changes`` (on by default) gives it a notification channel without a server
    (:class:`SQLiteChangeChannel`): a thread reads SQLite's change counter every
    ``watch_interval`` (default 20 ms), so a job another process enqueues starts within
    tens of milliseconds instead of at the next poll, and a save in this process wakes its
    own workers at once. Polling stays the safety net. Off for ``:memory:`` (no other
    connection can see it) and for ``read_only``.

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
        watch_changes: bool = True,
        watch_interval: Duration = "20 ms",
    ) -> None:
        repository = SQLiteJobRepository(
            path, table_name=table_name, busy_timeout=busy_timeout, read_only=read_only
        )
        logger = SQLiteJobLogger(repository.connector, table_name=log_table_name,
                                 retention=log_retention, read_only=read_only)
        interval = parse_duration(watch_interval, field="watch_interval")
        channel = None
        if watch_changes and not read_only and repository.path not in IN_MEMORY:
            channel = SQLiteChangeChannel(
                repository.path,
                functools.partial(waiting_jobs, table=f'"{repository.table_name}"'),
                interval=max(interval, 1) / 1000,
                busy_timeout_ms=parse_duration(busy_timeout, field="busy_timeout"),
                own_commits=repository.connector.own_commits,
            )
        super().__init__(repository, channel=channel, logger=logger, logging=logging)

    def __repr__(self) -> str:
        repository = self._repository
        return f"SQLiteBackend(path={repository.path!r}, table_name={repository.table_name!r})"

    async def close(self) -> None:
        await self.disconnect()
