"""The in-memory backend: the in-memory store with an in-process notification channel."""

from __future__ import annotations

from agenda_decl.backends.memory.repository import InMemoryJobRepository
from agenda_decl.interfaces import AgendaBackend, NotificationChannel
from agenda_decl.notifications.memory import InMemoryNotificationChannel


class InMemoryBackend(AgendaBackend):
    """An in-memory store with an in-process notification channel (pass ``notifications=False``
    to test polling alone)."""

    name = "InMemory"

    def __init__(self, *, notifications: bool = True) -> None:
        self._repository = InMemoryJobRepository()
        self._channel = InMemoryNotificationChannel() if notifications else None

    @property
    def repository(self) -> InMemoryJobRepository:
        return self._repository

    @property
    def notification_channel(self) -> NotificationChannel | None:
        return self._channel
