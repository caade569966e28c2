"""What every storage backend shares: input checks, the save-job rules (single upserts,
unique keys, debounce), the JSON data filter, the refusal of writes when read-only, query results
with their state, the single-job methods of stores that work in batches, and group commit of
concurrent writes.

Backends keep only what is specific to their technology; the rules that decide *what* is
written live here once, so every store behaves the same.
"""

from __future__ import annotations

import abc
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from agenda_decl._clock import truncate_ms
from agenda_decl._model import (
    JobId,
    JobParameters,
    JobsQueryOptions,
    JobState,
    JobWithState,
    RemoveJobsOptions,
)
from agenda_decl.errors import AgendaError, InvalidOptionError, JobNotFoundError, LockLostError
from agenda_decl.interfaces import JobRepository

#: Job data larger than this (as JSON text) is refused at save time.
MAX_DATA_BYTES = 1_000_000
#: Failure reasons are cut to this many characters before they are stored or published.
MAX_FAIL_REASON = 8_000

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_identifier(value: str, *, field: str) -> str:
    """Refuse anything but a plain SQL identifier (then quote it anyway)."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise InvalidOptionError(
            f"invalid {field}: {value!r} (letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters)"
        )
    return value


def refuse_write(read_only: bool, where: str) -> None:
    """Raise before a write reaches a store opened with ``read_only=True`` (what ``plan``
    and ``jobs`` use: inspecting must never change storage)."""
    if read_only:
        raise InvalidOptionError(
            f"{where} is open read-only (read_only=True): it refuses every write"
        )


def encode_data(data: Any, *, name: str) -> str:
    """Job data as compact JSON text; anything that is not plain JSON is a clear error."""
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise InvalidOptionError(
            f"data of job {name!r} is not JSON-serializable ({error}); job data is JSON only"
        ) from None
    if len(text.encode()) > MAX_DATA_BYTES:
        raise InvalidOptionError(
            f"data of job {name!r} is {len(text.encode())} bytes as JSON; "
            f"the limit is {MAX_DATA_BYTES}"
        )
    return text


def check_job(job: JobParameters[Any]) -> str:
    """Validate a job before any write; return its data as JSON text."""
    if not isinstance(job.name, str) or not job.name or len(job.name) > 255:
        raise InvalidOptionError(f"invalid job name {job.name!r} (1 to 255 characters)")
    if job.type not in ("normal", "single"):
        raise InvalidOptionError(f"invalid job type {job.type!r} (normal or single)")
    if isinstance(job.priority, bool) or not isinstance(job.priority, int):
        raise InvalidOptionError(f"invalid priority {job.priority!r} (an integer)")
    check_unique_keys(job.unique)
    return encode_data(job.data, name=job.name)


def truncate_reason(reason: str | None) -> str | None:
    if reason is None or len(reason) <= MAX_FAIL_REASON:
        return reason
    suffix = "... [truncated]"
    return reason[: MAX_FAIL_REASON - len(suffix)] + suffix


# -- data filters and unique keys ------------------------------------------------------------


def data_contains(haystack: Any, needle: Any) -> bool:
    """JSON containment, as PostgreSQL's ``@>``: objects match on a subset of keys (recursively),
    arrays when every needle element is contained in some haystack element, scalars on equality."""
    if isinstance(needle, Mapping):
        return isinstance(haystack, Mapping) and all(
            key in haystack and data_contains(haystack[key], value)
            for key, value in needle.items()
        )
    if isinstance(needle, list):
        return isinstance(haystack, list) and all(
            any(data_contains(item, wanted) for item in haystack) for wanted in needle
        )
    return _same_json(haystack, needle)


def _same_json(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return bool(left == right)


#: Top-level fields a ``unique`` key may name besides ``data.<path>``.
UNIQUE_FIELDS = frozenset(
    {"name", "priority", "type", "repeat_interval", "repeat_timezone", "repeat_at", "disabled"}
)


def check_unique_keys(unique: Mapping[str, Any] | None) -> None:
    """A unique key is ``data.<path>`` or a plain job field; nothing that could be an operator."""
    for key in unique or {}:
        parts = key.split(".")
        if any(not part or part.startswith("$") for part in parts):
            raise InvalidOptionError(f"invalid unique key {key!r}")
        if parts[0] != "data" and (len(parts) > 1 or key not in UNIQUE_FIELDS):
            allowed = ", ".join(sorted(UNIQUE_FIELDS))
            raise InvalidOptionError(
                f"invalid unique key {key!r}: use data.<path> or one of {allowed}"
            )


def check_data_filter(data: Any) -> None:
    """Refuse keys that a document store could read as query operators or paths."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            if not isinstance(key, str) or key.startswith("$") or "." in key:
                raise InvalidOptionError(
                    f"invalid key {key!r} in the data filter: keys may not start with '$' "
                    "or contain '.'"
                )
            check_data_filter(value)
    elif isinstance(data, list):
        for item in data:
            check_data_filter(item)


