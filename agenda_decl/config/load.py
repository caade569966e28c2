"""Reading ``agenda.yaml``: a hardened YAML reader, ``${ENV}`` interpolation, strict
structuring into the model, and semantic checks — every problem with its file:line:column.

The YAML reader is PyYAML's safe loader, used to *compose* nodes only (every value keeps its
position) with our own small set of scalar rules, YAML 1.2 style:

* ``true``/``false`` are booleans; ``yes``/``no``/``on``/``off``/``y``/``n`` stay strings;
* ``10:30`` stays a string (no base-60 numbers); dates stay strings (no timestamps);
* integers are decimal, ``0x..`` or ``0o..``; ``~``/``null``/empty is null;
* any explicit tag other than the plain ``!!str !!int !!float !!bool !!null !!map !!seq`` is
  refused (``!!python/object/apply:os.system`` among them); nothing is ever constructed by
  PyYAML, so no tag can run code;
* duplicate keys are errors; ``<<`` merge keys work;
* bounded: the file (1 MB), aliases (100), composed nodes, nesting depth, and the number of
  values after expanding aliases (an alias bomb is refused in milliseconds).

``${VAR}`` and ``${VAR:-default}`` inside string values read the environment (``$${`` is a
literal ``${``); a missing variable without a default is an error that names it. The result is
always a string and is never expanded again. A value that took something from the
environment is an :class:`~agenda_decl._secrets.EnvText`: it prints as the file wrote it
(``${TOKEN}``) in :func:`redacted`, :func:`shown_data` and every message, except connection
strings, which print with only their password masked (the rule of ``agenda_decl._secrets``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from agenda_decl._secrets import EnvText, mask_text, mask_url
from agenda_decl.config._structure import converter, structure_parts
from agenda_decl.config.errors import (
    ConfigError,
    ConfigIssue,
    KeyPath,
    render_path,
)
from agenda_decl.config.model import AgendaConfig
from agenda_decl.config.source import ConfigSource, issue_for, remember_source, source_of
from agenda_decl.config.validate import check_config

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_VALUES",
    "SECRET_FIELDS",
    "ConfigSource",
    "issue_for",
    "load_config",
    "read_yaml",
    "redacted",
    "shown_data",
    "shown_field",
    "source_of",
]

MAX_FILE_BYTES = 1_000_000
MAX_ALIASES = 100
#: Nodes composed (before alias expansion) and values produced (after it).
MAX_NODES = 100_000
MAX_VALUES = 100_000
MAX_DEPTH = 64

#: Fields holding connection strings: shown with the password masked, everywhere.
SECRET_FIELDS = frozenset({"connection_string", "listen_connection_string", "address"})

_ENV_REF = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + name for name in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ, _MERGE = _TAG + "map", _TAG + "seq", _TAG + "merge"
_SCALAR_TAGS = (_STR, _INT, _FLOAT, _BOOL, _NULL)


# -- the YAML reader -------------------------------------------------------------------------


class _LimitExceeded(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Loader(yaml.SafeLoader):
    """Composes (never constructs) with YAML 1.2-like scalars and bounded aliases/nodes."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _LimitExceeded(event.start_mark,
                                     f"more than {MAX_ALIASES} aliases (*name) in one file")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _LimitExceeded(event.start_mark, f"more than {MAX_NODES} YAML nodes")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitExceeded(event.start_mark,
                                     f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        raise TypeError("agenda-decl composes YAML nodes; it never constructs Python objects")


for _tag, _pattern, _first in (
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (_FLOAT, r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$", "-+0123456789."),
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_MERGE, r"^<<$", "<"),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def _position(mark: yaml.Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


# -- nodes to plain values -------------------------------------------------------------------


class _Reader:
    """Turns composed nodes into plain values, recording positions and issues."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.marks: dict[str, tuple[int, int]] = {}
        self.key_marks: dict[str, tuple[int, int]] = {}
        self.env_refs: dict[str, str] = {}
        self.issues: list[tuple[str, tuple[int, int], str]] = []
        self._values = 0
        self._depth = 0

    def report(self, path: KeyPath, mark: yaml.Mark | None, message: str) -> None:
        self.issues.append((render_path(path), _position(mark), message))

    def value(self, node: yaml.Node, path: KeyPath) -> Any:
        self._values += 1
        if self._values > MAX_VALUES:
            raise _LimitExceeded(node.start_mark, f"more than {MAX_VALUES} values after "
                                 "expanding aliases (an alias bomb?)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitExceeded(node.start_mark, f"nested more than {MAX_DEPTH} levels "
                                     "deep (a recursive alias?)")
            self.marks.setdefault(render_path(path), _position(node.start_mark))
            return self._dispatch(node, path)
        finally:
            self._depth -= 1

    def _dispatch(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self.value(item, (*path, index)) for index, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag in _SCALAR_TAGS:
            return self._scalar(node, path)
        prefix = "Python objects are never loaded: " if "python/" in node.tag else ""
        self.report(path, node.start_mark,
                    f"{prefix}YAML tag {_short_tag(node.tag)!r} is not allowed (only plain "
                    "values: strings, numbers, booleans, null, lists and mappings)")
        return None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, yaml.Mark] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in seen:
                line, column = _position(seen[key])
                self.report((*path, key), key_node.start_mark,
                            f"duplicate key {key!r} (first at line {line}, column {column})")
                continue
            seen[key] = key_node.start_mark
            self.key_marks[render_path((*path, key))] = _position(key_node.start_mark)
            result[key] = self.value(value_node, (*path, key))
        for merge in merges:
            self._merge(merge, path, result)
        return result

    def _key(self, node: yaml.Node, path: KeyPath) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag not in _SCALAR_TAGS:
            self.report(path, node.start_mark, "mapping keys must be plain strings")
            return None
        return str(node.value)  # keys are taken as written: `on:` and `1:` are strings

    def _merge(self, node: yaml.Node, path: KeyPath, into: dict[str, Any]) -> None:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.report(path, source.start_mark, "'<<' merges mappings only")
                continue
            for key_node, value_node in source.value:
                key = self._key(key_node, path)
                if key is not None and key not in into:
                    self.key_marks.setdefault(render_path((*path, key)),
                                              _position(key_node.start_mark))
                    into[key] = self.value(value_node, (*path, key))

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        text = str(node.value)
        if node.tag == _STR:
            return self._interpolate(text, node, path)
        if node.tag == _NULL:
            if text not in ("", "~", "null", "Null", "NULL"):
                self.report(path, node.start_mark, f"cannot read {text!r} as null")
            return None
        if node.tag == _BOOL:
            if text.lower() not in ("true", "false"):
                self.report(path, node.start_mark, f"cannot read {text!r} as true or false")
            return text.lower() == "true"
        try:
            return _number(text, node.tag == _INT)
        except ValueError:
            kind = "an integer" if node.tag == _INT else "a number"
            self.report(path, node.start_mark, f"cannot read {text!r} as {kind}")
            return None

    def _interpolate(self, text: str, node: yaml.Node, path: KeyPath) -> str:
        if "${" not in text:
            return text
        from_environment = False

        def substitute(match: re.Match[str]) -> str:
            if match[0] == "$${":
                return "${"
            reference, closed = match[1], match[2]
            name, has_default, default = reference.partition(":-")
            if not closed or not _ENV_NAME.match(name):
                self.report(path, node.start_mark,
                            f"invalid reference '${{{reference}{closed}': expected ${{NAME}} "
                            "or ${NAME:-default} (write $${ for a literal ${)")
                return ""
            value = self.environ.get(name)
            if value is None or (has_default and value == ""):
                if has_default:
                    return default
                self.report(path, node.start_mark,
                            f"environment variable {name} is not set (set it, or write "
                            f"${{{name}:-default}})")
                return ""
            nonlocal from_environment
            from_environment = True
            return value

        value = _ENV_REF.sub(substitute, text)
        if not from_environment:
            return value
        self.env_refs[render_path(path)] = text
        return EnvText(value, text)


def _number(text: str, integer: bool) -> int | float:
    if not integer:
        return float(text)
    if text.startswith(("0x", "0o")):
        return int(text[2:], 16 if text[1] == "x" else 8)
    return int(text)


# -- loading ---------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    import_payload_classes: bool = False,
) -> AgendaConfig:
    """Read, interpolate, structure and check ``path``.

    Raises :class:`ConfigError` listing every problem of the file (sorted by position), each
    as ``file:line:column: path: message``. ``environ`` defaults to ``os.environ``. With
    ``import_payload_classes``, schedule data of jobs whose payload is an attrs class is
    checked too (which imports that class); otherwise only its shape is.
    """
    file = os.fspath(path)
    text = _read(file)
    reader = _Reader(os.environ if environ is None else environ)
    data = _compose(file, text, reader)
    source = ConfigSource(
        file=file, path=Path(file).resolve(), marks=dict(reader.marks),
        key_marks=dict(reader.key_marks), env_refs=dict(reader.env_refs),
    )
    issues = [ConfigIssue(file, line, column, where, message)
              for where, (line, column), message in reader.issues]
    later: list[ConfigIssue] = []
    parts = structure_parts(data, source, later)
    later += check_config(parts, source, import_payload_classes=import_payload_classes)
    # A value the reader refused (a missing variable, a tag) is reported once, not again
    # for what it left behind.
    refused = {issue.path for issue in issues}
    issues += [issue for issue in later if issue.path not in refused]
    if issues:
        raise ConfigError(_sorted(issues))
    config = converter.structure(data, AgendaConfig)
    remember_source(config, source)
    return config


def read_yaml(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Any:
    """The plain data of a YAML file read by the same rules (limits, tags, duplicate keys,
    ``${ENV}``), without the model: for tools such as validating against the JSON Schema.
    Raises :class:`ConfigError` for what the reader refuses."""
    file = os.fspath(path)
    reader = _Reader(os.environ if environ is None else environ)
    data = _compose(file, _read(file), reader)
    if reader.issues:
        raise ConfigError([ConfigIssue(file, line, column, where, message)
                           for where, (line, column), message in reader.issues])
    return data


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(dict.fromkeys(issues), key=lambda issue: (issue.line, issue.column))


def _read(file: str) -> str:
    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(file, 1, 1, "", message)])

    try:
        with open(file, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise fail(f"cannot read the file ({error.strerror or error})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise fail(f"the file is larger than {MAX_FILE_BYTES} bytes (1 MB), the limit for "
                   "a config file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise fail(f"the file is not UTF-8 text (byte {error.start})") from None


def _compose(file: str, text: str, reader: _Reader) -> Any:
    def fail(mark: yaml.Mark | None, message: str) -> ConfigError:
        line, column = _position(mark)
        return ConfigError([ConfigIssue(file, line, column, "", message)])

    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks every character first
        node = loader.get_single_node()
        return {} if node is None else reader.value(node, ())
    except _LimitExceeded as error:
        raise fail(error.mark, f"refused: {error.message}") from None
    except yaml.MarkedYAMLError as error:
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise fail(error.problem_mark, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as error:  # a character YAML does not allow
        before = text[: error.position]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        raise ConfigError([ConfigIssue(file, line, column, "", "invalid YAML: control "
                                       f"character U+{error.character:04X} is not allowed")]
                          ) from None
    except yaml.YAMLError as error:
        raise fail(None, f"invalid YAML: {error}") from None
    except RecursionError:
        raise fail(None, "refused: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


# -- printing values of the file --------------------------------------------------------------


def redacted(config: AgendaConfig) -> dict[str, Any]:
    """The config as JSON data, safe to print: connection strings with only their password
    masked, other values from the environment as the file wrote them (``${TOKEN}``), and the
    passwords of connection strings inside other values masked."""
    shown: dict[str, Any] = _shown(_plain(config))
    return shown


#: The stored job fields a schedule option sets (what plan shows as field differences).
_FIELD_OPTIONS = {
    "repeat_interval": ("every", "cron"), "repeat_timezone": ("timezone",),
    "repeat_at": ("at",), "start_date": ("start_date",), "end_date": ("end_date",),
    "priority": ("priority",),
}  # fmt: skip


def shown_data(config: AgendaConfig, job: str, key: str, data: Any) -> Any:
    """``data`` of the job of schedule (``job``, ``key``), stored or about to be, with every
    value at a position the file fills from the environment printed as its reference
    (``${TOKEN}``): by position, so a stored value there is hidden too, whatever it is."""
    found = _schedule_refs(config, job, key)
    if found is None:
        return data
    index, refs = found
    return _replace_at(data, ("schedules", index, "data"), refs)


def shown_field(config: AgendaConfig, job: str, key: str, field: str, value: Any) -> Any:
    """A stored job ``field`` of that schedule as it may be printed: the reference of the
    schedule option that sets it when the file takes that option from the environment."""
    found = _schedule_refs(config, job, key)
    if found is None:
        return value
    index, refs = found
    options = _FIELD_OPTIONS.get(field, ())
    return next((refs[path] for path in (render_path(("schedules", index, option))
                                         for option in options) if path in refs), value)


def _schedule_refs(
    config: AgendaConfig, job: str, key: str
) -> tuple[int, Mapping[str, str]] | None:
    """The index of schedule (``job``, ``key``) and the file's references to the environment,
    when there are any."""
    source = source_of(config)
    if source is None or not source.env_refs:
        return None
    index = next((i for i, schedule in enumerate(config.schedules)
                  if (schedule.job, schedule.schedule_key) == (job, key)), None)
    return None if index is None else (index, source.env_refs)


def _replace_at(value: Any, path: KeyPath, refs: Mapping[str, str]) -> Any:
    rendered = render_path(path)
    if rendered in refs:
        return refs[rendered]
    if isinstance(value, Mapping):
        return {k: _replace_at(item, (*path, k), refs) for k, item in value.items()}
    if isinstance(value, list):
        return [_replace_at(item, (*path, i), refs) for i, item in enumerate(value)]
    return value


def _plain(value: Any) -> Any:
    if attrs.has(type(value)):
        return {field.name: _plain(getattr(value, field.name))
                for field in attrs.fields(type(value))
                if getattr(value, field.name) is not attrs.NOTHING}
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _shown(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _shown(item, k) for k, item in value.items()}
    if isinstance(value, list):
        return [_shown(item, key) for item in value]
    if isinstance(value, str):
        if key in SECRET_FIELDS:
            return mask_url(value)
        if isinstance(value, EnvText):
            return value.reference
        return mask_text(value)
    return value
