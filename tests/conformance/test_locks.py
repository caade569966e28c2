"""Locks, takeovers, touch, stop and drain, on every backend: a crashed or slow run is taken
over once, a stale holder writes nothing, and stop() behaves the same on every store."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from agenda_decl import (
    AbandonedRunError,
    Agenda,
    Job,
    LockLostError,
    StateWriteError,
    backoff,
)
from agenda_decl._clock import utcnow
from agenda_decl.testing import EventRecorder, FakeClock
from tests.conformance.conftest import MakeAgenda
from tests.conformance.scheduling import Ledger, stored, wait_until

pytestmark = pytest.mark.asyncio


class Takeover:
    """Worker A claims a job whose handler blocks past the lock lifetime without touch();
    worker B (same store, same fake clock moved past B's lifetime) takes the job over and
    blocks in its handler. A polls only once, so it never re-claims its own run."""

    def __init__(self, make_agenda: MakeAgenda) -> None:
        self.clock = FakeClock(utcnow())
        self.a = make_agenda(clock=self.clock, process_every="1 hour", name="worker-a")
        self.b = make_agenda(clock=self.clock, name="worker-b")
        self.runs: list[str] = []
        self.a_started, self.b_started = asyncio.Event(), asyncio.Event()
        self.a_go, self.b_go = asyncio.Event(), asyncio.Event()
        self.touch_errors: list[BaseException] = []
        self.a_errors: list[BaseException] = []
        self.a.on("error", self.a_errors.append)
        self.a_events, self.b_events = EventRecorder(self.a), EventRecorder(self.b)

    async def start(self, *, a_touches: bool = False) -> Job[Any]:
        async def on_a(job: Job[Any]) -> None:
            self.runs.append("a")
            self.a_started.set()
            await self.a_go.wait()
            if a_touches:
                try:
                    await job.touch(99)
                except Exception as error:
                    self.touch_errors.append(error)

        async def on_b(job: Job[Any]) -> None:
            self.runs.append("b")
            self.b_started.set()
            await self.b_go.wait()

        # B judges A's lock stale after a minute; A itself believes in an hour, so its own
        # expiry check never cancels the run first (what is tested is the fencing).
        self.a.define("long", on_a, lock_lifetime="1 hour")
        self.b.define("long", on_b, lock_lifetime="1 minute")
        job = await self.a.now("long")
        await self.a.start()
        await asyncio.wait_for(self.a_started.wait(), 10)
        # A start write is queued while the handler starts: wait until A's is stored (its
        # last_run_at), or B could claim first, fence it out and never see A's run.
        await wait_until(lambda: self._stored_is(job, lambda j: j.last_run_at is not None))
        self.clock.advance(timedelta(minutes=2))  # A's lock is stale now
        await self.b.start()
        await asyncio.wait_for(self.b_started.wait(), 10)
        # Likewise B's start write, which counts A's unfinished run as a failed attempt.
        await wait_until(lambda: self._stored_is(job, lambda j: j.fail_count == 1))
        return job

    async def _stored_is(self, job: Job[Any], condition: Any) -> bool:
        current = await stored(self.a, job)
        return current is not None and bool(condition(current))


async def test_a_stale_holders_final_write_is_rejected(make_agenda: MakeAgenda) -> None:
    """Fencing: after a takeover, the old holder's final write changes nothing (it
    would clear the new holder's lock) and is reported as an error naming the job; the new
    holder's final write is stored. The job ran twice (at-least-once)."""
    takeover = Takeover(make_agenda)
    job = await takeover.start()
    b_lock = (await stored(takeover.a, job)).locked_at
    assert b_lock == takeover.clock.now()
    takeover.a_go.set()
    await takeover.a_events.wait_for("complete", job_name="long")
    after_a = await stored(takeover.a, job)
    assert after_a.locked_at == b_lock
    assert after_a.last_modified_by == "worker-b"
    # B counts A's unfinished run as a failed attempt while B runs; A's result was dropped
    # and reported once, as a lost lock (no success).
    assert after_a.fail_count == 1 and "never finished" in (after_a.fail_reason or "")
    assert after_a.last_finished_at == after_a.failed_at
    lost = [e for e in takeover.a_errors if isinstance(e, LockLostError)]
    assert len(lost) == 1 and job.attrs.id in str(lost[0]) and "long" in str(lost[0])
    assert len(takeover.a_errors) == 1
    assert [e.event for e in takeover.a_events.events] == ["start", "complete"]
    takeover.b_go.set()
    await takeover.b_events.wait_for("complete", job_name="long")
    final = await stored(takeover.a, job)
    assert (final.locked_at, final.last_modified_by) == (None, "worker-b")
    assert final.last_finished_at is not None
    # B ended fine: A's run was slow, not a crash, and is no failed attempt.
    assert (final.fail_count, final.fail_reason, final.state) == (None, None, "completed")
    assert [e.event for e in takeover.b_events.events] == ["start", "success", "complete"]
    assert takeover.runs == ["a", "b"]


async def test_a_zombie_touch_is_rejected(make_agenda: MakeAgenda) -> None:
    """touch() of a run whose lock was taken over raises LockLostError and does not take
    the lock back."""
    takeover = Takeover(make_agenda)
    job = await takeover.start(a_touches=True)
    b_lock = (await stored(takeover.a, job)).locked_at
    takeover.clock.advance(timedelta(seconds=1))
    takeover.a_go.set()
    await takeover.a_events.wait_for("complete", job_name="long")
    assert [type(e) for e in takeover.touch_errors] == [LockLostError]
    assert "long" in str(takeover.touch_errors[0])
    current = await stored(takeover.a, job)
    assert (current.locked_at, current.progress) == (b_lock, None)
    takeover.b_go.set()
    await takeover.b_events.wait_for("complete", job_name="long")


async def test_stop_does_not_unlock_a_queued_job_another_worker_took_over(
    make_agenda: MakeAgenda,
) -> None:
    """A job that waited in A's local queue past its lock lifetime may be B's by now:
    A's stop() must not clear B's lock (an unlock by id is not fenced)."""
    clock, release = FakeClock(utcnow()), asyncio.Event()
    a = make_agenda(clock=clock, process_every="1 hour", name="worker-a")
    b = make_agenda(clock=clock, name="worker-b")
    started: list[str] = []

    async def blocks(job: Job[Any]) -> None:
        started.append(job.attrs.data["who"])
        await release.wait()

    a.define("q", blocks, concurrency=1, lock_lifetime="1 minute")
    b.define("q", blocks, lock_lifetime="1 minute")
    await a.now("q", {"who": "1"})
    queued = await a.now("q", {"who": "2"})
    await a.start()
    await wait_until(lambda: _locked(a, queued))  # claimed by A, waiting behind the first
    clock.advance(timedelta(minutes=2))  # every lock of A is stale now
    await b.start()
    await wait_until(lambda: _held_by(a, queued, "worker-b"))
    b_lock = (await stored(a, queued)).locked_at
    await a.stop(close_connection=False)
    assert (await stored(a, queued)).locked_at == b_lock
    release.set()


async def _locked(agenda: Agenda, job: Job[Any]) -> bool:
    return (await stored(agenda, job)).locked_at is not None


async def _held_by(agenda: Agenda, job: Job[Any], worker: str) -> bool:
    current = await stored(agenda, job)
    return current.locked_at is not None and current.last_modified_by == worker


async def crashed_run(agenda: Agenda, name: str, *, fail_count: int = 0) -> Job[Any]:
    """A job whose worker died mid-run ten minutes ago: started, locked, never finished."""
    job = await agenda.create(name, {"n": 1}).schedule(utcnow() - timedelta(minutes=10)).save()
    job.attrs.last_run_at = job.attrs.locked_at = utcnow() - timedelta(minutes=10)
    job.attrs.fail_count = fail_count
    await agenda.repository.save_job_state(job.attrs)
    return job


async def test_a_run_that_never_finished_counts_until_the_rerun_ends(
    make_agenda: MakeAgenda,
) -> None:
    """Crash recovery reports the unfinished run (an ``error`` event naming the job, not a
    ``fail`` of the new run) and stores it as a failed attempt while the job runs again, so
    a job that keeps killing its worker stops at its retry limit (reliability §0.5). Once
    the rerun ends fine the attempt is withdrawn: the run may only have been slow."""
    agenda, errors, release = make_agenda(), [], asyncio.Event()
    agenda.on("error", errors.append)
    runs: list[Any] = []

    async def rerun(job: Job[Any]) -> None:
        runs.append(job.attrs.data)
        await release.wait()

    agenda.define("crashy", rerun, lock_lifetime="1 minute")
    events = EventRecorder(agenda)
    job = await crashed_run(agenda, "crashy")
    await agenda.start()
    await wait_until(lambda: _stored_matches(agenda, job, lambda j: j.fail_count == 1))
    during = await stored(agenda, job)
    assert "never finished" in (during.fail_reason or "") and during.state == "running"
    (abandoned,) = errors
    assert isinstance(abandoned, AbandonedRunError) and abandoned.job_id == job.attrs.id
    assert "crashy" in str(abandoned) and "never finished" in str(abandoned)
    release.set()
    await events.wait_for("complete", job_name="crashy")
    assert runs == [{"n": 1}]
    assert [e.event for e in events.events] == ["start", "success", "complete"]
    final = await stored(agenda, job)
    assert (final.fail_count, final.fail_reason, final.failed_at) == (0, None, None)
    assert final.state == "completed" and final.locked_at is None


async def _stored_matches(agenda: Agenda, job: Job[Any], condition: Any) -> bool:
    current = await stored(agenda, job)
    return current is not None and bool(condition(current))


async def test_an_abandoned_run_past_the_retry_limit_is_given_up(
    make_agenda: MakeAgenda,
) -> None:
    """With a retry policy, crashes count against it: a job that keeps killing its worker
    ends failed instead of looping forever."""
    agenda, ledger = make_agenda(), Ledger()
    agenda.define("crashy", ledger.handler, lock_lifetime="1 minute",
                  backoff=backoff.constant(delay=1000, max_retries=1))
    events = EventRecorder(agenda)
    job = await crashed_run(agenda, "crashy", fail_count=1)  # it crashed once already
    await agenda.start()
    await events.wait_for("complete", job_name="crashy")
    assert ledger.runs == []
    assert [e.event for e in events.of("retry exhausted")] == ["retry exhausted"]
    final = await stored(agenda, job)
    assert (final.fail_count, final.state, final.next_run_at) == (2, "failed", None)
    assert final.locked_at is None


# -- touch, expiry, stop, drain ---------------------------------------------------------------


async def test_touch_keeps_a_long_job_alive(make_agenda: MakeAgenda) -> None:
    agenda, errors = make_agenda(), []
    agenda.on("error", errors.append)

    async def long_job(job: Job[Any]) -> None:
        for step in range(10):
            await asyncio.sleep(0.05)
            await job.touch(step * 10)

    agenda.define("long", long_job, lock_lifetime=200)
    events = EventRecorder(agenda)
    await agenda.start()
    job = await agenda.now("long")
    await events.wait_for("complete")
    assert errors == []
    assert [e.event for e in events.events] == ["start", "success", "complete"]
    assert (await stored(agenda, job)).progress == 90


async def test_a_run_past_its_lock_lifetime_is_reported(make_agenda: MakeAgenda) -> None:
    agenda, errors = make_agenda(), []
    agenda.on("error", errors.append)

    async def too_long(job: Job[Any]) -> None:
        await asyncio.sleep(0.6)

    agenda.define("too-long", too_long, lock_lifetime=100)
    events = EventRecorder(agenda)
    await agenda.start()
    await agenda.now("too-long")
    await events.wait_for("complete")
    assert any("took more than 100ms" in str(e) for e in errors)


async def test_a_job_that_waited_in_the_queue_gets_its_whole_lock_lifetime_once_it_starts(
    make_agenda: MakeAgenda,
) -> None:
    """A claimed job waiting behind another in this worker's queue has been locked since the
    claim; its start renews the lock, so a run shorter than lock_lifetime is never reported
    as outliving it (nor taken over by another worker), however long it waited. (Found by
    the fault harness: 2 s jobs on a 3 s lock in a backlog ran twice.)"""
    agenda, errors = make_agenda(), []
    agenda.on("error", errors.append)

    async def slow(job: Job[Any]) -> None:
        await asyncio.sleep(0.3)

    agenda.define("queued", slow, concurrency=1, lock_lifetime=500)  # claims 2 at a time
    events = EventRecorder(agenda)
    jobs = [await agenda.now("queued", {"i": i}) for i in range(3)]
    await agenda.start()
    await events.wait_for("complete", 3)
    assert errors == []
    assert [e.event for e in events.events].count("success") == 3
    for job in jobs:
        final = await stored(agenda, job)
        assert (final.locked_at, final.fail_count) == (None, None)


async def test_stop_keeps_the_lock_of_a_running_job_and_releases_queued_ones(
    make_agenda: MakeAgenda,
) -> None:
    """stop() does not unlock a job whose handler still runs (another worker would run it
    a second time meanwhile); it releases the claimed jobs that have not started."""
    agenda, started, release = make_agenda(), asyncio.Event(), asyncio.Event()

    async def slow(job: Job[Any]) -> None:
        started.set()
        await release.wait()

    agenda.define("slow", slow, concurrency=1)
    events = EventRecorder(agenda)
    first, second = await agenda.now("slow", {"n": 1}), await agenda.now("slow", {"n": 2})
    await agenda.start()
    await asyncio.wait_for(started.wait(), 10)

    async def both_locked_one_started() -> bool:
        states = [await stored(agenda, j) for j in (first, second)]
        # The start write (last_run_at) is not awaited before the handler: wait for it too.
        return all(s.locked_at is not None for s in states) and any(
            s.last_run_at is not None for s in states)

    await wait_until(both_locked_one_started)
    states = [await stored(agenda, j) for j in (first, second)]
    running = next(s for s in states if s.last_run_at is not None)
    queued = next(s for s in states if s.last_run_at is None)
    await agenda.stop(close_connection=False)
    after_stop = {s.id: await agenda.repository.get_job_by_id(s.id) for s in states}
    assert after_stop[running.id].locked_at == running.locked_at
    assert after_stop[queued.id].locked_at is None
    release.set()  # the store stays open: the run's own final write releases its lock
    await events.wait_for("complete")
    assert [e.event for e in events.events] == ["start", "success", "complete"]
    final = await agenda.repository.get_job_by_id(running.id)
    assert final is not None and final.locked_at is None and final.last_finished_at is not None


async def test_a_run_that_outlives_a_closing_stop_is_not_reported_as_success(
    make_agenda: MakeAgenda,
) -> None:
    """stop() that closes the store: a run ending afterwards stores nothing, on every
    backend; it emits ``error`` (StateWriteError naming the job and why) instead of
    ``success``, and the job keeps its lock and its unfinished start, so that once
    lock_lifetime runs out a worker runs it again and counts the unfinished run."""
    agenda, started, release = make_agenda(), asyncio.Event(), asyncio.Event()
    errors: list[BaseException] = []
    agenda.on("error", errors.append)

    async def slow(job: Job[Any]) -> None:
        started.set()
        await release.wait()

    agenda.define("slow", slow)
    events = EventRecorder(agenda)
    job = await agenda.now("slow")
    await agenda.start()
    await asyncio.wait_for(started.wait(), 10)
    await wait_until(lambda: _stored_matches(agenda, job, lambda j: j.last_run_at is not None))
    claimed = await stored(agenda, job)
    await agenda.stop(close_connection=True)
    release.set()
    await events.wait_for("complete")
    assert [e.event for e in events.events] == ["start", "complete"]
    (error,) = [e for e in errors if isinstance(e, StateWriteError)]
    assert error.job_id == job.attrs.id and error.job_name == "slow"
    assert "slow" in str(error) and "stop() closed" in str(error)
    after = await stored(agenda, job)  # connects the store again
    assert (after.locked_at, after.last_run_at) == (claimed.locked_at, claimed.last_run_at)
    assert after.last_finished_at is None and after.state == "running"


async def test_an_end_write_that_fails_is_an_error_not_a_success(
    make_agenda: MakeAgenda,
) -> None:
    """A job removed while it runs: its end write stores nothing, and the run reports an
    ``error`` naming the job instead of ``success``."""
    agenda, errors = make_agenda(), []
    agenda.on("error", errors.append)

    async def removes_itself(job: Job[Any]) -> None:
        await job.remove()

    agenda.define("gone", removes_itself)
    events = EventRecorder(agenda)
    job = await agenda.now("gone")
    await agenda.start()
    await events.wait_for("complete")
    assert [e.event for e in events.events] == ["start", "complete"]
    (error,) = errors
    assert isinstance(error, StateWriteError) and error.job_id == job.attrs.id
    assert "gone" in str(error) and "removed while it ran" in str(error)
    assert await stored(agenda, job) is None


async def test_a_job_that_outlives_stop_never_reconnects_the_store(
    make_agenda: MakeAgenda,
) -> None:
    agenda, started, release = make_agenda(), asyncio.Event(), asyncio.Event()
    readies: list[bool] = []
    agenda.on("ready", lambda: readies.append(True))
    completed = EventRecorder(agenda)

    async def slow(job: Job[Any]) -> None:
        started.set()
        await release.wait()
        await job.touch(50)

    agenda.define("slow", slow, remove_on_complete=True)
    job = await agenda.now("slow")
    await agenda.start()
    await asyncio.wait_for(started.wait(), 10)
    await agenda.stop(close_connection=False)  # the store stays open: the run still reports
    release.set()
    await completed.wait_for("complete")
    assert readies == [True]  # no reconnect after stop, not even to remove the job
    final = await stored(agenda, job)
    assert final is not None and final.last_finished_at is not None
    assert final.progress == 50 and final.locked_at is None


async def test_drain_waits_for_running_jobs(make_agenda: MakeAgenda) -> None:
    agenda, started = make_agenda(), asyncio.Event()

    async def work(job: Job[Any]) -> None:
        started.set()
        await asyncio.sleep(0.2)

    agenda.define("work", work)
    for i in range(3):
        await agenda.now("work", {"i": i})
    await agenda.start()
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.05)
    result = await agenda.drain(timeout="10 seconds", close_connection=False)
    assert (result.completed, result.running, result.timed_out, result.aborted) == (
        3, 0, False, False,
    )


async def test_drain_times_out_and_aborts(make_agenda: MakeAgenda) -> None:
    agenda, started = make_agenda(), asyncio.Event()

    async def stuck(job: Job[Any]) -> None:
        started.set()
        await asyncio.sleep(3)

    agenda.define("stuck", stuck)
    await agenda.now("stuck")
    await agenda.start()
    await asyncio.wait_for(started.wait(), 10)
    result = await agenda.drain(timeout=100, close_connection=False)
    assert (result.completed, result.running, result.timed_out) == (0, 1, True)
    assert await make_agenda().drain() == type(result)(
        completed=0, running=0, timed_out=False, aborted=False
    )
