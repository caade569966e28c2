"""The shared ledger of a fault run and the counting rules of the reliability reference
(/work/shared/reference/reliability.md, sections (b) and (c), and its Agenda v6 measurements).

Every worker process appends one JSON line per event to one file (``O_APPEND``; a line is a
single ``write``, which Linux keeps whole): a handler's ``start`` (with the lock it holds),
each ``touch`` (with the renewed lock), its ``return``, the scheduler's ``success`` (emitted
once the end is stored), ``lost`` (a ``LockLostError``: fenced out) and ``unstored`` (a
``StateWriteError``: the end was not stored) for the run, its other ``error`` events,
``ready``, ``stop`` (with the attempts running then) and ``exit``. The test process adds
``kill`` (after the killed process is gone, so nothing of it is later) and ``enqueue``.
Times are ``time.time()`` on one machine, the same clock the stores' lock stamps come from.

An *attempt* is one handler run: ``start`` to ``return``. Its *lease* ends ``lock_lifetime``
after its last lock (the start's or a touch's). The rules:

* **lost**: an enqueued job with no completed attempt (completed: ``success``, and no ``lost``
  or ``unstored``) that the store does not hold as completed either.
* **lost lock**: a job with an attempt whose state write was fenced out (``LockLostError``);
  **unstored**: a job with an attempt whose end was reported as not stored.
* **started more than once**: a job with two or more attempts; *unexplained* when the earlier
  attempt was neither killed (while running, or after it returned but before its
  ``success``), nor past its lease (a lost lock), nor reported as not stored, nor cut by its
  process ending.
* **never finished**: an attempt with no ``return`` whose process was not killed.
* **overlap**: two attempts of one job live at once. *Handler overlap* (the reference's rule:
  a killed attempt's interval ends at its kill): the later one started before the earlier
  one returned or was killed; two handlers ran at once, what a handler that outlives its lock
  without ``touch()`` causes. *Lease overlap* (stricter): the later one started before the
  earlier one returned, was killed or its lease ended; the store handed out a lock that was
  still held.
* **re-run of a completed job**: an attempt that starts after a completed attempt of the job.
* **kill→restart**: for an attempt cut by a ``kill``, the seconds from the kill to the job's
  next start.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import attrs

#: Locks are stamped by each worker's store-aligned clock, whose offset is measured over a
#: round trip: two workers' stamps may disagree by that much (a few ms; more under load).
CLOCK_TOLERANCE = 0.1


class LedgerWriter:
    """Appends events to the ledger file (one ``write`` per line)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": time.time(), "kind": kind, **fields}, separators=(",", ":"))
        os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event of the ledger, in time order (a line cut by a SIGKILL is skipped)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return sorted(events, key=lambda event: float(event["t"]))


@attrs.define
class Attempt:
    """One handler run of one job, in one worker process."""

    id: str
    job: str
    pid: int
    start: float
    lock: float  # the last lock it held (epoch seconds): the start's or a touch's
    returned: float | None = None
    completed: float | None = None
    lost_lock: bool = False
    unstored: bool = False
    #: Its process was killed after the handler returned, before ``success``: the end write
    #: may not have gone out (at-least-once: the job may run again).
    died_unreported: bool = False
    killed: float | None = None

    def lease_end(self, lock_lifetime: float) -> float:
        return self.lock + lock_lifetime

    def live_until(self) -> float:
        """When the handler stopped running: its return or its process's kill."""
        ends = [t for t in (self.returned, self.killed) if t is not None]
        return min(ends) if ends else math.inf

    def held_until(self, lock_lifetime: float) -> float:
        """When it stopped holding the job: its return, its kill, or the end of its lease. (A
        killed run's stored lock is not known: its start write, which renews the lock, may
        not have gone out; so its interval ends at the kill, as the reference counts it.)"""
        return min(self.live_until(), self.lease_end(lock_lifetime))

    @property
    def is_completed(self) -> bool:
        return self.completed is not None and not (self.lost_lock or self.unstored)


@attrs.frozen
class Findings:
    """What the counting rules found (job ids, attempt ids, seconds)."""

    jobs: int
    lost: list[str]
    started_more_than_once: list[str]
    unexplained_restarts: list[str]
    never_finished: list[str]
    lease_overlaps: list[str]
    handler_overlaps: list[str]
    completed_reruns: list[str]
    lost_locks: list[str]
    unstored: list[str]
    #: The jobs running in a worker when it called ``stop()``.
    running_at_stop: list[str]
    kill_restart: list[float]
    #: Seconds from enqueue to first start, of the jobs enqueued while the workers ran.
    start_latency: list[float]
    errors: dict[str, int]

    @property
    def kill_restart_p50(self) -> float | None:
        return statistics.median(self.kill_restart) if self.kill_restart else None

    def summary(self) -> dict[str, Any]:
        """Counts (not lists), for reports and assertion messages."""
        delays = sorted(self.kill_restart)
        return {
            "jobs": self.jobs,
            "lost": len(self.lost),
            "started_more_than_once": len(self.started_more_than_once),
            "unexplained_restarts": len(self.unexplained_restarts),
            "never_finished": len(self.never_finished),
            "lease_overlaps": len(self.lease_overlaps),
            "handler_overlaps": len(self.handler_overlaps),
            "completed_reruns": len(self.completed_reruns),
            "lost_locks": len(self.lost_locks),
            "unstored": len(self.unstored),
            "running_at_stop": len(self.running_at_stop),
            "kill_restart_n": len(delays),
            "kill_restart_p50": None if not delays else round(statistics.median(delays), 2),
            "kill_restart_max": None if not delays else round(delays[-1], 2),
            **_percentiles("start_latency", self.start_latency),
            "errors": dict(self.errors),
        }


