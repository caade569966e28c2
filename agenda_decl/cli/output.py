"""Everything the command prints, through one masking path.

Every line written (results, errors, usage text, diffs, log records, drivers' messages)
passes through :meth:`Output.mask`, which applies the rule of ``agenda_decl._secrets``: the
password of each connection string and ``password=`` field is masked where it sits. Values
the file took from the environment are printed as the file wrote them (``${TOKEN}``) by the
commands, through ``_secrets.shown``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import attrs

from agenda_decl._secrets import mask_text

__all__ = ["ErrorEventPrinter", "Output", "iso", "json_line", "logging_to", "one_line",
           "report_error"]


class Output:
    """stdout/stderr; every line passes through :meth:`mask` (a driver's message may quote a
    connection string)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        #: The last log messages written (masked), so an error event is not printed twice.
        self.logged: collections.deque[str] = collections.deque(maxlen=20)
        #: Whether stdout's reader went away (``agenda-decl jobs | head -2``).
        self.stdout_closed = False
        #: Called once when it does (a worker then drains).
        self.on_stdout_closed: Callable[[], None] | None = None
        #: ``run --log-format json``: lines on stderr (errors, log records) are JSON objects
        #: too, as the worker's lines on stdout are.
        self.json_lines = False

    def mask(self, text: str) -> str:
        """The password of each connection string and ``password=`` field masked."""
        return mask_text(text)

    def print(self, text: str = "", *, end: str = "\n") -> None:
        try:
            self.out.write(self.mask(text) + end)
            self.out.flush()
        except BrokenPipeError:
            self.stdout_gone()

    def stdout_gone(self) -> None:
        """The reader of stdout has gone: the rest of the output is discarded without a
        message, as a command that SIGPIPE ends says nothing either. stdout's descriptor is
        pointed at the null device (Python's "Note on SIGPIPE"), so neither a later write nor
        the flush at exit raises again."""
        if self.stdout_closed:
            return
        self.stdout_closed = True
        with contextlib.suppress(OSError, ValueError):  # not a real file (a test's StringIO)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)
        if self.on_stdout_closed is not None:
            self.on_stdout_closed()

    def error(self, text: str) -> None:
        """Lines on stderr, each prefixed with ``agenda-decl:`` (with :attr:`json_lines`, the
        whole text as one JSON object: ``level``, ``event``, ``message``)."""
        if self.json_lines:
            level, message = ("warning", text[9:]) if text.startswith("warning: ") else (
                "error", text)
            self.err.write(self.mask(json_line(level=level, event="error", message=message)))
            self.err.write("\n")
            self.err.flush()
            return
        for line in self.mask(text).splitlines() or [""]:
            self.err.write(f"agenda-decl: {line}\n" if line else "\n")
        self.err.flush()

    def write_err(self, text: str) -> None:
        """Text on stderr as it is (usage, a diff), masked."""
        self.err.write(self.mask(text))
        self.err.flush()

    def json(self, value: Any) -> None:
        self.print(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if attrs.has(type(value)):
        return attrs.asdict(value)
    return str(value)


def json_line(**fields: Any) -> str:
    """One JSON object on one line, stamped with ``ts`` (now, UTC); not yet masked."""
    return json.dumps({"ts": iso(datetime.now(UTC)), **fields}, ensure_ascii=False,
                      default=_json_default)


def iso(value: datetime) -> str:
    """An instant in UTC with milliseconds and ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text).strip()


def report_error(
    output: Output, as_json: bool, kind: str, message: str,
    problems: list[dict[str, Any]] | None = None, *, human: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """An error: its text on stderr (``human``, else ``message``) and, with ``--json``, also
    on stdout as one JSON object, so that a script reading stdout never gets nothing:
    ``{"error": {"kind": ..., "message": ..., "problems": [...]}}``. ``problems`` are the
    config problems, each with file, line, column, path and message."""
    output.error(human if human is not None else message)
    if as_json:
        output.json({**(extra or {}), "error": {
            "kind": kind, "message": output.mask(message), "problems": problems or []}})


class _MaskingFilter(logging.Filter):
    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.output.mask(record.getMessage())
        record.args = None
        self.output.logged.append(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.output.mask(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        return True


class _LineFormatter(logging.Formatter):
    """``agenda-decl: LEVEL: message``, or a JSON object with :attr:`Output.json_lines`."""

    def __init__(self, output: Output) -> None:
        super().__init__("agenda-decl: %(levelname)s: %(message)s")
        self.output = output

    def format(self, record: logging.LogRecord) -> str:
        if not self.output.json_lines:
            return super().format(record)
        text = record.getMessage() + (f"\n{record.exc_text}" if record.exc_text else "")
        return json_line(level=record.levelname.lower(), event="log", logger=record.name,
                         message=text)


@contextlib.contextmanager
def logging_to(output: Output, level: int) -> Iterator[None]:
    """Log records of agenda_decl (and drivers) to stderr, masked, for the command's life."""
    handler = logging.StreamHandler(output.err)
    handler.setFormatter(_LineFormatter(output))
    handler.addFilter(_MaskingFilter(output))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


class ErrorEventPrinter:
    """The agenda's ``error`` events. Until :meth:`go_live` they are held back: when
    connecting fails, the same error comes back as the command's own error and is printed
    once; otherwise the held ones are printed as warnings (a channel that could not connect,
    so the scheduler polls)."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.held: list[BaseException] = []
        self.live = False

    def add(self, error: BaseException) -> None:
        if not self.live:
            self.held.append(error)
            return
        text = self.output.mask(str(error))
        if not any(text in logged for logged in self.output.logged):  # said already
            self.output.error(f"warning: {one_line(text)}")

    def go_live(self) -> None:
        self.live = True
        held, self.held = self.held, []
        for error in held:
            self.add(error)

    def drop_causes_of(self, final: BaseException) -> None:
        text = str(final)
        self.held = [error for error in self.held
                     if error is not final.__cause__ and str(error) not in text]
