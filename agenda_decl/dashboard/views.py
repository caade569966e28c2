"""What each page shows, gathered from the store through the Agenda's queries and
:mod:`agenda_decl.operations` (the dashboard keeps no state of its own).

Every list is one paged ``query_jobs`` call (the backends' own queries: a filter on name,
state or data, one sort key, ``skip``/``limit``; what each costs over 100,000 jobs is in
bench/HISTORY.md). The overview is ``get_jobs_overview`` (one aggregate) plus two one-row
queries per job name (its next run, its newest failure), a few names at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import attrs

from agenda_decl._model import (
    JOB_STATES,
    SORT_KEYS,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobStateFilter,
    JobWithState,
    SortDirection,
    SortKey,
)
from agenda_decl.agenda import Agenda
from agenda_decl.config.model import AgendaConfig, ScheduleConfig
from agenda_decl.config.plan import Change, plan
from agenda_decl.config.plan_output import change_to_json
from agenda_decl.operations import (
    found_by_ids,
    job_details,
    job_history,
    job_json,
    last_error_entry,
    state_of,
)

__all__ = [
    "PAGE_SIZE",
    "SORTABLE",
    "STATE_FILTERS",
    "FilterError",
    "JobFilters",
    "NameRow",
    "ScheduleRow",
    "actions_for",
    "job_page",
    "list_jobs",
    "overview",
    "parse_data_filter",
    "schedules",
]

PAGE_SIZE = 50
#: The columns a job list sorts by (the store's sort keys but ``data``).
SORTABLE: tuple[SortKey, ...] = tuple(key for key in SORT_KEYS if key != "data")
STATE_FILTERS: tuple[JobStateFilter, ...] = (*JOB_STATES, "paused")


class FilterError(ValueError):
    """A filter of the job list that cannot be used; the message names the field and value."""


@attrs.define(kw_only=True, frozen=True)
class NameRow:
    """One job name on the overview."""

    name: str
    declared: bool
    counts: dict[str, int]
    total: int
    next_run: JobWithState[Any] | None
    last_failed: JobWithState[Any] | None


async def overview(agenda: Agenda, config: AgendaConfig) -> dict[str, Any]:
    """Per job name (stored or declared): counts by state, next run, newest failure; the
    queue (jobs due and not running), and the notification channel's state."""
    stored = {row.name: row for row in await agenda.get_jobs_overview()}
    names = sorted({*stored, *config.jobs})
    # Each name's two one-row lookups are independent: asked together (a few at a time, so a
    # store with many names does not take every pooled connection), the page waits for the
    # slowest batch instead of the sum of every round trip.
    limit = asyncio.Semaphore(_LOOKUPS_AT_ONCE)
    rows = await asyncio.gather(*(_name_row(agenda, config, name, stored.get(name), limit)
                                  for name in names))
    channel = agenda.channel
    return {
        "rows": rows,
        "queued": sum(row.counts["queued"] for row in rows),
        "running": sum(row.counts["running"] for row in rows),
        "failed": sum(row.counts["failed"] for row in rows),
        "total": sum(row.total for row in rows),
        "channel": channel.state if channel is not None else None,
        "backend": agenda.backend.name,
    }


#: Names whose lookups run at once on the overview (below the smallest default pool).
_LOOKUPS_AT_ONCE = 4


async def _name_row(agenda: Agenda, config: AgendaConfig, name: str, row: JobsOverview | None,
                    limit: asyncio.Semaphore) -> NameRow:
    counts = {state: getattr(row, state, 0) for state in (*JOB_STATES, "paused")}
    async with limit:
        next_run = await _next_run(agenda, name) if row else None
        last_failed = await _last_failed(agenda, name) if row and row.failed else None
    return NameRow(name=name, declared=name in config.jobs, counts=counts,
                   total=row.total if row else 0, next_run=next_run, last_failed=last_failed)


async def _next_run(agenda: Agenda, name: str) -> JobWithState[Any] | None:
    """The enabled job of ``name`` that runs next (a queued one is due already)."""
    result = await agenda.query_jobs(JobsQueryOptions(
        name=name, include_disabled=False, sort={"next_run_at": "asc"}, limit=1))
    due = [job for job in result.jobs if job.next_run_at is not None]  # nulls sort last
    return due[0] if due else None


async def _last_failed(agenda: Agenda, name: str) -> JobWithState[Any] | None:
    """The job of ``name`` whose last run failed most recently."""
    result = await agenda.query_jobs(JobsQueryOptions(
        name=name, state="failed", sort={"last_finished_at": "desc"}, limit=1))
    return result.jobs[0] if result.jobs else None