def _percentiles(name: str, values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {f"{name}_p50": None, f"{name}_p99": None, f"{name}_max": None}
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return {f"{name}_p50": round(statistics.median(ordered), 3),
            f"{name}_p99": round(p99, 3), f"{name}_max": round(ordered[-1], 3)}


def attempts_of(events: Iterable[dict[str, Any]]) -> list[Attempt]:
    """The attempts the events describe, with their kills applied, in start order."""
    attempts: dict[str, Attempt] = {}
    kills: dict[int, float] = {}
    for event in events:
        kind = event["kind"]
        if kind == "start":
            attempts[event["attempt"]] = Attempt(
                id=event["attempt"], job=event["job"], pid=int(event["pid"]),
                start=float(event["t"]), lock=float(event["lock"]))
        elif kind == "kill":
            kills[int(event["pid"])] = float(event["t"])
        elif (attempt := attempts.get(event.get("attempt", ""))) is not None:
            _apply(attempt, kind, event)
    for attempt in attempts.values():
        kill = kills.get(attempt.pid)
        if kill is not None and (attempt.returned is None or attempt.returned > kill):
            attempt.killed = kill
        elif kill is not None and attempt.completed is None:
            attempt.died_unreported = True
    return sorted(attempts.values(), key=lambda a: a.start)


def _apply(attempt: Attempt, kind: str, event: dict[str, Any]) -> None:
    if kind == "touch":
        attempt.lock = max(attempt.lock, float(event["lock"]))
    elif kind == "return":
        attempt.returned = float(event["t"])
    elif kind == "success":
        attempt.completed = float(event["t"])
    elif kind == "lost":
        attempt.lost_lock = True
    elif kind == "unstored":
        attempt.unstored = True


def count(events: list[dict[str, Any]], enqueued: Iterable[str], lock_lifetime: float,
          stored: set[str] | None = None) -> Findings:
    """Apply the counting rules to a finished run (``lock_lifetime`` in seconds). ``stored``:
    the jobs the store holds as completed (a worker killed between its end write and its
    ``success`` event leaves only the store to tell)."""
    by_job: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in attempts_of(events):
        by_job[attempt.job].append(attempt)
    jobs = list(enqueued)
    kills = {int(e["pid"]) for e in events if e["kind"] == "kill"}
    findings: dict[str, list[str]] = defaultdict(list)
    delays: list[float] = []
    for job in jobs:
        runs = by_job.get(job, [])
        if not any(a.is_completed for a in runs) and job not in (stored or ()):
            findings["lost"].append(job)
        if len(runs) > 1:
            findings["started_more_than_once"].append(job)
        findings["never_finished"] += [a.id for a in runs
                                      if a.returned is None and a.pid not in kills]
        if any(a.lost_lock for a in runs):
            findings["lost_locks"].append(job)
        if any(a.unstored for a in runs):
            findings["unstored"].append(job)
        _pairs(job, runs, lock_lifetime, findings)
        delays += [later.start - earlier.killed for earlier, later in pairwise(runs)
                   if earlier.killed is not None]
    of_attempt = {a.id: a.job for runs in by_job.values() for a in runs}
    findings["running_at_stop"] = [of_attempt[a] for e in events if e["kind"] == "stop"
                                   for a in e["running"] if a in of_attempt]
    errors = Counter(_error_kind(e) for e in events if e["kind"] == "error")
    enqueued_at = {e["job"]: float(e["t"]) for e in events if e["kind"] == "enqueue"}
    latency = [by_job[job][0].start - enqueued_at[job] for job in jobs
               if by_job.get(job) and job in enqueued_at]
    return Findings(jobs=len(jobs), kill_restart=delays, start_latency=latency,
                    errors=dict(errors),
                    **{field: sorted(set(findings[field])) for field in _LISTS})


def _error_kind(event: dict[str, Any]) -> str:
    """An error event's type and the start of its message, ids and numbers left out."""
    message = re.sub(r"[0-9a-f-]{8,}|\d+", "#", str(event.get("message", "")))
    return f"{event['error']}: {message[:70]}"


_LISTS = ("lost", "started_more_than_once", "unexplained_restarts", "never_finished",
          "lease_overlaps", "handler_overlaps", "completed_reruns", "lost_locks", "unstored",
          "running_at_stop")


def _pairs(job: str, runs: list[Attempt], lock_lifetime: float,
           findings: dict[str, list[str]]) -> None:
    """The rules that compare a job's attempts with the ones started before them."""
    for index, later in enumerate(runs[1:], start=1):
        earlier = runs[:index]
        previous = earlier[-1]
        cut = (previous.killed is not None or previous.died_unreported or previous.lost_lock
               or previous.unstored or previous.returned is None
               or previous.returned > previous.lease_end(lock_lifetime))
        if not cut:
            findings["unexplained_restarts"].append(job)
        if any(later.start < a.held_until(lock_lifetime) - CLOCK_TOLERANCE for a in earlier):
            findings["lease_overlaps"].append(job)
        if any(later.start < a.live_until() for a in earlier):
            findings["handler_overlaps"].append(job)
        if any(a.is_completed for a in earlier):
            findings["completed_reruns"].append(job)
