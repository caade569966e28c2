"""Strict structuring of ``agenda.yaml`` into the model, through the config's own converter.

:data:`converter` is a cattrs converter of its own (one per boundary, as cattrs recommends):
storage conversion (``agenda_decl._convert``) never sees these hooks, so importing the config
package changes nothing there. Its hooks are strict: no coercion (``"5"`` is not an
integer), unknown keys refused, storage and notifications told apart by their ``type``, the
payload shorthand ``name: int``. Each section of a file (each job, each schedule) is
structured on its own, so one broken part does not hide the problems of the others.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from agenda_decl.config import model
from agenda_decl.config.errors import ConfigIssue, KeyPath, cattrs_problems, render_path
from agenda_decl.config.model import AgendaConfig, PayloadField
from agenda_decl.config.payload import describe

if TYPE_CHECKING:
    from agenda_decl.config.source import ConfigSource

__all__ = ["Parts", "converter", "structure_parts"]

#: The config's converter: every config class gets a strict hook below.
converter = cattrs.Converter()


class _Invalid(ValueError):
    """A value of the wrong kind; the message says what was found and what is allowed."""


_NONE = type(None)
#: Fields of type ``int | str`` that hold durations (the others are priorities).
_DURATION_FIELDS = frozenset({"process_every", "default_lock_lifetime", "lock_lifetime",
                              "every", "delay", "max_delay", "increment", "max_age"})
_DURATION_TEXT = "a duration (milliseconds, or text like '5 minutes')"


def _type_text(tp: Any) -> str:
    """How a type is named in messages ("an integer", "a duration ...")."""
    if get_origin(tp) in (Union, type(int | str)):  # "or null" would be noise
        return " or ".join(_type_text(arg) for arg in get_args(tp) if arg is not _NONE)
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(tp))
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             _NONE: "null", list: "a list", dict: "a mapping"}
    return names.get(get_origin(tp) or tp, "a mapping")


def _kind_fits(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the shape of ``tp`` (used to pick a member of a union)."""
    origin = get_origin(tp) or tp
    if tp is Any:
        return True
    if origin is Literal:  # a str subclass (a value from the environment) is a string
        return any(value == arg and (type(value) is type(arg) or (isinstance(arg, str)
                                     and isinstance(value, str))) for arg in get_args(tp))
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list)
    return isinstance(value, Mapping)  # dict[...] and attrs classes


Hook = Callable[[Any, Any], Any]


