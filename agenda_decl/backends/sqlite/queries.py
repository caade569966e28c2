"""The queries of the SQLite store: the statements (named blocks of ``queries.sql``), the
filter fragments and sort expressions they are composed from, and the parameters each
statement binds.

Instants are INTEGER milliseconds since the Unix epoch (UTC), so they sort and compare
correctly in SQL. ``{table}`` is the validated, double-quoted table name and ``{prefix}`` the
bare validated name used in index names; both are filled in once by :func:`render`. Every
value is a bound parameter.
"""

from __future__ import annotations

import functools
import json
import operator
import re
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agenda_decl._clock import utcnow
from agenda_decl._job_data import UNIQUE_FIELDS, truncate_reason
from agenda_decl._model import (
    JobId,
    JobNotification,
    JobParameters,
    JobsQueryOptions,
    RemoveJobsOptions,
)
from agenda_decl._named_blocks import load_named_blocks
from agenda_decl.backends import base
from agenda_decl.errors import InvalidOptionError

Params = dict[str, Any]
#: What SQLite stores in an INTEGER.
INT64 = range(-(2**63), 2**63)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)

#: The statements, by the names of their blocks in ``queries.sql``.
STATEMENTS = load_named_blocks("agenda_decl.backends.sqlite", "queries.sql")
#: The suffixes of the index names (``<table>_single_job_idx``, ...); the statement of
#: each is the block ``create_<suffix>``.
INDEX_SUFFIXES = (
    "single_job_idx", "locked_at_idx", "next_run_at_desc_idx",
    "next_run_at_asc_idx", "claim_due_idx", "claim_stale_idx", "failed_idx",
)
#: The indexes older files have and this version replaced; the block ``drop_<suffix>`` of
#: each (idempotent) runs with the ``create_`` blocks when the file has one of them or lacks
#: one of INDEX_SUFFIXES.
OBSOLETE_INDEX_SUFFIXES = ("next_run_at_idx", "find_and_lock_idx")

#: The allow-list of sort keys and the SQL each sorts on. Data sorts on its JSON text, with a
#: JSON ``null`` counted as missing (so it goes last, as in the reference store).
SORT_EXPRESSIONS = {
    "next_run_at": "next_run_at",
    "last_run_at": "last_run_at",
    "last_finished_at": "last_finished_at",
    "priority": "priority",
    "name": "name",
    "data": "NULLIF(data, 'null')",
}

#: The sort keys whose column is NOT NULL: sorted by the bare column, which the planner
#: drops from the order when the filter fixes it (the jobs of one name sorted by name are
#: read in rowid order, no sort).
NOT_NULL_SORT_KEYS = frozenset({"name", "priority"})

STATE_CASE = STATEMENTS["state_case"]

#: Filter fragments (each names its own parameters); ``where`` is ANDed from these.
FILTERS = {
    "id": "id = :id",
    "ids": "id IN (SELECT value FROM json_each(:ids))",
    "name": "name = :name",
    "names": "name IN (SELECT value FROM json_each(:names))",
    "not_names": "name NOT IN (SELECT value FROM json_each(:not_names))",
    # A name of ASCII only (as many characters as bytes) is matched by SQLite's LIKE, which
    # folds ASCII case as Python's lower() does there; any other name by the Python function,
    # so a non-ASCII letter still folds (CASE evaluates only the branch it takes).
    "search": "CASE WHEN length(name) = length(CAST(name AS BLOB))"
              " THEN name LIKE :search ESCAPE '\\'"
              " ELSE agenda_lower(name) LIKE :search ESCAPE '\\' END",
    # The data filter that data_sql cannot spell with SQLite's JSON functions.
    "data": "agenda_data_contains(data, :data)",
    "enabled": "disabled = 0",
    "paused": "disabled = 1",
    "state": f"({STATE_CASE}) = :state",
}

#: What each state implies of one indexed column, ANDed before the state expression so that
#: the planner can seek (a queued job is due: next_run_at <= now; a completed one has none)
#: instead of computing the state of every row. Read off state_case: a state is only reached
#: when the column is so. "repeating" implies nothing indexed.
STATE_IMPLIES = {
    "running": "locked_at IS NOT NULL",
    "failed": "failed_at IS NOT NULL",
    "scheduled": "next_run_at > :now",
    "queued": "next_run_at <= :now",
    "completed": "next_run_at IS NULL",
}

DEFAULT_SORT = [("next_run_at", "desc"), ("last_run_at", "desc")]


