"""Notification channels: the base class and the in-process one (both importable from here),
and one module per store's channel (``postgres``, ``redis``, ``changestream``), which need
their driver and are imported from their own module."""

from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions
from agenda_decl.notifications.memory import InMemoryNotificationChannel

__all__ = ["BaseNotificationChannel", "InMemoryNotificationChannel", "ReconnectOptions"]
