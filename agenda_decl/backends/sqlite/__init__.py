"""SQLite storage: the embedded default backend, one file, no server.

    agenda = Agenda(backend=SQLiteBackend(path="jobs.db"))

The table follows Agenda v6's PostgreSQL layout (``queries.sql``). Several worker processes
may share one file on a local disk (``connectors.sqlite``: WAL, ``BEGIN IMMEDIATE``, the busy
retry, the refusal of network filesystems).

SQLite has no LISTEN/NOTIFY; its notification channel (``SQLiteChangeChannel``, in
``notifications.sqlite``) watches SQLite's change counter instead, so a job enqueued by another
process on the same file wakes the workers within tens of milliseconds (``watch_changes``,
``watch_interval``), with polling still the safety net.

The job log (``SQLiteJobLogger``, ``job_log.sql``) is a table of the same file, modelled on
Agenda 6.2's ``agenda_logs`` table of the PostgreSQL backend.
"""

from agenda_decl.backends.sqlite.backend import SQLiteBackend
from agenda_decl.backends.sqlite.job_log import SQLiteJobLogger
from agenda_decl.backends.sqlite.repository import SQLiteJobRepository
from agenda_decl.connectors.sqlite import network_filesystem
from agenda_decl.notifications.sqlite import SQLiteChangeChannel

__all__ = [
    "SQLiteBackend",
    "SQLiteChangeChannel",
    "SQLiteJobLogger",
    "SQLiteJobRepository",
    "network_filesystem",
]
