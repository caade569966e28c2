"""The MongoDB job log, as Agenda 6.2's @agendajs/mongo-backend 4.0.3 keeps it
(``MongoJobLogger.js``): one document per entry in the ``agenda_logs`` collection (Node's
``logCollection``), with Node's camelCase fields (``timestamp`` a BSON date, ``level``,
``event``, ``jobId`` as text, ``jobName``, ``message``, and whichever of ``duration``,
``error``, ``failCount``, ``retryDelay``, ``retryAttempt`` and ``meta`` the entry has;
``agendaName`` always, null when unnamed) and Node's three indexes
(``agenda_logs_timestamp_idx``, ``agenda_logs_job_id_idx``, ``agenda_logs_job_name_idx``,
named so whatever the collection).

The logger calls the driver on the repository's thread (``MongoConnector``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pymongo import ASCENDING, DESCENDING

from agenda_decl._convert import parse_datetime
from agenda_decl._job_log import JobLogEntry, JobLogQuery, JobLogQueryResult, JobLogRetention
from agenda_decl.backends import base
from agenda_decl.backends.mongo.queries import to_bson_date
from agenda_decl.connectors.mongo import (
    Document,
    MongoCollection,
    MongoConnector,
    MongoDatabase,
    check_collection_name,
)
from agenda_decl.interfaces import JobLogger

__all__ = ["INDEXES", "MongoJobLogger"]

#: Node's indexes: name -> keys.
INDEXES: dict[str, list[tuple[str, int]]] = {
    "agenda_logs_timestamp_idx": [("timestamp", DESCENDING)],
    "agenda_logs_job_id_idx": [("jobId", ASCENDING), ("timestamp", DESCENDING)],
    "agenda_logs_job_name_idx": [("jobName", ASCENDING), ("timestamp", DESCENDING)],
}
#: The entry's optional fields as Node stores them: (document field, entry attribute).
_OPTIONAL = (
    ("duration", "duration"), ("error", "error"), ("failCount", "fail_count"),
    ("retryDelay", "retry_delay"), ("retryAttempt", "retry_attempt"), ("meta", "meta"),
)


class MongoJobLogger(JobLogger):
    """Job log entries in ``collection`` (default ``agenda_logs``) of the database the
    repository uses: ``connector`` runs the driver calls, ``database`` returns the connected
    database (``MongoBackend(...).logger`` makes one). ``ensure_index`` (default) creates
    Node's indexes at :meth:`connect`; ``read_only`` creates and writes nothing."""

    def __init__(
        self,
        connector: MongoConnector,
        database: Callable[[], MongoDatabase],
        *,
        collection: str = "agenda_logs",
        ensure_index: bool = True,
        retention: JobLogRetention | None = None,
        read_only: bool = False,
    ) -> None:
        self._connector = connector
        self._database = database
        self._name = check_collection_name(collection)
        self._ensure_index = ensure_index and not read_only
        self._read_only = read_only
        self.retention = retention

    def __repr__(self) -> str:
        return f"MongoJobLogger(collection={self._name!r})"

    @property
    def collection_name(self) -> str:
        return self._name

    def _collection(self) -> MongoCollection:
        return self._database().get_collection(self._name)

    async def connect(self) -> None:
        if self._ensure_index:
            await self._connector.run(self._create_indexes)

    def _create_indexes(self) -> None:
        collection = self._collection()
        for name, keys in INDEXES.items():
            collection.create_index(keys, name=name)

    # -- writing ---------------------------------------------------------------------------

    async def log(self, entry: JobLogEntry) -> None:
        await self.log_many([entry])

    async def log_many(self, entries: Sequence[JobLogEntry]) -> None:
        base.refuse_write(self._read_only, repr(self))
        documents = [_document(entry) for entry in entries]
        if documents:
            await self._connector.run(lambda: self._collection().insert_many(documents))

    async def clear_logs(self, query: JobLogQuery | None = None) -> int:
        base.refuse_write(self._read_only, repr(self))
        match = _filter(query)
        return await self._connector.run(
            lambda: self._collection().delete_many(match).deleted_count)

    # -- reading ---------------------------------------------------------------------------

    async def get_logs(self, query: JobLogQuery | None = None) -> JobLogQueryResult:
        query = query or JobLogQuery()
        return await self._connector.run(self._read, query)

    def _read(self, query: JobLogQuery) -> JobLogQueryResult:
        collection, match = self._collection(), _filter(query)
        total = collection.count_documents(match)
        if query.limit == 0 or query.offset >= total:
            return JobLogQueryResult(entries=[], total=total)
        direction = ASCENDING if query.sort == "asc" else DESCENDING
        cursor = collection.find(match).sort([("timestamp", direction), ("_id", direction)])
        cursor = cursor.skip(query.offset).limit(query.limit or 0)
        return JobLogQueryResult(entries=[_entry(document) for document in cursor], total=total)


def _document(entry: JobLogEntry) -> Document:
    document: Document = {
        "level": entry.level, "event": entry.event, "jobId": entry.job_id,
        "jobName": entry.job_name, "message": entry.message,
    }
    if entry.job_id is None:
        del document["jobId"]
    for field, attribute in _OPTIONAL:
        value = getattr(entry, attribute)
        if value is not None:
            document[field] = value
    document["timestamp"] = to_bson_date(entry.timestamp)
    document["agendaName"] = entry.agenda_name  # Node stores an unnamed Agenda's as null
    return document


def _filter(query: JobLogQuery | None) -> Document:
    if query is None:
        return {}
    match: Document = {}
    if query.job_id is not None:
        match["jobId"] = query.job_id
    if query.job_name is not None:
        match["jobName"] = query.job_name
    for field, values in (("level", query.levels), ("event", query.events)):
        if values is not None:
            match[field] = values[0] if len(values) == 1 else {"$in": list(values)}
    bounds = {op: to_bson_date(value) for op, value in
              (("$gte", query.from_date), ("$lte", query.to_date)) if value is not None}
    if bounds:
        match["timestamp"] = bounds
    return match


def _entry(document: Document) -> JobLogEntry:
    def number(field: str) -> int | None:
        value = document.get(field)
        return None if value is None else int(value)

    return JobLogEntry(
        id=str(document["_id"]),
        timestamp=parse_datetime(document["timestamp"]),
        level=document.get("level", "info"),
        event=document.get("event", "start"),
        job_id=None if document.get("jobId") is None else str(document["jobId"]),
        job_name=str(document.get("jobName", "")),
        message=str(document.get("message", "")),
        duration=number("duration"),
        error=document.get("error"),
        fail_count=number("failCount"),
        retry_delay=number("retryDelay"),
        retry_attempt=number("retryAttempt"),
        agenda_name=document.get("agendaName"),
        meta=document.get("meta"),
    )
