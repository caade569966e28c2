"""The Redis channel listens on its state channel only while it has state subscribers: what a
subscriber hears, when the server counts the subscription, and the health check of it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from agenda_decl import JobId, JobStateNotification
from agenda_decl._clock import utcnow
from agenda_decl._convert import notification_to_json
from agenda_decl.backends.redis import RedisNotificationChannel
from tests.backends import Inbox
from tests.backends.servers import REDIS_URL

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    made = Redis.from_url(REDIS_URL, decode_responses=True)
    yield made
    await made.aclose()


@pytest.fixture
async def channel(client: Redis) -> AsyncIterator[RedisNotificationChannel]:
    made = RedisNotificationChannel(client=client, channel_name=f"t:{uuid.uuid4().hex}",
                                    health_check_interval=200)
    yield made
    await made.disconnect()


def state(name: str) -> JobStateNotification:
    return JobStateNotification(type="complete", job_id=JobId("x"), job_name=name,
                                timestamp=utcnow(), source="elsewhere")


async def subscribers(client: Redis, channel: str) -> int:
    ((_, count),) = await client.pubsub_numsub(channel)
    return int(count)


async def until_subscribers(client: Redis, channel: str, count: int) -> None:
    async with asyncio.timeout(10):
        while await subscribers(client, channel) != count:
            await asyncio.sleep(0.02)


async def test_the_state_channel_is_heard_only_while_someone_subscribes(
    channel: RedisNotificationChannel, client: Redis,
) -> None:
    await channel.connect()
    await channel.publish_state(state("unheard"))  # publishing needs no subscriber
    assert await subscribers(client, channel.state_channel) == 0

    states = Inbox()
    unsubscribe = channel.subscribe_state(states)
    # published on another connection right after: the SUBSCRIBE is already on its way
    await client.publish(channel.state_channel, notification_to_json(state("first")))
    await states.wait_for_name("first")
    assert await subscribers(client, channel.state_channel) == 1

    unsubscribe()
    await until_subscribers(client, channel.state_channel, 0)
    channel.subscribe_state(states)
    await client.publish(channel.state_channel, notification_to_json(state("again")))
    await states.wait_for_name("again")
    assert states.names == ["first", "again"]


async def test_a_state_subscriber_added_before_connect_hears_from_the_start(
    channel: RedisNotificationChannel, client: Redis,
) -> None:
    states = Inbox()
    channel.subscribe_state(states)
    await channel.connect()
    await client.publish(channel.state_channel, notification_to_json(state("first")))
    await states.wait_for_name("first")


async def test_a_silently_lost_state_subscription_is_noticed(
    channel: RedisNotificationChannel, client: Redis,
) -> None:
    changes: list[str] = []
    channel.on("stateChange", changes.append)
    states = Inbox()
    channel.subscribe_state(states)
    await channel.connect()
    await until_subscribers(client, channel.state_channel, 1)
    assert channel._pubsub is not None
    await channel._pubsub.execute_command("UNSUBSCRIBE", channel.state_channel)

    async with asyncio.timeout(10):
        while not ("reconnecting" in changes and channel.state == "connected"):
            await asyncio.sleep(0.02)
    await until_subscribers(client, channel.state_channel, 1)
    await client.publish(channel.state_channel, notification_to_json(state("after")))
    await states.wait_for_name("after")
