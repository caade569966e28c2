"""The job log as a user of the scheduler sees it, on every backend: which entries a run
writes (Agenda 6.2's events, levels, messages and fields), for which jobs, and what a failure's
entry holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agenda_decl import Agenda, Job, JobLogEntry, JobLogQuery, backoff
from agenda_decl.interfaces import AgendaBackend
from agenda_decl.testing import EventRecorder
from tests.backends import BACKENDS
from tests.backends.job_logs import make_logged_backend


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> AsyncIterator[AgendaBackend]:
    async with make_logged_backend(request.param, tmp_path) as made:
        yield made


@pytest.fixture
async def agendas(backend: AgendaBackend) -> AsyncIterator[list[Agenda]]:
    made: list[Agenda] = []
    yield made
    for agenda in made:
        await agenda.stop(close_connection=False)


def make(agendas: list[Agenda], backend: AgendaBackend, **options: Any) -> Agenda:
    options.setdefault("logging", True)
    agenda = Agenda(backend, name="log-worker", process_every="100 ms", **options)
    agendas.append(agenda)
    return agenda


async def entries_of(agenda: Agenda, **query: Any) -> list[JobLogEntry]:
    result = await agenda.get_logs(JobLogQuery(sort="asc", limit=None, **query))
    return result.entries


def events(entries: list[JobLogEntry]) -> list[str]:
    return [e.event for e in entries]


async def test_a_run_writes_locked_start_success_complete(
    agendas: list[Agenda], backend: AgendaBackend
) -> None:
    agenda = make(agendas, backend)
    agenda.define("send", lambda job: None)
    recorder = EventRecorder(agenda)
    await agenda.start()
    job = await agenda.now("send", {"to": "a@b.c"})
    await recorder.wait_for("complete")
    found = await entries_of(agenda, job_id=job.attrs.id)
    assert sorted(events(found)) == sorted(["locked", "start", "success", "complete"])
    by_event = {e.event: e for e in found}
    assert [(by_event[k].level, by_event[k].message) for k in events(found)] == [
        {"locked": ("debug", "job locked"), "start": ("info", "job started"),
         "success": ("info", "job succeeded"), "complete": ("info", "job complete")}[k]
        for k in events(found)
    ]
    assert {(e.job_id, e.job_name, e.agenda_name) for e in found} == {
        (job.attrs.id, "send", "log-worker")}
    assert by_event["success"].duration is not None and by_event["success"].duration >= 0
    assert by_event["complete"].duration == by_event["success"].duration
    assert by_event["start"].duration is None
    assert all(e.error is None and e.fail_count is None for e in found)


async def test_a_failure_writes_its_traceback_and_the_retries(
    agendas: list[Agenda], backend: AgendaBackend
) -> None:
    agenda = make(agendas, backend)

    async def flaky(job: Job[Any]) -> None:
        raise ConnectionError("cannot reach postgresql://app:s3cret@db/jobs")

    agenda.define("flaky", flaky, backoff=backoff.constant(delay=50, max_retries=1))
    recorder = EventRecorder(agenda)
    await agenda.start()
    job = await agenda.now("flaky")
    await recorder.wait_for("retry exhausted")
    await recorder.wait_for("complete", count=2)
    found = await entries_of(agenda, job_id=job.attrs.id, event=["fail", "retry",
                                                                  "retry:exhausted"])
    assert events(found) == ["fail", "retry", "fail", "retry:exhausted"]
    first_fail, retry, second_fail, exhausted = found
    reason = "cannot reach postgresql://app:***@db/jobs"
    assert (first_fail.level, first_fail.message, first_fail.fail_count) == (
        "error", f"job failed: {reason}", 1)
    assert first_fail.error is not None
    assert first_fail.error.startswith("Traceback (most recent call last):")
    assert "in flaky" in first_fail.error
    assert first_fail.error.endswith(f"ConnectionError: {reason}")
    assert "s3cret" not in first_fail.error
    assert (retry.level, retry.message, retry.retry_delay, retry.retry_attempt,
            retry.error) == ("info", "retry #1 scheduled in 50ms", 50, 1, reason)
    assert second_fail.fail_count == 2
    assert (exhausted.level, exhausted.message, exhausted.error, exhausted.fail_count) == (
        "warn", f"retry exhausted after 2 failures: {reason}", reason, 2)
    errors = await agenda.get_logs(JobLogQuery(level="error", job_name="flaky"))
    assert errors.total == 2


async def test_a_definition_can_opt_out_or_in(
    agendas: list[Agenda], backend: AgendaBackend
) -> None:
    agenda = make(agendas, backend, logging={"default": False})
    agenda.define("quiet", lambda job: None)
    agenda.define("loud", lambda job: None, logging=True)
    recorder = EventRecorder(agenda)
    await agenda.start()
    await agenda.now("quiet")
    await agenda.now("loud")
    await recorder.wait_for("complete", count=2)
    found = await entries_of(agenda)
    assert {e.job_name for e in found} == {"loud"}
    assert len(found) == 4


async def test_clear_logs_through_the_agenda(
    agendas: list[Agenda], backend: AgendaBackend
) -> None:
    agenda = make(agendas, backend)
    agenda.define("a", lambda job: None)
    agenda.define("b", lambda job: None, logging=False)
    recorder = EventRecorder(agenda)
    await agenda.start()
    await agenda.now("a")
    await recorder.wait_for("complete")
    assert await agenda.clear_logs(job_name="a", event="locked") == 1
    assert await agenda.clear_logs() == 3
    assert (await agenda.get_logs()).total == 0


async def test_an_agenda_that_does_not_log_writes_and_reads_nothing(
    agendas: list[Agenda], backend: AgendaBackend
) -> None:
    assert backend.logger is not None
    agenda = make(agendas, backend, logging=False)
    agenda.define("x", lambda job: None)
    recorder = EventRecorder(agenda)
    await agenda.start()
    await agenda.now("x")
    await recorder.wait_for("complete")
    await asyncio.sleep(0.1)
    assert (await backend.logger.get_logs()).total == 0
    assert (await agenda.get_logs()).total == 0
    assert await agenda.clear_logs() == 0
