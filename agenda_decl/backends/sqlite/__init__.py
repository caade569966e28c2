"""SQLite storage: the embedded default backend, one file, no server.

    agenda = Agenda(backend=SQLiteBackend(path="jobs.db"))

The table follows Agenda v6's PostgreSQL layout (``queries.sql``). Several worker processes
may share one file on a local disk (``connectors.sqlite``: WAL, ``BEGIN IMMEDIATE``, the busy
retry, the refusal of network filesystems).

SQLite has no notification channel of its own (``notification_channel`` is ``None``): pair it
with ``InMemoryNotificationChannel`` in a single process, or rely on polling.
"""

from agenda_decl.backends.sqlite.backend import SQLiteBackend
from agenda_decl.backends.sqlite.repository import SQLiteJobRepository
from agenda_decl.connectors.sqlite import network_filesystem

__all__ = ["SQLiteBackend", "SQLiteJobRepository", "network_filesystem"]
