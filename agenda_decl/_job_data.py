"""Job data and unique keys, as every layer checks and compares them: data as compact JSON
text (with its size limit), JSON containment (the data filter), the keys a data filter and a
unique key may use, the value a unique key points at, and failure reasons cut to their stored
length.

Core code: the job builders, the scheduler and every store use it; it imports none of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agenda_decl._model import JobParameters
from agenda_decl.errors import InvalidOptionError

#: Job data larger than this (as JSON text) is refused at save time.
MAX_DATA_BYTES = 1_000_000
#: Failure reasons are cut to this many characters before they are stored or published.
MAX_FAIL_REASON = 8_000

#: Top-level fields a ``unique`` key may name besides ``data.<path>``.
UNIQUE_FIELDS = frozenset(
    {"name", "priority", "type", "repeat_interval", "repeat_timezone", "repeat_at", "disabled"}
)


#: ``json.dumps`` with options makes an encoder per call, a good share of encoding a small
#: value: one is kept (encoders hold no state between calls).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def encode_data(data: Any, *, name: str) -> str:
    """Job data as compact JSON text; anything that is not plain JSON is a clear error."""
    try:
        text = _ENCODER.encode(data)
    except (TypeError, ValueError) as error:
        raise InvalidOptionError(
            f"data of job {name!r} is not JSON-serializable ({error}); job data is JSON only"
        ) from None
    # A character is at most 4 bytes of UTF-8: shorter text needs no byte count.
    if len(text) > MAX_DATA_BYTES // 4 and len(text.encode()) > MAX_DATA_BYTES:
        raise InvalidOptionError(
            f"data of job {name!r} is {len(text.encode())} bytes as JSON; "
            f"the limit is {MAX_DATA_BYTES}"
        )
    return text


def truncate_reason(reason: str | None) -> str | None:
    if reason is None or len(reason) <= MAX_FAIL_REASON:
        return reason
    suffix = "... [truncated]"
    return reason[: MAX_FAIL_REASON - len(suffix)] + suffix


# -- data filters --------------------------------------------------------------------------------


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
    return same_json(haystack, needle)


def same_json(left: Any, right: Any) -> bool:
    """Equality of two JSON values, with ``true`` never equal to ``1`` (nor ``false`` to ``0``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return bool(left == right)


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


# -- unique keys ---------------------------------------------------------------------------------


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
    """Whether ``stored`` is the job a save with this name and unique key finds."""
    return stored.name == name and all(
        same_json(unique_value(stored, key), value) for key, value in unique.items()
    )


# -- plain inserts -------------------------------------------------------------------------------


def not_a_plain_insert(job: JobParameters[Any]) -> str | None:
    """Why saving ``job`` is more than inserting it (``None``: it is a plain insert, which
    ``JobRepository.insert_jobs`` takes): it is stored already, or it is a ``single`` or
    unique save, which decides against what is stored."""
    if job.id is not None:
        return f"job {job.name!r} is saved already (id {job.id}): save() it alone"
    if job.type == "single":
        return f"job {job.name!r} is a single job (every()): save() it alone"
    if job.unique:
        return f"job {job.name!r} has a unique key: save() it alone"
    return None
