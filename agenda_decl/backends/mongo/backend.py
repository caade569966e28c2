"""The MongoDB backend: storage only, like Agenda's.

    backend = MongoBackend(address="mongodb://localhost/app")             # owns its client
    backend = MongoBackend(mongo=MongoClient(url).get_database("app"))    # borrows one
"""

from __future__ import annotations

from agenda_decl.backends.base import StoreBackend
from agenda_decl.backends.mongo.repository import MongoJobRepository
from agenda_decl.connectors.mongo import MongoDatabase
from agenda_decl.interfaces import NotificationChannel


class MongoBackend(StoreBackend[MongoJobRepository, NotificationChannel]):
    """MongoDB storage only, like Agenda's: pair it with a notification channel of your
    choice (``MongoChangeStreamNotificationChannel``, Redis, PostgreSQL) or rely on polling."""

    name = "MongoDB"

    def __init__(
        self,
        *,
        address: str | None = None,
        mongo: MongoDatabase | None = None,
        collection: str = "agendaJobs",
        ensure_index: bool = True,
        read_only: bool = False,
    ) -> None:
        repository = MongoJobRepository(
            address=address, mongo=mongo, collection=collection, ensure_index=ensure_index,
            read_only=read_only,
        )
        super().__init__(repository, owns_connection=mongo is None)

    def __repr__(self) -> str:
        return f"MongoBackend({self._repository!r})"
