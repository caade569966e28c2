"""The job log's values: Agenda 6.2's ``JobLogger`` entries, queries and results, in Python
spellings, plus the rules every logger shares (what a failure's ``error`` holds, how a query
matches an entry where the store cannot filter, the bounds of the numeric columns).

Field names are the snake_case spellings of Node's (``jobId`` is ``job_id``); each store maps
them to the layout its npm backend uses (``agenda_logs`` table, Redis hashes, Mongo
documents), so a Node process or Agendash and agenda-decl read each other's logs. Every
datetime is aware UTC.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal

import attrs

from agenda_decl import timing
from agenda_decl._secrets import mask_text
from agenda_decl.errors import InvalidOptionError

__all__ = [
    "COLUMNS",
    "LOG_EVENTS",
    "LOG_LEVELS",
    "MAX_ERROR_CHARS",
    "JobLogEntry",
    "JobLogEvent",
    "JobLogQuery",
    "JobLogQueryResult",
    "JobLogRetention",
    "LogLevel",
    "bounded",
    "clamp_int32",
    "duration_ms",
    "format_failure",
    "from_row",
    "matches",
    "page",
    "to_row",
]

LogLevel = Literal["info", "warn", "error", "debug"]
JobLogEvent = Literal[
    "start", "success", "fail", "complete", "retry", "retry:exhausted", "locked", "expired"
]
LOG_LEVELS: tuple[LogLevel, ...] = ("info", "warn", "error", "debug")
LOG_EVENTS: tuple[JobLogEvent, ...] = (
    "start", "success", "fail", "complete", "retry", "retry:exhausted", "locked", "expired",
)

#: The bound of a failure's ``error`` text (a formatted traceback): longer ones keep their
#: first quarter and their end (where the exception and the innermost frames are), with a
#: marker saying how much was cut.
MAX_ERROR_CHARS = 8192
#: INTEGER columns (PostgreSQL's ``duration``, ``retry_delay``, ...) hold 32-bit values.
MAX_INT32 = 2**31 - 1


@attrs.define(kw_only=True, frozen=True)
class JobLogEntry:
    """One job lifecycle event, as Agenda 6.2 logs it. ``id`` is assigned by the store (Node's
    ``_id``) and is ``None`` on an entry not written yet; absent fields are ``None``."""

    timestamp: datetime
    level: LogLevel
    event: JobLogEvent
    job_id: str | None = None
    job_name: str
    message: str
    #: Milliseconds (``success`` and ``complete``).
    duration: int | None = None
    #: ``fail``: the formatted traceback (masked, bounded); ``retry``, ``retry:exhausted``:
    #: the error's message.
    error: str | None = None
    fail_count: int | None = None
    #: Milliseconds until the retry (``retry``).
    retry_delay: int | None = None
    retry_attempt: int | None = None
    #: The name of the Agenda that wrote the entry.
    agenda_name: str | None = None
    meta: dict[str, Any] | None = None
    id: str | None = None


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidOptionError(f"expected an aware datetime, got a naive one ({value!r})")
    return value


def _choices(value: str | Iterable[str] | None, allowed: tuple[str, ...], field: str
             ) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else tuple(value)
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise InvalidOptionError(
            f"invalid {field}: {unknown or values!r} (one or more of {', '.join(allowed)})"
        )
    return values


@attrs.define(kw_only=True, frozen=True)
class JobLogQuery:
    """Which entries to read or delete. Every criterion given applies (AND); ``level`` and
    ``event`` take one value or several (any of them); ``from_date`` and ``to_date`` are
    inclusive. ``limit`` (``None``: all), ``offset`` and ``sort`` (by timestamp) page a read
    and are ignored by ``clear_logs``."""

    job_id: str | None = None
    job_name: str | None = None
    level: LogLevel | Sequence[LogLevel] | None = None
    event: JobLogEvent | Sequence[JobLogEvent] | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None
    limit: int | None = 50
    offset: int = 0
    sort: Literal["asc", "desc"] = "desc"

    def __attrs_post_init__(self) -> None:
        self.levels  # noqa: B018 - validates
        self.events  # noqa: B018 - validates
        _aware(self.from_date)
        _aware(self.to_date)
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 0):
            raise InvalidOptionError(f"invalid limit: {self.limit!r} (>= 0, or None for all)")
        if isinstance(self.offset, bool) or self.offset < 0:
            raise InvalidOptionError(f"invalid offset: {self.offset!r} (>= 0)")
        if self.sort not in ("asc", "desc"):
            raise InvalidOptionError(f"invalid sort: {self.sort!r} ('asc' or 'desc')")

    @property
    def levels(self) -> tuple[str, ...] | None:
        """The levels asked for, as a tuple (``None``: any)."""
        return _choices(self.level, LOG_LEVELS, "level")

    @property
    def events(self) -> tuple[str, ...] | None:
        """The events asked for, as a tuple (``None``: any)."""
        return _choices(self.event, LOG_EVENTS, "event")


@attrs.define(kw_only=True, frozen=True)
class JobLogQueryResult:
    """One page of entries and how many match in all (ignoring ``limit`` and ``offset``)."""

    entries: list[JobLogEntry]
    total: int


def _max_age(value: timing.Duration | None) -> int | None:
    return None if value is None else timing.parse_duration(value, field="max_age")


@attrs.define(kw_only=True, frozen=True)
class JobLogRetention:
    """How long a logger keeps entries: those older than ``max_age`` (a duration: ms, a
    ``timedelta`` or "30 days") and those beyond the newest ``max_entries`` are deleted. The
    Agenda that writes to the logger applies it (see ``JobLogger.prune``)."""

    max_age: int | None = attrs.field(default=None, converter=_max_age)
    max_entries: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.max_age is not None and self.max_age <= 0:
            raise InvalidOptionError(f"invalid max_age: {self.max_age!r} (must be > 0)")
        if self.max_entries is not None and (
            isinstance(self.max_entries, bool) or self.max_entries < 1
        ):
            raise InvalidOptionError(f"invalid max_entries: {self.max_entries!r} (>= 1)")


# -- shared rules ------------------------------------------------------------------------------


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` in at most ``limit`` characters: the first quarter and the end, joined by a
    marker that says how much was cut."""
    if len(text) <= limit:
        return text
    head = limit // 4
    marker = f"\n... [{len(text) - limit} characters cut] ...\n"
    tail = limit - head - len(marker)
    return text[:head] + marker + text[len(text) - tail:]