def _hook(tp: Any, expected: str | None = None) -> Hook:
    """A strict structuring function for ``tp``: no coercion ("5" is not an int).
    ``expected`` names what is allowed in messages (default: from the type)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, type(int | str)):
        return _union_hook(tp, args, expected or _type_text(tp))
    if origin is list:
        return _list_hook(_hook(args[0]))
    if origin is dict:
        return _dict_hook(_hook(args[1]))
    if tp is Any:
        return lambda value, _: value
    if attrs.has(tp):
        return lambda value, _: converter.structure(value, tp)

    def scalar(value: Any, _: Any) -> Any:
        if not _kind_fits(tp, value):
            raise _Invalid(f"expected {_type_text(tp)}, got {describe(value)}")
        return float(value) if tp is float else value

    return scalar


def _union_hook(tp: Any, args: tuple[Any, ...], expected: str) -> Hook:
    members = [arg for arg in args if arg is not _NONE]
    tagged = [arg for arg in members if attrs.has(arg) and hasattr(attrs.fields(arg), "type")]
    if len(tagged) > 1:
        return _tagged_hook(tagged, optional=_NONE in args)
    hooks = [(member, _hook(member)) for member in members]

    def structure(value: Any, _: Any) -> Any:
        if value is None and _NONE in args:
            return None
        for member, hook in hooks:
            if _kind_fits(member, value):
                return hook(value, member)
        raise _Invalid(f"expected {expected}, got {describe(value)}")

    return structure


def _tagged_hook(classes: list[type], *, optional: bool) -> Hook:
    """A union of attrs classes told apart by their ``type`` field (storage, notifications)."""
    by_type = {get_args(attrs.fields(cls).type.type)[0]: cls for cls in classes}
    allowed = ", ".join(sorted(by_type))

    def structure(value: Any, _: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected a mapping with a 'type' ({allowed}), got {describe(value)}")
        if "type" not in value:
            raise _Invalid(f"missing required key 'type' (one of {allowed})")
        kind = value["type"]
        if kind not in by_type:
            error = _Invalid(f"unknown type {kind!r} (allowed: {allowed})")
            error.add_note(AttributeValidationNote("type", "type", str))
            raise ClassValidationError("unknown type", [error], dict)
        return converter.structure(value, by_type[kind])

    return structure


def _list_hook(item: Hook) -> Hook:
    def structure(value: Any, _: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _Invalid(f"expected a list, got {describe(value)}")
        result, errors = [], []
        for index, element in enumerate(value):
            try:
                result.append(item(element, None))
            except Exception as error:
                error.add_note(IterableValidationNote(f"@ index {index}", index, None))
                errors.append(error)
        if errors:
            raise IterableValidationError("invalid list items", errors, list)
        return result

    return structure


def _dict_hook(item: Hook) -> Hook:
    def structure(value: Any, _: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected a mapping, got {describe(value)}")
        result, errors = {}, []
        for key, element in value.items():
            try:
                result[key] = item(element, None)
            except Exception as error:
                error.add_note(IterableValidationNote(f"@ key {key!r}", key, None))
                errors.append(error)
        if errors:
            raise IterableValidationError("invalid mapping values", errors, dict)
        return result

    return structure


def _class_hook(cls: type) -> Hook:
    attrs.resolve_types(cls)
    overrides: dict[str, Any] = {
        field.name: override(struct_hook=_hook(
            field.type, _DURATION_TEXT if field.name in _DURATION_FIELDS else None))
        for field in attrs.fields(cls)
    }
    generated: Hook = make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True,
        **overrides,
    )

    def structure(value: Any, _: Any) -> Any:
        if cls is PayloadField and isinstance(value, str):
            return PayloadField(type=value)  # the shorthand `customer_id: int`
        if cls is model.JobConfig and value is None:
            return model.JobConfig()  # `cleanup:` with nothing under it
        if not isinstance(value, Mapping):
            shorthand = " or a type name" if cls is PayloadField else ""
            raise _Invalid(f"expected a mapping{shorthand}, got {describe(value)}")
        return generated(value, cls)

    return structure


_CONFIG_CLASSES = (
    model.JobLogConfig,
    model.SQLiteStorage, model.PostgresStorage, model.RedisStorage, model.MongoStorage,
    model.InMemoryNotifications, model.NoNotifications, model.PostgresNotifications,
    model.RedisNotifications, model.MongoChangeStreamNotifications, model.BackendConfig,
    model.RetentionConfig, model.SchedulerConfig, model.PayloadField, model.BackoffConfig,
    model.JobConfig, model.ScheduleConfig, model.CodegenConfig, model.AgendaConfig,
)  # fmt: skip
for _cls in _CONFIG_CLASSES:
    attrs.resolve_types(_cls)
for _cls in _CONFIG_CLASSES:
    converter.register_structure_hook(_cls, _class_hook(_cls))


def _allowed_keys(cls: type) -> list[str]:
    return [field.name for field in attrs.fields(cls)]


def _problem_issues(
    error: BaseException, path: KeyPath, value: Any
) -> list[tuple[KeyPath, bool, str]]:
    """(path, at the key?, message) for every problem cattrs collected under ``path``."""
    issues: list[tuple[KeyPath, bool, str]] = []
    for where, problem in cattrs_problems(error, path):
        if isinstance(problem, ForbiddenExtraKeysError):
            allowed = _allowed_keys(problem.cl)
            for key in sorted(problem.extra_fields):
                issues.append(((*where, key), True, _unknown_key(key, allowed)))
        elif isinstance(problem, KeyError):
            issues.append((where[:-1], False, f"missing required key {where[-1]!r}"))
        elif isinstance(problem, _Invalid):
            issues.append((where, False, str(problem)))
        else:
            issues.append((where, False, f"invalid value ({type(problem).__name__}: "
                           f"{problem})"))
    return issues


def _unknown_key(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r} (allowed: {', '.join(allowed)}{hint})"



@attrs.define
class Parts:
    """The sections of a file that could be structured (None where they could not)."""

    version: Any = None
    backend: model.BackendConfig | None = None
    scheduler: model.SchedulerConfig | None = None
    jobs: dict[str, model.JobConfig | None] = attrs.field(factory=dict)
    schedules: list[model.ScheduleConfig | None] = attrs.field(factory=list)
    codegen: model.CodegenConfig | None = None


def structure_parts(data: Any, source: ConfigSource, issues: list[ConfigIssue]) -> Parts:
    """Structure each section (each job, each schedule) on its own, so that one broken part
    does not hide the problems of the others."""
    parts = Parts()

    def part(value: Any, tp: Any, path: KeyPath) -> Any:
        try:
            return _hook(tp)(value, tp)
        except Exception as error:
            found = _problem_issues(error, path, value)
            for where, at_key, message in found:
                issues.append(source.issue(render_path(where), message, key=at_key))
        # Without its broken keys the part may still structure: then its other values get
        # their semantic checks too, and every problem of the file is reported at once.
        broken = {where[len(path)] for where, _, _ in found if len(where) > len(path)}
        if not isinstance(value, Mapping) or not broken:
            return None
        try:
            return _hook(tp)({k: v for k, v in value.items() if k not in broken}, tp)
        except Exception:
            return None

    if not isinstance(data, dict):
        issues.append(source.issue("", f"expected a mapping at the top level, got "
                                       f"{describe(data)}"))
        return parts
    for key in ("jobs", "schedules"):  # `schedules:` with everything commented out
        if key in data and data[key] is None:
            del data[key]
    allowed = _allowed_keys(AgendaConfig)
    for key in data:
        if key not in allowed:
            issues.append(source.issue(key, _unknown_key(key, allowed), key=True))
    for key in ("version", "backend"):
        if key not in data:
            issues.append(source.issue("", f"missing required key {key!r}"))
    if "version" in data:
        version = data["version"]
        if version == 1 and type(version) is int:
            parts.version = version
        else:
            issues.append(source.issue("version", f"unsupported version {version!r} (this "
                                                  "agenda-decl reads version 1)"))
    if "backend" in data:
        parts.backend = part(data["backend"], model.BackendConfig, ("backend",))
    if "scheduler" in data:
        parts.scheduler = part(data["scheduler"], model.SchedulerConfig, ("scheduler",))
    if "codegen" in data:
        parts.codegen = part(data["codegen"], model.CodegenConfig | None, ("codegen",))
    jobs = data.get("jobs", {})
    if isinstance(jobs, Mapping):
        parts.jobs = {name: part(job, model.JobConfig, ("jobs", name))
                      for name, job in jobs.items()}
    else:
        part(jobs, dict[str, model.JobConfig], ("jobs",))
    schedules = data.get("schedules", [])
    if isinstance(schedules, list):
        parts.schedules = [part(item, model.ScheduleConfig, ("schedules", index))
                           for index, item in enumerate(schedules)]
    else:
        part(schedules, list[model.ScheduleConfig], ("schedules",))
    return parts
