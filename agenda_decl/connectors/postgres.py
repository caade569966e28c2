"""Connections to PostgreSQL (psycopg 3), as the repository and the LISTEN/NOTIFY channel
both make them: one direct autocommit connection, or a pool, from a connection string; the
target of a pool someone else opened; the error that says the server is unreachable, with
every password masked; and how a pooled connection is borrowed through an outage.

Borrowing (:func:`borrow`, :func:`run`):

* a pooled connection is checked before use, without a round trip: one the server closed (a
  restart, ``pg_terminate_backend``, a failover) has its socket readable while idle, and is
  discarded for another (the pool opens a replacement);
* the connection goes back to the pool even when the borrowing task is cancelled while
  returning it. psycopg_pool hands a returned connection to the next waiting client through
  awaits that a cancellation can interrupt, which drops both: the connection is never seen
  again (the pool counts it as in use for ever) and the waiting client is left waiting for
  its whole timeout with idle connections in the pool. Stopping a scheduler cancels its
  claims, so this happened on every stop that hit the window;
* :func:`run` repeats an operation through an outage (``connectors.retry``): the errors that
  mean "unreachable" (:func:`transient`) are retried, a connection a failed-over server made
  read-only is discarded, and past the bound the caller gets one ``BackendUnavailableError``;
* a :class:`ConnectionLender` lets the first attempt of an operation run on a connection
  another owner lends for a moment (the channel's LISTEN connection, right after it heard an
  idle worker's wake-up) instead of a pooled one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import select
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import psycopg
from psycopg.pq import ConnStatus
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from agenda_decl._secrets import mask_text, mask_url
from agenda_decl.connectors.retry import DEFAULT_RETRY_FOR, Attempt, Retrying
from agenda_decl.errors import BackendUnavailableError
from agenda_decl.timing import Duration

log = logging.getLogger("agenda_decl.connectors")

T = TypeVar("T")
Pool = AsyncConnectionPool[Any]
Connection = psycopg.AsyncConnection[Any]
#: Run on each new connection of a pool (``AsyncConnectionPool``'s ``configure``).
Configure = Callable[[Connection], Awaitable[None]]

#: How long an owned pool keeps trying to replace a lost connection before it gives up on
#: that attempt (psycopg_pool's default is 5 minutes, with delays doubling up to a minute
#: and more: after an outage the pool would come back long after the server did). The next
#: request for a connection starts a fresh attempt at once.
RECONNECT_TIMEOUT = 5.0
#: The longest one attempt waits for a pooled connection while retrying: a pool whose
#: reconnect attempts gave up starts a new one only when asked again.
WAIT_PER_ATTEMPT = 2.0
#: SQLSTATE classes of errors that mean the server went away or cannot serve us now:
#: 08 connection exception, 53 insufficient resources (too many connections), 57 operator
#: intervention (admin/crash shutdown, cannot connect now; not 57014 query_canceled), 58
#: system error.
_TRANSIENT_CLASSES = ("08", "53", "57", "58")
#: Returned connections whose return was interrupted: kept referenced until returned.
_RETURNING: set[asyncio.Task[None]] = set()
_BACKEND_PID = "SELECT pg_backend_pid()"


def unavailable(conninfo: str, error: BaseException) -> BackendUnavailableError:
    """The driver's reason, with the password of any connection string or ``password=``
    field in it masked where it sits (libpq quotes parts of a bad conninfo)."""
    reason = mask_text(str(error).strip() or type(error).__name__)
    return BackendUnavailableError(
        f"cannot reach PostgreSQL at {mask_url(conninfo)}: {reason}"
    )


def transient(error: BaseException) -> bool:
    """Whether ``error`` means the server is unreachable for now (worth another attempt):
    a lost or refused connection, a server shutting down or starting, no pooled connection
    in time, or a server that became read-only (an old primary after a failover)."""
    if isinstance(error, PoolClosed):
        return False  # closed by its owner: no outage
    if isinstance(error, PoolTimeout | psycopg.errors.ReadOnlySqlTransaction):
        return True
    if isinstance(error, psycopg.errors.QueryCanceled):
        return False  # statement_timeout or a cancel: not the connection
    if isinstance(error, psycopg.OperationalError):
        state = error.sqlstate
        return state is None or state.startswith(_TRANSIENT_CLASSES)
    return False


def retrying(where: str, retry_for: Duration = DEFAULT_RETRY_FOR) -> Retrying:
    """The outage policy of a PostgreSQL store at ``where`` (a connection string, masked)."""
    return Retrying(store="PostgreSQL", where=where, transient=transient, retry_for=retry_for)


def where(connection_string: str | None, pool: Pool | None) -> str:
    """Where a store connects, for messages (masked): its connection string, else the
    pool's (``<pool>`` when the pool computes it)."""
    if connection_string is not None:
        return mask_url(connection_string)
    conninfo = None if pool is None else pool.conninfo
    return mask_url(conninfo) if isinstance(conninfo, str) and conninfo else "<pool>"


