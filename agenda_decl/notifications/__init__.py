"""Notification channels that do not need a store: the base class and the in-process one."""

from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions
from agenda_decl.notifications.memory import InMemoryNotificationChannel

__all__ = ["BaseNotificationChannel", "InMemoryNotificationChannel", "ReconnectOptions"]
