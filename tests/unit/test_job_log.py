"""The Agenda's job log writer (agenda_decl.runtime.job_log): the logging option, writes off
the job's path (a failing or hanging logger never fails or delays a job), the bound on what
waits, retention on write, and what a failure's entry holds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from agenda_decl import (
    Agenda,
    InvalidOptionError,
    Job,
    JobLogEntry,
    JobLogQuery,
    JobsQueryOptions,
)
from agenda_decl._clock import utcnow
from agenda_decl._job_log import MAX_ERROR_CHARS, JobLogRetention, bounded, format_failure
from agenda_decl.interfaces import AgendaBackend, JobLogger, JobRepository
from agenda_decl.runtime import job_log
from agenda_decl.runtime.job_log import JobLogWriteError, choose_logger
from agenda_decl.testing import EventRecorder, FakeClock, InMemoryBackend, InMemoryJobLogger


class BrokenLogger(InMemoryJobLogger):
    """Every write fails (or, with ``hang``, never returns)."""

    def __init__(self, *, hang: bool = False) -> None:
        super().__init__()
        self.hang = hang
        self.calls = 0
        self.release = asyncio.Event()

    async def log_many(self, entries: Sequence[JobLogEntry]) -> None:
        self.calls += 1
        if self.hang:
            await self.release.wait()
            return
        raise ConnectionError("log store down: postgresql://u:pw@db/x")


class NoLoggerBackend(AgendaBackend):
    def __init__(self) -> None:
        self._inner = InMemoryBackend()

    @property
    def repository(self) -> JobRepository:
        return self._inner.repository


def errors_of(agenda: Agenda) -> list[BaseException]:
    seen: list[BaseException] = []
    agenda.on("error", seen.append)
    return seen


async def run_one(agenda: Agenda, name: str = "work", **options: Any) -> Job[Any]:
    recorder = EventRecorder(agenda)
    if name not in agenda.definitions:
        agenda.define(name, lambda job: None, **options)
    await agenda.start()
    job = await agenda.now(name)
    await recorder.wait_for("complete", job_name=name)
    return job


# -- the option -------------------------------------------------------------------------------


def test_the_logging_option_picks_the_logger_and_the_default() -> None:
    plain, logged = InMemoryBackend(), InMemoryBackend(logging=True)
    own = InMemoryJobLogger()
    assert choose_logger(None, plain) == (None, True)
    assert choose_logger(None, logged) == (logged.logger, True)
    assert choose_logger(False, logged) == (None, True)
    assert choose_logger(True, plain) == (plain.logger, True)
    assert choose_logger(own, plain) == (own, True)
    assert choose_logger({"default": False}, plain) == (plain.logger, False)
    assert choose_logger({"logger": own}, plain) == (own, True)


@pytest.mark.parametrize("option", [{"loger": 1}, {"default": "no"}, {"logger": "x"}, "yes", 1])
def test_a_wrong_logging_option_is_refused(option: Any) -> None:
    with pytest.raises(InvalidOptionError):
        Agenda(InMemoryBackend(), logging=option)


def test_logging_true_needs_a_logger() -> None:
    with pytest.raises(InvalidOptionError, match="no built-in job logger"):
        Agenda(NoLoggerBackend(), logging=True)
    Agenda(NoLoggerBackend(), logging=InMemoryJobLogger())


def test_a_definitions_logging_is_a_bool() -> None:
    agenda = Agenda(InMemoryBackend())
    with pytest.raises(InvalidOptionError):
        agenda.define("x", lambda job: None, logging="no")
    assert agenda.define("y", lambda job: None, logging=False).logging is False


async def test_a_backend_built_with_logging_logs_unless_told_not_to() -> None:
    backend = InMemoryBackend(logging=True)
    agenda = Agenda(backend, process_every="50 ms")
    await run_one(agenda)
    assert backend.logger is not None
    assert (await agenda.get_logs()).total == 4
    await agenda.stop()
    quiet = Agenda(InMemoryBackend(logging=True), logging=False, process_every="50 ms")
    await run_one(quiet)
    assert (await quiet.get_logs()).total == 0
    assert quiet.backend.logger is not None
    assert (await quiet.backend.logger.get_logs()).total == 0
    await quiet.stop()


# -- fire and forget --------------------------------------------------------------------------


async def test_a_failing_logger_never_fails_a_job_and_is_reported_once() -> None:
    logger = BrokenLogger()
    agenda = Agenda(InMemoryBackend(), logging=logger, process_every="50 ms")
    errors = errors_of(agenda)
    await run_one(agenda, "a")
    await run_one(agenda, "b")
    await agenda.job_log.settle()
    stored = await agenda.query_jobs(JobsQueryOptions())
    assert {job.state for job in stored.jobs} == {"completed"}
    reports = [e for e in errors if isinstance(e, JobLogWriteError)]
    assert len(reports) == 1  # at most one a minute
    assert "entries not written" in str(reports[0])
    assert "pw@" not in str(reports[0])
    assert isinstance(reports[0].__cause__, ConnectionError)
    await agenda.stop()


async def test_a_hanging_logger_never_delays_a_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_log, "FLUSH_TIMEOUT_S", 0.2)
    logger = BrokenLogger(hang=True)
    agenda = Agenda(InMemoryBackend(), logging=logger, process_every="50 ms")
    errors = errors_of(agenda)
    async with asyncio.timeout(3):
        await run_one(agenda)
    started = asyncio.get_running_loop().time()
    await agenda.stop()
    assert asyncio.get_running_loop().time() - started < 2
    await asyncio.sleep(0.05)  # error events go out as tasks
    reports = [e for e in errors if isinstance(e, JobLogWriteError)]
    assert reports and "of stopping" in str(reports[-1])


async def test_entries_beyond_the_bound_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(job_log, "MAX_PENDING", 3)
    logger = BrokenLogger(hang=True)
    agenda = Agenda(InMemoryBackend(), logging=logger, process_every="50 ms")
    errors = errors_of(agenda)
    await run_one(agenda)  # locked, start, success, complete: one in flight, three wait
    await run_one(agenda, "second")
    await asyncio.sleep(0.05)
    assert any("too many entries waiting" in str(e) for e in errors)
    logger.release.set()
    await agenda.stop()


async def test_a_run_that_outlives_stop_writes_nothing_after_it() -> None:
    logger = InMemoryJobLogger()
    agenda = Agenda(InMemoryBackend(), logging=logger, process_every="50 ms")
    release = asyncio.Event()

    async def slow(job: Job[Any]) -> None:
        await release.wait()

    agenda.define("slow", slow)
    recorder = EventRecorder(agenda)
    await agenda.start()
    await agenda.now("slow")
    await recorder.wait_for("start")
    await agenda.stop()
    release.set()
    await recorder.wait_for("complete")
    assert [e.event for e in logger.entries] == ["locked", "start"]


async def test_a_run_past_its_lock_lifetime_logs_expired() -> None:
    logger = InMemoryJobLogger()
    agenda = Agenda(InMemoryBackend(), logging=logger, process_every="50 ms")

    async def slow(job: Job[Any]) -> None:
        await asyncio.sleep(0.4)

    agenda.define("slow", slow, lock_lifetime=100)
    recorder = EventRecorder(agenda)
    await agenda.start()
    await agenda.now("slow")
    await recorder.wait_for("complete")
    await agenda.stop()
    expired = [e for e in logger.entries if e.event == "expired"]
    assert len(expired) == 1
    assert (expired[0].level, expired[0].message) == (
        "warn", "job expired (lock lifetime exceeded)")


async def test_a_run_found_unfinished_logs_expired_once() -> None:
    """The worker that takes over a run that never finished writes Node's ``expired`` entry
    for it (not a ``fail`` of its own run, which then succeeds)."""
    logger = InMemoryJobLogger()
    agenda = Agenda(InMemoryBackend(), logging=logger, process_every="50 ms")
    agenda.define("crashy", lambda job: None, lock_lifetime=100)
    recorder = EventRecorder(agenda)
    crashed = await agenda.create("crashy").save()
    crashed.attrs.last_run_at = crashed.attrs.locked_at = utcnow() - timedelta(seconds=1)
    await agenda.repository.save_job_state(crashed.attrs)
    await agenda.start()
    await recorder.wait_for("complete")
    await agenda.stop()
    events = [e.event for e in logger.entries]
    assert events == ["locked", "expired", "start", "success", "complete"]
    expired = logger.entries[1]
    assert expired.level == "warn" and "never finished" in expired.message
    assert expired.fail_count == 1


async def test_one_milliseconds_entries_get_increasing_timestamps() -> None:
    clock = FakeClock()
    logger = InMemoryJobLogger()
    agenda = Agenda(InMemoryBackend(), logging=logger, clock=clock, process_every="50 ms")
    await run_one(agenda)
    await agenda.stop()
    stamps = [e.timestamp for e in logger.entries]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[-1] - stamps[0] < timedelta(milliseconds=1)


# -- retention --------------------------------------------------------------------------------


class CountingLogger(InMemoryJobLogger):
    def __init__(self) -> None:
        super().__init__(retention=JobLogRetention(max_entries=2))
        self.prunes = 0

    async def prune(self, now: Any) -> int:
        self.prunes += 1
        return await super().prune(now)


async def test_retention_runs_on_write_at_most_once_a_minute() -> None:
    clock = FakeClock()
    logger = CountingLogger()
    agenda = Agenda(InMemoryBackend(), logging=logger, clock=clock, process_every="50 ms")
    await run_one(agenda)
    await agenda.job_log.settle()
    await asyncio.sleep(0.05)
    assert logger.prunes == 1
    assert len(logger.entries) <= 4
    await run_one(agenda, "again")
    await asyncio.sleep(0.05)
    assert logger.prunes == 1
    clock.advance(timedelta(minutes=1))
    await run_one(agenda, "later")
    await asyncio.sleep(0.05)
    assert logger.prunes == 2
    await agenda.stop()


# -- a failure's error ------------------------------------------------------------------------


def _raise_chained() -> BaseException:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("redis://:hunter2@cache:6379/0 refused") from inner
    except RuntimeError as error:
        return error


def test_a_failure_is_its_traceback_with_secrets_masked() -> None:
    text = format_failure(_raise_chained())
    assert text.startswith("Traceback (most recent call last):")
    assert "KeyError: 'inner'" in text
    assert "direct cause" in text
    assert text.endswith("RuntimeError: redis://:***@cache:6379/0 refused")
    assert "hunter2" not in text


def test_a_long_traceback_keeps_its_start_and_its_end() -> None:
    error = ValueError("x" * 20_000 + " the end")
    text = format_failure(error)
    assert len(text) == MAX_ERROR_CHARS
    assert text.startswith("ValueError: xxx")
    assert text.endswith("x the end")
    assert "characters cut] ..." in text
    assert bounded("short") == "short"


async def test_get_logs_without_a_logger_is_empty() -> None:
    agenda = Agenda(InMemoryBackend())
    assert (await agenda.get_logs(JobLogQuery(job_name="x"))).total == 0
    assert await agenda.clear_logs() == 0


def test_job_logger_is_the_contract_of_every_built_in_logger() -> None:
    from agenda_decl.backends.memory import InMemoryJobLogger as Memory

    assert issubclass(Memory, JobLogger)