async def connect(conninfo: str, timeout: float, **kwargs: Any) -> Connection:
    """An autocommit connection, or BackendUnavailableError with a redacted URL."""
    try:
        return await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=max(1, round(timeout)), **kwargs
        )
    except (psycopg.Error, OSError) as error:
        raise unavailable(conninfo, error) from None


async def behind_pooler(conn: Connection) -> bool:
    """Whether ``conn`` reaches the server through a connection pooler (PgBouncer, pgcat,
    Odyssey...). A pooler answers the client's startup itself, with a process id (the cancel
    key) of its own making, so the server's ``pg_backend_pid()`` is another number; a direct
    connection, or a plain TCP proxy, reports the server's own. One round trip."""
    cursor = await conn.execute(_BACKEND_PID)
    row = await cursor.fetchone()
    return row is not None and row[0] != conn.info.backend_pid


def pooled_kwargs(pooled: bool) -> dict[str, Any]:
    """Connection options for a store reached through a transaction pooler: no server-side
    prepared statements (psycopg prepares a statement run often on its connection, but the
    pooler hands each transaction to any server connection, where it does not exist)."""
    return {"prepare_threshold": None} if pooled else {}


async def open_pool(
    conninfo: str,
    *,
    max_size: int,
    name: str,
    configure: Configure | None = None,
    wait_timeout: float | None = None,
    pooled: bool = False,
) -> Pool:
    """An open pool of autocommit connections (at least one). With ``wait_timeout``, wait
    that long for the first connection (psycopg_pool's error when it does not come);
    without, return at once and let the pool connect in the background. ``pooled``: the
    server is behind a transaction pooler (see :func:`pooled_kwargs`)."""
    pool: Pool = AsyncConnectionPool(
        conninfo, min_size=1, max_size=max_size, open=False,
        kwargs={"autocommit": True, **pooled_kwargs(pooled)},
        name=name, configure=configure, reconnect_timeout=RECONNECT_TIMEOUT,
    )
    if wait_timeout is None:
        await pool.open()
    else:
        await pool.open(wait=True, timeout=wait_timeout)
    return pool


async def pool_target(pool: Pool) -> tuple[str, dict[str, Any]]:
    """The conninfo and keyword arguments a pool connects with (for a LISTEN connection)."""
    conninfo, kwargs = await _resolve(pool.conninfo), await _resolve(pool.kwargs)
    extra = {k: v for k, v in dict(kwargs or {}).items() if k not in ("autocommit", "row_factory")}
    return str(conninfo or ""), extra


async def _resolve(value: Any) -> Any:
    """A pool's conninfo/kwargs may be a value, a function, or an async function."""
    value = value() if callable(value) else value
    return await value if inspect.isawaitable(value) else value


# -- borrowing a pooled connection -------------------------------------------------------------


@contextlib.asynccontextmanager
async def borrow(pool: Pool, timeout: float | None = None) -> AsyncIterator[Connection]:
    """A live connection of ``pool`` for the block (``pool.connection()``, with the two
    differences in the module docstring: dead connections are skipped, and the connection
    is returned even if the block's task is cancelled meanwhile). Like ``pool.connection()``
    it commits at the end of the block, or rolls back on an error (a no-op on autocommit
    connections)."""
    conn = await _live_connection(pool, timeout)
    try:
        if conn.autocommit:  # nothing to end (and no warning for a dead connection)
            yield conn
        else:
            async with conn:
                yield conn
    finally:
        await _give_back(pool, conn)


async def _live_connection(pool: Pool, timeout: float | None) -> Connection:
    # Every connection of the pool may have died together (a restart): try as many as it can
    # hold, plus the replacement that then comes.
    for _ in range((pool.max_size or 1) + 1):
        conn: Connection = await pool.getconn(timeout)
        if looks_alive(conn):
            return conn
        log.debug("discarding a pooled PostgreSQL connection the server closed")
        await _give_back(pool, conn, close=True)
    last: Connection = await pool.getconn(timeout)
    return last


