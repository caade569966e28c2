"""The reconnect state machine shared by every channel, driven by a channel whose server
can be switched off and on."""

from __future__ import annotations

import asyncio

import pytest

from agenda_decl import JobId, JobNotification, NotConnectedError
from agenda_decl._clock import utcnow
from agenda_decl.notifications import InMemoryNotificationChannel, ReconnectOptions

NOTE = JobNotification(job_id=JobId("1"), job_name="j", next_run_at=None, priority=0,
                       timestamp=utcnow())
FAST = ReconnectOptions(max_attempts=3, initial_delay=10, max_delay=40, jitter=0)


class FlakyChannel(InMemoryNotificationChannel):
    def __init__(self, reconnect: ReconnectOptions = FAST) -> None:
        super().__init__(reconnect=reconnect)
        self.server_up = True
        self.opens = 0

    async def _open(self) -> None:
        self.opens += 1
        if not self.server_up:
            raise ConnectionError("server down")


async def wait_for_state(channel: FlakyChannel, state: str) -> None:
    async with asyncio.timeout(5):
        while channel.state != state:
            await asyncio.sleep(0.005)


def test_delays_grow_and_are_capped() -> None:
    options = ReconnectOptions(initial_delay=100, max_delay=30_000, jitter=0)
    assert [options.delay_for(n) for n in range(10)] == [
        0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0,
    ]


async def test_a_lost_connection_reconnects() -> None:
    channel, states = FlakyChannel(), []
    channel.on("stateChange", states.append)
    await channel.connect()
    channel.connection_lost(ConnectionError("reset by peer"))
    assert channel.state == "reconnecting"
    await wait_for_state(channel, "connected")
    assert states == ["connecting", "connected", "reconnecting", "connecting", "connected"]


async def test_it_gives_up_into_error_after_max_attempts() -> None:
    channel, errors = FlakyChannel(), []
    channel.on("error", errors.append)
    await channel.connect()
    channel.server_up = False
    channel.connection_lost(ConnectionError("reset by peer"))
    await wait_for_state(channel, "error")
    assert channel.opens == 1 + 3
    assert "Max reconnection attempts reached" in str(errors[-1])
    with pytest.raises(NotConnectedError):
        await channel.publish(NOTE)


async def test_without_reconnect_a_lost_connection_is_an_error_state() -> None:
    channel, errors = FlakyChannel(ReconnectOptions(enabled=False)), []
    channel.on("error", errors.append)
    await channel.connect()
    channel.connection_lost(ConnectionError("reset by peer"))
    assert channel.state == "error"  # not "connected": nothing will reconnect it
    assert [str(e) for e in errors] == ["reset by peer"]
    assert channel.opens == 1


async def test_the_attempt_counter_resets_only_after_success() -> None:
    channel = FlakyChannel(ReconnectOptions(max_attempts=5, initial_delay=10, max_delay=40,
                                            jitter=0))
    await channel.connect()
    channel.server_up = False
    channel.connection_lost(ConnectionError("reset"))
    async with asyncio.timeout(5):
        while channel.opens < 3:
            await asyncio.sleep(0.005)
    channel.server_up = True
    await wait_for_state(channel, "connected")
    channel.connection_lost(ConnectionError("again"))
    await wait_for_state(channel, "connected")
    assert channel.state == "connected"


async def test_a_failed_first_connect_raises_and_retries() -> None:
    channel = FlakyChannel()
    channel.server_up = False
    with pytest.raises(ConnectionError, match="server down"):
        await channel.connect()
    channel.server_up = True
    await wait_for_state(channel, "connected")


async def test_disconnect_stops_reconnecting() -> None:
    channel = FlakyChannel()
    await channel.connect()
    channel.server_up = False
    channel.connection_lost(ConnectionError("reset"))
    await channel.disconnect()
    opens = channel.opens
    await asyncio.sleep(0.1)
    assert (channel.state, channel.opens) == ("disconnected", opens)


async def test_a_connection_that_dies_after_each_reopen_still_backs_off() -> None:
    channel, errors = FlakyChannel(), []
    channel.on("error", errors.append)
    await channel.connect()
    for _ in range(3):
        channel.connection_lost(ConnectionError("dies at once"))
        await wait_for_state(channel, "connected")
    channel.connection_lost(ConnectionError("dies at once"))
    assert channel.state == "error"
    assert "Max reconnection attempts reached" in str(errors[-1])


def test_a_listener_closed_after_its_loop_ended_reports_nothing() -> None:
    # A program that closed its loop with a channel still connected: the garbage collector
    # later closes the listener's coroutine, and a driver's cleanup may turn that into an
    # error the listener hands to connection_lost, outside any loop. Nothing can reconnect
    # there and nobody is left to tell (it raised "no running event loop", an unraisable
    # error in whatever ran next).
    loop = asyncio.new_event_loop()
    channel, errors = FlakyChannel(), []
    channel.on("error", errors.append)
    loop.run_until_complete(channel.connect())
    loop.close()
    channel.connection_lost(RuntimeError("Event loop is closed"))
    assert errors == []
