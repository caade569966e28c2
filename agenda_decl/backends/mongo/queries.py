"""The queries of the MongoDB store: its documents, filters and aggregation pipelines.

This is the Mongo counterpart of the SQL of the SQL stores. One rule holds throughout: a value
that came from a caller enters a query only as a typed operand of an operator chosen here
(``$eq``, ``$in``, ``$all``, ``$elemMatch`` on typed values, an escaped regex). A caller's dict
is never used as a query document, so a data filter from a dashboard or an API cannot smuggle
``$where``, ``$ne`` and the like; keys are refused earlier by ``check_data_filter``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from agenda_decl._clock import truncate_ms
from agenda_decl._convert import CAMEL_NAMES, job_from_document, job_to_document
from agenda_decl._job_data import check_data_filter, truncate_reason
from agenda_decl._model import (
    JOB_STATES,
    PROCESSOR_FIELDS,
    TIMING_FIELDS,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobWithState,
    RemoveJobsOptions,
)
from agenda_decl.backends import base
from agenda_decl.connectors.mongo import Document
from agenda_decl.errors import InvalidOptionError

#: Agenda v6's lock index: same name, keys and (no) options, so both sides share it.
INDEX_NAME = "findAndLockNextJobIndex"
INDEX_KEYS: list[tuple[str, int]] = [
    ("name", 1),
    ("nextRunAt", 1),
    ("priority", -1),
    ("lockedAt", 1),
    ("disabled", 1),
]
#: Claim order: due time, then priority, then insertion (ObjectIds grow within a process).
CLAIM_SORT: list[tuple[str, int]] = [("nextRunAt", 1), ("priority", -1), ("_id", 1)]
#: Job names are at most 255 characters, so a longer search can match nothing (and a huge
#: pattern never reaches the server).
MAX_SEARCH_LENGTH = 255
#: The computed state and sort helpers live under these names inside a pipeline only.
STATE_FIELD = "_agendaState"
_NULL_FLAG = "_agendaNull"

_NOT_STORED = ("id", "unique", "unique_opts")
_BSON_TYPES: tuple[tuple[type, str], ...] = ((bool, "bool"), (int, "number"), (float, "number"))


# -- values and documents ------------------------------------------------------------------------


def to_bson_date(value: datetime | None) -> datetime | None:
    """An aware instant as the naive UTC datetime BSON stores (milliseconds)."""
    if value is None:
        return None
    return truncate_ms(value.astimezone(UTC)).replace(tzinfo=None)


def object_id(value: Any) -> ObjectId | None:
    """The ObjectId of a job id, or ``None`` for anything Mongo could never have issued."""
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    return None


def object_ids(values: list[str]) -> list[ObjectId]:
    return [oid for oid in map(object_id, values) if oid is not None]


def job_fields(job: JobParameters[Any], last_modified_by: str | None) -> Document:
    """What ``save_job`` writes: Agenda's camelCase fields without the processor fields,
    ``unique``/``uniqueOpts`` or the id; dates as BSON datetimes."""
    document = job_to_document(job)
    for name in (*_NOT_STORED, *PROCESSOR_FIELDS):
        document.pop(CAMEL_NAMES[name], None)
    for name in base.INSTANT_FIELDS:
        if name not in PROCESSOR_FIELDS:
            document[CAMEL_NAMES[name]] = to_bson_date(getattr(job, name))
    document["lastModifiedBy"] = last_modified_by
    return document


def processor_nulls() -> Document:
    """The processor fields of a new document: present and null, as Agenda writes them."""
    return {CAMEL_NAMES[name]: None for name in sorted(PROCESSOR_FIELDS)}


def state_fields(job: JobParameters[Any], last_modified_by: str | None) -> Document:
    """Exactly the fields ``save_job_state`` writes."""
    return {
        "lockedAt": to_bson_date(job.locked_at),
        "nextRunAt": to_bson_date(job.next_run_at),
        "lastRunAt": to_bson_date(job.last_run_at),
        "progress": job.progress,
        "failReason": truncate_reason(job.fail_reason),
        "failCount": job.fail_count,
        "failedAt": to_bson_date(job.failed_at),
        "lastFinishedAt": to_bson_date(job.last_finished_at),
        "lastModifiedBy": last_modified_by,
    }


def timing_filter(job: JobParameters[Any]) -> Document:
    """Matches a document whose timing (``_model.TIMING_FIELDS``) is the job's, in the form the
    job was read from: numbers match whatever their BSON type, ``None`` matches null or missing."""
    values = {name: getattr(job, name) for name in TIMING_FIELDS}
    for name in ("start_date", "end_date"):
        values[name] = to_bson_date(values[name])
    return {CAMEL_NAMES[name]: {"$eq": value} for name, value in values.items()}


def fence_filter(lock_token: datetime | None) -> Document:
    """Fencing: matches a document locked with this token (BSON dates are milliseconds);
    nothing to add for an unfenced write."""
    if lock_token is None:
        return {}
    return {"lockedAt": {"$eq": to_bson_date(truncate_ms(lock_token))}}


def job_from_mongo(document: Mapping[str, Any]) -> JobParameters[Any]:
    """A stored document (ours or Node Agenda's) as job parameters; the id is the hex string.

    Node stores a JavaScript number that is not an int32 as a BSON double, so ``every(30
    days in ms)`` from Node has ``repeatInterval: 2592000000.0``: an integral double reads back
    as the int it is (``repeat_interval`` is text or whole milliseconds)."""
    values = {key: value for key, value in document.items() if key != "_id"}
    values["id"] = str(document["_id"])
    values.pop("unique", None)
    values.pop("uniqueOpts", None)
    interval = values.get("repeatInterval")
    if isinstance(interval, float) and interval.is_integer():
        values["repeatInterval"] = int(interval)
    return job_from_document(values)


def job_with_state(document: Mapping[str, Any]) -> JobWithState[Any]:
    return base.with_state(job_from_mongo(document), document[STATE_FIELD])


def overview_from(document: Mapping[str, Any]) -> JobsOverview:
    counts = {state: int(document[state]) for state in (*JOB_STATES, "total", "paused")}
    return JobsOverview(name=document["_id"], **counts)


# -- filters -----------------------------------------------------------------------------------


def query_filter(options: JobsQueryOptions) -> Document | None:
    """The ``$match`` of ``query_jobs``; ``None`` when nothing can match (a malformed id,
    disjoint id or name criteria)."""
    check_data_filter(options.data)
    clauses = _id_name_clauses(options)
    if options.search is not None:
        if len(options.search) > MAX_SEARCH_LENGTH or "\x00" in options.search:
            return None
        # Literal, case-insensitive: every metacharacter escaped.
        clauses.append({"name": {"$regex": re.escape(options.search), "$options": "i"}})
    if options.data is not None:
        clauses += data_clauses("data", options.data)
    if not options.include_disabled:
        clauses.append({"disabled": {"$ne": True}})
    if options.state == "paused":
        clauses.append({"disabled": True})
    if None in clauses:
        return None
    return _all_of(clauses)


def remove_filter(options: RemoveJobsOptions) -> Document | None:
    """The filter of remove/disable/enable: the AND of every criterion; ``None`` = nothing."""
    if options.matches_nothing():
        return None
    check_data_filter(options.data)
    clauses = _id_name_clauses(options)
    if options.data is not None:
        clauses += data_clauses("data", options.data)
    if None in clauses or not clauses:
        return None
    return _all_of(clauses)


def _canonical_id(value: Any) -> str | None:
    oid = object_id(value)
    return None if oid is None else str(oid)


def _id_name_clauses(options: JobsQueryOptions | RemoveJobsOptions) -> list[Any]:
    """The folded id and name criteria (``base.id_name_criteria``: every given one applies),
    with typed values only; ``[None]`` when they can match nothing."""
    criteria = base.id_name_criteria(options, id_key=_canonical_id)
    if criteria.matches_nothing():
        return [None]
    clauses: list[Any] = []
    if criteria.ids is not None:
        oids = [ObjectId(key) for key in criteria.ids]
        clauses.append({"_id": oids[0]} if len(oids) == 1 else {"_id": {"$in": oids}})
    if criteria.names is not None:
        names = _strings(list(criteria.names))
        clauses.append({"name": {"$eq": names[0]}} if len(names) == 1 else {"name": {"$in": names}})
    if criteria.not_names is not None:
        clauses.append({"name": {"$nin": _strings(list(criteria.not_names))}})
    return clauses


def _strings(values: list[str]) -> list[str]:
    """Names are compared as strings only (a compiled regex in ``$in`` would be a pattern)."""
    for value in values:
        if not isinstance(value, str):
            raise InvalidOptionError(f"a job name must be a string, got {value!r}")
    return list(values)


def _all_of(clauses: list[Document]) -> Document:
    return {"$and": clauses} if clauses else {}


def data_clauses(path: str, needle: Any) -> list[Document]:
    """JSON containment (``data_contains``) of ``needle`` at ``path``, from typed values.

    Objects become one condition per dotted path, arrays one ``$elemMatch`` per wanted
    element, scalars ``$eq`` plus their BSON type (so ``1`` does not match ``true``). Every
    level is guarded against arrays, because Mongo would otherwise look inside them.
    """
    if isinstance(needle, Mapping):
        if not needle:
            return [{path: {"$type": "object", "$not": {"$type": "array"}}}]
        clauses: list[Document] = [{path: {"$not": {"$type": "array"}}}]
        for key, value in needle.items():
            clauses += data_clauses(f"{path}.{key}", value)
        return clauses
    if isinstance(needle, list):
        return [{path: {"$type": "array"}}] + [
            {path: {"$elemMatch": _element_condition(item)}} for item in needle
        ]
    if needle is None:
        return [{path: {"$eq": None, "$exists": True, "$not": {"$type": "array"}}}]
    return [{path: {**_scalar_condition(needle), "$not": {"$type": "array"}}}]


def _scalar_condition(value: Any) -> Document:
    for python_type, bson_type in _BSON_TYPES:
        if isinstance(value, python_type):
            return {"$eq": value, "$type": bson_type}
    return {"$eq": value}


def _element_condition(item: Any) -> Document:
    """What one element of a stored array must satisfy to contain ``item``."""
    if isinstance(item, Mapping):
        if not item:
            return {"$type": "object"}
        return _all_of([clause for key, value in item.items()
                        for clause in data_clauses(key, value)])
    if isinstance(item, list):
        # Documented gap: an array nested in an array matches by equality, not containment.
        return {"$eq": item}
    if item is None:
        return {"$eq": None}
    return _scalar_condition(item)


def unique_filter(job: JobParameters[Any]) -> Document:
    """Name plus every unique key, each value compared literally with ``$eq``."""
    clauses: list[Document] = [{"name": {"$eq": job.name}}]
    for key, value in (job.unique or {}).items():
        field = key if key.startswith("data.") else CAMEL_NAMES[key]
        clauses.append({field: {"$eq": value}})
    return {"$and": clauses}


# -- claims and locks ----------------------------------------------------------------------------


def claim_filters(name: str, next_scan_at: datetime, lock_deadline: datetime) -> list[Document]:
    """The claim filter split in tiers, tried in order.

    Stale locks come first, whatever their ``nextRunAt`` (a running job's start write moved
    it to its next occurrence or cleared it), so crash recovery never waits behind a backlog
    of due jobs; then the unlocked due jobs. Mongo sorts null first, the contract wants nulls
    last, and a sort cannot say so; so the stale locks of jobs with a ``nextRunAt`` go before
    those without one. Each tier is a single atomic ``find_one_and_update`` on Node's
    ``findAndLockNextJobIndex`` (``name`` bounds the scan; ``lockedAt`` is read from the keys).
    """
    common: Document = {"name": {"$eq": name}, "disabled": {"$ne": True}}
    stale = {**common, "lockedAt": {"$lte": to_bson_date(lock_deadline)}}
    due = {**common, "lockedAt": None, "nextRunAt": {"$lte": to_bson_date(next_scan_at)}}
    return [{**stale, "nextRunAt": {"$ne": None}}, {**stale, "nextRunAt": None}, due]


def lock_filter(oid: ObjectId, job: JobParameters[Any]) -> Document:
    return {
        "_id": oid,
        "name": {"$eq": job.name},
        "lockedAt": None,
        "nextRunAt": {"$eq": to_bson_date(job.next_run_at)},
        "disabled": {"$ne": True},
    }


# -- aggregation pipelines -----------------------------------------------------------------------


def _is_null(field: str) -> Document:
    return {"$eq": [{"$ifNull": [field, None]}, None]}


def _not_null(field: str) -> Document:
    return {"$ne": [{"$ifNull": [field, None]}, None]}


def _truthy(field: str) -> Document:
    return {"$and": [_not_null(field)]
            + [{"$ne": [field, falsy]} for falsy in ("", 0, False)]}


def state_expression(now: datetime) -> Document:
    """``compute_job_state`` as an aggregation expression (the first matching rule wins)."""
    failed = {
        "$and": [
            _not_null("$failedAt"),
            {"$or": [_is_null("$lastFinishedAt"), {"$gte": ["$failedAt", "$lastFinishedAt"]}]},
        ]
    }
    # Python truthiness of repeatInterval or repeatAt (a time of day also repeats); ($not
    # [..] is broken in mongomock, so no $in form).
    repeating = {"$or": [_truthy("$repeatInterval"), _truthy("$repeatAt")]}
    return {
        "$switch": {
            "branches": [
                {"case": _not_null("$lockedAt"), "then": "running"},
                {"case": failed, "then": "failed"},
                {"case": repeating, "then": "repeating"},
                {"case": {"$gt": ["$nextRunAt", to_bson_date(now)]}, "then": "scheduled"},
                {"case": _not_null("$nextRunAt"), "then": "queued"},
            ],
            "default": "completed",
        }
    }


def _state_stages(options: JobsQueryOptions, match: Document, now: datetime) -> list[Document]:
    stages: list[Document] = [
        {"$match": match},
        {"$addFields": {STATE_FIELD: state_expression(now)}},
    ]
    if options.state is not None and options.state != "paused":
        stages.append({"$match": {STATE_FIELD: options.state}})
    return stages


def count_pipeline(options: JobsQueryOptions, match: Document, now: datetime) -> list[Document]:
    return [*_state_stages(options, match, now), {"$count": "n"}]


def page_pipeline(options: JobsQueryOptions, match: Document, now: datetime) -> list[Document]:
    """Filter, state, sort (nulls last both ways, then insertion order), skip, limit."""
    sort = list((options.sort or {"next_run_at": "desc", "last_run_at": "desc"}).items())
    flags: Document = {}
    order: Document = {}
    for position, (key, direction) in enumerate(sort):
        field = CAMEL_NAMES[key]
        flags[f"{_NULL_FLAG}{position}"] = {"$cond": [_is_null(f"${field}"), 1, 0]}
        order[f"{_NULL_FLAG}{position}"] = 1
        order[field] = 1 if direction == "asc" else -1
    order["_id"] = 1
    stages = [*_state_stages(options, match, now), {"$addFields": flags}, {"$sort": order}]
    if options.skip:
        stages.append({"$skip": options.skip})
    if options.limit:
        stages.append({"$limit": options.limit})
    return stages


def overview_pipeline(now: datetime) -> list[Document]:
    """Counts per name and computed state in one ``$group``; ``paused`` counts disabled."""
    counters: Document = {
        state: {"$sum": {"$cond": [{"$eq": [f"${STATE_FIELD}", state]}, 1, 0]}}
        for state in JOB_STATES
    }
    return [
        {"$addFields": {STATE_FIELD: state_expression(now)}},
        {
            "$group": {
                "_id": "$name",
                "total": {"$sum": 1},
                "paused": {"$sum": {"$cond": [{"$eq": ["$disabled", True]}, 1, 0]}},
                **counters,
            }
        },
        {"$sort": {"_id": 1}},
    ]
