"""Shared plumbing of every notification channel: the state machine, subscriber fan-out and
reconnection with growing, capped backoff."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from agenda_decl._events import EventEmitter
from agenda_decl._group_commit import OnFailure
from agenda_decl._model import JobNotification, JobStateNotification, NotificationChannelState
from agenda_decl._tasks import cancel_and_wait
from agenda_decl.errors import InvalidOptionError, NotConnectedError
from agenda_decl.interfaces import (
    ChannelEvent,
    NotificationChannel,
    NotificationHandler,
    StateNotificationHandler,
    Unsubscribe,
)

log = logging.getLogger("agenda_decl.notifications")

#: A connection up this long counts as healthy again: the next loss starts backing off anew.
STABLE_SECONDS = 30.0


@attrs.define(kw_only=True, frozen=True)
class ReconnectOptions:
    """Reconnect after a lost connection: delays grow ``initial_delay * 2**n`` (ms) up to
    ``max_delay``, with +-``jitter`` spread; after ``max_attempts`` failures in a row the
    channel goes to ``error`` and stays there until ``connect()`` is called again."""

    enabled: bool = True
    max_attempts: int = 10
    initial_delay: int = 100
    max_delay: int = 30_000
    jitter: float = 0.2

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based)."""
        base = float(min(self.initial_delay * 2**attempt, self.max_delay))
        spread = base * self.jitter * random.uniform(-1, 1)  # noqa: S311 - jitter, not crypto
        return max(0.0, base + spread) / 1000


