"""The in-memory backend: the in-memory store with an in-process notification channel and an
in-memory job log."""

from __future__ import annotations

from agenda_decl._job_log import JobLogRetention
from agenda_decl.backends.base import StoreBackend
from agenda_decl.backends.memory.job_log import InMemoryJobLogger
from agenda_decl.backends.memory.repository import InMemoryJobRepository
from agenda_decl.notifications.memory import InMemoryNotificationChannel


class InMemoryBackend(StoreBackend[InMemoryJobRepository, InMemoryNotificationChannel]):
    """An in-memory store with an in-process notification channel (pass ``notifications=False``
    to test polling alone). ``logger`` is an :class:`InMemoryJobLogger`; ``logging=True``
    makes an Agenda on this backend write to it."""

    name = "InMemory"

    def __init__(
        self,
        *,
        notifications: bool = True,
        logging: bool = False,
        log_retention: JobLogRetention | None = None,
    ) -> None:
        channel = InMemoryNotificationChannel() if notifications else None
        super().__init__(InMemoryJobRepository(), channel=channel,
                         logger=InMemoryJobLogger(retention=log_retention), logging=logging)
