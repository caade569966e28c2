"""Background tasks: starting them, keeping them alive, hearing how they failed, stopping them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

log = logging.getLogger("agenda_decl")

#: How long one cancellation may take before it is repeated.
_RECANCEL_AFTER = 0.1

#: Told about the exception of a background task that failed (not of one that was cancelled).
ErrorHandler = Callable[[BaseException], object]


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended, whatever it raised.

    The cancellation is repeated while the task still runs: on Python 3.11, ``asyncio.wait_for``
    loses a cancellation that arrives as its inner wait completes, and drivers wait that way
    (psycopg before 3.3.6 in ``notifies(timeout=...)``), so a single ``cancel()`` can leave the
    task running for ever.
    """
    if task is None:
        return
    # A task whose cancellation was requested already (``BackgroundTasks.cancel`` and then
    # ``close``) gets its time first: cancelled again at once, a driver cleaning up after the
    # first one is interrupted (psycopg then closes the connection: "query cancellation
    # interrupted").
    repeat = not (isinstance(task, asyncio.Task) and task.cancelling())
    while not task.done():
        if repeat:
            task.cancel()
        repeat = True
        await asyncio.wait({task}, timeout=_RECANCEL_AFTER)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


class BackgroundTasks:
    """Tasks started to run on their own (fire and forget), in one place:

    - a reference to each task is kept until it ends (the loop keeps only weak ones, so an
      unreferenced task can vanish mid-run);
    - the exception of a task that failed goes to ``on_error`` (default: logged with its
      traceback) instead of asyncio's "exception was never retrieved" at garbage collection;
    - :meth:`close` cancels every task still running and waits until all have ended.
    """

    def __init__(
        self, on_error: ErrorHandler | None = None, *, what: str = "background task"
    ) -> None:
        self._on_error = on_error
        self._what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coroutine`` as a task of this set (needs a running loop)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def cancel(self) -> None:
        """Ask every running task to stop, without waiting (see :meth:`close`)."""
        for task in self._tasks:
            task.cancel()

    async def close(self) -> None:
        """Cancel every running task and wait until each has ended (cancellations a driver
        lost are repeated, see :func:`cancel_and_wait`)."""
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self._tasks)))

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        if self._on_error is None:
            log.error("%s failed: %s", self._what, error, exc_info=error)
            return
        try:
            self._on_error(error)
        except Exception:
            log.exception("reporting the failure of a %s failed", self._what)
