"""What every backend class is: a store's repository, the notification channel that comes
with it (if any), its built-in job logger, and whether closing the backend closes the
connection it opened."""

from __future__ import annotations

from typing import Generic, TypeVar

from agenda_decl.interfaces import AgendaBackend, JobLogger, JobRepository, NotificationChannel

R = TypeVar("R", bound=JobRepository)
C = TypeVar("C", bound=NotificationChannel)


class StoreBackend(AgendaBackend, Generic[R, C]):
    """A backend made of ``repository`` and, for a store with a channel of its own,
    ``channel`` (``None`` when the store has none or it is turned off). ``logger`` is the
    store's built-in job logger; ``logging`` makes an Agenda on this backend use it unless
    the Agenda is told otherwise."""

    def __init__(
        self,
        repository: R,
        *,
        channel: C | None = None,
        owns_connection: bool = True,
        logger: JobLogger | None = None,
        logging: bool = False,
    ) -> None:
        self._repository = repository
        self._channel = channel
        self._owns_connection = owns_connection
        self._logger = logger
        self._logging = logging

    @property
    def repository(self) -> R:
        return self._repository

    @property
    def notification_channel(self) -> C | None:
        return self._channel

    @property
    def owns_connection(self) -> bool:
        return self._owns_connection

    @property
    def logger(self) -> JobLogger | None:
        return self._logger

    @property
    def logging(self) -> bool:
        return self._logging
