"""The MongoDB change-stream notification channel (re-exported by ``backends.mongo``).

pymongo's synchronous change stream is read on a daemon thread; each event is handed to the
event loop with ``call_soon_threadsafe``. The stream factory is injectable, so tests can
script a stream that behaves like a server's (no server with change streams exists on the
machines these tests run on).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from pymongo.errors import OperationFailure

from agenda_decl._clock import utcnow
from agenda_decl._convert import parse_datetime
from agenda_decl._model import JobId, JobNotification
from agenda_decl.connectors.mongo import (
    Document,
    MongoCollection,
    MongoDatabase,
    check_collection_name,
)
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError
from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions

log = logging.getLogger("agenda_decl.backends.mongo")


class ChangeStreamLike(Protocol):
    """What the channel needs of pymongo's ``ChangeStream`` (tests script a fake)."""

    @property
    def alive(self) -> bool: ...

    @property
    def resume_token(self) -> Mapping[str, Any] | None: ...

    def try_next(self) -> Mapping[str, Any] | None: ...

    def close(self) -> None: ...


#: ``(collection, pipeline, watch keyword arguments) -> stream``; the default calls ``watch``.
StreamFactory = Callable[[MongoCollection, list[Document], Document], ChangeStreamLike]


def watch_collection(
    collection: MongoCollection, pipeline: list[Document], options: Document
) -> ChangeStreamLike:
    return collection.watch(pipeline, **options)


class ReplicaSetRequiredError(BackendUnavailableError):
    """Change streams need a replica set or sharded cluster; this server is neither."""


#: ChangeStreamHistoryLost, ChangeStreamFatalError ("resume token was not found"),
#: InvalidResumeToken: resuming after the token we hold can never work (drop it, restart from
#: now and poll, never retry the same stale token).
_TOKEN_LOST_CODES = frozenset({286, 280, 260})
_NOT_A_REPLICA_SET = 40573
_WATCHED = ["insert", "update", "replace"]


def _is_token_lost(error: BaseException) -> bool:
    return isinstance(error, OperationFailure) and (
        error.code in _TOKEN_LOST_CODES or "resume token was not found" in str(error)
    )


def _is_not_a_replica_set(error: BaseException) -> bool:
    return isinstance(error, OperationFailure) and (
        error.code == _NOT_A_REPLICA_SET or "only supported on replica sets" in str(error)
    )


def _notification_from(change: Mapping[str, Any]) -> JobNotification | None:
    """A hint from a change event, or ``None`` for documents no worker could claim now:
    no full document, no ``nextRunAt``, disabled, or locked (a lock/touch/progress write)."""
    document = change.get("fullDocument")
    if not isinstance(document, Mapping) or "_id" not in document:
        return None
    next_run_at, name = document.get("nextRunAt"), document.get("name")
    if not isinstance(next_run_at, datetime) or not isinstance(name, str):
        return None
    if document.get("disabled") or document.get("lockedAt") is not None:
        return None
    priority = document.get("priority")
    return JobNotification(
        job_id=JobId(str(document["_id"])),
        job_name=name,
        next_run_at=parse_datetime(next_run_at),
        priority=int(priority) if isinstance(priority, int | float) else 0,
        timestamp=utcnow(),
        source="changestream",
    )


class _StreamReader:
    """Reads one change stream on a daemon thread and hands what it sees to the event loop."""

    def __init__(
        self,
        stream: ChangeStreamLike,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[_StreamReader, Mapping[str, Any]], None],
        on_token: Callable[[_StreamReader, Mapping[str, Any]], None],
        on_end: Callable[[_StreamReader, BaseException], None],
    ) -> None:
        self._stream, self._loop = stream, loop
        self._on_change, self._on_token, self._on_end = on_change, on_token, on_end
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read, name="agenda-mongo-changestream", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                change = self._stream.try_next()  # waits at most max_await_time_ms
                if change is not None:
                    self._post(self._on_change, change)
                elif not self._stream.alive:
                    raise ConnectionError("the change stream was closed")
                elif (token := self._stream.resume_token) is not None:
                    # The post-batch token moves on while idle, so resuming after a long
                    # quiet spell does not fall off the oplog.
                    self._post(self._on_token, token)
        except Exception as error:
            if not self._stop.is_set():
                self._post(self._on_end, error)
        finally:
            try:
                self._stream.close()
            except Exception:
                log.debug("closing the change stream failed", exc_info=True)

    def _post(self, callback: Callable[[_StreamReader, Any], None], value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, self, value)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()

    async def stop(self, timeout: float) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.warning("the change stream reader did not stop within %.1f s", timeout)


