"""Group commit: what is submitted while one batch is being sent goes out together in the next,
so a burst costs one round trip instead of one per call, and an idle caller waits for nothing
but its own round trip. Used for job state writes, inserts and notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import attrs

T = TypeVar("T")
R = TypeVar("R")

#: Bound on one batch, so one statement or script stays a reasonable size.
MAX_BATCH = 500

#: ``send(batch)`` stores a batch and returns one result, or the exception of that item, per
#: item in order. An exception raised by ``send`` itself fails every item of the batch.
Send = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]
#: Told why a detached item was not sent (``GroupCommit.submit_detached``); must not raise.
OnFailure = Callable[[Exception], None]


@attrs.define
class _Waiting(Generic[T, R]):
    item: T
    futures: list[asyncio.Future[R]]
    on_failure: OnFailure | None = None


class GroupCommit(Generic[T, R]):
    """Batches items for ``send``.

    Guarantees:

    - every future returned by ``submit_nowait`` (and every ``submit``) is settled: with its
      item's result, with the exception of its item or batch, or cancelled when the sender
      task itself is cancelled (loop shutdown) or ``close`` is called. Nobody waits forever.
    - with ``key``, an item submitted while another with the same key still waits replaces
      it (the newer goes to the back of the queue; ``merge(older, newer)`` when given, else
      the newer) and both waiters get its result: one batch never holds a key twice, and the
      last write wins.
    - items go out in submission order, at most ``limit`` per batch, one batch at a time.
    - an item of ``submit_detached`` that fails calls its ``on_failure`` with the error, once
      per distinct error and handler of a batch (a batch that fails whole: once).
    """

    def __init__(
        self,
        send: Send[T, R],
        *,
        limit: int = MAX_BATCH,
        key: Callable[[T], Hashable] | None = None,
        merge: Callable[[T, T], T] | None = None,
    ) -> None:
        self._send = send
        self._limit = limit
        self._key = key
        self._merge = merge
        self._waiting: dict[Hashable, _Waiting[T, R]] = {}
        self._sender: asyncio.Task[None] | None = None
        #: Settled when the item ``submit_inline`` is sending from its caller's task is sent.
        self._inline: asyncio.Future[None] | None = None
        self._unkeyed = 0

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; the returned future settles when its batch has been sent."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue(loop, item, future, None)
        return future

    def submit_detached(self, item: T, on_failure: OnFailure) -> None:
        """Queue ``item`` with nobody waiting for it (no future, no callback per item: a
        worker publishes three notifications per job); ``on_failure(error)`` if it is not
        sent."""
        self._queue(asyncio.get_running_loop(), item, None, on_failure)

    def _queue(self, loop: asyncio.AbstractEventLoop, item: T,
               future: asyncio.Future[R] | None, on_failure: OnFailure | None) -> None:
        key = self._key_of(item)
        replaced = self._waiting.pop(key, None)
        futures = [future] if future is not None else []
        if replaced is not None:
            if self._merge is not None:
                item = self._merge(replaced.item, item)
            futures[:0] = replaced.futures
            on_failure = on_failure or replaced.on_failure
        self._waiting[key] = _Waiting(item, futures, on_failure)
        if self._sender is None and self._inline is None:
            self._sender = loop.create_task(self._run())

    async def submit(self, item: T) -> R:
        return await self.submit_nowait(item)

    async def submit_inline(self, item: T) -> R:
        """:meth:`submit`, except that an item submitted while nothing waits and no batch is
        in flight is sent from the caller's own task: a lone call skips the hop through the
        sender task (a few hundredths of a millisecond, on an enqueue of under one). What is
        submitted meanwhile waits for it, as it waits for a batch in flight. Unlike
        ``submit``'s, this send stops if the caller is cancelled."""
        if self._sender is not None or self._inline is not None or self._waiting:
            return await self.submit(item)
        loop = asyncio.get_running_loop()
        self._inline = sent = loop.create_future()
        try:
            results = await self._send([item])
        finally:
            sent.set_result(None)
            self._inline = None
            if self._waiting and self._sender is None:
                self._sender = loop.create_task(self._run())
        (result,) = results
        if isinstance(result, Exception):
            raise result
        return result

    async def flush(self) -> None:
        """Wait until everything submitted so far has been sent (or failed)."""
        while self._sender is not None or self._inline is not None:
            await asyncio.wait({f for f in (self._sender, self._inline) if f is not None})

    async def close(self) -> None:
        """Stop sending; every waiter not yet settled is cancelled."""
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            await asyncio.wait({sender})
        self._cancel_all(list(self._waiting.values()))

    def __len__(self) -> int:
        return len(self._waiting)

    def _key_of(self, item: T) -> Hashable:
        if self._key is not None:
            return self._key(item)
        self._unkeyed += 1
        return self._unkeyed

    async def _run(self) -> None:
        batch: list[_Waiting[T, R]] = []
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        try:
            while self._waiting and not loop.is_closed():
                keys = list(self._waiting)[: self._limit]
                batch = [self._waiting.pop(key) for key in keys]
                await self._send_batch(batch)
                batch = []
        except GeneratorExit:  # closed by the garbage collector after its loop: no loop to use
            raise
        except BaseException:  # cancelled: nobody may wait forever
            self._cancel_all(batch + list(self._waiting.values()))
            raise
        finally:
            if self._sender is me:
                self._sender = None

    async def _send_batch(self, batch: list[_Waiting[T, R]]) -> None:
        try:
            results: Sequence[R | Exception] = await self._send([w.item for w in batch])
        except Exception as error:
            results = [error] * len(batch)
        failures: dict[tuple[OnFailure, int], Exception] = {}
        for waiting, result in zip(batch, results, strict=True):
            for future in waiting.futures:
                _settle(future, result)
            if waiting.on_failure is not None and isinstance(result, Exception):
                failures.setdefault((waiting.on_failure, id(result)), result)
        for (on_failure, _), failure in failures.items():  # once every waiter is settled
            on_failure(failure)

    def _cancel_all(self, waiting: list[_Waiting[T, R]]) -> None:
        self._waiting.clear()
        for entry in waiting:
            for future in entry.futures:
                if not _orphaned(future):
                    future.cancel()


def _orphaned(future: asyncio.Future[Any]) -> bool:
    """Whether ``future``'s loop has closed: the garbage collector is closing a sender left
    pending by a program that closed its loop, and a driver's cleanup under it may have
    turned that into an error ("Event loop is closed"). Nobody is left to wake, and settling
    would raise again, as an unraisable error in whatever runs next."""
    return future.get_loop().is_closed()


def _settle(future: asyncio.Future[R], result: R | Exception) -> None:
    if future.done() or _orphaned(future):  # the caller gave up waiting, or is gone
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
