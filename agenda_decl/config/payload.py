"""Typed job payloads: the field types of ``agenda.yaml`` and the check of job data against them.

A payload is either a mapping of fields (``customer_id: int``, ``currency: {type: str,
default: EUR}``) or the import path of an attrs class (``billing.models:Report``).

Field types: ``str int float bool datetime date``, ``list[T]``, and ``T | None`` (the field
may be null and is then optional). ``choices`` restricts a field to listed values.

:func:`check_payload` returns the data in the form that is stored (JSON): defaults filled in,
dates as ``YYYY-MM-DD``, datetimes as ISO 8601 text that reads back equal: the value's own UTC
offset (``Z`` for UTC; a time zone becomes its offset at that instant) and its microseconds
(``2026-12-01T10:30:00.123456+02:00``; milliseconds when it has no finer part:
``2026-12-01T00:00:00.000Z``); text without an offset is UTC. Unknown keys, missing required
fields and wrong types are refused.

Import of payload classes: a class payload is imported by :func:`check_payload` (which
``plan``/``apply`` and enqueueing call before writing), by the builder with
``import_handlers=True``, and by ``load_config(import_payload_classes=True)``, which
``agenda-decl validate``, ``plan`` and ``apply`` use so that a class that cannot be imported is
reported at its ``payload:`` value. Handlers are never imported there (only by the worker).
Imports come from ``base_dir`` (the config file's directory) and ``sys.path``;
standard-library modules are refused.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import attrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn

from agenda_decl._convert import format_payload_datetime, payload_converter
from agenda_decl._secrets import EnvText
from agenda_decl.config.errors import (
    ImportRefError,
    PayloadError,
    cattrs_problems,
    render_path,
)
from agenda_decl.config.model import BASE_PAYLOAD_TYPES, JobConfig, PayloadField

__all__ = [
    "MANAGED_BY_KEY",
    "PAUSED_KEY",
    "RESERVED_DATA_KEYS",
    "SCHEDULE_KEY_KEY",
    "PayloadType",
    "check_field_value",
    "check_payload",
    "describe",
    "import_object",
    "is_import_ref",
    "parse_payload_type",
    "to_json_ready",
]

#: The ownership marker of schedules managed by a config file (see reconcile.py).
MANAGED_BY_KEY = "__managed_by__"
SCHEDULE_KEY_KEY = "__schedule_key__"
#: Who paused a job of a schedule and when (``agenda-decl jobs pause``; see pause.py).
PAUSED_KEY = "__paused__"
RESERVED_DATA_KEYS = (MANAGED_BY_KEY, SCHEDULE_KEY_KEY, PAUSED_KEY)

#: Strings longer than this are cut in messages (:func:`describe`).
SHOWN_CHARS = 60

_WORD = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_REF = re.compile(rf"^{_WORD}(?:\.{_WORD})*:{_WORD}(?:\.{_WORD})*$")
_TYPE_HINT = "str, int, float, bool, datetime, date, list[T] or T | None"


# -- field types -----------------------------------------------------------------------------


@attrs.define(frozen=True)
class PayloadType:
    """A parsed field type: a base type name, a list of ``item``, or ``item`` that may be null."""

    kind: str  # "base" | "list" | "optional"
    name: str | None = None
    item: PayloadType | None = None

    def __str__(self) -> str:
        if self.kind == "base":
            return str(self.name)
        if self.kind == "list":
            return f"list[{self.item}]"
        return f"{self.item} | None"


@cache
def parse_payload_type(text: str) -> PayloadType:
    """Parse ``int``, ``list[str]``, ``datetime | None``, ...; ValueError names what is wrong."""
    source = text.strip()
    parts = _split_union(source)
    if len(parts) > 1:
        others = [part for part in parts if part != "None"]
        if len(others) != 1 or len(parts) != 2:
            raise ValueError(
                f"unsupported type {text!r}: the only union allowed is 'T | None' "
                f"(types: {_TYPE_HINT})"
            )
        return PayloadType("optional", item=parse_payload_type(others[0]))
    if source in BASE_PAYLOAD_TYPES:
        return PayloadType("base", name=source)
    match = re.fullmatch(r"list\s*\[(.*)\]", source)
    if match and match[1].strip():
        return PayloadType("list", item=parse_payload_type(match[1]))
    raise ValueError(f"unknown type {text!r} (expected {_TYPE_HINT})")


def _split_union(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


# -- values ----------------------------------------------------------------------------------


def describe(value: Any) -> str:
    """``'abc' (a string)`` — how a found value is quoted in messages (shortened). A value
    from the environment is quoted as the file wrote it: ``'${TOKEN}' (a string from the
    environment)``."""
    if isinstance(value, EnvText):
        return f"{value!r} (a string from the environment)"
    kind = (
        "null" if value is None
        else "a boolean" if isinstance(value, bool)
        else "a number" if isinstance(value, int | float)
        else "a string" if isinstance(value, str)
        else "a list" if isinstance(value, list | tuple)
        else "a mapping" if isinstance(value, Mapping)
        else f"a {type(value).__name__}"
    )
    if value is None or isinstance(value, list | tuple | Mapping):
        return kind
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        value = value[:SHOWN_CHARS] + "..."
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return f"{text} ({kind})"


class _Mismatch(Exception):
    """A value that does not fit a type; ``problems`` are (relative path, message)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__(problems)
        self.problems = problems


