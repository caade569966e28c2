"""Stopping background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

#: How long one cancellation may take before it is repeated.
_RECANCEL_AFTER = 0.1


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended, whatever it raised.

    The cancellation is repeated while the task still runs: on Python 3.11, ``asyncio.wait_for``
    loses a cancellation that arrives as its inner wait completes, and drivers wait that way
    (psycopg before 3.3.6 in ``notifies(timeout=...)``), so a single ``cancel()`` can leave the
    task running for ever.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_AFTER)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