def unique_value(job: JobParameters[Any], key: str) -> Any:
    """The value a unique key points at in ``job`` (``data.a.b`` walks into data)."""
    parts = key.split(".")
    if parts[0] != "data":
        return getattr(job, key)
    value: Any = job.data
    for part in parts[1:]:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def matches_unique(stored: JobParameters[Any], unique: Mapping[str, Any], name: str) -> bool:
    return stored.name == name and all(
        _same_json(unique_value(stored, key), value) for key, value in unique.items()
    )


# -- id and name criteria --------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class IdNameCriteria:
    """The id and name criteria of a query or a removal, folded so that each is one predicate.

    Every given criterion applies (AND): ``ids`` is the intersection of ``{id}`` and ``ids``,
    ``names`` the intersection of ``{name}`` and ``names`` minus ``not_names``. Backends translate
    exactly these fields and nothing else of the options' id/name criteria.
    """

    #: The only ids a match may have (sorted, no duplicates); ``None``: any id.
    ids: tuple[str, ...] | None = None
    #: The only names a match may have (sorted, no duplicates); ``None``: any name.
    names: tuple[str, ...] | None = None
    #: Names a match may not have; only set when ``names`` is ``None`` (otherwise they are
    #: already taken out of ``names``). An empty tuple excludes nothing.
    not_names: tuple[str, ...] | None = None

    def matches_nothing(self) -> bool:
        """True when no job can match (an empty id or name set): no store call is needed."""
        return self.ids == () or self.names == ()


def _plain_id(value: Any) -> str:
    return str(value)


def id_name_criteria(
    options: JobsQueryOptions | RemoveJobsOptions,
    *,
    id_key: Callable[[Any], str | None] = _plain_id,
) -> IdNameCriteria:
    """Fold ``id``/``ids``/``name``/``names``/``not_names`` into :class:`IdNameCriteria`.

    ``id_key`` maps a given id to the store's canonical text of it, or to ``None`` for an id the
    store could never have issued (such an id matches nothing). Names must be strings.
    """
    ids: set[str] | None = None
    if options.id is not None:
        ids = _id_keys([options.id], id_key)
    if options.ids is not None:
        given = _id_keys(options.ids, id_key)
        ids = given if ids is None else ids & given
    names: set[str] | None = None
    if options.name is not None:
        names = _name_set([options.name])
    if options.names is not None:
        given_names = _name_set(options.names)
        names = given_names if names is None else names & given_names
    raw_not_names = options.not_names if isinstance(options, RemoveJobsOptions) else None
    not_names = None if raw_not_names is None else _name_set(raw_not_names)
    if names is not None and not_names is not None:
        names, not_names = names - not_names, None
    return IdNameCriteria(
        ids=None if ids is None else tuple(sorted(ids)),
        names=None if names is None else tuple(sorted(names)),
        not_names=None if not_names is None else tuple(sorted(not_names)),
    )


def _id_keys(values: Iterable[Any], id_key: Callable[[Any], str | None]) -> set[str]:
    return {key for key in map(id_key, values) if key is not None}


def _name_set(values: Iterable[Any]) -> set[str]:
    names = set()
    for value in values:
        if not isinstance(value, str):
            raise InvalidOptionError(f"a job name must be a string, got {value!r}")
        names.add(value)
    return names


# -- the save-job rules ---------------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class DebounceOutcome:
    next_run_at: datetime | None
    debounce_started_at: datetime | None