def _base(name: str, value: Any) -> Any:
    checkers: dict[str, Callable[[Any], Any]] = {
        "str": _as_str, "int": _as_int, "float": _as_float, "bool": _as_bool,
        "datetime": _as_datetime, "date": _as_date,
    }  # fmt: skip
    return checkers[name](value)


def _fail(expected: str, value: Any) -> _Mismatch:
    return _Mismatch([((), f"expected {expected}, got {describe(value)}")])


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("a string", value)
    return value


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("an integer", value)
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail("a finite number", value)
    return float(value)


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail("true or false", value)
    return value


def _as_datetime(value: Any) -> str:
    expected = "a date and time in ISO 8601 (like '2026-12-01T09:00:00Z')"
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise _Mismatch([((), "expected an aware datetime, got a naive one (no time zone)")])
        return format_payload_datetime(value)
    if isinstance(value, date) or not isinstance(value, str):
        raise _fail(expected, value)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _fail(expected, value) from None
    # As everywhere in agenda-decl: ISO text without an offset is UTC.
    return format_payload_datetime(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def _as_date(value: Any) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise _fail("a date 'YYYY-MM-DD'", value)
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise _fail("a date 'YYYY-MM-DD'", value) from None


def _check_type(ptype: PayloadType, value: Any) -> Any:
    if ptype.kind == "optional":
        assert ptype.item is not None
        return None if value is None else _check_type(ptype.item, value)
    if ptype.kind == "list":
        assert ptype.item is not None
        if not isinstance(value, list | tuple):
            raise _fail(f"a list ({ptype})", value)
        return _check_items(ptype.item, value)
    assert ptype.name is not None
    return _base(ptype.name, value)


def _check_items(item: PayloadType, values: list[Any] | tuple[Any, ...]) -> list[Any]:
    result, problems = [], []
    for index, value in enumerate(values):
        try:
            result.append(_check_type(item, value))
        except _Mismatch as mismatch:
            problems += [((index, *where), text) for where, text in mismatch.problems]
    if problems:
        raise _Mismatch(problems)
    return result


def check_field_value(field: PayloadField, value: Any) -> Any:
    """``value`` in its stored form if it fits ``field`` (type and choices); else ValueError
    whose message says what was found and what is allowed."""
    try:
        return _field_value(field, value)
    except _Mismatch as mismatch:
        where, text = mismatch.problems[0]
        raise ValueError(f"{render_path(where)}: {text}" if where else text) from None


def _field_value(field: PayloadField, value: Any) -> Any:
    result = _check_type(parse_payload_type(field.type), value)
    if field.choices is not None and result is not None and result not in _allowed_choices(
        field
    ):
        shown = ", ".join(repr(choice) for choice in field.choices)
        raise _Mismatch([((), f"expected one of {shown}, got {describe(value)}")])
    return result


def _allowed_choices(field: PayloadField) -> list[Any]:
    """The choices in stored form; a choice that does not fit the type is left out (the
    loader reports it where it is written)."""
    allowed = []
    for choice in field.choices or []:
        try:
            allowed.append(_check_type(parse_payload_type(field.type), choice))
        except _Mismatch:
            continue
    return allowed


# -- job data --------------------------------------------------------------------------------


def check_payload(
    job_name: str,
    job: JobConfig,
    data: Mapping[str, Any],
    *,
    path: str,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """``data`` checked against the payload of ``job`` and made ready to store (JSON).

    Raises :class:`PayloadError` whose ``problems`` list every problem, each with its full path
    (``path`` is where ``data`` sits, e.g. ``schedules[0].data``). A class payload is imported
    from ``base_dir`` and ``sys.path`` (see the module docstring).
    """
    problems: list[tuple[str, str]] = []

    def report(where: tuple[str | int, ...], message: str) -> None:
        rendered = render_path(where)
        problems.append((f"{path}.{rendered}" if path and rendered else path or rendered,
                         message))

    result = _check_data(job_name, job, data, report, base_dir)
    if problems:
        raise PayloadError(problems[0][0], problems[0][1], problems=problems)
    return result


Report = Callable[[tuple[str | int, ...], str], None]


def _check_data(
    job_name: str, job: JobConfig, data: Any, report: Report, base_dir: Path | None
) -> dict[str, Any]:
    if data is None:  # no data: every field takes its default (or is reported missing)
        data = {}
    if not isinstance(data, Mapping):
        report((), f"expected a mapping of payload fields, got {describe(data)}")
        return {}
    for key in data:
        if key in RESERVED_DATA_KEYS:
            report((key,), f"{key!r} is reserved for agenda-decl's ownership marker "
                   "(use another key)")
    payload = job.payload
    if payload is None:
        return _json_fields(data, report)
    if isinstance(payload, str):
        return _check_class_payload(job_name, payload, data, report, base_dir)
    return _check_fields(job_name, payload, data, report)


def _json_fields(data: Mapping[str, Any], report: Report) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in data.items():
        if key in RESERVED_DATA_KEYS:
            continue
        try:
            result[key] = to_json_ready(value)
        except _Mismatch as mismatch:
            for where, text in mismatch.problems:
                report((key, *where), text)
    return result


def _check_fields(
    job_name: str, fields: Mapping[str, PayloadField], data: Mapping[str, Any], report: Report
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in data:
        if key not in fields and key not in RESERVED_DATA_KEYS:
            allowed = ", ".join(fields) or "none"
            report((key,), f"unknown field {key!r} (fields of job {job_name!r}: {allowed})")
    for name, field in fields.items():
        if name in RESERVED_DATA_KEYS:
            continue  # refused where the field is declared
        try:
            ptype = parse_payload_type(field.type)
        except ValueError as error:  # the field's own type is unreadable
            report((name,), f"cannot check field {name!r}: {error}")
            continue
        if name in data:
            try:
                result[name] = _field_value(field, data[name])
            except _Mismatch as mismatch:
                for where, text in mismatch.problems:
                    report((name, *where), text)
        elif field.default is not attrs.NOTHING:
            result[name] = _stored_default(field)
        elif ptype.kind == "optional":
            result[name] = None
        else:
            report((name,), f"required field {name!r} of job {job_name!r} is missing "
                   f"(type {field.type})")
    return result


def _stored_default(field: PayloadField) -> Any:
    """The default in stored form (``2026-12-01T09:00:00.000+02:00``, as a given value would
    be); a default that does not fit (refused when a file is loaded) is kept as JSON."""
    try:
        return _field_value(field, field.default)
    except _Mismatch:
        return to_json_ready(field.default)


def _check_class_payload(
    job_name: str, ref: str, data: Mapping[str, Any], report: Report, base_dir: Path | None
) -> dict[str, Any]:
    try:
        cls = import_object(ref, base_dir=base_dir, what="payload class")
    except ImportRefError as error:
        report((), str(error))
        return {}
    if not (isinstance(cls, type) and attrs.has(cls)):
        report((), f"payload {ref!r} of job {job_name!r} is not an attrs class")
        return {}
    clean = {key: value for key, value in data.items() if key not in RESERVED_DATA_KEYS}
    try:
        value = _strict_structure(cls)(clean, cls)
    except Exception as error:  # every failure becomes a reported problem
        for where, problem in cattrs_problems(error):
            report(where, _cattrs_message(problem, cls))
        return {}
    try:
        unstructured: dict[str, Any] = to_json_ready(payload_converter.unstructure(value))
    except _Mismatch as mismatch:
        for where, text in mismatch.problems:
            report(where, text)
        return {}
    return unstructured


@cache
def _strict_structure(cls: type) -> Callable[[Any, Any], Any]:
    """The payload converter's structuring of ``cls`` that also refuses unknown keys."""
    attrs.resolve_types(cls)
    return make_dict_structure_fn(cls, payload_converter, _cattrs_forbid_extra_keys=True)


def _cattrs_message(error: BaseException, cls: type) -> str:
    if isinstance(error, ForbiddenExtraKeysError):
        allowed = ", ".join(field.name for field in attrs.fields(cls))
        return f"unknown fields {', '.join(sorted(error.extra_fields))} (allowed: {allowed})"
    if isinstance(error, KeyError):
        return "required field is missing"
    return f"invalid value ({error})"


def to_json_ready(value: Any) -> Any:
    """``value`` as plain JSON data: aware datetimes as ISO text, dates as ``YYYY-MM-DD``;
    anything else that JSON cannot hold raises a mismatch naming it."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail("a finite number", value)
        return value
    if isinstance(value, datetime):
        return _as_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return _json_list(value)
    if isinstance(value, Mapping):
        return _json_mapping(value)
    raise _fail("JSON data (text, numbers, booleans, null, lists, mappings)", value)


def _json_list(values: list[Any] | tuple[Any, ...]) -> list[Any]:
    result, problems = [], []
    for index, item in enumerate(values):
        try:
            result.append(to_json_ready(item))
        except _Mismatch as mismatch:
            problems += [((index, *where), text) for where, text in mismatch.problems]
    if problems:
        raise _Mismatch(problems)
    return result


def _json_mapping(values: Mapping[Any, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for key, item in values.items():
        if not isinstance(key, str):
            problems.append(((), f"mapping keys must be strings, got {describe(key)}"))
            continue
        try:
            result[key] = to_json_ready(item)
        except _Mismatch as mismatch:
            problems += [((key, *where), text) for where, text in mismatch.problems]
    if problems:
        raise _Mismatch(problems)
    return result


# -- imports ---------------------------------------------------------------------------------


def is_import_ref(text: str) -> bool:
    """``package.module:attribute`` (dotted names on both sides of one colon)."""
    return bool(_IMPORT_REF.match(text))


def stdlib_module(ref: str) -> str | None:
    """The standard-library top-level module ``ref`` points into, if any (``os:system``)."""
    top = ref.split(":", 1)[0].split(".", 1)[0]
    return top if top in sys.stdlib_module_names else None


def import_object(ref: str, *, base_dir: Path | None = None, what: str = "object") -> Any:
    """The object ``module:attr.path`` names, importing the module from ``base_dir`` (put
    first on ``sys.path``) or ``sys.path``. Raises :class:`ImportRefError` naming ``ref``."""
    if not is_import_ref(ref):
        raise ImportRefError(f"{what} {ref!r} is not an import path like 'package.module:name'")
    if stdlib_module(ref):
        raise ImportRefError(
            f"{what} {ref!r} points into the standard library; it must be your own code"
        )
    module_name, attribute = ref.split(":", 1)
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # a syntax error in the module is as fatal as a missing one
        raise ImportRefError(f"cannot import {what} {ref!r}: {type(error).__name__}: "
                             f"{error}") from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImportRefError(f"cannot import {what} {ref!r}: module {module_name!r} has no "
                                 f"attribute {attribute!r}") from None
    return target
