"""Errors of the declarative layer: every problem of a file, each with its position.

    agenda.yaml:12:5: jobs.send-invoice.concurrency: expected an integer >= 1, got -2

Lines and columns are 1-based (as editors count). An issue about the file as a whole (it is
too large, it is not a mapping) has an empty ``path`` and is printed without one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs
from cattrs.errors import (
    ClassValidationError,
    IterableValidationError,
)

from agenda_decl.errors import AgendaError

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "ImportRefError",
    "PayloadError",
    "StalePlanError",
    "cattrs_problems",
    "render_path",
]

#: A position in the parsed file: mapping keys and list indexes from the top.
KeyPath = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@attrs.define(frozen=True)
class ConfigIssue:
    file: str
    line: int
    column: int
    #: Where in the file: ``jobs.send-invoice.concurrency``, ``schedules[1].data.due``.
    path: str
    #: What was found and what is allowed.
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class StalePlanError(AgendaError, RuntimeError):
    """``apply`` was given a plan made on other stored jobs than the ones storage holds now
    (another apply ran, or a managed job was paused, edited or deleted in between). Nothing
    was written; make a new plan."""


class ConfigError(AgendaError, ValueError):
    """A config file that cannot be used; ``issues`` holds every problem found in it."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


class PayloadError(AgendaError, ValueError):
    """Job data that does not fit the job's payload.

    ``path`` and ``message`` describe the first problem; ``problems`` lists all of them as
    ``(path, message)`` pairs, in the order found. Paths are full (``schedules[0].data.due``)
    when the caller passed the path of the data.
    """

    def __init__(self, path: str, message: str, *, problems: list[tuple[str, str]] | None = None):
        self.path = path
        self.message = message
        self.problems: list[tuple[str, str]] = problems or [(path, message)]
        super().__init__(path, message)

    def __str__(self) -> str:
        return "\n".join(f"{path}: {message}" if path else message
                         for path, message in self.problems)


class ImportRefError(AgendaError, ImportError):
    """A ``module:attribute`` reference (handler, payload class) that cannot be imported."""


def render_path(path: KeyPath) -> str:
    """``("jobs", "send-invoice", "concurrency")`` -> ``jobs.send-invoice.concurrency``;
    list indexes as ``[1]``; keys that are not plain words are quoted (``jobs."a.b"``)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        key = part if _PLAIN_KEY.match(part) else '"' + part.replace('"', '\\"') + '"'
        text += f".{key}" if text else key
    return text


#: One problem found while structuring: where, what kind, and the exception.
CattrsProblem = tuple[KeyPath, BaseException]


def cattrs_problems(error: BaseException, path: KeyPath = ()) -> list[CattrsProblem]:
    """Every leaf exception of a (detailed) cattrs validation error with its path.

    ``ForbiddenExtraKeysError`` and ``KeyError`` (a missing key) are reported at the path of
    the mapping they concern; everything else at the path of the offending value.
    """
    steps: list[tuple[BaseException, str | int]] = []
    if isinstance(error, ClassValidationError):
        attributes, without = error.group_exceptions()
        steps = [(inner, note.name) for inner, note in attributes]
    elif isinstance(error, IterableValidationError):
        items, without = error.group_exceptions()
        steps = [(inner, note.index) for inner, note in items]
    else:
        return [(path, error)]
    problems: list[CattrsProblem] = []
    for inner, step in steps:
        if isinstance(inner, KeyError) and isinstance(error, ClassValidationError):
            problems.append(((*path, step), inner))  # a missing key: at its would-be path
        else:
            problems.extend(cattrs_problems(inner, (*path, step)))
    for inner in without:
        problems.extend(cattrs_problems(inner, path))
    return problems
