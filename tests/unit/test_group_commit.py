"""The one group-commit primitive: batching, last write wins per key, errors per item and per
batch, and no waiter left unsettled when the sender is cancelled or closed."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import pytest

from agenda_decl._group_commit import GroupCommit


class Store:
    """Records each batch; a batch waits for ``gate`` while it is set up to."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, batch: list[str]) -> list[str | Exception]:
        self.batches.append(batch)
        await self.gate.wait()
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in batch]


async def test_a_burst_goes_out_in_one_batch_after_the_first() -> None:
    store = Store()
    store.gate.clear()
    commit: GroupCommit[str, str] = GroupCommit(store.send)
    first = commit.submit_nowait("a")
    await asyncio.sleep(0)  # "a" is in flight, waiting for the store
    burst = [commit.submit_nowait(item) for item in ["b", "c", "d"]]
    store.gate.set()
    assert [await f for f in [first, *burst]] == ["A", "B", "C", "D"]
    assert store.batches == [["a"], ["b", "c", "d"]]


async def test_a_lone_inline_item_goes_out_alone_and_what_comes_meanwhile_after_it() -> None:
    store = Store()
    store.gate.clear()
    commit: GroupCommit[str, str] = GroupCommit(store.send)
    first = asyncio.ensure_future(commit.submit_inline("a"))
    await asyncio.sleep(0)  # "a" is being sent, waiting for the store
    later = [commit.submit_nowait("b"), asyncio.ensure_future(commit.submit_inline("c"))]
    await asyncio.sleep(0)
    assert store.batches == [["a"]]  # nothing else goes out while "a" is in flight
    flushed = asyncio.ensure_future(commit.flush())
    store.gate.set()
    assert [await f for f in [first, *later]] == ["A", "B", "C"]
    await flushed
    assert store.batches == [["a"], ["b", "c"]]
    with pytest.raises(ValueError, match="bad-2"):
        await commit.submit_inline("bad-2")


async def test_limit_bounds_a_batch() -> None:
    store = Store()
    commit: GroupCommit[str, str] = GroupCommit(store.send, limit=2)
    results = await asyncio.gather(*(commit.submit(x) for x in "abcde"))
    assert results == list("ABCDE")
    assert store.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_an_item_error_fails_only_its_waiter() -> None:
    commit: GroupCommit[str, str] = GroupCommit(Store().send)
    good, bad = commit.submit_nowait("ok"), commit.submit_nowait("bad-1")
    assert await good == "OK"
    with pytest.raises(ValueError, match="bad-1"):
        await bad


async def test_detached_items_go_out_in_order_and_report_each_item_error() -> None:
    store = Store()
    store.gate.clear()
    commit: GroupCommit[str, str] = GroupCommit(store.send)
    failures: list[str] = []
    first = commit.submit_nowait("a")
    await asyncio.sleep(0)  # "a" is in flight
    commit.submit_detached("b", lambda error: failures.append(f"1:{error}"))
    commit.submit_detached("bad-1", lambda error: failures.append(f"2:{error}"))
    last = commit.submit_nowait("c")
    commit.submit_detached("bad-2", lambda error: failures.append(f"3:{error}"))
    store.gate.set()
    assert (await first, await last) == ("A", "C")
    await commit.flush()
    assert store.batches == [["a"], ["b", "bad-1", "c", "bad-2"]]
    assert failures == ["2:bad-1", "3:bad-2"]


async def test_a_failed_send_tells_each_detached_handler_once() -> None:
    async def send(batch: list[str]) -> list[str | Exception]:
        raise ConnectionError("store down")

    commit: GroupCommit[str, str] = GroupCommit(send)
    told: list[tuple[str, str]] = []

    def first(error: Exception) -> None:
        told.append(("first", str(error)))

    def second(error: Exception) -> None:
        told.append(("second", str(error)))

    for item, handler in [("a", first), ("b", first), ("c", second), ("d", first)]:
        commit.submit_detached(item, handler)
    waiter = commit.submit_nowait("e")
    with pytest.raises(ConnectionError):
        await waiter
    await commit.flush()
    assert told == [("first", "store down"), ("second", "store down")]


async def test_a_failed_send_fails_the_whole_batch() -> None:
    async def send(batch: list[str]) -> list[str | Exception]:
        raise ConnectionError("store down")

    commit: GroupCommit[str, str] = GroupCommit(send)
    futures = [commit.submit_nowait(x) for x in "ab"]
    for future in futures:
        with pytest.raises(ConnectionError, match="store down"):
            await future


