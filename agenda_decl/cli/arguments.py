"""The types of option values and the parser class of the ``agenda-decl`` command line.

argparse's own usage errors exit 2, which is also the "changes pending" answer of ``plan
--detailed-exitcode``; here they are raised as :class:`UsageError`, which ``main`` reports
with exit code 1.
"""

from __future__ import annotations

import argparse
import re
from typing import NoReturn, TypeAlias

from agenda_decl import timing
from agenda_decl.errors import AgendaError

__all__ = [
    "Commands",
    "RaisingParser",
    "UsageError",
    "page_size",
    "parse_duration",
    "port",
    "positive_int",
    "python_file",
]

BARE_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


_SHORT_UNIT = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)(?![a-z])")
_SHORT_UNITS = {"ms": "ms", "s": "seconds", "m": "minutes", "h": "hours", "d": "days",
                "w": "weeks"}


def parse_duration(text: str) -> int:
    """A command-line duration in ms: words (``30 seconds``, ``2 minutes``) or the short
    units ``ms``, ``s``, ``m`` (minutes), ``h``, ``d`` and ``w`` (``7d``, ``1h30m``). A bare
    number is refused: the Python API reads it as milliseconds, which on a command line
    (``--exit-after 5``) is rarely what was meant."""
    text = text.strip()
    if BARE_NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} needs a unit; did you mean '{text} seconds'?")
    words = _SHORT_UNIT.sub(lambda m: f"{m[1]} {_SHORT_UNITS[m[2]]} ", text.lower())
    try:
        return timing.parse_duration(words.strip())
    except AgendaError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: expected a number with a unit, e.g. '30 seconds', "
            "'500 ms', '2 minutes' or '7d'") from None


def python_file(text: str) -> str:
    if not text.endswith(".py"):
        raise argparse.ArgumentTypeError(f"expected a path to a .py file, got {text!r}")
    return text


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port number from 1 to 65535 (0: any free port), got {text!r}")
    return value


def page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0 = all), got {text!r}")
    return value


class UsageError(Exception):
    """A command line argparse refuses; ``usage`` is the usage text of the (sub)command."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class RaisingParser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of exiting 2 (see the module docstring)."""

    def error(self, message: str) -> NoReturn:
        # "argument --exit-after: ..." -> "--exit-after: ...": the option first, as
        # config errors put the field first.
        raise UsageError(message.removeprefix("argument "), self.format_usage())


Commands: TypeAlias = "argparse._SubParsersAction[RaisingParser]"
