"""The in-memory backend: the in-memory store with an in-process notification channel."""

from __future__ import annotations

from agenda_decl.backends.base import StoreBackend
from agenda_decl.backends.memory.repository import InMemoryJobRepository
from agenda_decl.notifications.memory import InMemoryNotificationChannel


class InMemoryBackend(StoreBackend[InMemoryJobRepository, InMemoryNotificationChannel]):
    """An in-memory store with an in-process notification channel (pass ``notifications=False``
    to test polling alone)."""

    name = "InMemory"

    def __init__(self, *, notifications: bool = True) -> None:
        channel = InMemoryNotificationChannel() if notifications else None
        super().__init__(InMemoryJobRepository(), channel=channel)
