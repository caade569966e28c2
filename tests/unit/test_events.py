"""Typed events: one argument shape per event, whether the job ran here or another worker's
state notification was relayed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from agenda_decl import (
    Agenda,
    AgendaError,
    InMemoryNotificationChannel,
    Job,
    JobId,
    JobParameters,
    JobStateNotification,
    RetryDetails,
)
from agenda_decl.runtime.events import JobEvent, RemoteJob
from agenda_decl.testing import EventRecorder, FakeClock, InMemoryBackend

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def local_job() -> Job[Any]:
    agenda = Agenda(InMemoryBackend(), clock=FakeClock(NOW))
    agenda.define("report", lambda job: None)
    job = agenda.create("report", {"k": 1})
    job.attrs.id = JobId("7")
    return job


def relayed(kind: Any, **fields: Any) -> JobEvent:
    notification = JobStateNotification(
        type=kind, job_id=JobId("7"), job_name="report", timestamp=NOW, source="other", **fields
    )
    return JobEvent.relayed(notification, NOW)


def shape(arguments: tuple[Any, ...]) -> list[str]:
    def kind(argument: Any) -> str:
        if isinstance(argument, BaseException):
            return "error"
        if isinstance(argument, Job | RemoteJob):
            return "job"
        if isinstance(argument, RetryDetails):
            return "details"
        return type(argument).__name__

    return [kind(argument) for argument in arguments]


def test_local_and_relayed_events_have_the_same_shape() -> None:
    job, error = local_job(), ValueError("boom")
    job.fail(error)
    retry_at = NOW + timedelta(seconds=5)
    local = {
        "start": JobEvent(name="start", job=job),
        "fail": JobEvent(name="fail", job=job, error=error),
        "retry": JobEvent.retry(job, error=error, delay=5000),
        "progress": JobEvent(name="progress", job=job, progress=0.5),
    }
    remote = {
        "start": relayed("start"),
        "fail": relayed("fail", error="boom", fail_count=1),
        "retry": relayed("retry", error="boom", retry_at=retry_at, retry_attempt=1),
        "progress": relayed("progress", progress=0.5),
    }
    for name in local:
        assert shape(local[name].arguments()) == shape(remote[name].arguments()), name
    assert shape(local["fail"].arguments()) == ["error", "job"]
    assert shape(local["retry"].arguments()) == ["job", "details"]
    fail_error, fail_job = remote["fail"].arguments()
    assert isinstance(fail_error, AgendaError) and str(fail_error) == "boom"
    assert (fail_job.attrs.id, fail_job.attrs.name, fail_job.attrs.fail_count) == ("7", "report", 1)
    retry_job, details = remote["retry"].arguments()
    assert isinstance(details, RetryDetails)
    assert (details.attempt, details.delay, details.next_run_at) == (1, 0, retry_at)
    assert retry_job.attrs.next_run_at == retry_at
    assert remote["progress"].arguments()[1] == 0.5


def test_a_relayed_notification_without_error_text_says_so() -> None:
    error, job = relayed("fail").arguments()
    assert str(error) == "Unknown error" and job.attrs.fail_reason is None


async def test_one_listener_serves_local_and_relayed_events() -> None:
    channel = InMemoryNotificationChannel()
    agenda = Agenda(InMemoryBackend(notifications=False), notification_channel=channel,
                    name="here", process_every="50 ms")
    agenda.define("report", lambda job: None)
    heard: list[tuple[str, bool]] = []
    done = asyncio.Event()

    def on_complete(job: Job[Any] | RemoteJob) -> None:
        heard.append((job.attrs.name, isinstance(job, RemoteJob)))
        if len(heard) == 2:
            done.set()

    agenda.on("complete:report", on_complete)
    recorder = EventRecorder(agenda)
    await agenda.start()
    await agenda.now("report")
    await recorder.wait_for("complete")
    await channel.publish_state(JobStateNotification(
        type="complete", job_id=JobId("9"), job_name="report", timestamp=NOW, source="there",
    ))
    await asyncio.wait_for(done.wait(), 5)
    await agenda.stop()
    assert sorted(heard) == [("report", False), ("report", True)]
    # the recorder keeps this Agenda's own jobs only
    assert [(e.event, e.job_name) for e in recorder.of("complete")] == [("complete", "report")]


def test_a_remote_job_reads_like_a_job() -> None:
    job = RemoteJob.of(JobStateNotification(
        type="success", job_id=JobId("7"), job_name="report", timestamp=NOW,
        last_run_at=NOW, last_finished_at=NOW + timedelta(seconds=1), duration=1000,
    ))
    assert isinstance(job.attrs, JobParameters)
    assert (job.attrs.last_run_at, job.attrs.data) == (NOW, None)
    assert job.notification.duration == 1000
