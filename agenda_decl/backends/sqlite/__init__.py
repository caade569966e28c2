"""SQLite storage: the embedded default backend, one file, no server.

    agenda = Agenda(backend=SQLiteBackend(path="jobs.db"))

The table follows Agenda v6's PostgreSQL layout (``queries.sql``). Several worker processes
may share one file on a local disk (``connectors.sqlite``: WAL, ``BEGIN IMMEDIATE``, the busy
retry, the refusal of network filesystems).

SQLite has no notification channel of its own (``notification_channel`` is ``None``): pair it
with ``InMemoryNotificationChannel`` in a single process, or rely on polling.

The job log (``SQLiteJobLogger``, ``job_log.sql``) is a table of the same file, modelled on
Agenda 6.2's ``agenda_logs`` table of the PostgreSQL backend.
"""

from agenda_decl.backends.sqlite.backend import SQLiteBackend
from agenda_decl.backends.sqlite.job_log import SQLiteJobLogger
from agenda_decl.backends.sqlite.repository import SQLiteJobRepository
from agenda_decl.connectors.sqlite import network_filesystem

__all__ = ["SQLiteBackend", "SQLiteJobLogger", "SQLiteJobRepository", "network_filesystem"]