def debounce_outcome(
    incoming: JobParameters[Any], existing: JobParameters[Any] | None, now: datetime
) -> DebounceOutcome:
    """Where a debounced save puts ``next_run_at`` (Agenda v6's algorithm, in one place)."""
    options = incoming.unique_opts.debounce if incoming.unique_opts else None
    assert options is not None
    delay = timedelta(milliseconds=options.delay)
    if existing is None:
        if options.strategy == "leading":
            return DebounceOutcome(next_run_at=incoming.next_run_at, debounce_started_at=now)
        return DebounceOutcome(next_run_at=now + delay, debounce_started_at=now)
    started = existing.debounce_started_at or now
    if options.strategy == "leading":
        return DebounceOutcome(next_run_at=existing.next_run_at, debounce_started_at=started)
    if options.max_wait is not None and now - started >= timedelta(milliseconds=options.max_wait):
        return DebounceOutcome(next_run_at=now, debounce_started_at=None)
    return DebounceOutcome(next_run_at=now + delay, debounce_started_at=started)


def single_next_run_at(
    incoming: datetime | None, stored: datetime | None, now: datetime, *, same_timing: bool = True
) -> datetime | None:
    """A re-``every()`` with the same timing keeps a pending schedule: a due incoming time does
    not replace it (Agenda's ``$setOnInsert``). When the timing (``_model.TIMING_FIELDS``)
    differs from the stored one, the incoming time wins: the job follows its new schedule."""
    if same_timing and incoming is not None and incoming <= now and stored is not None:
        return stored
    return incoming


def is_debounced(job: JobParameters[Any]) -> bool:
    return bool(job.unique_opts and job.unique_opts.debounce)


def is_insert_only(job: JobParameters[Any]) -> bool:
    return bool(job.unique_opts and job.unique_opts.insert_only and not is_debounced(job))


def with_state(job: JobParameters[Any], state: JobState) -> JobWithState[Any]:
    """``job`` as a query returns it: with the state the store computed."""
    return JobWithState(**attrs.asdict(job, recurse=False), state=state)


def ms(value: timedelta) -> int:
    return math.floor(value.total_seconds() * 1000)


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def job_not_found(job: JobParameters[Any]) -> JobNotFoundError:
    """The error of a state write whose job is gone (removed while it was claimed or ran)."""
    return JobNotFoundError(
        f"job ID {job.id} (name: {job.name}) cannot be updated in the database, "
        "maybe it does not exist anymore?"
    )


def lock_lost(job: JobParameters[Any], lock_token: datetime | None) -> LockLostError:
    """The error of a fenced state write whose lock is no longer the writer's."""
    token = "none" if lock_token is None else truncate_ms(lock_token).isoformat()
    return LockLostError(
        f"job {job.name} (ID {job.id}) was taken over by another worker: its lock is no longer "
        f"the one this run holds ({token}); this write was rejected and nothing of it stored",
        job_id=None if job.id is None else str(job.id), job_name=job.name,
    )


def holds_lock(stored_locked_at: datetime | None, lock_token: datetime | None) -> bool:
    """Whether a fenced write may go ahead: no token (unfenced), or the stored lock is the
    token at millisecond precision."""
    if lock_token is None:
        return True
    return stored_locked_at is not None and truncate_ms(stored_locked_at) == truncate_ms(
        lock_token
    )


async def rejected_state_write(
    repository: JobRepository, job: JobParameters[Any], lock_token: datetime | None
) -> AgendaError:
    """Why a state write was not applied: the job is gone (``JobNotFoundError``) or, for a
    fenced write, its lock belongs to someone else now (``LockLostError``). Read only on this
    rare path; the write itself decided atomically."""
    if lock_token is None or job.id is None:
        return job_not_found(job)
    stored = await repository.get_job_by_id(str(job.id))
    if stored is None or stored.name != job.name:
        return job_not_found(job)
    return lock_lost(job, lock_token)


# -- stores that work in batches ------------------------------------------------------------------


class ClaimsInBatches(JobRepository):
    """A store whose claim takes several jobs in one round trip: claiming one job is a batch
    of one."""

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

    @abc.abstractmethod
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
        """See :meth:`JobRepository.get_next_jobs_to_run`."""


class WritesStatesInBatches(JobRepository):
    """A store whose state write takes several jobs at once: writing one job's state is a
    batch of one."""

    async def save_job_state(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        lock_token: datetime | None = None,
    ) -> None:
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        tokens = None if lock_token is None else {str(job.id): lock_token}
        if await self.save_job_states([job], last_modified_by=last_modified_by,
                                      lock_tokens=tokens):
            raise await rejected_state_write(self, job, lock_token)

    @abc.abstractmethod
    async def save_job_states(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        lock_tokens: Mapping[str, datetime] | None = None,
    ) -> list[JobId]:
        """See :meth:`JobRepository.save_job_states`."""


# -- group commit -----------------------------------------------------------------------------
