"""The PostgreSQL backend: storage and LISTEN/NOTIFY on one database, sharing Agenda v6's
table and channels.

    backend = PostgresBackend(connection_string="postgresql://app@db/jobs")
    agenda = Agenda(backend=backend)
"""

from __future__ import annotations

from agenda_decl._job_log import JobLogRetention
from agenda_decl._secrets import mask_url
from agenda_decl.backends.base import StoreBackend
from agenda_decl.backends.postgres.job_log import PostgresJobLogger
from agenda_decl.backends.postgres.repository import PostgresJobRepository
from agenda_decl.connectors.postgres import ConnectionLender, Pool
from agenda_decl.connectors.retry import DEFAULT_RETRY_FOR
from agenda_decl.errors import InvalidOptionError
from agenda_decl.notifications.base import ReconnectOptions
from agenda_decl.notifications.postgres import PostgresNotificationChannel
from agenda_decl.timing import Duration


class PostgresBackend(StoreBackend[PostgresJobRepository, PostgresNotificationChannel]):
    """Storage plus LISTEN/NOTIFY on one PostgreSQL database.

    Give ``connection_string`` (the backend owns its pool and closes it on ``disconnect``) or
    an open ``pool`` (``psycopg_pool.AsyncConnectionPool``, never closed here).
    ``read_only=True`` is for inspecting: see :class:`PostgresJobRepository`; no channel.

    ``logger`` is the job log in ``log_table_name`` (Node's ``logTableName``; see
    :class:`PostgresJobLogger`); ``logging=True`` makes an Agenda on this backend write to
    it. Unlike Node, which creates that table at every connect, it is created only by an
    Agenda that logs.
    ``retry_for`` (default ``"30 seconds"``; 0 turns it off) is how long a statement or a
    publish is repeated while the server cannot be reached (a restart, a failover, killed
    connections) before the call raises ``BackendUnavailableError``; see the README's
    "Outages" section.

    Behind PgBouncer in transaction pooling (or another pooler), give ``connection_string``
    the pooler's URL and ``listen_connection_string`` a direct URL to the server: storage
    and publishing go through the pooler (no prepared statements there, found at connect),
    the channel's LISTEN connection goes straight to the server. Without it, a channel whose
    LISTEN would go through a pooler is refused at start (``InvalidOptionError``).
    """

    name = "PostgreSQL"

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        pool: Pool | None = None,
        table_name: str = "agenda_jobs",
        ensure_schema: bool = True,
        channel_name: str = "agenda:jobs",
        disable_notifications: bool = False,
        max_pool_size: int = 10,
        connect_timeout: float = 10.0,
        reconnect: ReconnectOptions | None = None,
        read_only: bool = False,
        logging: bool = False,
        log_table_name: str = "agenda_logs",
        log_retention: JobLogRetention | None = None,
        retry_for: Duration = DEFAULT_RETRY_FOR,
        listen_connection_string: str | None = None,
    ) -> None:
        if (connection_string is None) == (pool is None):
            raise InvalidOptionError(
                "PostgresBackend requires pool or connection_string (exactly one of them)"
            )
        repository = PostgresJobRepository(
            connection_string=connection_string, pool=pool, table_name=table_name,
            ensure_schema=ensure_schema, max_pool_size=max_pool_size,
            connect_timeout=connect_timeout, read_only=read_only, retry_for=retry_for,
        )
        # Inspecting needs no notifications (and listening would hold a connection).
        off = disable_notifications or read_only
        channel = None if off else PostgresNotificationChannel(
            connection_string=connection_string, pool=pool, channel_name=channel_name,
            reconnect=reconnect, connect_timeout=connect_timeout, retry_for=retry_for,
            listen_connection_string=listen_connection_string,
        )
        if channel is not None:  # an enqueue's NOTIFY rides in its INSERT statement
            repository.announce_on(channel.channel_name)
            if listen_connection_string is None:  # it LISTENs where the claims go
                lender = ConnectionLender()
                channel.lend_listener(lender)  # a wake-up's claim on the woken connection
                repository.claim_through(lender)
        logger = PostgresJobLogger(
            lambda: repository.pool, table_name=log_table_name, ensure_schema=ensure_schema,
            retention=log_retention, read_only=read_only,
        )
        super().__init__(repository, channel=channel, owns_connection=pool is None,
                         logger=logger, logging=logging)
        self._where = mask_url(connection_string) if connection_string else "<pool>"

    def __repr__(self) -> str:
        return f"PostgresBackend({self._where!r}, table_name={self._repository.table_name!r})"

    async def connect(self) -> None:
        await self._repository.connect()
        if self._channel is not None:
            self._channel.use_pool(self._repository.pool)

    async def disconnect(self) -> None:
        await self._repository.close()
