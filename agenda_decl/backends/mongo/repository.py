"""The MongoDB job repository, in Agenda v6's document layout (``queries``).

Documents keep Agenda v6's camelCase fields, ObjectId ``_id`` (the job id is its 24-hex
string), BSON dates and its ``findAndLockNextJobIndex``, so a Node.js Agenda v6 process and
an agenda-decl worker can share one collection. Every driver call runs on the connector's
thread (``connectors.mongo``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import ReadPreference, ReturnDocument, WriteConcern
from pymongo.errors import PyMongoError

from agenda_decl._clock import utcnow
from agenda_decl._convert import parse_datetime
from agenda_decl._model import (
    Announcement,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
)
from agenda_decl.backends import base
from agenda_decl.backends.mongo import queries
from agenda_decl.connectors.mongo import (
    Document,
    MongoCollection,
    MongoConnector,
    MongoDatabase,
    check_collection_name,
)
from agenda_decl.errors import BackendUnavailableError, job_not_found, rejected_state_write

__all__ = ["MongoJobRepository"]

T = TypeVar("T")
_AFTER = ReturnDocument.AFTER


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
        self._connector = MongoConnector(address=address, mongo=mongo, user="MongoJobRepository")
        self._collection_name = check_collection_name(collection)
        self._ensure_index = ensure_index and not read_only
        self._read_only = read_only
        self._jobs: MongoCollection | None = None
        self._claims: MongoCollection | None = None

    def __repr__(self) -> str:
        return f"MongoJobRepository({self._connector.where}, collection={self._collection_name!r})"

    @property
    def collection_name(self) -> str:
        return self._collection_name

    @property
    def connector(self) -> MongoConnector:
        """The driver's thread (the job log in the same database shares it)."""
        return self._connector

    def database(self) -> MongoDatabase:
        """The connected database (``BackendUnavailableError`` before :meth:`connect`)."""
        return self._collection.database

    # -- connection ----------------------------------------------------------------------

    async def connect(self) -> None:
        if self._jobs is not None:
            return
        try:
            await self._connector.open(self._open_collections)
        except BaseException:
            await self.close()  # so that a later connect() starts over
            raise

    def _open_collections(self, db: MongoDatabase) -> None:
        # Decisions (claims, locks, due-job reads) are never taken on a secondary's reads.
        self._jobs = db.get_collection(
            self._collection_name, read_preference=ReadPreference.PRIMARY
        )
        # A lock acknowledged by a majority survives a primary step-down (no two holders).
        self._claims = db.get_collection(
            self._collection_name,
            read_preference=ReadPreference.PRIMARY,
            write_concern=WriteConcern("majority"),
        )
        if self._ensure_index:
            self._jobs.create_index(queries.INDEX_KEYS, name=queries.INDEX_NAME)

    async def close(self) -> None:
        await self._connector.close(stopped=self._forget_collections)

    def _forget_collections(self) -> None:
        self._jobs, self._claims = None, None

    async def _write(self, function: Callable[..., T], *args: Any) -> T:
        """:meth:`_run` for every call that writes (refused when read-only)."""
        base.refuse_write(self._read_only, repr(self))
        return await self._run(function, *args)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await self._connector.run(function, *args)

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
        match = queries.query_filter(options)
        if match is None:
            return JobsResult(jobs=[], total=0)
        return await self._run(self._query, options, match, utcnow())

    def _query(self, options: JobsQueryOptions, match: Document, now: datetime) -> JobsResult:
        counted = list(self._collection.aggregate(queries.count_pipeline(options, match, now)))
        total = int(counted[0]["n"]) if counted else 0
        if total == 0 or options.skip >= total:
            return JobsResult(jobs=[], total=total)
        pipeline = queries.page_pipeline(options, match, now)
        page = self._collection.aggregate(pipeline, allowDiskUse=True)
        return JobsResult(jobs=[queries.job_with_state(document) for document in page], total=total)

    async def get_jobs_overview(self) -> list[JobsOverview]:
        pipeline = queries.overview_pipeline(utcnow())
        documents = await self._run(lambda: list(self._collection.aggregate(pipeline)))
        return [queries.overview_from(document) for document in documents]

    async def get_distinct_job_names(self) -> list[str]:
        names = await self._run(lambda: self._collection.distinct("name"))
        return sorted(name for name in names if isinstance(name, str))

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        oid = queries.object_id(job_id)
        if oid is None:
            return None
        document = await self._run(lambda: self._collection.find_one({"_id": oid}))
        return queries.job_from_mongo(document) if document else None

    async def get_queue_size(self) -> int:
        # Agenda's rule and clock: the application's now, strictly before.
        query = {"nextRunAt": {"$lt": queries.to_bson_date(utcnow())}}
        return await self._run(lambda: self._collection.count_documents(query))

    # -- writing -------------------------------------------------------------------------

    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        query = queries.remove_filter(options)
        if query is None:
            return 0
        return await self._write(lambda: self._collection.delete_many(query).deleted_count)

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=True)

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=False)

    async def _set_disabled(self, options: RemoveJobsOptions, *, disabled: bool) -> int:
        query = queries.remove_filter(options)
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
        fields = queries.job_fields(job, last_modified_by)
        return await self._write(self._save, job, fields, now or utcnow())

    async def insert_jobs(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        announce: Announcement | None = None,
    ) -> list[JobParameters[Any]]:
        """One ``insert_many`` per batch, under ObjectIds made here in ascending order (the
        insertion order the claim's tie-break reads)."""
        base.check_inserts(jobs)
        stored: list[JobParameters[Any]] = []
        for batch in base.chunks(list(jobs), base.INSERT_BATCH):
            documents = [{"_id": ObjectId(), **queries.job_fields(job, last_modified_by),
                          **queries.processor_nulls()} for job in batch]
            await self._write(self._collection.insert_many, documents)
            stored.extend(queries.job_from_mongo(document) for document in documents)
        return stored

    def _save(self, job: JobParameters[Any], fields: Document, now: datetime) -> JobParameters[Any]:
        if job.id is not None:
            return self._update_by_id(job, fields)
        if job.type == "single":
            return self._upsert_single(job, fields, now)
        if job.unique:
            return self._upsert_unique(job, fields, now)
        return self._insert(fields)

    def _update_by_id(self, job: JobParameters[Any], fields: Document) -> JobParameters[Any]:
        oid = queries.object_id(job.id)
        if oid is None:
            return job
        query = {"_id": oid, "name": {"$eq": job.name}}
        found = self._collection.find_one_and_update(
            query, {"$set": fields}, return_document=_AFTER
        )
        return queries.job_from_mongo(found) if found else job

    def _insert(self, fields: Document) -> JobParameters[Any]:
        document = {**fields, **queries.processor_nulls()}
        self._collection.insert_one(document)
        return queries.job_from_mongo(document)

    def _upsert(self, query: Document, update: Document) -> JobParameters[Any]:
        """One atomic upsert; a new document gets a client ObjectId (insertion order) and
        null processor fields."""
        on_insert = {"_id": ObjectId(), **queries.processor_nulls(),
                     **update.pop("$setOnInsert", {})}
        update["$setOnInsert"] = on_insert
        found = self._collection.find_one_and_update(
            query, update, upsert=True, return_document=_AFTER
        )
        assert found is not None  # an upsert always returns the document after
        return queries.job_from_mongo(found)

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
                {**query, "nextRunAt": {"$ne": None}, **queries.timing_filter(job)},
                {"$set": keep}, return_document=_AFTER,
            )
            if found is not None:
                return queries.job_from_mongo(found)
        return self._upsert(query, {"$set": fields})

    def _upsert_unique(
        self, job: JobParameters[Any], fields: Document, now: datetime
    ) -> JobParameters[Any]:
        query = queries.unique_filter(job)
        if base.is_insert_only(job):
            return self._upsert(query, {"$setOnInsert": fields})
        if base.is_debounced(job):
            # Read, decide, write: not atomic as a whole (as in Agenda); each write is.
            found = self._collection.find_one(query, sort=[("_id", 1)])
            existing = queries.job_from_mongo(found) if found else None
            outcome = base.debounce_outcome(job, existing, now)
            fields["nextRunAt"] = queries.to_bson_date(outcome.next_run_at)
            fields["debounceStartedAt"] = queries.to_bson_date(outcome.debounce_started_at)
            if found is not None:
                updated = self._collection.find_one_and_update(
                    {"_id": found["_id"]}, {"$set": fields}, return_document=_AFTER
                )
                if updated is not None:  # else it was removed meanwhile: upsert below
                    return queries.job_from_mongo(updated)
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
        oid = queries.object_id(job.id)
        if oid is None:
            raise job_not_found(job)
        if not await self._write(self._write_state, oid, job, last_modified_by, lock_token):
            raise await rejected_state_write(self, job, lock_token)

    def _write_state(
        self, oid: ObjectId, job: JobParameters[Any], by: str | None, token: datetime | None
    ) -> bool:
        """The state fields, ``nextRunAt`` only if the stored timing is still the job's (else a
        schedule changed during the run keeps its own). Each update is atomic, and the
        second never writes ``nextRunAt``, so none can put back a stale one. Both are fenced
        by the lock token (``lockedAt`` must equal it) when there is one."""
        fields = queries.state_fields(job, by)
        query = {"_id": oid, "name": {"$eq": job.name}, **queries.fence_filter(token)}
        if self._collection.update_one({**query, **queries.timing_filter(job)},
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
        oid = queries.object_id(job.id)
        if oid is None:
            return None
        query = queries.lock_filter(oid, job)
        update = {"$set": {"lockedAt": queries.to_bson_date(now or utcnow()),
                           "lastModifiedBy": last_modified_by}}
        found = await self._write(
            lambda: self._claim_collection.find_one_and_update(
                query, update, return_document=_AFTER
            )
        )
        return queries.job_from_mongo(found) if found else None

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        oid = queries.object_id(job.id)
        if oid is None:
            return
        # A one-off that finished (nextRunAt null) keeps its lock, as in Agenda.
        query = {"_id": oid, "nextRunAt": {"$ne": None}}
        unset = {"$unset": {"lockedAt": ""}}
        await self._write(lambda: self._collection.update_one(query, unset))

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        oids = queries.object_ids(list(job_ids))
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
        filters = queries.claim_filters(job_name, next_scan_at, lock_deadline)
        # When now is None this is the application clock (mongomock has no $$NOW).
        update = {"$set": {"lockedAt": queries.to_bson_date(now or utcnow()),
                           "lastModifiedBy": last_modified_by}}
        return await self._write(self._claim_many, filters, update, limit)

    def _claim_many(self, filters: list[Document], update: Document, limit: int) -> list[Any]:
        claimed: list[JobParameters[Any]] = []
        for query in filters:
            while len(claimed) < limit:
                found = self._claim_collection.find_one_and_update(
                    query, update, sort=queries.CLAIM_SORT, return_document=_AFTER
                )
                if found is None:
                    break
                claimed.append(queries.job_from_mongo(found))
        return claimed

    @property
    def _claim_collection(self) -> MongoCollection:
        if self._claims is None:
            raise BackendUnavailableError("MongoJobRepository is not connected: call connect()")
        return self._claims