class MongoChangeStreamNotificationChannel(BaseNotificationChannel):
    """Job notifications from a MongoDB change stream on the jobs collection.

    Every insert/update/replace of a job that is due-able (has ``nextRunAt``, is enabled and
    unlocked) is a hint to the scheduler; the change stream itself is the publisher, so
    :meth:`publish` does nothing. The stream resumes after the last token on reconnect; when
    that token can no longer be resumed (history lost, invalidate) it restarts from now, and
    the ``stateChange`` back to ``connected`` makes the scheduler poll for what it missed.
    Needs a replica set or sharded cluster; on a standalone server :meth:`connect` raises
    :class:`ReplicaSetRequiredError` and the scheduler keeps polling.
    """

    def __init__(
        self,
        *,
        db: MongoDatabase | None = None,
        collection: str = "agendaJobs",
        resume_token: Mapping[str, Any] | None = None,
        full_document: bool = True,
        stream_factory: StreamFactory = watch_collection,
        max_await_ms: int = 1000,
        reconnect: ReconnectOptions | None = None,
    ) -> None:
        super().__init__(channel_name=check_collection_name(collection), reconnect=reconnect)
        self._db = db
        self._collection_name = collection
        self._resume_token = resume_token
        self._full_document = full_document
        self._stream_factory = stream_factory
        self._max_await_ms = max_await_ms
        self._reader: _StreamReader | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    @property
    def resume_token(self) -> Mapping[str, Any] | None:
        """The token the next (re)connect resumes after; ``None`` means "from now"."""
        return self._resume_token

    def set_db(self, db: MongoDatabase) -> None:
        if self.state == "connected":
            raise RuntimeError("Cannot set database while channel is connected")
        self._db = db

    async def connect(self) -> None:
        try:
            await super().connect()
        except (ReplicaSetRequiredError, InvalidOptionError):
            # Retrying cannot turn a standalone into a replica set or supply a database.
            self._cancel_reconnect()
            self.set_state("error")
            raise

    async def publish(self, notification: JobNotification) -> None:
        """Nothing to do: every write to the collection is already an event of the stream."""

    # -- opening and closing ----------------------------------------------------------------

    async def _open(self) -> None:
        if self._db is None:
            raise InvalidOptionError(
                "MongoChangeStreamNotificationChannel requires a MongoDB database instance "
                "(db=... or set_db())"
            )
        await self._close()  # a connect() while connected must not orphan a reader
        loop = asyncio.get_running_loop()
        stream = await asyncio.to_thread(self._watch, self._db)
        reader = _StreamReader(stream, loop, self._changed, self._token_seen, self._ended)
        self._reader = reader
        reader.start()

    def _watch(self, db: MongoDatabase) -> ChangeStreamLike:
        """Open the stream (on a worker thread): pymongo sends the aggregate here, so a
        standalone server or a stale token fails now, not later."""
        try:
            return self._start_stream(db)
        except OperationFailure as error:
            if _is_not_a_replica_set(error):
                raise ReplicaSetRequiredError(
                    "MongoDB change streams need a replica set or a sharded cluster, and this "
                    "server is a standalone. Use polling (no notification channel) or another "
                    "channel, or run MongoDB as a replica set (even a single node)."
                ) from error
            if self._resume_token is None or not _is_token_lost(error):
                raise
        log.warning("change stream resume token no longer valid: restarting from now")
        self._resume_token = None
        return self._start_stream(db)

    def _start_stream(self, db: MongoDatabase) -> ChangeStreamLike:
        pipeline: list[Document] = [{"$match": {"operationType": {"$in": _WATCHED}}}]
        options: Document = {"max_await_time_ms": self._max_await_ms}
        if self._full_document:
            options["full_document"] = "updateLookup"
        if self._resume_token is not None:
            options["resume_after"] = self._resume_token
        collection = db.get_collection(self._collection_name)
        return self._stream_factory(collection, pipeline, options)

    async def _close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop(timeout=self._max_await_ms / 1000 + 5)

    # -- events from the reader thread (run on the loop) ------------------------------------

    def _changed(self, reader: _StreamReader, change: Mapping[str, Any]) -> None:
        if reader is not self._reader:
            return
        if change.get("operationType") == "invalidate":
            # The collection was dropped or renamed: the token cannot be resumed.
            self._resume_token = None
            return
        self._resume_token = change.get("_id")
        notification = _notification_from(change)
        if notification is not None:
            task = asyncio.get_running_loop().create_task(self.notify_handlers(notification))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    def _token_seen(self, reader: _StreamReader, token: Mapping[str, Any]) -> None:
        if reader is self._reader:
            self._resume_token = token

    def _ended(self, reader: _StreamReader, error: BaseException) -> None:
        if reader is not self._reader:
            return
        if _is_token_lost(error):
            log.warning("change stream history lost: restarting from now, then a full poll")
            self._resume_token = None
        self.connection_lost(error)
