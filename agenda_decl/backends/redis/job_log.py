"""The Redis job log, in the keys of Agenda 6.2's @agendajs/redis-backend 3.0.7
(``RedisJobLogger.js``), under the store's key prefix:

* ``{prefix}log:{id}``: a hash per entry: ``id``, ``timestamp`` (ISO, milliseconds, ``Z``),
  ``level``, ``event``, ``jobName``, ``message``, and only when present ``jobId``,
  ``duration``, ``error``, ``failCount``, ``retryDelay``, ``retryAttempt`` (decimal text),
  ``agendaName`` and ``meta`` (JSON). Absent fields are left out, never ``'null'``.
* ``{prefix}logs:all``, ``{prefix}logs:by_job:{jobId}``, ``{prefix}logs:by_name:{jobName}``:
  sorted sets of entry ids scored by the timestamp in milliseconds.

Ids are Node's ``{ms}-{pid}-{n}``. A read takes the narrowest sorted set (the job's, else the
name's, else all) within the time range and pages it in Redis; when it must also filter on
level or event (or on both the job and the name) it filters the range here, as Node does.
Nothing is created at connect: Redis has no schema.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs

from agenda_decl._convert import format_datetime, parse_datetime
from agenda_decl._job_log import (
    JobLogEntry,
    JobLogQuery,
    JobLogQueryResult,
    JobLogRetention,
    page,
)
from agenda_decl.backends import base
from agenda_decl.backends.redis.codec import epoch_ms
from agenda_decl.connectors.redis import AnyRedis, check_name, text
from agenda_decl.interfaces import JobLogger

__all__ = ["RedisJobLogger"]

#: Entries per pipeline when reading or deleting many.
CHUNK = 500
#: Node's optional fields: (hash field, entry attribute), numbers written as decimal text.
_OPTIONAL = (
    ("jobId", "job_id"), ("duration", "duration"), ("error", "error"),
    ("failCount", "fail_count"), ("retryDelay", "retry_delay"),
    ("retryAttempt", "retry_attempt"), ("agendaName", "agenda_name"),
)
_NUMBERS = frozenset({"duration", "failCount", "retryDelay", "retryAttempt"})
#: The ``n`` of the ids written by this process (Node's per-logger counter; one per process
#: here, so two loggers in one process never make the same id in one millisecond).
_SEQUENCE = itertools.count(1)


class RedisJobLogger(JobLogger):
    """Job log entries in Node's keys under ``key_prefix`` (the store's: ``RedisBackend``
    passes its client and prefix). Never closes ``client``; ``read_only`` refuses writes."""

    def __init__(
        self,
        client: AnyRedis,
        *,
        key_prefix: str = "agenda:",
        retention: JobLogRetention | None = None,
        read_only: bool = False,
    ) -> None:
        self._client = client
        self.key_prefix = check_name(key_prefix, field="key_prefix")
        self._read_only = read_only
        self.retention = retention

    def __repr__(self) -> str:
        return f"RedisJobLogger(key_prefix={self.key_prefix!r})"

    def _key(self, suffix: str) -> str:
        return f"{self.key_prefix}{suffix}"

    # -- writing ---------------------------------------------------------------------------

    async def log(self, entry: JobLogEntry) -> None:
        await self.log_many([entry])

    async def log_many(self, entries: Sequence[JobLogEntry]) -> None:
        base.refuse_write(self._read_only, repr(self))
        async with self._client.pipeline(transaction=True) as pipe:
            for entry in entries:
                entry_id = f"{epoch_ms(entry.timestamp)}-{os.getpid()}-{next(_SEQUENCE)}"
                fields = _hash(entry_id, entry)
                score = {entry_id: epoch_ms(entry.timestamp)}
                pipe.hset(self._key(f"log:{entry_id}"), mapping=fields)
                pipe.zadd(self._key("logs:all"), score)
                if entry.job_id:
                    pipe.zadd(self._key(f"logs:by_job:{entry.job_id}"), score)
                pipe.zadd(self._key(f"logs:by_name:{entry.job_name}"), score)
            await pipe.execute()

    async def clear_logs(self, query: JobLogQuery | None = None) -> int:
        base.refuse_write(self._read_only, repr(self))
        found = await self._matching(query, paged=False)
        for chunk in _chunks(found.entries):
            async with self._client.pipeline(transaction=True) as pipe:
                for entry in chunk:
                    assert entry.id is not None
                    pipe.delete(self._key(f"log:{entry.id}"))
                    pipe.zrem(self._key("logs:all"), entry.id)
                    if entry.job_id:
                        pipe.zrem(self._key(f"logs:by_job:{entry.job_id}"), entry.id)
                    pipe.zrem(self._key(f"logs:by_name:{entry.job_name}"), entry.id)
                await pipe.execute()
        return found.total

    # -- reading ---------------------------------------------------------------------------

    async def get_logs(self, query: JobLogQuery | None = None) -> JobLogQueryResult:
        return await self._matching(query or JobLogQuery(), paged=True)

    async def _matching(self, query: JobLogQuery | None, *, paged: bool) -> JobLogQueryResult:
        """The entries of ``query``: one page of them (``paged``), or all (for deleting)."""
        query = query or JobLogQuery(limit=None)
        key = self._set_of(query)
        low = "-inf" if query.from_date is None else epoch_ms(query.from_date)
        high = "+inf" if query.to_date is None else epoch_ms(query.to_date)
        in_redis = query.levels is None and query.events is None and not (
            query.job_id and query.job_name)
        if in_redis and paged:
            total = int(await self._client.zcount(key, low, high))
            ids = await self._range(key, low, high, query.sort, query.offset, query.limit)
            entries = _in_order(await self._entries(ids), query.sort)
            return JobLogQueryResult(entries=entries, total=total)
        ids = await self._range(key, low, high, "asc", 0, None)
        entries = _in_order(await self._entries(ids), "asc")
        return page(entries, query if paged else attrs.evolve(query, limit=None, offset=0))

    def _set_of(self, query: JobLogQuery) -> str:
        if query.job_id:
            return self._key(f"logs:by_job:{query.job_id}")
        if query.job_name:
            return self._key(f"logs:by_name:{query.job_name}")
        return self._key("logs:all")

    async def _range(self, key: str, low: float | str, high: float | str, sort: str,
                     offset: int, limit: int | None) -> list[str]:
        paging: dict[str, Any] = {} if limit is None and not offset else {
            "start": offset, "num": -1 if limit is None else limit}
        if paging.get("num") == 0:
            return []
        if sort == "desc":
            ids = await self._client.zrevrangebyscore(key, high, low, **paging)
        else:
            ids = await self._client.zrangebyscore(key, low, high, **paging)
        return [str(i) for i in text(ids)]

    async def _entries(self, ids: list[str]) -> list[JobLogEntry]:
        """The entries of ``ids`` that still exist, in the order given."""
        entries: list[JobLogEntry] = []
        for chunk in _chunks(ids):
            async with self._client.pipeline(transaction=False) as pipe:
                for entry_id in chunk:
                    pipe.hgetall(self._key(f"log:{entry_id}"))
                hashes = await pipe.execute()
            entries.extend(_entry(_decoded(h)) for h in hashes if h)
        return entries


def _hash(entry_id: str, entry: JobLogEntry) -> dict[Any, str]:
    fields = {
        "id": entry_id, "timestamp": format_datetime(entry.timestamp), "level": entry.level,
        "event": entry.event, "jobName": entry.job_name, "message": entry.message,
    }
    for field, attribute in _OPTIONAL:
        value = getattr(entry, attribute)
        # Node writes numbers when defined, strings when truthy.
        if value is not None and (field in _NUMBERS or value != ""):
            fields[field] = str(value)
    if entry.meta is not None:
        fields["meta"] = json.dumps(entry.meta, separators=(",", ":"))
    return fields


def _decoded(fields: dict[Any, Any]) -> dict[str, str]:
    return {str(text(key)): str(text(value)) for key, value in fields.items()}


def _number(value: str | None) -> int | None:
    """Node's ``parseInt``: an integer from decimal text (a fraction is cut)."""
    if not value:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _entry(fields: dict[str, str]) -> JobLogEntry:
    meta = fields.get("meta")
    return JobLogEntry(
        id=fields.get("id"),
        timestamp=parse_datetime(fields["timestamp"]),
        level=fields.get("level", "info"),  # type: ignore[arg-type]
        event=fields.get("event", "start"),  # type: ignore[arg-type]
        job_id=fields.get("jobId") or None,
        job_name=fields.get("jobName", ""),
        message=fields.get("message", ""),
        duration=_number(fields.get("duration")),
        error=fields.get("error") or None,
        fail_count=_number(fields.get("failCount")),
        retry_delay=_number(fields.get("retryDelay")),
        retry_attempt=_number(fields.get("retryAttempt")),
        agenda_name=fields.get("agendaName") or None,
        meta=json.loads(meta) if meta else None,
    )


def _order_key(entry: JobLogEntry) -> tuple[datetime, int, int]:
    """Entries of one millisecond in the order they were written: ids are ``{ms}-{pid}-{n}``
    and Redis orders equal scores by the id's text, which puts ``...-10`` before ``...-9``."""
    parts = (entry.id or "").split("-")
    numbers = [int(p) if p.isdigit() else 0 for p in parts[1:3]] + [0, 0]
    return entry.timestamp, numbers[0], numbers[1]


def _in_order(entries: list[JobLogEntry], sort: str) -> list[JobLogEntry]:
    return sorted(entries, key=_order_key, reverse=sort == "desc")


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]
