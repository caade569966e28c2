"""PostgreSQL storage and LISTEN/NOTIFY notifications, sharing Agenda v6's table and channels.

A Node Agenda 6.2.6 process (@agendajs/postgres-backend 3.0.6) and agenda-decl workers can
share one table and one channel, whichever side creates the table: the table, its columns and
their types, indexes (plus one of our own for claims), trigger, channel names and JSON
payloads are exactly Node's. A table of agenda-decl 0.1 (``skip_days INTEGER[]``) is
migrated to Node's ``JSONB`` at connect. The
repository and its SQL are here, and so is the job log (``PostgresJobLogger``, in Agenda
6.2's ``agenda_logs`` table); the channel is ``notifications.postgres`` and the connection
plumbing both share is ``connectors.postgres``.

    backend = PostgresBackend(connection_string="postgresql://app@db/jobs")
    agenda = Agenda(backend=backend)
"""

from agenda_decl.backends.postgres.backend import PostgresBackend
from agenda_decl.backends.postgres.job_log import PostgresJobLogger, check_log_table_name
from agenda_decl.backends.postgres.queries import check_table_name
from agenda_decl.backends.postgres.repository import PostgresJobRepository
from agenda_decl.notifications.postgres import (
    MAX_NOTIFY_BYTES,
    PostgresNotificationChannel,
    check_channel_name,
)

__all__ = [
    "MAX_NOTIFY_BYTES",
    "PostgresBackend",
    "PostgresJobLogger",
    "PostgresJobRepository",
    "PostgresNotificationChannel",
    "check_channel_name",
    "check_log_table_name",
    "check_table_name",
]