class BaseNotificationChannel(NotificationChannel):
    """Subclasses implement ``_open()``/``_close()``/``publish()``; this class keeps the state,
    fans notifications out to subscribers, and reconnects after ``connection_lost()``."""

    def __init__(
        self, *, channel_name: str = "agenda:jobs", reconnect: ReconnectOptions | None = None
    ) -> None:
        self.channel_name = channel_name
        self.reconnect_options = reconnect or ReconnectOptions()
        self._state: NotificationChannelState = "disconnected"
        self._events = EventEmitter()
        self._handlers: list[NotificationHandler] = []
        self._state_handlers: list[StateNotificationHandler] = []
        self._reconnect_attempts = 0
        self._reconnect_task: asyncio.Task[None] | None = None
        self._opened_at = 0.0
        #: What the asynchronous subscribers of a notification delivered at once have left
        #: to do (:meth:`deliver_at_once`): later deliveries wait for it (:meth:`settled`).
        self._unsettled: asyncio.Task[None] | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> NotificationChannelState:
        return self._state

    def set_state(self, state: NotificationChannelState) -> None:
        """Change the state; ``stateChange`` fires only on a real change."""
        if state != self._state:
            self._state = state
            self._events.emit_sync("stateChange", state)

    def on(self, event: ChannelEvent, listener: Callable[..., Any]) -> None:
        self._events.on(event, listener)

    def off(self, event: ChannelEvent, listener: Callable[..., Any]) -> None:
        self._events.off(event, listener)

    def emit_error(self, error: BaseException) -> None:
        """Report an error to ``error`` listeners (logged when there are none)."""
        if self._events.listener_count("error"):
            self._events.emit_sync("error", error)
        else:
            log.warning("%s: %s", type(self).__name__, error)

    def publish_state_soon(
        self, notification: JobStateNotification, on_failure: OnFailure
    ) -> bool:
        """Queue ``notification`` without a task, a future or a callback of the caller's (a
        worker publishes three per job); ``on_failure(error)`` when it could not be sent
        (once per error of a batch). False: this channel has no queue of its own; await
        ``publish_state``."""
        return False

    def require_connected(self, what: str = "publish") -> None:
        if self._state != "connected":
            raise NotConnectedError(f"Cannot {what}: channel not connected")

    # -- subscribers ---------------------------------------------------------------------

    def subscribe(self, handler: NotificationHandler) -> Unsubscribe:
        return _add_handler(self._handlers, handler)

    def subscribe_state(self, handler: StateNotificationHandler) -> Unsubscribe:
        return _add_handler(self._state_handlers, handler)

    async def notify_handlers(self, notification: JobNotification) -> None:
        await self._fan_out(list(self._handlers), notification)

    async def notify_state_handlers(self, notification: JobStateNotification) -> None:
        await self._fan_out(list(self._state_handlers), notification)

    def call_handlers(self, notification: JobNotification) -> list[Awaitable[Any]]:
        """Call every job subscriber now, in the caller's task; return what the asynchronous
        ones left to await (:meth:`settle`). :meth:`notify_handlers` is both in one call."""
        return self._call(list(self._handlers), notification)

    def deliver_at_once(self, notification: JobNotification) -> None:
        """Call the job subscribers in the caller's task: a listener's, for an idle worker's
        wake-up, so that the claim they start is not one task switch (a dispatcher's)
        further away. What asynchronous ones return is awaited in a task of its own; a
        dispatcher that delivers later notifications waits for it first (:meth:`settled`),
        so subscribers still see them in arrival order."""
        pending = self.call_handlers(notification)
        if pending:
            self._unsettled = asyncio.get_running_loop().create_task(self.settle(pending))

    @property
    def all_settled(self) -> bool:
        """Whether nothing delivered at once is still with asynchronous subscribers."""
        return self._unsettled is None or self._unsettled.done()

    async def settled(self) -> None:
        """Wait until what :meth:`deliver_at_once` delivered has been handled."""
        if self._unsettled is not None and not self._unsettled.done():
            await asyncio.wait({self._unsettled})

    async def _fan_out(self, handlers: list[Callable[[Any], Any]], payload: object) -> None:
        await self.settle(self._call(handlers, payload))

    def _call(self, handlers: list[Callable[[Any], Any]], payload: object) -> list[Awaitable[Any]]:
        pending: list[Awaitable[Any]] = []
        for handler in handlers:
            try:
                result = handler(payload)
            except Exception as error:
                self.emit_error(error)
                continue
            if inspect.isawaitable(result):
                pending.append(result)
        return pending

    async def settle(self, pending: list[Awaitable[Any]]) -> None:
        """Await what subscribers returned; their errors go to ``error`` listeners."""
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, Exception):
                self.emit_error(outcome)

    # -- connecting ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection; on failure emit ``error``, schedule a reconnect (not for a
        refused configuration, which no retry mends) and raise."""
        self._cancel_reconnect()
        self.set_state("connecting")
        try:
            await self._open()
        except Exception as error:
            self.emit_error(error)
            self.set_state("error")
            if not isinstance(error, InvalidOptionError):
                self._schedule_reconnect()
            raise
        self._reconnect_attempts = 0
        self._opened_at = time.monotonic()
        self.set_state("connected")

    async def disconnect(self) -> None:
        self._cancel_reconnect()
        self._reconnect_attempts = 0
        try:
            await self._close()
        finally:
            await cancel_and_wait(self._unsettled)
            self._unsettled = None
            self._handlers.clear()
            self._state_handlers.clear()
            self.set_state("disconnected")

    async def _open(self) -> None:
        """Open connections and start listening (subclasses)."""

    async def _close(self) -> None:
        """Stop listening and close what ``_open`` opened (subclasses)."""

    def connection_lost(self, error: BaseException) -> None:
        """Called by a subclass when its listening connection died."""
        if self._state in ("disconnected", "reconnecting") or not _in_a_loop():
            # No loop: the garbage collector is closing a listener left running by a program
            # that closed its loop (a driver's cleanup turned that into an error): nothing can
            # reconnect and nobody is left to tell.
            return
        if time.monotonic() - self._opened_at >= STABLE_SECONDS:
            # Only a connection that stayed up earns a fresh backoff; one that dies right
            # after each reopen keeps backing off and finally gives up.
            self._reconnect_attempts = 0
        self.emit_error(error)
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        options = self.reconnect_options
        if not options.enabled:
            self.set_state("error")  # no reconnect coming: never pretend to be connected
            return
        if self._reconnect_task is not None:
            return
        if self._reconnect_attempts >= options.max_attempts:
            self.set_state("error")
            self.emit_error(ConnectionError("Max reconnection attempts reached"))
            return
        delay = options.delay_for(self._reconnect_attempts)
        self._reconnect_attempts += 1
        self.set_state("reconnecting")
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(delay))

    async def _reconnect(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._reconnect_task = None
        attempts = self._reconnect_attempts
        try:
            await self._close()
        except Exception:
            log.debug("closing the dead connection failed", exc_info=True)
        self.set_state("connecting")
        try:
            await self._open()
        except Exception as error:
            self.emit_error(error)
            self._reconnect_attempts = attempts
            self._schedule_reconnect()
            return
        self._opened_at = time.monotonic()
        self.set_state("connected")

    def _cancel_reconnect(self) -> None:
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            self._reconnect_task = None


def _add_handler(handlers: list[Any], handler: Any) -> Unsubscribe:
    if handler not in handlers:
        handlers.append(handler)

    def unsubscribe() -> None:
        if handler in handlers:
            handlers.remove(handler)

    return unsubscribe


def _in_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
