"""The NotificationChannel contract, run over every channel (tests/backends CHANNELS).

Each backend yields a (publisher, subscriber) pair: two instances on one channel, so a
notification crosses a real connection where the technology has one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agenda_decl import JobId, JobNotification, JobStateNotification, NotConnectedError
from agenda_decl._clock import utcnow
from tests.backends import CHANNELS, ChannelPair, Inbox, load

pytestmark = pytest.mark.asyncio

WHEN = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


@pytest.fixture(params=CHANNELS)
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChannelPair]:
    async with load(request.param).make_channel_pair(tmp_path) as channels:
        yield channels


async def connected(pair: ChannelPair) -> ChannelPair:
    publisher, subscriber = pair
    await subscriber.connect()
    if publisher is not subscriber:
        await publisher.connect()
    return publisher, subscriber


def notification(name: str = "job", **fields: Any) -> JobNotification:
    values: dict[str, Any] = {
        "job_id": JobId("specific-id"), "job_name": name, "next_run_at": WHEN,
        "priority": 42, "timestamp": utcnow(), "source": "test-source",
    }
    values.update(fields)
    return JobNotification(**values)


async def settle() -> None:
    """Give a notification that should NOT arrive the time it would need to arrive."""
    await asyncio.sleep(0.3)


async def test_state_follows_connect_and_disconnect(pair: ChannelPair) -> None:
    _, channel = pair
    changes: list[str] = []
    channel.on("stateChange", changes.append)
    assert channel.state == "disconnected"
    await channel.connect()
    assert channel.state == "connected"
    await channel.disconnect()
    assert channel.state == "disconnected"
    assert "connected" in changes
    assert changes[-1] == "disconnected"


async def test_every_subscriber_gets_one_copy(pair: ChannelPair) -> None:
    publisher, subscriber = await connected(pair)
    first, second = Inbox(), Inbox()
    subscriber.subscribe(first)
    subscriber.subscribe(second)
    await publisher.publish(notification())
    await first.wait_for(1)
    await second.wait_for(1)
    await settle()
    assert (len(first.items), len(second.items)) == (1, 1)


async def test_unsubscribed_handlers_get_nothing_more(pair: ChannelPair) -> None:
    publisher, subscriber = await connected(pair)
    inbox = Inbox()
    unsubscribe = subscriber.subscribe(inbox)
    await publisher.publish(notification("first"))
    await inbox.wait_for(1)
    unsubscribe()
    await publisher.publish(notification("second"))
    await settle()
    assert [n.job_name for n in inbox.items] == ["first"]


async def test_a_notification_round_trips(pair: ChannelPair) -> None:
    publisher, subscriber = await connected(pair)
    inbox = Inbox()
    subscriber.subscribe(inbox)
    sent = notification("data-test")
    await publisher.publish(sent)
    (received,) = await inbox.wait_for(1)
    assert received == sent
    assert received.next_run_at == WHEN


async def test_a_null_next_run_at_round_trips(pair: ChannelPair) -> None:
    publisher, subscriber = await connected(pair)
    inbox = Inbox()
    subscriber.subscribe(inbox)
    await publisher.publish(notification(next_run_at=None, source=None))
    (received,) = await inbox.wait_for(1)
    assert (received.next_run_at, received.source) == (None, None)


async def test_notifications_arrive_in_order(pair: ChannelPair) -> None:
    publisher, subscriber = await connected(pair)
    inbox = Inbox()
    subscriber.subscribe(inbox)
    for i in range(5):
        await publisher.publish(notification(f"job-{i}"))
    received = await inbox.wait_for(5)
    assert [n.job_name for n in received] == [f"job-{i}" for i in range(5)]


async def test_an_async_subscriber_hears_later_notifications_after_the_first(
    pair: ChannelPair,
) -> None:
    """The first notification of an idle channel may go to the subscribers from the
    listener's own task (an idle worker's wake-up, one task switch nearer its claim); an
    asynchronous subscriber still gets the later ones in order, once it is done with that
    one."""
    publisher, subscriber = await connected(pair)
    inbox = Inbox()
    first_done = asyncio.Event()

    async def slow(item: JobNotification) -> None:
        inbox((item.job_name, first_done.is_set()))
        if item.job_name == "job-0":
            await asyncio.sleep(0.05)
            first_done.set()

    subscriber.subscribe(slow)
    await publisher.publish(notification("job-0"))
    await inbox.wait_for(1)  # job-0 is being handled
    await asyncio.gather(*(publisher.publish(notification(f"job-{i}")) for i in range(1, 20)))
    received = await inbox.wait_for(20)
    assert received == [("job-0", False)] + [(f"job-{i}", True) for i in range(1, 20)]


async def test_publishing_when_not_connected_raises(pair: ChannelPair) -> None:
    publisher, _ = pair
    with pytest.raises(NotConnectedError, match="not connected"):
        await publisher.publish(notification())
    await publisher.connect()
    await publisher.disconnect()
    with pytest.raises(NotConnectedError, match="not connected"):
        await publisher.publish(notification())


async def test_a_failing_subscriber_does_not_stop_the_others(pair: ChannelPair) -> None:
    publisher, subscriber = await connected(pair)
    errors: list[BaseException] = []
    subscriber.on("error", errors.append)

    def broken(_: JobNotification) -> None:
        raise RuntimeError("handler bug")

    inbox = Inbox()
    subscriber.subscribe(broken)
    subscriber.subscribe(inbox)
    await publisher.publish(notification())
    await inbox.wait_for(1)
    assert any("handler bug" in str(e) for e in errors)


def state(kind: str, **fields: Any) -> JobStateNotification:
    values: dict[str, Any] = {
        "type": kind, "job_id": JobId("specific-id"), "job_name": "state-test",
        "timestamp": utcnow(), "source": "test-source",
    }
    values.update(fields)
    return JobStateNotification(**values)


def with_states(pair: ChannelPair) -> ChannelPair:
    publisher, subscriber = pair
    if not subscriber.supports_state_notifications:
        pytest.skip(f"{type(subscriber).__name__} carries no state notifications by design")
    return publisher, subscriber


async def test_state_notifications_round_trip_in_order(pair: ChannelPair) -> None:
    publisher, subscriber = await connected(with_states(pair))
    inbox = Inbox()
    subscriber.subscribe_state(inbox)
    sent = [
        state("start", last_run_at=WHEN),
        state("progress", progress=50),
        state("fail", error="Something went wrong", fail_count=3),
        state("retry", retry_at=WHEN, retry_attempt=2, error="Temporary failure"),
        state("complete", last_run_at=WHEN, last_finished_at=WHEN, duration=60000),
    ]
    for item in sent:
        await publisher.publish_state(item)
    assert await inbox.wait_for(5) == sent


async def test_publishing_state_when_not_connected_raises(pair: ChannelPair) -> None:
    publisher, _ = with_states(pair)
    with pytest.raises(NotConnectedError, match="not connected"):
        await publisher.publish_state(state("start"))


async def test_job_and_state_notifications_do_not_mix(pair: ChannelPair) -> None:
    publisher, subscriber = await connected(with_states(pair))
    jobs, states = Inbox(), Inbox()
    subscriber.subscribe(jobs)
    subscriber.subscribe_state(states)
    await publisher.publish_state(state("success"))
    await publisher.publish(notification())
    await jobs.wait_for(1)
    await states.wait_for(1)
    await settle()
    assert [type(n) for n in jobs.items + states.items] == [
        JobNotification, JobStateNotification,
    ]
