"""PostgreSQL LISTEN/NOTIFY on Agenda v6's channels, with a liveness probe of the LISTEN
connection (its SQL is in ``postgres.sql``; its connections come from ``connectors.postgres``,
as the repository's do)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from agenda_decl._convert import (
    notification_from_json,
    notification_to_json,
    state_notification_from_json,
)
from agenda_decl._group_commit import GroupCommit, OnFailure
from agenda_decl._model import JobNotification, JobStateNotification
from agenda_decl._named_blocks import load_named_blocks
from agenda_decl._secrets import mask_url
from agenda_decl._tasks import cancel_and_wait
from agenda_decl.connectors.postgres import (
    Connection,
    ConnectionLender,
    Pool,
    behind_pooler,
    connect,
    open_pool,
    pool_target,
    retrying,
    run,
    unavailable,
    where,
)
from agenda_decl.connectors.retry import DEFAULT_RETRY_FOR, Attempt
from agenda_decl.errors import InvalidOptionError
from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions
from agenda_decl.timing import Duration

log = logging.getLogger("agenda_decl.backends.postgres")

_SQL = load_named_blocks("agenda_decl.notifications", "postgres.sql")
_NOTIFY_MANY = _SQL["notify_many"]
_NOTIFY_ONE_CHANNEL = _SQL["notify_one_channel"]
_PROBE = sql.SQL(_SQL["probe"]).format()

#: What the LISTEN connection calls itself on the server (``application_name`` in
#: pg_stat_activity) when the connection string names nothing: it also runs an idle
#: worker's claims (``ConnectionLender``), so its last query does not tell it apart.
LISTEN_APPLICATION_NAME = "agenda-decl listen"
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_NOTIFY_BYTES = 7999
_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
_CUT = "... [truncated]"


# -- names and payloads -------------------------------------------------------------------------


def check_channel_name(value: str) -> str:
    """Letters, digits, ``_ : . -``; with ``:state`` appended it must fit 63 bytes."""
    if not isinstance(value, str) or not _CHANNEL.match(value) or len(value) > 63 - 6:
        raise InvalidOptionError(
            f"invalid channel_name: {value!r} (letters, digits, '_', ':', '.', '-', "
            "starting with a letter or underscore, at most 57 characters)"
        )
    return value


def _fits(payload: str) -> bool:
    # An ASCII payload (every state notification: its JSON escapes the rest) has as many bytes
    # as characters; isascii() reads a flag the string keeps, encode() copies it (three a job).
    size = len(payload) if payload.isascii() else len(payload.encode())
    return size <= MAX_NOTIFY_BYTES


def _state_payload(notification: JobStateNotification) -> str | None:
    """The JSON of a state notification, its ``error`` cut to the longest prefix that fits
    NOTIFY's limit (None when nothing fits). JSON escapes make the byte size of a prefix
    uneven, so the cut is found by bisection."""
    payload = notification_to_json(notification)
    if _fits(payload):
        return payload
    if not notification.error:
        return None

    def with_error(error: str | None) -> str:
        return notification_to_json(attrs.evolve(notification, error=error))

    error = notification.error[:MAX_NOTIFY_BYTES]  # every character takes at least a byte
    low, high = -1, len(error)  # low: the longest prefix known to fit (-1: none yet)
    while low < high:
        middle = (low + high + 1) // 2
        if _fits(with_error(error[:middle] + _CUT)):
            low = middle
        else:
            high = middle - 1
    payload = with_error(error[:low] + _CUT) if low >= 0 else with_error(None)
    return payload if _fits(payload) else None


def _named(conninfo: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with :data:`LISTEN_APPLICATION_NAME`, unless the connection string, the
    arguments or the environment (``PGAPPNAME``) name the application already."""
    try:
        given = conninfo_to_dict(conninfo)
    except psycopg.Error:  # connect() says what is wrong, without the password
        return kwargs
    if "application_name" in kwargs or "application_name" in given or os.environ.get("PGAPPNAME"):
        return kwargs
    return {**kwargs, "application_name": LISTEN_APPLICATION_NAME}


