"""MongoDB storage in Agenda v6's layout, and a change-stream notification channel.

Documents keep Agenda v6's camelCase fields, ObjectId ``_id`` (the job id is its 24-hex
string), BSON dates and its ``findAndLockNextJobIndex``, so a Node.js Agenda v6 process and
an agenda-decl worker can share one collection.

The driver is pymongo's synchronous client, run off the event loop on one dedicated thread
per repository (so every call of one repository is serialized, and a busy default executor
full of plain-``def`` handlers cannot starve the store). The same code therefore runs against
mongomock, the fake of that API the tests use. A client or database passed in is never
closed.

    backend = MongoBackend(address="mongodb://localhost/app")             # owns its client
    backend = MongoBackend(mongo=MongoClient(url).get_database("app"))    # borrows one
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from bson import ObjectId
from pymongo import MongoClient, ReadPreference, ReturnDocument, WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from agenda_decl._clock import utcnow
from agenda_decl._convert import parse_datetime
from agenda_decl._model import (
    JobId,
    JobNotification,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
)
from agenda_decl.backends import _mongo_query as q
from agenda_decl.backends import base
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError, JobNotFoundError
from agenda_decl.interfaces import AgendaBackend, JobRepository
from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions

__all__ = [
    "MongoBackend",
    "MongoChangeStreamNotificationChannel",
    "MongoJobRepository",
    "ReplicaSetRequiredError",
]

log = logging.getLogger("agenda_decl.backends.mongo")
T = TypeVar("T")
Document = dict[str, Any]
MongoDatabase = Database[Document]
MongoCollection = Collection[Document]
_AFTER = ReturnDocument.AFTER


def _normalize_address(address: str) -> str:
    """Agenda adds a missing scheme the same way."""
    if address.startswith(("mongodb://", "mongodb+srv://")):
        return address
    return f"mongodb://{address}"


def _check_collection_name(name: str) -> str:
    if not isinstance(name, str) or not name or "$" in name or "\x00" in name:
        raise InvalidOptionError(f"invalid MongoDB collection name {name!r}")
    if name.startswith("system."):
        raise InvalidOptionError(f"invalid MongoDB collection name {name!r} (system.*)")
    return name


class MongoJobRepository(JobRepository):
    """Jobs in one MongoDB collection, in Agenda v6's document layout."""

    def __init__(
        self,
        *,
        address: str | None = None,
        mongo: MongoDatabase | None = None,
        collection: str = "agendaJobs",
        ensure_index: bool = True,
    ) -> None:
        if (address is None) == (mongo is None):
            raise InvalidOptionError("MongoBackend needs exactly one of address=... or mongo=...")
        self._address = _normalize_address(address) if address is not None else None
        self._given_db = mongo
        self._collection_name = _check_collection_name(collection)
        self._ensure_index = ensure_index
        self._client: MongoClient[Document] | None = None
        self._jobs: MongoCollection | None = None
        self._claims: MongoCollection | None = None
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        where = base.redact_url(self._address) if self._address else "<database passed in>"
        return f"MongoJobRepository({where}, collection={self._collection_name!r})"

    @property
    def collection_name(self) -> str:
        return self._collection_name

    # -- connection ----------------------------------------------------------------------

    async def connect(self) -> None:
        if self._jobs is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agenda-mongo")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open(self) -> None:
        db = self._given_db if self._given_db is not None else self._open_client()
        # F5: decisions (claims, locks, due-job reads) are never taken on a secondary.
        self._jobs = db.get_collection(
            self._collection_name, read_preference=ReadPreference.PRIMARY
        )
        # F4: a lock acknowledged by a majority survives a primary step-down.
        self._claims = db.get_collection(
            self._collection_name,
            read_preference=ReadPreference.PRIMARY,
            write_concern=WriteConcern("majority"),
        )
        if self._ensure_index:
            self._jobs.create_index(q.INDEX_KEYS, name=q.INDEX_NAME)

    def _open_client(self) -> MongoDatabase:
        assert self._address is not None
        client: MongoClient[Document] = MongoClient(self._address, appname="agenda-decl")
        try:
            client.admin.command("ping")
            # Node's driver falls back to "test" when the URL names no database; so do we.
            db = client.get_default_database("test")
        except PyMongoError as error:
            client.close()
            raise BackendUnavailableError(
                f"MongoDB at {base.redact_url(self._address)} is not reachable "
                f"({type(error).__name__}: {self._scrub(str(error))})"
            ) from None
        self._client = client
        return db

    def _scrub(self, text: str) -> str:
        """Driver messages name hosts, not passwords; make sure of it anyway."""
        password = urlsplit(self._address or "").password
        return text.replace(unquote(password), "***") if password else text

    async def close(self) -> None:
        executor, self._executor = self._executor, None  # new calls fail from here on
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)  # let queued calls finish
        client, self._client, self._jobs, self._claims = self._client, None, None, None
        if client is not None:  # only a client we opened; a database passed in stays open
            await asyncio.to_thread(client.close)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise BackendUnavailableError("MongoJobRepository is not connected: call connect()")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    @property
    def _collection(self) -> MongoCollection:
        if self._jobs is None:
            raise BackendUnavailableError("MongoJobRepository is not connected: call connect()")
        return self._jobs

    async def server_now(self) -> datetime | None:
        """The server's clock from ``hello.localTime`` (``None`` where it is not offered,
        such as mongomock)."""
        return await self._run(self._server_now)

    def _server_now(self) -> datetime | None:
        try:
            reply = self._collection.database.command("hello")
        except (NotImplementedError, PyMongoError):
            return None
        local_time = reply.get("localTime")
        return parse_datetime(local_time) if isinstance(local_time, datetime) else None

    # -- reading -------------------------------------------------------------------------

    async def query_jobs(self, options: JobsQueryOptions | None = None) -> JobsResult:
        options = options or JobsQueryOptions()
        match = q.query_filter(options)
        if match is None:
            return JobsResult(jobs=[], total=0)
        return await self._run(self._query, options, match, utcnow())

    def _query(self, options: JobsQueryOptions, match: Document, now: datetime) -> JobsResult:
        counted = list(self._collection.aggregate(q.count_pipeline(options, match, now)))
        total = int(counted[0]["n"]) if counted else 0
        if total == 0 or options.skip >= total:
            return JobsResult(jobs=[], total=total)
        page = self._collection.aggregate(q.page_pipeline(options, match, now), allowDiskUse=True)
        return JobsResult(jobs=[q.job_with_state(document) for document in page], total=total)

    async def get_jobs_overview(self) -> list[JobsOverview]:
        pipeline = q.overview_pipeline(utcnow())
        documents = await self._run(lambda: list(self._collection.aggregate(pipeline)))
        return [q.overview_from(document) for document in documents]

    async def get_distinct_job_names(self) -> list[str]:
        names = await self._run(lambda: self._collection.distinct("name"))
        return sorted(name for name in names if isinstance(name, str))

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        oid = q.object_id(job_id)
        if oid is None:
            return None
        document = await self._run(lambda: self._collection.find_one({"_id": oid}))
        return q.job_from_mongo(document) if document else None

    async def get_queue_size(self) -> int:
        # Agenda's rule and clock: the application's now, strictly before.
        query = {"nextRunAt": {"$lt": q.to_bson_date(utcnow())}}
        return await self._run(lambda: self._collection.count_documents(query))

    # -- writing -------------------------------------------------------------------------

    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        query = q.remove_filter(options)
        if query is None:
            return 0
        return await self._run(lambda: self._collection.delete_many(query).deleted_count)

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=True)

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=False)

    async def _set_disabled(self, options: RemoveJobsOptions, *, disabled: bool) -> int:
        query = q.remove_filter(options)
        if query is None:
            return 0
        update = {"$set": {"disabled": disabled}}
        return await self._run(lambda: self._collection.update_many(query, update).matched_count)

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        base.check_job(job)
        fields = q.job_fields(job, last_modified_by)
        return await self._run(self._save, job, fields, now or utcnow())

    def _save(self, job: JobParameters[Any], fields: Document, now: datetime) -> JobParameters[Any]:
        if job.id is not None:
            return self._update_by_id(job, fields)
        if job.type == "single":
            return self._upsert_single(job, fields, now)
        if job.unique:
            return self._upsert_unique(job, fields, now)
        return self._insert(fields)

    def _update_by_id(self, job: JobParameters[Any], fields: Document) -> JobParameters[Any]:
        oid = q.object_id(job.id)
        if oid is None:
            return job
        query = {"_id": oid, "name": {"$eq": job.name}}
        found = self._collection.find_one_and_update(
            query, {"$set": fields}, return_document=_AFTER
        )
        return q.job_from_mongo(found) if found else job

    def _insert(self, fields: Document) -> JobParameters[Any]:
        document = {**fields, **q.processor_nulls()}
        self._collection.insert_one(document)
        return q.job_from_mongo(document)

    def _upsert(self, query: Document, update: Document) -> JobParameters[Any]:
        """One atomic upsert; a new document gets a client ObjectId (insertion order) and
        null processor fields."""
        on_insert = {"_id": ObjectId(), **q.processor_nulls(), **update.pop("$setOnInsert", {})}
        update["$setOnInsert"] = on_insert
        found = self._collection.find_one_and_update(
            query, update, upsert=True, return_document=_AFTER
        )
        assert found is not None  # an upsert always returns the document after
        return q.job_from_mongo(found)

    def _upsert_single(
        self, job: JobParameters[Any], fields: Document, now: datetime
    ) -> JobParameters[Any]:
        query: Document = {"name": {"$eq": job.name}, "type": "single"}
        if job.next_run_at is not None and job.next_run_at <= now:
            # A due re-save keeps a pending (non-null) schedule: update without nextRunAt
            # only where one is stored; otherwise fall through to the full upsert.
            keep = {key: value for key, value in fields.items() if key != "nextRunAt"}
            found = self._collection.find_one_and_update(
                {**query, "nextRunAt": {"$ne": None}}, {"$set": keep}, return_document=_AFTER
            )
            if found is not None:
                return q.job_from_mongo(found)
        return self._upsert(query, {"$set": fields})

    def _upsert_unique(
        self, job: JobParameters[Any], fields: Document, now: datetime
    ) -> JobParameters[Any]:
        query = q.unique_filter(job)
        if base.is_insert_only(job):
            return self._upsert(query, {"$setOnInsert": fields})
        if base.is_debounced(job):
            # Read, decide, write: not atomic (as in Agenda, W-6); each write is.
            found = self._collection.find_one(query, sort=[("_id", 1)])
            existing = q.job_from_mongo(found) if found else None
            outcome = base.debounce_outcome(job, existing, now)
            fields["nextRunAt"] = q.to_bson_date(outcome.next_run_at)
            fields["debounceStartedAt"] = q.to_bson_date(outcome.debounce_started_at)
            if found is not None:
                query = {"_id": found["_id"]}
        return self._upsert(query, {"$set": fields})

    async def save_job_state(
        self, job: JobParameters[Any], *, last_modified_by: str | None = None
    ) -> None:
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        oid = q.object_id(job.id)
        fields = q.state_fields(job, last_modified_by)
        query = {"_id": oid, "name": {"$eq": job.name}}
        matched = 0
        if oid is not None:
            matched = await self._run(
                lambda: self._collection.update_one(query, {"$set": fields}).matched_count
            )
        if matched != 1:
            raise JobNotFoundError(
                f"job ID {job.id} (name: {job.name}) cannot be updated in the database, "
                "maybe it does not exist anymore?"
            )

    # -- locking -------------------------------------------------------------------------

    async def lock_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any] | None:
        oid = q.object_id(job.id)
        if oid is None:
            return None
        query = q.lock_filter(oid, job)
        update = {"$set": {"lockedAt": q.to_bson_date(now or utcnow()),
                           "lastModifiedBy": last_modified_by}}
        found = await self._run(
            lambda: self._claim_collection.find_one_and_update(
                query, update, return_document=_AFTER
            )
        )
        return q.job_from_mongo(found) if found else None

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        oid = q.object_id(job.id)
        if oid is None:
            return
        # A one-off that finished (nextRunAt null) keeps its lock, as in Agenda.
        query = {"_id": oid, "nextRunAt": {"$ne": None}}
        await self._run(lambda: self._collection.update_one(query, {"$unset": {"lockedAt": ""}}))

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        oids = q.object_ids(list(job_ids))
        if not oids:
            return
        query = {"_id": {"$in": oids}}
        await self._run(lambda: self._collection.update_many(query, {"$unset": {"lockedAt": ""}}))

    async def get_next_job_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> JobParameters[Any] | None:
        claimed = await self.get_next_jobs_to_run(
            job_name, next_scan_at, lock_deadline, 1, now, last_modified_by=last_modified_by
        )
        return claimed[0] if claimed else None

    async def get_next_jobs_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        limit: int,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> list[JobParameters[Any]]:
        """Claim up to ``limit`` jobs, each with one atomic ``find_one_and_update``.

        MongoDB has no multi-document "update and return" in one command, so the batch is a
        loop of single claims. The loop runs as one call on the repository's thread, so one
        batch is not interleaved with another from this process; other processes may claim
        between two iterations, which only means this batch is smaller.
        """
        if limit <= 0:
            return []
        filters = q.claim_filters(job_name, next_scan_at, lock_deadline)
        # When now is None this is the application clock (mongomock has no $$NOW).
        update = {"$set": {"lockedAt": q.to_bson_date(now or utcnow()),
                           "lastModifiedBy": last_modified_by}}
        return await self._run(self._claim_many, filters, update, limit)

    def _claim_many(self, filters: list[Document], update: Document, limit: int) -> list[Any]:
        claimed: list[JobParameters[Any]] = []
        for query in filters:
            while len(claimed) < limit:
                found = self._claim_collection.find_one_and_update(
                    query, update, sort=q.CLAIM_SORT, return_document=_AFTER
                )
                if found is None:
                    break
                claimed.append(q.job_from_mongo(found))
        return claimed

    @property
    def _claim_collection(self) -> MongoCollection:
        if self._claims is None:
            raise BackendUnavailableError("MongoJobRepository is not connected: call connect()")
        return self._claims


class MongoBackend(AgendaBackend):
    """MongoDB storage only, like Agenda's: pair it with a notification channel of your
    choice (``MongoChangeStreamNotificationChannel``, Redis, PostgreSQL) or rely on polling."""

    name = "MongoDB"

    def __init__(
        self,
        *,
        address: str | None = None,
        mongo: MongoDatabase | None = None,
        collection: str = "agendaJobs",
        ensure_index: bool = True,
    ) -> None:
        self._repository = MongoJobRepository(
            address=address, mongo=mongo, collection=collection, ensure_index=ensure_index
        )
        self._owns_connection = mongo is None

    def __repr__(self) -> str:
        return f"MongoBackend({self._repository!r})"

    @property
    def repository(self) -> MongoJobRepository:
        return self._repository

    @property
    def owns_connection(self) -> bool:
        return self._owns_connection


# -- the change-stream notification channel ------------------------------------------------------


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
#: InvalidResumeToken: resuming after the token we hold can never work (reliability N8).
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
        super().__init__(channel_name=_check_collection_name(collection), reconnect=reconnect)
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
            # The collection was dropped or renamed: the token cannot be resumed (N8).
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