@functools.lru_cache(maxsize=16)
def numbered(statement: str) -> tuple[str, Callable[[Params], tuple[Any, ...]]]:
    """``statement`` with its named parameters (``:name``) numbered (``?1``, ``?2``, one
    number per name), and what turns its parameter dict into the tuple bound in their
    place: bound by position, a row's parameters cost no name lookup each (19 for a state
    write, two per job run). For statements with no ``:`` but their parameters'."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"?{names.index(match[1]) + 1}"

    text = re.sub(r":(\w+)", number, statement)
    if len(names) == 1:
        (name,) = names
        return text, lambda params: (params[name],)
    pick: Callable[[Params], tuple[Any, ...]] = operator.itemgetter(*names)
    return text, pick


def render(name: str, *, table: str, prefix: str = "", **fragments: str) -> str:
    """The statement ``name`` with the quoted table name, the state expression and fragments
    built from this module's own text filled in.

    Callers pass only a validated identifier and fragments taken from :data:`FILTERS`,
    :data:`SORT_EXPRESSIONS` and fixed keywords, never user input.
    """
    return STATEMENTS[name].format(table=table, prefix=prefix, state=STATE_CASE, **fragments)


# -- filters (fragments of this module; every value a parameter) ---------------------------------


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidOptionError(f"{what} is not JSON ({error})") from None


def _common_criteria(options: JobsQueryOptions | RemoveJobsOptions) -> tuple[list[str], Params]:
    """Every given criterion ANDed: the folded id and name sets (``base.id_name_criteria``),
    then data containment."""
    criteria = base.id_name_criteria(options)
    clauses: list[str] = []
    params: Params = {}
    if criteria.ids is not None and len(criteria.ids) == 1:
        clauses.append(FILTERS["id"])
        params["id"] = criteria.ids[0]
    elif criteria.ids is not None:
        clauses.append(FILTERS["ids"])
        params["ids"] = _json_text(list(criteria.ids), "ids")
    if criteria.names is not None and len(criteria.names) == 1:
        clauses.append(FILTERS["name"])
        params["name"] = criteria.names[0]
    elif criteria.names is not None:
        clauses.append(FILTERS["names"])
        params["names"] = _json_text(list(criteria.names), "names")
    if criteria.not_names is not None:
        clauses.append(FILTERS["not_names"])
        params["not_names"] = _json_text(list(criteria.not_names), "not_names")
    if options.data is not None:
        clauses.append(data_filter(options.data, params))
    return clauses, params


def data_filter(needle: Any, params: Params) -> str:
    """The clause "data contains ``needle``" (``_job_data.data_contains``): spelled with
    SQLite's JSON functions when :func:`data_sql` can, else the Python function on each row
    (a hundred times slower)."""
    text = _json_text(needle, "the data filter")  # refuses what is not JSON, either way
    clause = data_sql(needle, "data", "$", params)
    if clause is None:
        params["data"] = text
        return FILTERS["data"]
    return clause


def _bind(params: Params, value: Any) -> str:
    """A new parameter holding ``value``; its placeholder."""
    name = f"j{len(params)}"
    params[name] = value
    return f":{name}"


def data_sql(needle: Any, doc: str, path: str, params: Params) -> str | None:
    """"The JSON value at ``path`` of the JSON text ``doc`` contains ``needle``", as
    ``data_contains`` decides it, in SQLite's JSON functions (C, no Python call per row); None
    when a part of ``needle`` cannot be spelled exactly (a key JSON escapes, an integer beyond
    64 bits, text Python cannot encode), and the caller uses the Python function.

    ``json_type`` keeps true apart from 1 and the text "7" apart from the number; integer and
    real compare by value, as Python's ``==`` does. An array needle: every element is
    contained in some element of the stored array (``json_each``)."""
    if isinstance(needle, Mapping):
        clauses = [f"json_type({doc}, {_bind(params, path)}) = 'object'"]
        for key, value in needle.items():
            if not _plain_key(key):
                return None
            clause = data_sql(value, doc, f'{path}."{key}"', params)
            if clause is None:
                return None
            clauses.append(clause)
        return " AND ".join(clauses)
    if isinstance(needle, list):
        at = _bind(params, path)
        clauses = [f"json_type({doc}, {at}) = 'array'"]
        for wanted in needle:
            each = f"e{len(params)}"
            clause = _element_sql(wanted, each, params)
            if clause is None:
                return None
            clauses.append(STATEMENTS["data_element"].format(
                doc=doc, path=at, each=each, clause=clause))
        return " AND ".join(clauses)
    kind = _scalar_kind(needle)
    if kind is None:
        return None
    at = _bind(params, path)
    if needle is None or isinstance(needle, bool):
        return f"json_type({doc}, {at}) = {kind}"
    value = _bind(params, needle)
    return f"json_extract({doc}, {at}) = {value} AND json_type({doc}, {at}) IN {kind}"


def _element_sql(wanted: Any, each: str, params: Params) -> str | None:
    """``wanted`` is contained in the array element ``each`` (a row of ``json_each``): a
    scalar by the element's type and atom, an object or array by its JSON text, read only when
    the element is one (CASE: the text of a string element is not JSON)."""
    if isinstance(wanted, Mapping | list):
        container = "object" if isinstance(wanted, Mapping) else "array"
        inner = data_sql(wanted, f"{each}.value", "$", params)
        return None if inner is None else (
            f"CASE WHEN {each}.type = '{container}' THEN {inner} ELSE 0 END")
    kind = _scalar_kind(wanted)
    if kind is None:
        return None
    if wanted is None or isinstance(wanted, bool):
        return f"{each}.type = {kind}"
    return f"{each}.atom = {_bind(params, wanted)} AND {each}.type IN {kind}"


def _scalar_kind(value: Any) -> str | None:
    """The JSON types (as SQL) a stored value equal to ``value`` may have, or None."""
    if value is None:
        return "'null'"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, str):
        return "('text')" if _encodable(value) else None
    if isinstance(value, int):
        return "('integer', 'real')" if value in INT64 else None
    if isinstance(value, float):
        return "('integer', 'real')"
    return None


def _plain_key(key: str) -> bool:
    """A key SQLite's JSON path finds: one the store writes without an escape (``encode_data``
    keeps non-ASCII as it is), as SQLite matches a quoted path label against the key's text
    in the document, escapes and all."""
    return bool(key) and _encodable(key) and json.dumps(key, ensure_ascii=False) == f'"{key}"'


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def remove_criteria(options: RemoveJobsOptions) -> tuple[list[str], Params]:
    return _common_criteria(options)


def query_criteria(options: JobsQueryOptions) -> tuple[list[str], Params]:
    clauses, params = _common_criteria(options)
    if options.search is not None:
        clauses.append(FILTERS["search"])
        params["search"] = _like_pattern(options.search)
    if not options.include_disabled:
        clauses.append(FILTERS["enabled"])
    if options.state == "paused":
        clauses.append(FILTERS["paused"])
    elif options.state is not None:
        if options.state in STATE_IMPLIES:
            clauses.append(STATE_IMPLIES[options.state])
        clauses.append(FILTERS["state"])
        params["state"] = options.state
    return clauses, params


def page_statements(
    options: JobsQueryOptions, *, table: str, prefix: str
) -> tuple[str, str, Params]:
    """A query's page and count statements and their parameters but ``now`` (the caller's
    clock): what ``query_jobs`` runs, and what the plan tests explain."""
    clauses, params = query_criteria(options)
    params.update(limit=options.limit or -1, skip=options.skip)
    where = " AND ".join(clauses) or "1"
    page = render("select_page", table=table, prefix=prefix, where=where, order=order_by(options))
    return page, render("count", table=table, prefix=prefix, where=where), params


def _like_pattern(search: str) -> str:
    """A LIKE pattern matching ``search`` literally, as a substring, after lowercasing."""
    escaped = re.sub(r"([\\%_])", r"\\\1", search.lower())
    return f"%{escaped}%"


def order_by(options: JobsQueryOptions) -> str:
    """Each key nulls last, then insertion order (rowid). NULL is SQLite's smallest value, so
    descending is the plain ``DESC`` and ascending ``(key IS NULL), key``: the spellings the
    next_run_at indexes have, so a page sorted by next run is read off an index (an explicit
    ``NULLS LAST`` on an ascending key keeps SQLite from using any index)."""
    spec = list(options.sort.items()) if options.sort else DEFAULT_SORT
    parts = [
        f"{SORT_EXPRESSIONS[key]} DESC" if direction == "desc"
        else SORT_EXPRESSIONS[key] if key in NOT_NULL_SORT_KEYS
        else f"({SORT_EXPRESSIONS[key]} IS NULL), {SORT_EXPRESSIONS[key]}"
        for key, direction in spec
    ]
    return ", ".join([*parts, "rowid"])


def unique_prefilter(key: str, value: Any, index: int, params: Params) -> str | None:
    """A clause every job matching ``key == value`` satisfies, or None when SQL cannot say."""
    bound = _bindable(value)
    if bound is _UNBINDABLE:
        return None
    params[f"v{index}"] = bound
    if key.startswith("data."):
        parts = key.split(".")[1:]
        if any('"' in part for part in parts):
            return None
        params[f"p{index}"] = "$" + "".join(f'."{part}"' for part in parts)
        return f"json_extract(data, :p{index}) IS :v{index}"
    return f"{key} IS :v{index}" if key in UNIQUE_FIELDS else None


_UNBINDABLE = object()


def _bindable(value: Any) -> Any:
    if value is None or isinstance(value, str | float):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in INT64:
        return value
    return _UNBINDABLE


# -- parameters --------------------------------------------------------------------------------


def to_ms(value: datetime | None) -> int | None:
    """An instant as stored: integer milliseconds since the epoch (naive is read as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // MS


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + value * MS


def _int64(value: int, field: str) -> int:
    if value not in INT64:
        raise InvalidOptionError(f"{field} {value!r} is out of range (a signed 64-bit integer)")
    return value


def _interval(value: Any) -> str | int | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _int64(int(value), "repeat_interval")
    raise InvalidOptionError(
        f"invalid repeat_interval {value!r} (a string or a number of milliseconds)"
    )


def _skip_days(days: list[int] | None) -> str | None:
    if days is None:
        return None
    if any(isinstance(d, bool) or not isinstance(d, int) for d in days):
        raise InvalidOptionError(f"invalid skip_days {days!r} (weekday numbers 0-6)")
    return json.dumps(list(days))


def save_params(job: JobParameters[Any], data: str, last_modified_by: str | None) -> Params:
    """The parameters of every field ``save_job`` writes (all but the id and the processor
    fields), as SQLite values."""
    return {
        "name": job.name,
        "priority": _int64(job.priority, "priority"),
        "next_run_at": to_ms(job.next_run_at),
        "type": job.type,
        "repeat_timezone": job.repeat_timezone,
        "repeat_interval": _interval(job.repeat_interval),
        "data": data,
        "repeat_at": job.repeat_at,
        "disabled": int(bool(job.disabled)),
        "debounce_started_at": to_ms(job.debounce_started_at),
        "last_modified_by": last_modified_by,
        "fork": int(bool(job.fork)),
        "start_date": to_ms(job.start_date),
        "end_date": to_ms(job.end_date),
        "skip_days": _skip_days(job.skip_days),
    }


def state_params(
    job: JobParameters[Any],
    last_modified_by: str | None,
    lock_token: datetime | None = None,
    *,
    stamp: int | None = None,
) -> Params:
    """The parameters of a job's ``_model.STATE_FIELDS`` plus its key, timing and lock token,
    as SQLite values; ``stamp`` is ``updated_at`` (default: now), one for a whole batch."""
    return {
        "lock_token": to_ms(lock_token),
        "id": str(job.id),
        "name": job.name,
        "stamp": to_ms(utcnow()) if stamp is None else stamp,
        "locked_at": to_ms(job.locked_at),
        "next_run_at": to_ms(job.next_run_at),
        "last_run_at": to_ms(job.last_run_at),
        "progress": job.progress,
        "fail_reason": truncate_reason(job.fail_reason),
        "fail_count": job.fail_count,
        "failed_at": to_ms(job.failed_at),
        "last_finished_at": to_ms(job.last_finished_at),
        "last_modified_by": last_modified_by,
        "repeat_interval": _interval(job.repeat_interval),
        "repeat_at": job.repeat_at,
        "repeat_timezone": job.repeat_timezone,
        "start_date": to_ms(job.start_date),
        "end_date": to_ms(job.end_date),
        "skip_days": _skip_days(job.skip_days),
    }


_TIMING_COLUMNS = ("repeat_interval", "repeat_at", "repeat_timezone", "start_date", "end_date")


def same_timing(row: Mapping[str, Any], values: Params) -> bool:
    """Whether a stored row's timing (``_model.TIMING_FIELDS``) is the one in ``values`` (the
    parameters of a save, in the stored form)."""
    if any(row[column] != values[column] for column in _TIMING_COLUMNS):
        return False
    stored, incoming = row["skip_days"], values["skip_days"]
    return stored == incoming or (
        stored is not None and incoming is not None and json.loads(stored) == json.loads(incoming)
    )


#: The most names one change probe walks (a store with more is left to the poll beyond that).
PROBE_NAME_LIMIT = 1000


def waiting_jobs(c: sqlite3.Connection, table: str) -> list[JobNotification]:
    """Per job name, the unlocked job due first, as the notification a save of it would
    publish: what the change watcher announces after another connection committed. Two index
    seeks per name (``next_name``, ``first_waiting``), whatever the backlog."""
    next_name, first = render("next_name", table=table), render("first_waiting", table=table)
    found: list[JobNotification] = []
    name = ""
    for _ in range(PROBE_NAME_LIMIT):
        name = c.execute(next_name, (name,)).fetchone()["name"]
        if name is None:
            break
        row = c.execute(first, {"name": name}).fetchone()
        if row is not None:
            found.append(JobNotification(
                job_id=JobId(row["id"]), job_name=name, next_run_at=from_ms(row["next_run_at"]),
                priority=row["priority"], timestamp=utcnow()))
    return found