@attrs.define(kw_only=True, frozen=True)
class JobFilters:
    """The job list's query string, checked: ``name`` (exact), ``search`` (text in the name),
    ``state``, ``data`` (``key=value`` pairs or a JSON object the data contains), ``sort``
    and ``order``, ``page`` (from 1)."""

    name: str = ""
    search: str = ""
    state: str = ""
    data: str = ""
    sort: str = "next_run_at"
    order: str = "desc"
    page: int = 1

    @classmethod
    def of(cls, query: Mapping[str, str]) -> JobFilters:
        page_text = query.get("page", "1") or "1"
        if not page_text.isdigit() or int(page_text) < 1:
            raise FilterError(f"page must be a whole number from 1, got {page_text!r}")
        filters = cls(**{key: query.get(key, "").strip() for key in
                         ("name", "search", "state", "data") if query.get(key)},
                      sort=query.get("sort") or "next_run_at",
                      order=query.get("order") or "desc", page=int(page_text))
        if filters.state and filters.state not in STATE_FILTERS:
            raise FilterError(f"state must be one of {', '.join(STATE_FILTERS)}, got "
                              f"{filters.state!r}")
        if filters.sort not in SORTABLE:
            raise FilterError(f"sort must be one of {', '.join(SORTABLE)}, got {filters.sort!r}")
        if filters.order not in ("asc", "desc"):
            raise FilterError(f"order must be asc or desc, got {filters.order!r}")
        parse_data_filter(filters.data)
        return filters

    def query(self, **changes: Any) -> dict[str, str]:
        """These filters as query parameters (with ``changes``), empty ones left out."""
        values = {**attrs.asdict(self), **changes}
        return {key: str(value) for key, value in values.items()
                if value not in ("", None) and (key, value) != ("page", 1)}


def parse_data_filter(text: str) -> Any:
    """The data a job must contain: a JSON object, or ``key=value`` pairs separated by
    commas (``customer.id=42, plan=pro``: a dotted key reaches into nested objects; a value
    is read as JSON when it is JSON, else as text). None for an empty filter."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise FilterError(f"data: not a JSON object ({error.msg}): {text!r}") from None
        if not isinstance(value, dict):
            raise FilterError(f"data: not a JSON object: {text!r}")
        return value
    wanted: dict[str, Any] = {}
    for pair in text.split(","):
        key, equals, raw = pair.partition("=")
        if not equals or not key.strip():
            raise FilterError(f"data: write key=value (or a JSON object), got {pair.strip()!r}")
        *path, last = key.strip().split(".")
        node = wanted
        for part in path:
            node = node.setdefault(part, {})
        node[last] = _json_or_text(raw.strip())
    return wanted


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


async def list_jobs(agenda: Agenda, config: AgendaConfig, filters: JobFilters
                    ) -> tuple[list[dict[str, Any]], int, bool]:
    """One page of jobs (each as ``jobs --json`` shows it), the number of matches and whether
    it is exact (a store may count a filter's matches only up to a bound: then it is a lower
    bound, see ``JobsResult.total_exact``)."""
    sort: dict[SortKey, SortDirection] = {filters.sort: filters.order}  # type: ignore[dict-item]
    result = await agenda.query_jobs(JobsQueryOptions(
        name=filters.name or None, search=filters.search or None,
        state=filters.state or None,  # type: ignore[arg-type]
        data=parse_data_filter(filters.data), sort=sort,
        skip=(filters.page - 1) * PAGE_SIZE, limit=PAGE_SIZE))
    return ([job_json(job, job.state, config) for job in result.jobs], result.total,
            result.total_exact)


async def job_page(agenda: Agenda, config: AgendaConfig, job_id: str) -> dict[str, Any]:
    """One job as ``jobs show`` has it (fields, data, pause, last failure with its
    traceback), and its history from the job log (newest first)."""
    (job,) = await found_by_ids(agenda, [job_id])
    assert job.id is not None
    state = state_of(job, agenda)
    details = job_details(job, state, config, await last_error_entry(agenda, job.id))
    return {
        "job": job,
        "state": state,
        "details": details,
        "actions": actions_for(job, state),
        "history": await job_history(agenda, job.id, limit=30),
        "logging": agenda.backend.logger is not None,
        "data_json": json.dumps(details["data"], indent=2, ensure_ascii=False, default=str,
                                sort_keys=True),
    }


def actions_for(job: JobParameters[Any], state: str) -> list[str]:
    """The actions that apply to ``job`` now (the others would be refused)."""
    actions = ["retry"] if state == "failed" else []
    if state != "running" and not (job.disabled and not (job.repeat_interval or job.repeat_at)):
        actions.append("run-now")
    actions.append("resume" if job.disabled else "pause")
    actions.append("delete")
    return actions


@attrs.define(kw_only=True, frozen=True)
class ScheduleRow:
    """A declared schedule, its stored job and what ``plan`` would do to it."""

    schedule: ScheduleConfig | None
    change: dict[str, Any]
    job: JobWithState[Any] | None

    @property
    def timing(self) -> str:
        schedule = self.schedule
        if schedule is None:
            return "-"
        when = (f"every {schedule.every}" if schedule.every is not None
                else f"cron {schedule.cron}" if schedule.cron else f"at {schedule.at}")
        return when + (f" ({schedule.timezone})" if schedule.timezone else "")


async def schedules(agenda: Agenda, config: AgendaConfig) -> dict[str, Any]:
    """Every schedule of the file beside its stored job, with ``plan``'s change for it, and
    the stored jobs of this owner the file no longer declares."""
    planned = await plan(agenda, config)
    ids = [str(change.id) for change in planned.changes if change.id is not None]
    stored = {job.id: job for job in (await agenda.query_jobs(JobsQueryOptions(ids=ids))).jobs
              } if ids else {}
    declared = {(schedule.job, schedule.schedule_key): schedule for schedule in config.schedules}
    rows = [ScheduleRow(schedule=declared.get((change.job, change.key)),
                        change=change_to_json(change, config),
                        job=stored.get(change.id) if change.id else None)
            for change in planned.changes]
    return {"rows": rows, "orphaned": planned.orphaned, "in_sync": planned.in_sync,
            "owner": config.owner, "counts": _counts(planned.changes)}


def _counts(changes: tuple[Change, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    return counts
