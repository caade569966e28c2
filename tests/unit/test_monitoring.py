"""What a started Agenda reports about its own work (the claim and poll events) and what the
monitoring built on them makes of it: metric values, the health answer when the store fails,
and OpenTelemetry spans around job runs. On the in-memory store, with the real clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agenda_decl import Agenda, Job
from agenda_decl._clock import utcnow
from agenda_decl.monitoring import WorkerHealth, WorkerMetrics, install_tracing
from agenda_decl.runtime.events import ClaimReport, PollReport
from agenda_decl.testing import InMemoryBackend

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)  # once per process: this module owns it
    return _EXPORTER


def worker() -> Agenda:
    agenda = Agenda(InMemoryBackend(), process_every="100 ms")

    async def ok(job: Job[Any]) -> None:
        inner = trace.get_current_span()
        job.attrs.data["span"] = inner.get_span_context().span_id

    def boom(job: Job[Any]) -> None:
        raise RuntimeError("boom")

    agenda.define("ok", ok)
    agenda.define("boom", boom)
    return agenda


async def until(check: Any, seconds: float = 5) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_claims_and_polls_are_reported() -> None:
    agenda = worker()
    claims: list[ClaimReport] = []
    polls: list[PollReport] = []
    agenda.on("claim", claims.append)
    agenda.on("poll", polls.append)
    await agenda.start()
    try:
        await agenda.now("ok", {})
        await until(lambda: any(c.claimed for c in claims) and len(polls) >= 2)
    finally:
        await agenda.stop()
    assert {claim.name for claim in claims} == {"ok", "boom"}
    assert all(claim.seconds >= 0 and claim.error is None for claim in claims)
    assert all(poll.error is None for poll in polls)


async def test_metrics_count_the_runs_of_this_worker() -> None:
    agenda = worker()
    metrics = WorkerMetrics(agenda)
    done: list[Any] = []
    agenda.on("complete", done.append)
    await agenda.start()
    try:
        for _ in range(2):
            await agenda.now("ok", {})
        await agenda.now("boom", {})
        await until(lambda: len(done) == 3)
        await metrics.refresh()
    finally:
        await agenda.stop()

    def sample(metric: str, /, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(metric, labels)

    assert sample("agenda_decl_jobs_started_total", name="ok") == 2
    assert sample("agenda_decl_jobs_succeeded_total", name="ok") == 2
    assert sample("agenda_decl_jobs_failed_total", name="boom") == 1
    assert sample("agenda_decl_jobs_completed_total", name="boom") == 1
    assert sample("agenda_decl_job_duration_seconds_count", name="ok") == 2
    assert sample("agenda_decl_jobs_running", name="ok") == 0
    assert sample("agenda_decl_stored_jobs", name="ok", state="completed") == 2
    assert sample("agenda_decl_notification_channel_state",
                  agenda_decl_notification_channel_state="connected") == 1


async def test_metrics_count_a_run_found_unfinished_once() -> None:
    """A takeover of a run that never finished counts as abandoned, not as a failed run."""
    agenda = worker()
    metrics = WorkerMetrics(agenda)
    done: list[Any] = []
    agenda.on("complete", done.append)
    crashed = await agenda.create("ok", {}).save()
    crashed.attrs.last_run_at = crashed.attrs.locked_at = utcnow() - timedelta(hours=1)
    await agenda.repository.save_job_state(crashed.attrs)
    await agenda.start()
    try:
        await until(lambda: len(done) == 1)
    finally:
        await agenda.stop()
    assert metrics.registry.get_sample_value("agenda_decl_runs_abandoned_total",
                                             {"name": "ok"}) == 1
    assert metrics.registry.get_sample_value("agenda_decl_jobs_failed_total",
                                             {"name": "ok"}) in (None, 0)
    assert metrics.registry.get_sample_value("agenda_decl_jobs_succeeded_total",
                                             {"name": "ok"}) == 1


async def test_health_turns_503_when_claims_fail() -> None:
    agenda = worker()
    health = WorkerHealth(agenda)
    assert health.report()[0] == 503  # not running yet
    await agenda.start()
    health.phase = "running"
    try:
        await until(lambda: health.report()[0] == 200)
        assert health.report()[1]["store"]["reachable"] is True

        async def down(*_args: Any, **_kwargs: Any) -> Any:
            raise ConnectionError("connection to postgresql://app:s3cret@db/x refused")

        agenda.repository.get_next_jobs_to_run = down  # type: ignore[method-assign]
        await until(lambda: health.report()[0] == 503)
    finally:
        await agenda.stop()
    _status, body = health.report()
    assert body["status"] == "unhealthy" and body["store"]["reachable"] is False
    assert "s3cret" not in body["store"]["error"] and "app:***@db" in body["store"]["error"]


async def test_job_runs_become_spans(spans: InMemorySpanExporter) -> None:
    agenda = worker()
    install_tracing(agenda)
    done: list[Job[Any]] = []
    agenda.on("complete", done.append)
    await agenda.start()
    try:
        await agenda.now("ok", {})
        await agenda.now("boom", {})
        await until(lambda: len(done) == 2)
    finally:
        await agenda.stop()
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert set(finished) >= {"job ok", "job boom"}
    assert finished["job boom"].status.status_code == trace.StatusCode.ERROR
    assert finished["job boom"].events[0].name == "exception"
    ok_job = next(job for job in done if job.attrs.name == "ok")
    # the handler ran inside its span
    assert ok_job.attrs.data["span"] == finished["job ok"].context.span_id
    assert finished["job ok"].attributes is not None
    assert finished["job ok"].attributes["agenda.job.name"] == "ok"
