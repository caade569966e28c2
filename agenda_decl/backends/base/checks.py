"""What every store checks before a write: table names, the job itself, and the refusal of
writes by a store opened read-only."""

from __future__ import annotations

import re
from typing import Any

from agenda_decl._job_data import check_unique_keys, encode_data
from agenda_decl._model import JobParameters
from agenda_decl.errors import InvalidOptionError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_identifier(value: str, *, field: str) -> str:
    """Refuse anything but a plain SQL identifier (then quote it anyway)."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise InvalidOptionError(
            f"invalid {field}: {value!r} (letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters)"
        )
    return value


def refuse_write(read_only: bool, where: str) -> None:
    """Raise before a write reaches a store opened with ``read_only=True`` (what ``plan``
    and ``jobs`` use: inspecting must never change storage)."""
    if read_only:
        raise InvalidOptionError(
            f"{where} is open read-only (read_only=True): it refuses every write"
        )


def check_job(job: JobParameters[Any]) -> str:
    """Validate a job before any write; return its data as JSON text."""
    if not isinstance(job.name, str) or not job.name or len(job.name) > 255:
        raise InvalidOptionError(f"invalid job name {job.name!r} (1 to 255 characters)")
    if job.type not in ("normal", "single"):
        raise InvalidOptionError(f"invalid job type {job.type!r} (normal or single)")
    if isinstance(job.priority, bool) or not isinstance(job.priority, int):
        raise InvalidOptionError(f"invalid priority {job.priority!r} (an integer)")
    check_unique_keys(job.unique)
    return encode_data(job.data, name=job.name)