async def test_with_a_key_the_newer_item_replaces_a_waiting_one() -> None:
    store = Store()
    store.gate.clear()
    commit: GroupCommit[str, str] = GroupCommit(store.send, key=lambda item: item[0])
    first = commit.submit_nowait("x1")  # in flight
    await asyncio.sleep(0)
    older, other, newer = (commit.submit_nowait(i) for i in ["y1", "z1", "y2"])
    store.gate.set()
    assert (await first, await older, await other, await newer) == ("X1", "Y2", "Z1", "Y2")
    assert store.batches == [["x1"], ["z1", "y2"]]


async def test_cancelling_the_sender_settles_every_waiter() -> None:
    store = Store()
    store.gate.clear()
    commit: GroupCommit[str, str] = GroupCommit(store.send)
    in_flight = commit.submit_nowait("a")
    await asyncio.sleep(0)
    queued = commit.submit_nowait("b")
    await commit.close()
    assert in_flight.cancelled()
    assert queued.cancelled()
    assert len(commit) == 0


async def test_flush_waits_for_everything_submitted() -> None:
    store = Store()
    commit: GroupCommit[str, str] = GroupCommit(store.send)
    futures = [commit.submit_nowait(x) for x in "abc"]
    await commit.flush()
    assert all(f.done() for f in futures)
    await commit.flush()  # nothing pending: returns at once


async def test_a_merge_combines_the_replaced_item_with_the_newer() -> None:
    store = Store()
    store.gate.clear()
    commit: GroupCommit[str, str] = GroupCommit(
        store.send, key=lambda item: item[0], merge=lambda older, newer: newer + older[1:])
    first = commit.submit_nowait("x1")  # in flight
    await asyncio.sleep(0)
    older, newer = commit.submit_nowait("y1"), commit.submit_nowait("y2")
    store.gate.set()
    assert (await first, await older, await newer) == ("X1", "Y21", "Y21")
    assert store.batches == [["x1"], ["y21"]]


async def test_a_state_write_queued_behind_a_lock_renewal_is_fenced_by_the_stored_lock() -> None:
    """A run's start write renews the lock (fenced by the claim's); an end write that
    replaces it before it went out must still be fenced by the claim's lock, which is the
    one the store holds."""
    from datetime import UTC, datetime, timedelta

    from agenda_decl._model import JobParameters
    from agenda_decl.runtime.state_writer import StateWriter

    sent: list[tuple[list[Any], Any]] = []
    gate = asyncio.Event()

    class Repository:
        async def save_job_states(self, jobs: Any, *, last_modified_by: Any = None,
                                  lock_tokens: Any = None) -> list[Any]:
            sent.append(([job.locked_at for job in jobs], lock_tokens))
            await gate.wait()
            return []

    writer = StateWriter(Repository(), "w")  # type: ignore[arg-type]
    claimed = datetime(2026, 1, 1, tzinfo=UTC)
    started = claimed + timedelta(seconds=2)
    other = writer.submit(JobParameters(id="other", name="n"))  # in flight
    await asyncio.sleep(0)
    start = writer.submit(JobParameters(id="j", name="n", locked_at=started), lock_token=claimed)
    end = writer.submit(JobParameters(id="j", name="n", locked_at=None), lock_token=started)
    gate.set()
    await asyncio.gather(other, start, end)
    assert sent[1] == ([None], {"j": claimed})


class CleanupNeedsTheLoop(Store):
    """A driver whose cleanup, when its call is closed, needs the (closed) loop: the
    GeneratorExit becomes ``RuntimeError('Event loop is closed')`` (seen with redis-py)."""

    async def send(self, batch: list[str]) -> list[str | Exception]:
        try:
            return await super().send(batch)
        except GeneratorExit:
            raise RuntimeError("Event loop is closed") from None


@pytest.mark.parametrize("store_kind", [Store, CleanupNeedsTheLoop])
def test_a_sender_left_pending_when_its_loop_closed_is_collected_quietly(
    store_kind: type[Store],
) -> None:
    # A program (or a test) that closes its loop with a batch in flight: the garbage collector
    # later closes the sender's coroutine with GeneratorExit, outside any loop. It used to try to
    # cancel the waiters there ("Event loop is closed", an unraisable error in whatever ran next).
    unraisable: list[Any] = []
    loop = asyncio.new_event_loop()
    store = store_kind()
    callers: list[asyncio.Future[str]] = []

    async def start(store: Store, callers: list[asyncio.Future[str]]) -> None:
        store.gate.clear()
        commit: GroupCommit[str, str] = GroupCommit(store.send)
        callers.append(asyncio.ensure_future(commit.submit("a")))  # a caller awaits "a"
        await asyncio.sleep(0)  # "a" is in flight, waiting for the store forever

    batches = store.batches
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        loop.run_until_complete(start(store, callers))
        loop.close()
        del loop, store, callers  # the store's event holds the sender's task: let all go
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert batches == [["a"]]
    # Only the sender's: the collection may also close what earlier tests left behind.
    assert [u for u in unraisable if "GroupCommit" in repr(u.object)] == []
