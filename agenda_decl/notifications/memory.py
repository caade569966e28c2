"""Notifications within one process: what a single worker needs for instant pick-up."""

from __future__ import annotations

from agenda_decl._model import JobNotification, JobStateNotification
from agenda_decl.notifications.base import BaseNotificationChannel


class InMemoryNotificationChannel(BaseNotificationChannel):
    """Delivers to this process's subscribers before ``publish`` returns."""

    @property
    def supports_state_notifications(self) -> bool:
        return True

    async def publish(self, notification: JobNotification) -> None:
        self.require_connected("publish")
        await self.notify_handlers(notification)

    async def publish_state(self, notification: JobStateNotification) -> None:
        self.require_connected("publish state")
        await self.notify_state_handlers(notification)
