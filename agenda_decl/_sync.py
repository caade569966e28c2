"""The one synchronous entry point: run agenda-decl coroutines from code that is not async
(a Flask view, a Django command, a script).

    from agenda_decl import run_sync
    run_sync(agenda.now("send-email", {"to": "a@b.c"}))

Every call runs on one background event loop that agenda-decl owns, so the connections an
``Agenda`` opens there stay on that loop across calls. Do not mix: an ``Agenda`` used through
``run_sync`` should not also be awaited on another loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_loop.run_forever, name="agenda-decl-sync", daemon=True
            )
            thread.start()
        return _loop


def run_sync(coroutine: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
    """Run ``coroutine`` on agenda-decl's background loop and return its result.

    Raises what the coroutine raised, or ``TimeoutError`` after ``timeout`` seconds. Must not
    be called from inside a running event loop (await the coroutine there instead).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coroutine.close()
        raise RuntimeError("run_sync() called inside an event loop: await the coroutine instead")
    future = asyncio.run_coroutine_threadsafe(coroutine, _background_loop())
    return future.result(timeout)
