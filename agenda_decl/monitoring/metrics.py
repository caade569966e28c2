"""Prometheus metrics of one worker, fed by its Agenda's events (no patching of the runtime).

Counters and histograms count the runs of this worker (jobs other workers ran, relayed to
it, are left out); the queue gauges read the store when scraped, so every worker reports the
same store-wide numbers (aggregate them with ``max``, not ``sum``).

========================================================  ==========================================
``agenda_decl_jobs_started_total{name}``                  runs started
``agenda_decl_jobs_succeeded_total{name}``                runs that succeeded
``agenda_decl_jobs_failed_total{name}``                   runs that failed
``agenda_decl_jobs_completed_total{name}``                runs that ended (succeeded or failed)
``agenda_decl_job_duration_seconds{name}``                histogram: start to end of a run
``agenda_decl_jobs_running{name}``                        runs going on now
``agenda_decl_queue_size{name}``                          jobs due and waiting (state ``queued``)
``agenda_decl_stored_jobs{name,state}``                   stored jobs by computed state
``agenda_decl_claim_duration_seconds{name}``              histogram: one claim from the store
``agenda_decl_claims_failed_total{name}``                 claims the store failed
``agenda_decl_lock_lost_total{name}``                     runs whose lock another worker took
``agenda_decl_runs_abandoned_total{name}``                runs that never finished (found when
                                                          the job was claimed again)
``agenda_decl_notification_channel_state{..._state}``     the channel's state (``none``: no channel)
``agenda_decl_last_successful_poll_timestamp_seconds``    when the last poll succeeded
========================================================  ==========================================
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, get_args

from agenda_decl._model import JOB_STATES, NotificationChannelState
from agenda_decl.agenda import Agenda
from agenda_decl.errors import AbandonedRunError, LockLostError
from agenda_decl.job import Job
from agenda_decl.runtime.events import ClaimReport, PollReport

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MISSING_EXTRA", "WorkerMetrics"]

MISSING_EXTRA = ("metrics need the prometheus-client package: "
                 "pip install 'agenda-decl[metrics]'")
_CHANNEL_STATES = [*get_args(NotificationChannelState), "none"]
#: How long queue numbers read from the store are reused between scrapes.
_STORE_READ_EVERY_S = 5.0
_STORE_READ_TIMEOUT_S = 3.0


class WorkerMetrics:
    """The metrics of a worker's Agenda in a registry of their own (``registry``), with the
    process metrics (CPU, memory, open files) beside them."""

    def __init__(self, agenda: Agenda) -> None:
        try:
            import prometheus_client as prom
        except ImportError as error:
            raise ImportError(MISSING_EXTRA) from error
        self.agenda = agenda
        self.registry: CollectorRegistry = prom.CollectorRegistry()
        for collector in (prom.ProcessCollector, prom.PlatformCollector, prom.GCCollector):
            collector(registry=self.registry)
        self._define(prom)
        self._started: dict[str, float] = {}
        self._store_read_at = 0.0
        agenda.on("start", self._on_start)
        agenda.on("success", self._on_success)
        agenda.on("fail", self._on_fail)
        agenda.on("complete", self._on_complete)
        agenda.on("claim", self._on_claim)
        agenda.on("poll", self._on_poll)
        agenda.on("error", self._on_error)

    def _define(self, prom: Any) -> None:
        def counter(name: str, text: str) -> Any:
            return prom.Counter(f"agenda_decl_{name}", text, ["name"], registry=self.registry)

        self.started = counter("jobs_started", "Runs started by this worker.")
        self.succeeded = counter("jobs_succeeded", "Runs of this worker that succeeded.")
        self.failed = counter("jobs_failed", "Runs of this worker that failed.")
        self.completed = counter("jobs_completed", "Runs of this worker that ended.")
        self.claims_failed = counter("claims_failed", "Claims of due jobs the store failed.")
        self.lock_lost = counter("lock_lost", "Runs whose lock another worker took over.")
        self.abandoned = counter("runs_abandoned", "Runs that never finished (the worker "
                                 "stopped or overran lock_lifetime), found on the next claim.")
        self.duration = prom.Histogram(
            "agenda_decl_job_duration_seconds", "How long runs took.", ["name"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
            registry=self.registry)
        self.claim_duration = prom.Histogram(
            "agenda_decl_claim_duration_seconds", "How long one claim from the store took.",
            ["name"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=self.registry)
        self.running = prom.Gauge("agenda_decl_jobs_running", "Runs going on now.", ["name"],
                                  registry=self.registry)
        self.queue_size = prom.Gauge(
            "agenda_decl_queue_size", "Jobs due and waiting for a worker (state queued).",
            ["name"], registry=self.registry)
        self.stored = prom.Gauge("agenda_decl_stored_jobs", "Stored jobs by computed state.",
                                 ["name", "state"], registry=self.registry)
        self.channel = prom.Enum(
            "agenda_decl_notification_channel_state", "The notification channel's state.",
            states=_CHANNEL_STATES, registry=self.registry)
        self.last_poll = prom.Gauge(
            "agenda_decl_last_successful_poll_timestamp_seconds",
            "When the last poll of the store succeeded (Unix time).", registry=self.registry)

    # -- events ------------------------------------------------------------------------------

    def _on_start(self, job: Any) -> None:
        if isinstance(job, Job):
            self.started.labels(job.attrs.name).inc()
            self.running.labels(job.attrs.name).inc()
            self._started[str(job.attrs.id)] = time.perf_counter()

    def _on_success(self, job: Any) -> None:
        if isinstance(job, Job):
            self.succeeded.labels(job.attrs.name).inc()

    def _on_fail(self, error: BaseException, job: Any) -> None:
        if isinstance(job, Job):
            self.failed.labels(job.attrs.name).inc()

    def _on_complete(self, job: Any) -> None:
        if not isinstance(job, Job):
            return
        started = self._started.pop(str(job.attrs.id), None)
        if started is None:  # ended without starting (retries of an abandoned run exhausted)
            return
        name = job.attrs.name
        self.completed.labels(name).inc()
        self.running.labels(name).dec()
        self.duration.labels(name).observe(time.perf_counter() - started)

    def _on_claim(self, report: ClaimReport) -> None:
        self.claim_duration.labels(report.name).observe(report.seconds)
        if report.error is not None:
            self.claims_failed.labels(report.name).inc()

    def _on_poll(self, report: PollReport) -> None:
        if report.error is None:
            self.last_poll.set(report.at.timestamp())

    def _on_error(self, error: BaseException) -> None:
        if isinstance(error, LockLostError) and error.job_name:
            self.lock_lost.labels(error.job_name).inc()
        elif isinstance(error, AbandonedRunError) and error.job_name:  # a takeover found it
            self.abandoned.labels(error.job_name).inc()

    # -- read when scraped -------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read what the store and the channel report now (the store at most every few
        seconds; a store that does not answer leaves the last numbers)."""
        channel = self.agenda.channel
        self.channel.state(channel.state if channel is not None else "none")
        if (not self.agenda.is_active_job_processor  # not connected (yet, or any more)
                or time.monotonic() - self._store_read_at < _STORE_READ_EVERY_S):
            return
        self._store_read_at = time.monotonic()
        try:
            overview = await asyncio.wait_for(self.agenda.get_jobs_overview(),
                                              _STORE_READ_TIMEOUT_S)
        except Exception:  # the health check reports the store; metrics keep the last values
            return
        for entry in overview:
            self.queue_size.labels(entry.name).set(entry.queued)
            for state in JOB_STATES:
                self.stored.labels(entry.name, state).set(getattr(entry, state))
