"""``agenda-decl generate``: the module of typed job handles that application code imports.

For each job of the config the module holds a payload type and a handle::

    @frozen(kw_only=True)
    class SendWelcomePayload:
        email: str
        plan: Literal["free", "pro"] = "free"

    send_welcome = JobHandle("send-welcome", SendWelcomePayload, config=CONFIG)

* a job with payload fields gets a frozen, keyword-only attrs class named after the job
  (``<Job>Payload``), fields in the order of the file, ``choices`` as a ``Literal``;
* a job whose payload is an import path (``billing.models:Report``) uses that class, imported;
* a job without payload takes ``dict[str, Any]`` (any JSON mapping, as the Agenda accepts it).

Handles are named after the job in snake_case (``send-welcome`` -> ``send_welcome``); a name
that is a keyword or a name the module itself uses gets ``_job`` appended; two jobs that
would share a name are refused (a :class:`ConfigError` naming both). The output is a pure
function of the config and the two paths: no timestamps, byte-identical for the same input,
lines kept within 88 characters where they can be broken, and clean for mypy ``--strict``
and ruff. Nothing is imported while generating (payload classes are only named).
"""

from __future__ import annotations

import difflib
import json
import keyword
import os
import re
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from agenda_decl._convert import parse_payload_datetime
from agenda_decl.config.errors import ConfigError, ConfigIssue
from agenda_decl.config.load import issue_for
from agenda_decl.config.model import AgendaConfig, CodegenConfig, JobConfig, PayloadField
from agenda_decl.config.payload import PayloadType, check_field_value, parse_payload_type

__all__ = ["Generated", "generate", "output_path", "render_module"]

#: Lines are broken to stay within this (ruff's default line length).
LINE_LIMIT = 88
#: Names the generated module defines or imports itself, plus the builtins it uses.
MODULE_NAMES = frozenset({
    "CONFIG", "ConfigAgenda", "JobHandle", "field", "frozen", "datetime", "Any", "Literal",
    "list", "dict", "str", "int", "float", "bool", "None",
})  # fmt: skip
_BASE_TYPES = {"str": "str", "int": "int", "float": "float", "bool": "bool",
               "datetime": "datetime.datetime", "date": "datetime.date"}
_LITERAL_BASES = ("str", "int", "bool")


# -- names -----------------------------------------------------------------------------------


