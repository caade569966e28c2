"""The MongoDB backend: storage only, like Agenda's.

    backend = MongoBackend(address="mongodb://localhost/app")             # owns its client
    backend = MongoBackend(mongo=MongoClient(url).get_database("app"))    # borrows one
"""

from __future__ import annotations

from agenda_decl._job_log import JobLogRetention
from agenda_decl.backends.base import StoreBackend
from agenda_decl.backends.mongo.job_log import MongoJobLogger
from agenda_decl.backends.mongo.repository import MongoJobRepository
from agenda_decl.connectors.mongo import MongoDatabase
from agenda_decl.interfaces import NotificationChannel


class MongoBackend(StoreBackend[MongoJobRepository, NotificationChannel]):
    """MongoDB storage only, like Agenda's: pair it with a notification channel of your
    choice (``MongoChangeStreamNotificationChannel``, Redis, PostgreSQL) or rely on polling.

    ``logger`` is the job log in ``log_collection`` (Node's ``logCollection``; see
    :class:`MongoJobLogger`); ``logging=True`` makes an Agenda on this backend write to it.
    Unlike Node, which creates its indexes at every connect, they are created only by an
    Agenda that logs."""

    name = "MongoDB"

    def __init__(
        self,
        *,
        address: str | None = None,
        mongo: MongoDatabase | None = None,
        collection: str = "agendaJobs",
        ensure_index: bool = True,
        read_only: bool = False,
        logging: bool = False,
        log_collection: str = "agenda_logs",
        log_retention: JobLogRetention | None = None,
    ) -> None:
        repository = MongoJobRepository(
            address=address, mongo=mongo, collection=collection, ensure_index=ensure_index,
            read_only=read_only,
        )
        logger = MongoJobLogger(
            repository.connector, repository.database, collection=log_collection,
            ensure_index=ensure_index, retention=log_retention, read_only=read_only,
        )
        super().__init__(repository, owns_connection=mongo is None, logger=logger,
                         logging=logging)

    def __repr__(self) -> str:
        return f"MongoBackend({self._repository!r})"
