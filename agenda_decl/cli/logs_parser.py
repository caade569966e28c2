"""The command line of ``agenda-decl logs``: the job log, filtered."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from agenda_decl import timing
from agenda_decl._clock import utcnow
from agenda_decl._job_log import LOG_EVENTS, LOG_LEVELS
from agenda_decl.cli.arguments import (
    BARE_NUMBER,
    Commands,
    RaisingParser,
    page_size,
    parse_duration,
)
from agenda_decl.errors import AgendaError

__all__ = ["add_logs"]


def _since(text: str) -> datetime:
    """``--since``: a duration back from now ('2 hours') or a date ('2026-01-05', ISO 8601,
    'yesterday', '30 minutes ago')."""
    if BARE_NUMBER.fullmatch(text.strip()):
        parse_duration(text)  # refused: "needs a unit"
    try:
        return utcnow() - timedelta(milliseconds=parse_duration(text))
    except argparse.ArgumentTypeError:
        pass
    try:
        return timing.parse_date(text, field="--since")
    except AgendaError:
        raise argparse.ArgumentTypeError(
            f"invalid {text!r}: a duration back from now ('2 hours') or a date ('2026-01-05', "
            "'2026-01-05T10:00:00Z', 'yesterday')") from None


def add_logs(commands: Commands, config_option: RaisingParser) -> None:
    logs = commands.add_parser(
        "logs", parents=[config_option], help="show the job log (starts, failures, retries)",
        description="Show the newest entries of the job log (Agenda 6.2's, shared with Node "
        "workers and Agendash), oldest first, a failure's traceback under its line. Reads "
        "the storage only (also with logging off in this file); creates nothing.",
    )
    logs.add_argument("--job", metavar="ID", help="only entries of this job")
    logs.add_argument("--name", help="only entries of jobs of this name")
    logs.add_argument("--level", action="append", choices=LOG_LEVELS,
                      help="only entries of this level (repeat for several)")
    logs.add_argument("--event", action="append", choices=LOG_EVENTS,
                      help="only entries of this event (repeat for several)")
    logs.add_argument("--since", type=_since, metavar="WHEN",
                      help="only entries since then: a duration back ('2 hours') or a date")
    logs.add_argument("--limit", type=page_size, default=50,
                      help="show at most this many, the newest (default 50; 0 = all)")
    logs.add_argument("--json", action="store_true", help="print the entries as JSON")