def format_failure(error: BaseException) -> str:
    """The traceback of ``error`` (its chained causes included), as Python prints it, with the
    password of every connection string in it masked and bounded to :data:`MAX_ERROR_CHARS`.
    The scheduler's own frames that lead to the handler (agenda-decl's, asyncio's, the thread
    pool's) are left out, so it starts where the handler's code does."""
    frames = error.__traceback__
    while frames is not None and frames.tb_next is not None and _internal(frames):
        frames = frames.tb_next
    text = "".join(traceback.format_exception(type(error), error, frames)).rstrip("\n")
    return bounded(mask_text(text))


#: Where the scheduler's own frames come from: this package, asyncio, the thread pool.
_INTERNAL_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep
    for path in (__file__, asyncio.__file__, concurrent.futures.__file__)
)


def _internal(frames: TracebackType) -> bool:
    return frames.tb_frame.f_code.co_filename.startswith(_INTERNAL_DIRS)


def duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    """Milliseconds from ``start`` to ``end`` (``None`` when either is missing)."""
    if start is None or end is None:
        return None
    return (end - start) // timedelta(milliseconds=1)


def clamp_int32(value: int | None) -> int | None:
    """A value for an INTEGER column (Node's table): larger ones are stored as the maximum."""
    return None if value is None else max(-MAX_INT32 - 1, min(MAX_INT32, value))


def matches(entry: JobLogEntry, query: JobLogQuery | None) -> bool:
    """Whether ``entry`` meets every criterion of ``query`` (paging aside)."""
    if query is None:
        return True
    levels, events = query.levels, query.events
    return (
        (query.job_id is None or entry.job_id == query.job_id)
        and (query.job_name is None or entry.job_name == query.job_name)
        and (levels is None or entry.level in levels)
        and (events is None or entry.event in events)
        and (query.from_date is None or entry.timestamp >= query.from_date)
        and (query.to_date is None or entry.timestamp <= query.to_date)
    )


def page(entries: Sequence[JobLogEntry], query: JobLogQuery | None) -> JobLogQueryResult:
    """The entries of a store that filters in Python, given in the order they were written:
    matched, sorted by timestamp (ties keep the written order) and cut to the page."""
    query = query or JobLogQuery()
    found = sorted((e for e in entries if matches(e, query)), key=lambda e: e.timestamp)
    if query.sort == "desc":
        found.reverse()
    end = None if query.limit is None else query.offset + query.limit
    return JobLogQueryResult(entries=found[query.offset:end], total=len(found))


# -- the columns of Node's ``agenda_logs`` table (PostgreSQL; SQLite is modelled on it) ---------

#: The columns an insert writes, in Node's order (the id is the store's).
COLUMNS: tuple[str, ...] = (
    "timestamp", "level", "event", "job_id", "job_name", "message", "duration", "error",
    "fail_count", "retry_delay", "retry_attempt", "agenda_name", "meta",
)
_INT_COLUMNS = ("duration", "fail_count", "retry_delay", "retry_attempt")


def to_row(entry: JobLogEntry) -> dict[str, Any]:
    """The column values of ``entry`` (integers clamped to the INTEGER columns)."""
    row = {column: getattr(entry, column) for column in COLUMNS}
    for column in _INT_COLUMNS:
        row[column] = clamp_int32(row[column])
    return row


def from_row(row: Mapping[str, Any]) -> JobLogEntry:
    """An entry from a row whose timestamp and meta are already Python values."""
    return JobLogEntry(id=str(row["id"]), **{column: row[column] for column in COLUMNS})
