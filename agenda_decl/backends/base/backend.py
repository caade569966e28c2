"""What every backend class is: a store's repository, the notification channel that comes
with it (if any), and whether closing the backend closes the connection it opened."""

from __future__ import annotations

from typing import Generic, TypeVar

from agenda_decl.interfaces import AgendaBackend, JobRepository, NotificationChannel

R = TypeVar("R", bound=JobRepository)
C = TypeVar("C", bound=NotificationChannel)


class StoreBackend(AgendaBackend, Generic[R, C]):
    """A backend made of ``repository`` and, for a store with a channel of its own,
    ``channel`` (``None`` when the store has none or it is turned off)."""

    def __init__(
        self, repository: R, *, channel: C | None = None, owns_connection: bool = True
    ) -> None:
        self._repository = repository
        self._channel = channel
        self._owns_connection = owns_connection

    @property
    def repository(self) -> R:
        return self._repository

    @property
    def notification_channel(self) -> C | None:
        return self._channel

    @property
    def owns_connection(self) -> bool:
        return self._owns_connection
