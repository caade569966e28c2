from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from agenda_decl.notifications.memory import InMemoryNotificationChannel
from agenda_decl.testing import InMemoryBackend
from tests.backends import ChannelPair


@asynccontextmanager
async def make_backend(tmp_path: Path) -> AsyncIterator[InMemoryBackend]:
    backend = InMemoryBackend()
    await backend.connect()
    yield backend
    await backend.disconnect()


@asynccontextmanager
async def make_channel_pair(tmp_path: Path) -> AsyncIterator[ChannelPair]:
    """In one process the publisher and the subscriber are the same channel."""
    channel = InMemoryNotificationChannel()
    yield channel, channel
    await channel.disconnect()
