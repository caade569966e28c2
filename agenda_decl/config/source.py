"""Where a loaded config came from: the position of every value in its file and the values it
took from the environment, kept beside the config (which is a plain frozen value) and found
again by :func:`source_of`; :func:`issue_for` positions a problem found later (by plan,
codegen, the driver check) in the file.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from pathlib import Path

import attrs

from agenda_decl._secrets import mask_text
from agenda_decl.config.errors import ConfigIssue
from agenda_decl.config.model import AgendaConfig

__all__ = ["ConfigSource", "issue_for", "remember_source", "source_of"]

_LAST_SEGMENT = re.compile(r'^(.*?)(\[\d+\]|\.(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_-]+))$')


@attrs.define(frozen=True, eq=False)
class ConfigSource:
    """Where a loaded config came from: positions of every value, and which values came from
    the environment. ``source_of(config)`` returns it; paths are rendered strings
    (``schedules[1].data.due``), as in :class:`ConfigIssue`."""

    file: str
    path: Path
    marks: Mapping[str, tuple[int, int]]
    key_marks: Mapping[str, tuple[int, int]]
    #: Paths whose string value took something from the environment, and the value as the
    #: file wrote it (``${TOKEN}``): what is printed in its place.
    env_refs: Mapping[str, str] = attrs.Factory(dict)

    @property
    def base_dir(self) -> Path:
        """The directory of the file: relative paths (SQLite, codegen) and handler imports
        start there."""
        return self.path.parent

    def has(self, path: str) -> bool:
        """Whether the file itself wrote ``path`` (rather than a default filling it)."""
        return path in self.marks

    def position(self, path: str, *, key: bool = False) -> tuple[int, int]:
        """Line and column of ``path`` (of its key with ``key=True``), or of the nearest
        enclosing value the file has."""
        if key and path in self.key_marks:
            return self.key_marks[path]
        while path not in self.marks:
            match = _LAST_SEGMENT.match(path)
            if match is None:
                return self.marks.get("", (1, 1))
            path = match[1]
        return self.marks[path]

    def issue(self, path: str, message: str, *, key: bool = False) -> ConfigIssue:
        """An issue at ``path``. Values from the environment are quoted by their reference
        already (EnvText); connection strings quoted in the message are masked here."""
        line, column = self.position(path, key=key)
        return ConfigIssue(self.file, line, column, path, mask_text(message))


_SOURCES: dict[int, ConfigSource] = {}


def source_of(config: AgendaConfig) -> ConfigSource | None:
    """The source of a config returned by ``load_config`` (None for one built in code)."""
    return _SOURCES.get(id(config))


def remember_source(config: AgendaConfig, source: ConfigSource) -> None:
    """Keep ``source`` for :func:`source_of` as long as ``config`` lives."""
    key = id(config)
    _SOURCES[key] = source
    weakref.finalize(config, _SOURCES.pop, key, None)


def issue_for(config: AgendaConfig, path: str, message: str, *, key: bool = False) -> ConfigIssue:
    """A :class:`ConfigIssue` at ``path`` of a loaded config (e.g. from a PayloadError), at its
    key with ``key=True``; ``<config>:1:1`` for a config built in code."""
    source = source_of(config)
    if source is None:
        return ConfigIssue("<config>", 1, 1, path, message)
    return source.issue(path, message, key=key)