def looks_alive(conn: Connection) -> bool:
    """Whether an idle connection still looks usable, without a round trip: an idle
    connection receives nothing unless the server is closing it (its goodbye message, then
    the end of the stream), so a readable socket is read and judged."""
    if conn.closed or conn.broken or conn.pgconn.status != ConnStatus.OK:
        return False
    try:
        for _ in range(4):
            if not _readable(conn.pgconn.socket):
                return True
            conn.pgconn.consume_input()  # raises once the server has closed the stream
    except (psycopg.Error, OSError, ValueError):
        return False
    return conn.pgconn.status == ConnStatus.OK


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


async def _give_back(pool: Pool, conn: Connection, *, close: bool = False) -> None:
    """Return ``conn`` to ``pool`` (closed first with ``close``: the pool then replaces it).
    The return runs as a task of its own that a cancellation of the caller cannot stop
    halfway (see the module docstring)."""

    async def give_back() -> None:
        if close:
            with contextlib.suppress(Exception):
                await conn.close()
        await pool.putconn(conn)

    # The common return (a healthy idle connection, nobody closing the pool) never suspends:
    # run up to its first suspension here, and only what is left, if anything, as the task,
    # so a claim's rows reach the caller without two loop turns (a task, then its waiter).
    returning = give_back()
    try:
        waiting_on = returning.send(None)
    except StopIteration:
        return
    task = asyncio.get_running_loop().create_task(_resume(returning, waiting_on))
    _RETURNING.add(task)
    task.add_done_callback(_returned)
    await asyncio.shield(task)


async def _resume(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drive ``coroutine`` on from a suspension at ``waiting_on`` (what it yielded: a future,
    or None for a bare yield), as the task it started in would have."""
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait({waiting_on})  # the coroutine reads the outcome itself
            waiting_on = coroutine.send(None)
        except asyncio.CancelledError as cancelled:  # where the coroutine waits, as a task does
            try:
                waiting_on = coroutine.throw(cancelled)
            except StopIteration:
                return
        except StopIteration:
            return


def _returned(task: asyncio.Task[None]) -> None:
    _RETURNING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("returning a connection to its pool failed", exc_info=task.exception())


class ConnectionLender:
    """A connection its owner lends between two of its own uses, to whoever asks first.

    The PostgreSQL channel's LISTEN connection is lent right after it handed an idle worker
    its wake-up, for the claim that wake-up starts: the notification just woke the server
    process behind it, whereas a pooled connection's process has slept since the worker's
    last job, and on an idle (virtual) machine waking one more process costs a large part of
    enqueue -> start (bench/HISTORY.md). The owner offers the connection for one loop turn
    and then waits until it is given back; the borrower must not keep it past one
    statement."""

    def __init__(self) -> None:
        self._offered: Connection | None = None
        self._returned: asyncio.Future[None] | None = None

    def offer(self, conn: Connection) -> None:
        """Lend ``conn`` to the next :meth:`take` (until :meth:`withdraw`)."""
        self._offered = conn

    def take(self) -> Connection | None:
        """The offered connection (then :meth:`give_back` it), or None."""
        conn, self._offered = self._offered, None
        if conn is not None:
            self._returned = asyncio.get_running_loop().create_future()
        return conn

    def give_back(self) -> None:
        if self._returned is not None and not self._returned.done():
            self._returned.set_result(None)

    async def withdraw(self) -> None:
        """End the offer; if the connection was taken, wait until it is given back."""
        self._offered = None
        if self._returned is not None:
            await self._returned
            self._returned = None


async def run(
    pool: Pool,
    policy: Retrying,
    work: Callable[[Connection, Attempt], Awaitable[T]],
    *,
    lender: ConnectionLender | None = None,
) -> T:
    """``work(conn, attempt)`` on a live pooled connection, repeated through an outage by
    ``policy`` (``work`` must be safe to repeat). A connection the server made read-only (a
    failed-over primary) is closed, so the pool replaces it rather than hand it out again.
    The first attempt runs on what ``lender`` offers, if it offers one; repeats always go
    through the pool."""

    async def attempt(this: Attempt) -> T:
        if lender is not None and not this.repeated and (lent := lender.take()) is not None:
            try:
                return await work(lent, this)
            finally:
                lender.give_back()
        wait = _wait_for_connection(pool, policy, this)
        async with borrow(pool, wait) as conn:
            try:
                return await work(conn, this)
            except psycopg.errors.ReadOnlySqlTransaction:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise

    return await policy.run(attempt)


def _wait_for_connection(pool: Pool, policy: Retrying, attempt: Attempt) -> float:
    """How long one attempt waits for a pooled connection: the pool's own timeout without
    retries, else a short wait (see :data:`WAIT_PER_ATTEMPT`) within the time left."""
    if not policy.retry_for:
        return float(pool.timeout)
    return max(0.1, min(attempt.remaining, WAIT_PER_ATTEMPT))
