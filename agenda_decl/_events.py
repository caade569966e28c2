"""A small event emitter: listeners may be plain or async; a failing listener is logged."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("agenda_decl")

Listener = Callable[..., Any]


class EventEmitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener) -> None:
        self._listeners.setdefault(event, []).append(listener)

    def off(self, event: str, listener: Listener) -> None:
        listeners = self._listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)

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
                    _spawn(result, event)
            except Exception:
                log.exception("listener for %r raised", event)


_background: set[asyncio.Task[Any]] = set()


def _spawn(coro: Coroutine[Any, Any, Any], event: str) -> None:
    async def guarded() -> None:
        try:
            await coro
        except Exception:
            log.exception("listener for %r raised", event)

    task = asyncio.get_running_loop().create_task(guarded())
    _background.add(task)
    task.add_done_callback(_background.discard)