class _Listener:
    """One LISTEN connection: hands notifications on, probes liveness between waits, and
    reports its death once through ``lost``."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        channels: tuple[str, ...],
        deliver: Callable[[psycopg.Notify], bool],
        lost: Callable[[BaseException], None],
        *,
        probe_interval: float,
        probe_timeout: float,
        lender: ConnectionLender | None = None,
    ) -> None:
        self.conn = conn
        self._lender = lender
        self._channels = channels
        self._deliver = deliver
        self._lost = lost
        self._interval = probe_interval
        self._timeout = probe_timeout
        self._probe_task: asyncio.Future[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading (after LISTEN: the notifies loop holds the connection's lock)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def listen(self, channels: Sequence[str]) -> None:
        for channel in channels:
            await self.conn.execute(sql.SQL(_SQL["listen"]).format(channel=sql.Identifier(channel)))

    async def _run(self) -> None:
        try:
            while True:
                await self._hear_until(time.monotonic() + self._interval)
                await self._probe()
        except Exception as error:
            self._lost(error)

    async def _hear_until(self, deadline: float) -> None:
        """Hand on what arrives until ``deadline``, one packet of notifications at a time:
        between two, the connection is free (psycopg keeps what arrives meanwhile for the
        next ``notifies``, and hands over a packet whole before ``stop_after`` ends it)."""
        while (remaining := deadline - time.monotonic()) > 0:
            woke = False
            async for note in self.conn.notifies(timeout=remaining, stop_after=1):
                woke = self._deliver(note) or woke
            if woke:
                await self._lend()

    async def _lend(self) -> None:
        """An idle worker's wake-up was delivered from this task: let the claim it started
        send its statement before this task reads again, on this connection if a lender
        takes it (see ``ConnectionLender``)."""
        if self._lender is None:
            await asyncio.sleep(0)
            return
        self._lender.offer(self.conn)
        try:
            await asyncio.sleep(0)  # the claim, a task made during the delivery, runs first
        finally:
            await self._lender.withdraw()

    async def _probe(self) -> None:
        """``SELECT`` on the LISTEN connection; a half-open socket never answers. A LISTEN the
        server silently dropped is issued again."""
        self._probe_task = asyncio.ensure_future(self.conn.execute(_PROBE))
        done, _ = await asyncio.wait({self._probe_task}, timeout=self._timeout)
        if not done:
            raise ConnectionError(f"the LISTEN connection did not answer within {self._timeout} s")
        cursor, self._probe_task = self._probe_task.result(), None
        row = await cursor.fetchone()
        listening = set(row[0] if row else ())
        await self.listen([c for c in self._channels if c not in listening])

    async def close(self) -> None:
        """Stop; a probe still in flight is cancelled before the connection is closed (closing
        first would pull the socket from under it)."""
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._probe_task)
        with contextlib.suppress(Exception):
            await self.conn.close()


class PostgresNotificationChannel(BaseNotificationChannel):
    """LISTEN/NOTIFY on Agenda's channels (``<channel_name>`` and ``<channel_name>:state``).

    A dedicated connection LISTENs; every ``probe_interval`` seconds it must answer a query
    within ``probe_timeout`` or it is treated as dead and reopened with the base backoff.
    Publishing goes through a pool: the backend's, the one given, or a small one of its own;
    a publish is repeated through an outage for up to ``retry_for`` (a repeat may deliver a
    notification twice, which costs a claim that finds nothing). Delivery is at most once:
    the scheduler's poll covers whatever is lost.

    ``listen_connection_string`` is where the LISTEN connection goes when publishing (and
    the storage) go through a transaction pooler such as PgBouncer: a pooler hands each
    transaction to any server connection, so a LISTEN through it hears nothing. Without it
    the LISTEN connection uses ``connection_string`` (or the pool's target), and ``connect``
    refuses one that turns out to reach the server through a pooler (``InvalidOptionError``);
    behind a pooler in session mode, where LISTEN works, give the same URL again.
    """

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        pool: Pool | None = None,
        channel_name: str = "agenda:jobs",
        reconnect: ReconnectOptions | None = None,
        probe_interval: float = 5.0,
        probe_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        retry_for: Duration = DEFAULT_RETRY_FOR,
        listen_connection_string: str | None = None,
    ) -> None:
        if connection_string is None and pool is None:
            raise InvalidOptionError("PostgresNotificationChannel needs connection_string or pool")
        super().__init__(channel_name=check_channel_name(channel_name), reconnect=reconnect)
        self.state_channel_name = f"{channel_name}:state"
        self._conninfo = connection_string
        self._listen_conninfo = listen_connection_string
        self._shared_pool = pool
        self._own_pool: Pool | None = None
        self._lender: ConnectionLender | None = None
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._connect_timeout = connect_timeout
        self._listener: _Listener | None = None
        self._queue: asyncio.Queue[psycopg.Notify] = asyncio.Queue(maxsize=10_000)
        self._dispatcher: asyncio.Task[None] | None = None
        #: Whether the dispatcher is handing a batch to the subscribers.
        self._dispatching = False
        self._dropped = 0
        self._disposals: set[asyncio.Task[None]] = set()
        self._outbox: GroupCommit[tuple[str, str], None] = GroupCommit(self._send)
        self._retrying = retrying(where(connection_string, pool), retry_for)

    def __repr__(self) -> str:
        where = mask_url(self._conninfo) if self._conninfo else "<pool>"
        return (f"PostgresNotificationChannel({where!r}, channel_name={self.channel_name!r}, "
                f"state={self.state!r})")

    @property
    def supports_state_notifications(self) -> bool:
        return True

    @property
    def listen_pid(self) -> int | None:
        """The server process id of the LISTEN connection (for diagnostics and tests)."""
        return self._listener.conn.info.backend_pid if self._listener else None

    def lend_listener(self, lender: ConnectionLender) -> None:
        """Lend the LISTEN connection through ``lender`` right after each idle worker's
        wake-up (see ``ConnectionLender``): for a repository on the same server, whose claim
        then runs there. Takes effect at the next connect."""
        self._lender = lender

    def use_pool(self, pool: Pool) -> None:
        """Publish (and find the server) through ``pool``, which this channel never closes."""
        self._shared_pool = pool

    # -- connection ------------------------------------------------------------------------------

    async def _target(self) -> tuple[str, dict[str, Any]]:
        if self._listen_conninfo is not None:
            return self._listen_conninfo, {}
        if self._conninfo is not None:
            return self._conninfo, {}
        assert self._shared_pool is not None
        return await pool_target(self._shared_pool)

    async def _open(self) -> None:
        await self._close()
        conninfo, kwargs = await self._target()
        conn = await connect(conninfo, self._connect_timeout, **_named(conninfo, kwargs))
        if self._listen_conninfo is None:
            await self._refuse_pooler(conn, conninfo)
        channels = (self.channel_name, self.state_channel_name)
        listener = _Listener(conn, channels, self._enqueue, self.connection_lost,
                             probe_interval=self._probe_interval, probe_timeout=self._probe_timeout,
                             lender=self._lender)
        try:
            await listener.listen(channels)
            await self._publishing_pool()
        except Exception as error:
            await listener.close()
            raise unavailable(conninfo, error) from None
        self._listener = listener
        listener.start()
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _refuse_pooler(self, conn: Connection, conninfo: str) -> None:
        """A LISTEN through a transaction pooler would hear nothing, silently: refuse it."""
        try:
            pooled = await behind_pooler(conn)
        except Exception as error:
            await conn.close()
            raise unavailable(conninfo, error) from None
        if pooled:
            await conn.close()
            raise InvalidOptionError(
                f"notification channel {self.channel_name!r}: {mask_url(conninfo)} reaches "
                "PostgreSQL through a connection pooler, where LISTEN hears nothing (a "
                "transaction pooler hands each statement to any server connection). Give "
                "listen_connection_string, a direct URL to the server, for the LISTEN "
                "connection (the same URL if the pooler runs in session mode)."
            )

    async def _close(self) -> None:
        """Drop the LISTEN connection in the background (a dead one may take a while to let
        go); ``disconnect`` waits for it."""
        listener, self._listener = self._listener, None
        if listener is not None:
            task = asyncio.get_running_loop().create_task(listener.close())
            self._disposals.add(task)
            task.add_done_callback(self._disposals.discard)

    async def disconnect(self) -> None:
        try:
            await super().disconnect()
        finally:
            await self._outbox.flush()
            await asyncio.gather(*self._disposals, return_exceptions=True)
            await cancel_and_wait(self._dispatcher)
            self._dispatcher = None
            while not self._queue.empty():  # nothing stale for the next connect
                self._queue.get_nowait()
            if self._own_pool is not None:
                pool, self._own_pool = self._own_pool, None
                await pool.close()

    async def _publishing_pool(self) -> Pool:
        if self._shared_pool is not None:
            return self._shared_pool
        if self._own_pool is None:
            assert self._conninfo is not None
            # A separate LISTEN URL means publishing goes through a pooler.
            pool = await open_pool(self._conninfo, max_size=2, name="agenda-decl:notify",
                                   wait_timeout=self._connect_timeout,
                                   pooled=self._listen_conninfo is not None)
            self._own_pool = pool
        return self._own_pool

    # -- receiving -------------------------------------------------------------------------------

    def _enqueue(self, note: psycopg.Notify) -> bool:
        """Hand ``note`` on; whether it went to the job subscribers at once (see below).

        The listener never waits on subscribers: a slow one must not delay the probe. Only
        what someone subscribes to is queued: a busy worker hears its own three state
        notifications per job, which nobody here wants unless a state event has listeners.
        A job notification that finds nothing waiting (an idle worker's wake-up) skips the
        queue: its subscribers are called from the listener's task, so the claim they start
        is not one task switch (the dispatcher's) further away."""
        if not note.payload or not self._wanted(note.channel):
            return False
        if note.channel == self.channel_name and self._idle():
            return self._deliver_now(note)
        try:
            self._queue.put_nowait(note)
        except asyncio.QueueFull:
            if not self._dropped:
                log.warning("subscribers are behind: dropping notifications on %r", note.channel)
            self._dropped += 1
            return False
        if self._dropped:
            log.warning("dropped %d notifications while subscribers were behind", self._dropped)
            self._dropped = 0
        return False

    def _idle(self) -> bool:
        """Whether no earlier notification still waits for, or is with, the subscribers."""
        return self._queue.empty() and not self._dispatching and self.all_settled

    def _deliver_now(self, note: psycopg.Notify) -> bool:
        """Call the job subscribers in this task; what asynchronous ones return is awaited
        in a task of its own (the listener must not wait)."""
        try:
            notification = notification_from_json(note.payload)
        except Exception as error:  # any DB user can NOTIFY: a hint, never trusted
            _malformed(note, error)
            return False
        self.deliver_at_once(notification)
        return True

    async def _dispatch(self) -> None:
        """Deliver everything received so far in one go: awaiting each notification's
        subscribers separately would cost a loop turn apiece, and a busy worker would fall
        behind. Subscribers are still called in arrival order."""
        while True:
            notes = [await self._queue.get()]
            self._dispatching = True
            try:
                await self.settled()  # one delivered at once came first
                while not self._queue.empty():
                    notes.append(self._queue.get_nowait())
                # Only those someone still subscribes to (the subscribers may have left).
                wanted = [note for note in notes if self._wanted(note.channel)]
                if len(wanted) == 1:  # no task, no loop turn more
                    await self._deliver(wanted[0])
                elif wanted:  # gather makes a task of each
                    await asyncio.gather(*(self._deliver(note) for note in wanted))
            finally:
                self._dispatching = False

    async def _deliver(self, note: psycopg.Notify) -> None:
        if not note.payload or not self._wanted(note.channel):
            return
        try:
            parsed = self._parse(note)
        except Exception as error:  # any DB user can NOTIFY: a hint, never trusted
            _malformed(note, error)
            return
        if isinstance(parsed, JobNotification):
            await self.notify_handlers(parsed)
        else:
            await self.notify_state_handlers(parsed)

    def _wanted(self, channel: str) -> bool:
        """Whether anyone subscribes to what arrives on ``channel`` (else it is not parsed)."""
        if channel == self.channel_name:
            return bool(self._handlers)
        return channel == self.state_channel_name and bool(self._state_handlers)

    def _parse(self, note: psycopg.Notify) -> JobNotification | JobStateNotification:
        if note.channel == self.channel_name:
            return notification_from_json(note.payload)
        return state_notification_from_json(note.payload)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, notification: JobNotification) -> None:
        self.require_connected("publish")
        payload = notification_to_json(notification)
        if not _fits(payload):
            log.warning("not publishing the notification of job %r: %d bytes is over the "
                        "NOTIFY limit", notification.job_name, len(payload.encode()))
            return
        await self._notify(self.channel_name, payload)

    async def publish_state(self, notification: JobStateNotification) -> None:
        self.require_connected("publish state")
        payload = self._state_payload(notification)
        if payload is not None:
            await self._outbox.submit((self.state_channel_name, payload))

    def publish_state_soon(
        self, notification: JobStateNotification, on_failure: OnFailure
    ) -> bool:
        self.require_connected("publish state")
        payload = self._state_payload(notification)
        if payload is not None:
            self._outbox.submit_detached((self.state_channel_name, payload), on_failure)
        return True

    @staticmethod
    def _state_payload(notification: JobStateNotification) -> str | None:
        """The payload of ``notification``; None (with a warning) when nothing fits NOTIFY."""
        payload = _state_payload(notification)
        if payload is None:
            log.warning("not publishing the %s notification of job %r: over the NOTIFY limit",
                        notification.type, notification.job_name)
        return payload

    async def _notify(self, channel: str, payload: str) -> None:
        await self._outbox.submit((channel, payload))

    async def _send(self, batch: list[tuple[str, str]]) -> list[None]:
        """One statement for every notification published together (a burst of saves costs
        one round trip)."""
        pool = await self._publishing_pool()
        channel = batch[0][0]
        payloads = [p for _, p in batch]
        params: tuple[str | list[str], list[str]]
        if all(c == channel for c, _ in batch):
            statement, params = _NOTIFY_ONE_CHANNEL, (channel, payloads)
        else:
            statement, params = _NOTIFY_MANY, ([c for c, _ in batch], payloads)

        async def notify(conn: Connection, _: Attempt) -> None:
            # Prepared at once on each pooled connection (a worker sends a burst per batch
            # of jobs); nothing is prepared behind a transaction pooler (prepare_threshold).
            await conn.execute(statement, params, prepare=True)

        await run(pool, self._retrying, notify)
        return [None] * len(batch)


def _malformed(note: psycopg.Notify, error: Exception) -> None:
    log.warning("ignoring a malformed notification on %r (%s): %.200r",
                note.channel, type(error).__name__, note.payload)
