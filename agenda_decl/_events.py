"""A small event emitter: listeners may be plain or async; a failing listener is logged."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agenda_decl._tasks import BackgroundTasks

log = logging.getLogger("agenda_decl")

Listener = Callable[..., Any]


class EventEmitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        #: Coroutines of async listeners called by :meth:`emit_sync`.
        self._background = BackgroundTasks(what="event listener")
        #: Moves on every ``on`` and ``off`` (``once`` included): what was derived from the
        #: listeners holds while it has not moved.
        self.version = 0

    def on(self, event: str, listener: Listener) -> None:
        self._listeners.setdefault(event, []).append(listener)
        self.version += 1

    def off(self, event: str, listener: Listener) -> None:
        listeners = self._listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)
        self.version += 1

    def once(self, event: str, listener: Listener) -> None:
        def wrapper(*args: Any) -> Any:
            self.off(event, wrapper)
            return listener(*args)

        self.on(event, wrapper)

    def listener_count(self, event: str) -> int:
        return len(self._listeners.get(event, []))

    def events(self) -> list[str]:
        """The events that have listeners now."""
        return [event for event, listeners in self._listeners.items() if listeners]

    async def emit(self, event: str, *args: Any) -> None:
        """Call the listeners in order, awaiting async ones before the next is called."""
        for listener in list(self._listeners.get(event, [])):
            try:
                result = listener(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("listener for %r raised", event)

    def emit_sync(self, event: str, *args: Any) -> None:
        """Call the listeners now; an async listener's coroutine runs as a task."""
        for listener in list(self._listeners.get(event, [])):
            try:
                result = listener(*args)
                if inspect.iscoroutine(result):
                    self._background.spawn(_logged(result, event))
            except Exception:
                log.exception("listener for %r raised", event)


async def _logged(listener_call: Coroutine[Any, Any, Any], event: str) -> None:
    try:
        await listener_call
    except Exception:
        log.exception("listener for %r raised", event)
