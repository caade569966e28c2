"""MongoDB storage in Agenda v6's layout, and a change-stream notification channel.

Documents keep Agenda v6's camelCase fields, ObjectId ``_id`` (the job id is its 24-hex
string), BSON dates and its ``findAndLockNextJobIndex``, so a Node.js Agenda v6 process and
an agenda-decl worker can share one collection.

The change-stream channel lives in ``_mongo_stream`` and is re-exported here.

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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import MongoClient, ReadPreference, ReturnDocument, WriteConcern
from pymongo.errors import PyMongoError

from agenda_decl._clock import utcnow
from agenda_decl._convert import parse_datetime
from agenda_decl._model import (
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
)
from agenda_decl._secrets import mask_text, mask_url
from agenda_decl.backends import _mongo_query as q
from agenda_decl.backends import base
from agenda_decl.backends._mongo_stream import (
    ChangeStreamLike,
    MongoChangeStreamNotificationChannel,
    ReplicaSetRequiredError,
    StreamFactory,
    watch_collection,
)
from agenda_decl.errors import (
    BackendUnavailableError,
    InvalidOptionError,
    job_not_found,
    rejected_state_write,
)
from agenda_decl.interfaces import AgendaBackend

__all__ = [
    "ChangeStreamLike",
    "MongoBackend",
    "MongoChangeStreamNotificationChannel",
    "MongoJobRepository",
    "ReplicaSetRequiredError",
    "StreamFactory",
    "watch_collection",
]

T = TypeVar("T")
Document = q.Document
MongoDatabase = q.MongoDatabase
MongoCollection = q.MongoCollection
_AFTER = ReturnDocument.AFTER


def _normalize_address(address: str) -> str:
    """Agenda adds a missing scheme the same way."""
    if address.startswith(("mongodb://", "mongodb+srv://")):
        return address
    return f"mongodb://{address}"


class MongoJobRepository(base.ClaimsInBatches):
    """Jobs in one MongoDB collection, in Agenda v6's document layout.

    ``read_only=True`` (inspecting: ``agenda-decl plan``, ``jobs``) creates no index (whatever
    ``ensure_index`` says) and refuses every write; a collection that does not exist reads as
    an empty one (MongoDB creates collections on the first write only)."""

    def __init__(
        self,
        *,
        address: str | None = None,
        mongo: MongoDatabase | None = None,
        collection: str = "agendaJobs",
        ensure_index: bool = True,
        read_only: bool = False,
    ) -> None:
        if (address is None) == (mongo is None):
            raise InvalidOptionError("MongoBackend needs exactly one of address=... or mongo=...")
        self._address = _normalize_address(address) if address is not None else None
        self._given_db = mongo
        self._collection_name = q.check_collection_name(collection)
        self._ensure_index = ensure_index and not read_only
        self._read_only = read_only
        self._client: MongoClient[Document] | None = None
        self._jobs: MongoCollection | None = None
        self._claims: MongoCollection | None = None
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        where = mask_url(self._address) if self._address else "<database passed in>"
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
            await self.close()  # so that a later connect() starts over
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
                f"MongoDB at {mask_url(self._address)} is not reachable "
                f"({type(error).__name__}: {mask_text(str(error))})"
            ) from None
        self._client = client
        return db

    async def close(self) -> None:
        executor, self._executor = self._executor, None  # new calls fail from here on
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)  # let queued calls finish
        client, self._client, self._jobs, self._claims = self._client, None, None, None
        if client is not None:  # only a client we opened; a database passed in stays open
            await asyncio.to_thread(client.close)

    async def _write(self, function: Callable[..., T], *args: Any) -> T:
        """:meth:`_run` for every call that writes (refused when read-only)."""
        base.refuse_write(self._read_only, repr(self))
        return await self._run(function, *args)

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
        return await self._write(lambda: self._collection.delete_many(query).deleted_count)

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=True)

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=False)

    async def _set_disabled(self, options: RemoveJobsOptions, *, disabled: bool) -> int:
        query = q.remove_filter(options)
        if query is None:
            return 0
        update = {"$set": {"disabled": disabled}}
        return await self._write(
            lambda: self._collection.update_many(query, update).matched_count)

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        base.check_job(job)
        fields = q.job_fields(job, last_modified_by)
        return await self._write(self._save, job, fields, now or utcnow())

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
            # only where one is stored with the same timing; otherwise (none, or a new
            # timing the job must follow) fall through to the full upsert.
            keep = {key: value for key, value in fields.items() if key != "nextRunAt"}
            found = self._collection.find_one_and_update(
                {**query, "nextRunAt": {"$ne": None}, **q.timing_filter(job)},
                {"$set": keep}, return_document=_AFTER,
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
                updated = self._collection.find_one_and_update(
                    {"_id": found["_id"]}, {"$set": fields}, return_document=_AFTER
                )
                if updated is not None:  # else it was removed meanwhile: upsert below
                    return q.job_from_mongo(updated)
        return self._upsert(query, {"$set": fields})

    async def save_job_state(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        lock_token: datetime | None = None,
    ) -> None:
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        oid = q.object_id(job.id)
        if oid is None:
            raise job_not_found(job)
        if not await self._write(self._write_state, oid, job, last_modified_by, lock_token):
            raise await rejected_state_write(self, job, lock_token)

    def _write_state(
        self, oid: ObjectId, job: JobParameters[Any], by: str | None, token: datetime | None
    ) -> bool:
        """The state fields, ``nextRunAt`` only if the stored timing is still the job's (else a
        schedule changed during the run keeps its own, W-7). Each update is atomic, and the
        second never writes ``nextRunAt``, so none can put back a stale one. Both are fenced
        by the lock token (``lockedAt`` must equal it) when there is one."""
        fields = q.state_fields(job, by)
        query = {"_id": oid, "name": {"$eq": job.name}, **q.fence_filter(token)}
        if self._collection.update_one({**query, **q.timing_filter(job)},
                                       {"$set": fields}).matched_count:
            return True
        del fields["nextRunAt"]
        return self._collection.update_one(query, {"$set": fields}).matched_count == 1

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
        found = await self._write(
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
        unset = {"$unset": {"lockedAt": ""}}
        await self._write(lambda: self._collection.update_one(query, unset))

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        oids = q.object_ids(list(job_ids))
        if not oids:
            return
        query = {"_id": {"$in": oids}}
        unset = {"$unset": {"lockedAt": ""}}
        await self._write(lambda: self._collection.update_many(query, unset))

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
        return await self._write(self._claim_many, filters, update, limit)

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
        read_only: bool = False,
    ) -> None:
        self._repository = MongoJobRepository(
            address=address, mongo=mongo, collection=collection, ensure_index=ensure_index,
            read_only=read_only,
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