def _words(job_name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", job_name)
    return [word for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]


def handle_name(job_name: str) -> str:
    """``send-welcome`` -> ``send_welcome``; keywords and the module's own names get
    ``_job`` appended, a leading digit gets ``job_`` in front."""
    name = "_".join(word.lower() for word in _words(job_name)) or "job"
    if name[0].isdigit():
        name = f"job_{name}"
    return f"{name}_job" if keyword.iskeyword(name) or name in MODULE_NAMES else name


def class_name(job_name: str) -> str:
    """``send-welcome`` -> ``SendWelcomePayload``."""
    name = "".join(word[0].upper() + word[1:] for word in _words(job_name)) or "Job"
    return f"Job{name}Payload" if name[0].isdigit() else f"{name}Payload"


@attrs.frozen
class _ClassRef:
    """A payload class named by import path: what to import and how the module refers to it."""

    module: str
    imported: str
    expression: str

    @classmethod
    def parse(cls, ref: str) -> _ClassRef:
        module, attribute = ref.split(":", 1)
        return cls(module, attribute.split(".")[0], attribute)


def _defined_names(config: AgendaConfig) -> Iterator[tuple[str, str]]:
    """(module-level name, job) for every name the module defines or imports for a job."""
    imported: set[tuple[str, str]] = set()
    for job_name, job in config.jobs.items():
        yield handle_name(job_name), job_name
        if isinstance(job.payload, str):
            ref = _ClassRef.parse(job.payload)
            if (ref.module, ref.imported) not in imported:  # one import serves every job
                imported.add((ref.module, ref.imported))
                yield ref.imported, job_name
        elif job.payload is not None:
            yield class_name(job_name), job_name


def _check_names(config: AgendaConfig) -> None:
    """Refuse module-level names shared by two jobs or hiding the module's own names."""
    issues = _name_issues(config) + _field_issues(config)
    if issues:
        raise ConfigError(issues)


def _name_issues(config: AgendaConfig) -> list[ConfigIssue]:
    owners: dict[str, str] = {}
    issues = []
    for name, job_name in _defined_names(config):
        owner = owners.setdefault(name, job_name)
        if owner != job_name:
            issues.append(issue_for(config, f"jobs.{job_name}", (
                f"jobs {owner!r} and {job_name!r} would both be named {name!r} in the "
                "generated module; rename one of them")))
        elif name in MODULE_NAMES:
            issues.append(issue_for(config, f"jobs.{job_name}.payload", (
                f"payload class {name!r} would hide a name the generated module uses; "
                "give the class another name")))
    return issues


def _field_issues(config: AgendaConfig) -> list[ConfigIssue]:
    issues = []
    for job_name, job in config.jobs.items():
        if not isinstance(job.payload, Mapping):
            continue
        for field_name in job.payload:
            if field_name in MODULE_NAMES:
                issues.append(issue_for(
                    config, f"jobs.{job_name}.payload.{field_name}",
                    f"a payload field named {field_name!r} would hide a name the generated "
                    "module uses (in the payload class); rename the field",
                ))
    return issues


# -- types and values ------------------------------------------------------------------------


@attrs.define
class _Uses:
    """What the module has to import."""

    datetime: bool = False
    literal: bool = False
    any: bool = False
    field: bool = False
    frozen: bool = False
    classes: dict[str, set[str]] = attrs.Factory(dict)


def _type_text(ptype: PayloadType, choices: list[Any] | None, uses: _Uses) -> str:
    """The Python annotation of a field type (``choices`` of a base type as a Literal)."""
    if ptype.kind == "optional":
        assert ptype.item is not None
        return f"{_type_text(ptype.item, choices, uses)} | None"
    if ptype.kind == "list":
        assert ptype.item is not None
        return f"list[{_type_text(ptype.item, None, uses)}]"
    assert ptype.name is not None
    if choices and ptype.name in _LITERAL_BASES:
        uses.literal = True
        return f"Literal[{', '.join(_literal_items(choices))}]"
    uses.datetime = uses.datetime or ptype.name in ("datetime", "date")
    return _BASE_TYPES[ptype.name]


def _literal_items(choices: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(_scalar_text(choice) for choice in choices))


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # double quotes; escapes are valid Python
    return repr(value)  # None, True, 3, 1.5


def _value_text(ptype: PayloadType, value: Any, uses: _Uses) -> str:
    """A stored (JSON) value of ``ptype`` as a Python expression."""
    if value is None:
        return "None"
    if ptype.kind == "optional":
        assert ptype.item is not None
        return _value_text(ptype.item, value, uses)
    if ptype.kind == "list":
        assert ptype.item is not None
        item = ptype.item
        return f"[{', '.join(_value_text(item, element, uses) for element in value)}]"
    if ptype.name == "datetime":
        uses.datetime = True
        return _datetime_text(parse_payload_datetime(value))
    if ptype.name == "date":
        uses.datetime = True
        year, month, day = (int(part) for part in value.split("-"))
        return f"datetime.date({year}, {month}, {day})"
    return _scalar_text(value)


def _datetime_text(value: datetime) -> str:
    """The stored default as written (its offset kept), so that a handle's default stores
    the same text as a default the payload check fills in."""
    parts = [value.year, value.month, value.day, value.hour, value.minute]
    if value.second or value.microsecond:
        parts.append(value.second)
    if value.microsecond:
        parts.append(value.microsecond)
    return f"datetime.datetime({', '.join(map(str, parts))}, tzinfo={_zone_text(value)})"


def _zone_text(value: datetime) -> str:
    offset = value.utcoffset() or timedelta(0)
    if not offset:
        return "datetime.UTC"
    sign, size = ("-", -offset) if offset < timedelta(0) else ("", offset)
    minutes, seconds = divmod(int(size.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    units = {"hours": hours, "minutes": minutes, "seconds": seconds}
    delta = ", ".join(f"{unit}={amount}" for unit, amount in units.items() if amount)
    return f"datetime.timezone({sign}datetime.timedelta({delta}))"


def _default_text(field: PayloadField, ptype: PayloadType, uses: _Uses) -> str | None:
    """`` = <default>`` of a field: the file's default, ``None`` for an optional field."""
    if field.default is attrs.NOTHING:
        return "None" if ptype.kind == "optional" else None
    stored = check_field_value(field, field.default)
    if not isinstance(stored, list):
        return _value_text(ptype, stored, uses)
    uses.field = True
    if not stored:
        return "field(factory=list)"
    return f"field(factory=lambda: {_value_text(ptype, stored, uses)})"


# -- rendering -------------------------------------------------------------------------------


def _fit(head: str, items: list[str], tail: str, indent: str = "") -> list[str]:
    """``head + items + tail`` on one line if it fits, else one item per line."""
    line = f"{head}{', '.join(items)}{tail}"
    if len(line) <= LINE_LIMIT or not items:
        return [line]
    return [head, *(f"{indent}    {item}," for item in items), f"{indent}{tail.lstrip()}"]


def _wrap(text: str, indent: str) -> list[str]:
    width = LINE_LIMIT - len(indent)
    return [f"{indent}{line}" for line in textwrap.wrap(text, width, break_long_words=True)]


def _docstring_text(text: str) -> str:
    return " ".join(text.replace("\\", "\\\\").replace('"', '\\"').split())


def _class_lines(job_name: str, job: JobConfig, fields: Mapping[str, PayloadField],
                 uses: _Uses) -> list[str]:
    uses.frozen = True
    lines = ["", "", "@frozen(kw_only=True)", f"class {class_name(job_name)}:"]
    lines += _class_docstring(job_name, job, fields)
    if fields:
        lines.append("")
    for name, field in fields.items():
        lines += _field_lines(name, field, uses)
    return lines


def _class_docstring(job_name: str, job: JobConfig,
                     fields: Mapping[str, PayloadField]) -> list[str]:
    summary = f"The payload of job '{job_name}'."
    paragraphs = [job.description or ""] + [
        f"{name}: {field.description}" for name, field in fields.items() if field.description
    ]
    body = [_wrap(_docstring_text(text), "    ") for text in paragraphs if text.strip()]
    first = _wrap(_docstring_text(summary), "    ")
    if not body and len(first) == 1 and len(first[0]) + 6 <= LINE_LIMIT:
        return [f'    """{first[0].strip()}"""']
    lines = [f'    """{first[0].strip()}', *first[1:]]
    for paragraph in body:
        lines += ["", *paragraph]
    return [*lines, '    """']


def _field_lines(name: str, field: PayloadField, uses: _Uses) -> list[str]:
    ptype = parse_payload_type(field.type)
    annotation = _type_text(ptype, field.choices, uses)
    default = _default_text(field, ptype, uses)
    tail = "" if default is None else f" = {default}"
    line = f"    {name}: {annotation}{tail}"
    if len(line) <= LINE_LIMIT:
        return [line]
    if not annotation.startswith("Literal["):
        return _call_lines(f"    {name}: {annotation} = ", default or "")
    items = _literal_items(field.choices or [])
    rest = annotation[annotation.index("]"):]
    return _fit(f"    {name}: Literal[", items, f"{rest}{tail}", "    ")


def _call_lines(head: str, call: str) -> list[str]:
    """A default that is a call (a datetime with its offset, a factory) with its arguments
    on a line of their own, as a formatter breaks it."""
    if "(" not in call or not call.endswith(")"):
        return [f"{head}{call}"]
    callee, arguments = call[:-1].split("(", 1)
    return [f"{head}{callee}(", f"        {arguments}", "    )"]


def _payload_expression(job_name: str, job: JobConfig, uses: _Uses) -> str:
    if isinstance(job.payload, str):
        ref = _ClassRef.parse(job.payload)
        uses.classes.setdefault(ref.module, set()).add(ref.imported)
        return ref.expression
    if job.payload is None:
        uses.any = True
        return "dict[str, Any]"
    return class_name(job_name)


def _handle_lines(job_name: str, payload: str) -> list[str]:
    head = f"{handle_name(job_name)} = JobHandle("
    items = [json.dumps(job_name), payload, "config=CONFIG"]
    return _fit(head, items, ")")


def _header(config_name: str, config_from_output: str) -> list[str]:
    return [
        f'"""Typed job handles of the jobs in {config_name}.',
        "",
        f"Generated by `agenda-decl generate` from {config_from_output} (relative to this",
        "file): do not edit. After changing the config, regenerate with",
        f"`agenda-decl generate -c {config_name}` in its directory (`--check` tells whether",
        "this file is stale).",
        '"""',
    ]


def _import_lines(uses: _Uses) -> list[str]:
    standard = ["import datetime"] if uses.datetime else []
    typing_names = [name for name, used in (("Any", uses.any), ("Literal", uses.literal))
                    if used]
    if typing_names:
        standard.append(f"from typing import {', '.join(typing_names)}")
    ours = ["ConfigAgenda", "JobHandle"] + [name for name, used in (
        ("field", uses.field), ("frozen", uses.frozen)) if used]
    lines = [*standard, *([""] if standard else []), *_from_import("agenda_decl.handles", ours)]
    if uses.classes:
        lines.append("")
    for module in sorted(uses.classes):
        lines += _from_import(module, sorted(uses.classes[module]))
    return lines


def _from_import(module: str, names: list[str]) -> list[str]:
    line = f"from {module} import {', '.join(names)}"
    return [line] if len(line) <= LINE_LIMIT else _fit(f"from {module} import (", names, ")")


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def render_module(
    config: AgendaConfig, config_path: str | os.PathLike[str], *, output: Path | None = None
) -> str:
    """The text of the handles module of ``config`` (loaded from ``config_path``), to be
    written at ``output`` (default: :func:`output_path`). Raises :class:`ConfigError` when
    two jobs would share a name in the module."""
    _check_names(config)
    config_file = Path(config_path)
    target = output or output_path(config, config_file)
    uses = _Uses()
    body: list[str] = []
    handles: list[str] = []
    for job_name, job in config.jobs.items():
        if isinstance(job.payload, Mapping):
            body += _class_lines(job_name, job, job.payload, uses)
        handles += _handle_lines(job_name, _payload_expression(job_name, job, uses))
    relative = _relative(config_file, target.parent)
    lines = [*_header(config_file.name, relative), "", *_import_lines(uses), "",
             f"CONFIG = ConfigAgenda.beside(__file__, {json.dumps(relative)})", *body]
    if handles:
        lines += ["", "", *handles]
    return "\n".join(lines) + "\n"


# -- files -----------------------------------------------------------------------------------


def output_path(config: AgendaConfig, config_path: str | os.PathLike[str]) -> Path:
    """Where the module goes: ``codegen.output`` relative to the config file's directory."""
    codegen = config.codegen or CodegenConfig()
    return Path(config_path).parent / codegen.output


@attrs.frozen
class Generated:
    """The outcome of :func:`generate`."""

    path: Path
    text: str
    handles: int
    #: What the file held before (None: it did not exist).
    previous: str | None

    @property
    def stale(self) -> bool:
        """Whether the file was missing or differed from what the config gives."""
        return self.previous != self.text

    def diff(self, limit: int = 40) -> list[str]:
        """A unified diff from the file to what it should be (at most ``limit`` lines)."""
        lines = list(difflib.unified_diff(
            (self.previous or "").splitlines(), self.text.splitlines(),
            fromfile=f"{self.path} (on disk)", tofile=f"{self.path} (generated)", lineterm="",
        ))
        return lines[:limit] + ([f"... ({len(lines) - limit} more lines)"]
                                if len(lines) > limit else [])


def generate(
    config: AgendaConfig,
    config_path: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    check: bool = False,
) -> Generated:
    """Render the handles module and write it (unless ``check``: then only compare).

    ``output`` overrides ``codegen.output`` (relative to the current directory). The file is
    written only when its text changes.
    """
    path = Path(output) if output is not None else output_path(config, config_path)
    text = render_module(config, config_path, output=path)
    previous = path.read_text(encoding="utf-8") if path.is_file() else None
    result = Generated(path=path, text=text, handles=len(config.jobs), previous=previous)
    if result.stale and not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    return result
