"""An operator's pause (``agenda-decl jobs pause``) and how ``plan`` and ``apply`` meet it.

A pause sets ``disabled`` and, on a job of a schedule (its data carries ``__managed_by__``,
whichever file owns it), records who paused it, when and why in its data:
``__paused__: {"by": "alice@web-1", "at": "2026-12-06T10:00:00.000Z", "reason": "..."}``.
The marker is what tells an operator's pause apart from a schedule declared ``disabled:
true`` and from a disable made in code:

* ``plan`` shows the job as paused, by whom and since when. Storage then does not match the
  file (the file says the job runs), so ``plan --detailed-exitcode`` exits 2, as for an
  orphan; but ``apply`` writes nothing for the pause: an update of the schedule (a new
  interval, new data) is written with ``disabled`` and the marker kept. A deploy never resumes
  a job that an operator paused during an incident.
* Only ``agenda-decl jobs resume`` (which clears both) runs it again.
* A marker on a job that is not disabled (enabled in code, or by a Node process) is stale: it
  is ignored, and the next ``apply`` removes it with the rest of the data it rewrites.

Jobs that are not a schedule's (one-off jobs, jobs made in code) are only disabled: ``apply``
never touches them, so they need no marker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from agenda_decl._model import JobParameters
from agenda_decl.config.payload import MANAGED_BY_KEY, PAUSED_KEY

__all__ = ["PauseMark", "is_schedule_job", "pause_of", "with_pause", "without_pause"]


@attrs.define(kw_only=True, frozen=True)
class PauseMark:
    """Who paused a job, when (ISO 8601, UTC) and, if given, why."""

    by: str
    at: str
    reason: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at, "reason": self.reason}

    def describe(self) -> str:
        """``paused by alice@web-1 since 2026-12-06T10:00:00.000Z (reason)``."""
        why = f" ({self.reason})" if self.reason else ""
        return f"paused by {self.by} since {self.at}{why}"


def is_schedule_job(job: JobParameters[Any]) -> bool:
    """Whether ``job`` stands for a schedule of some agenda.yaml (any owner)."""
    return isinstance(job.data, Mapping) and MANAGED_BY_KEY in job.data


def pause_of(job: JobParameters[Any]) -> PauseMark | None:
    """The operator's pause of ``job``: its marker, while the job is disabled."""
    if not job.disabled or not isinstance(job.data, Mapping):
        return None
    mark = job.data.get(PAUSED_KEY)
    if not isinstance(mark, Mapping) or not isinstance(mark.get("by"), str):
        return None
    reason = mark.get("reason")
    return PauseMark(by=mark["by"], at=str(mark.get("at") or "?"),
                     reason=reason if isinstance(reason, str) else None)


def with_pause(data: Any, mark: PauseMark) -> Any:
    """``data`` with the marker (data that is not a mapping cannot carry one)."""
    if not isinstance(data, Mapping):
        return data
    return {**data, PAUSED_KEY: mark.to_data()}


def without_pause(data: Any) -> Any:
    """``data`` without the marker."""
    if not isinstance(data, Mapping) or PAUSED_KEY not in data:
        return data
    return {key: value for key, value in data.items() if key != PAUSED_KEY}
