"""What a user of the scheduler observes, on every backend: which jobs ran, with what data,
how often, in what order, and in which state they ended."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest

from agenda_decl import (
    Agenda,
    InMemoryNotificationChannel,
    InvalidDateError,
    InvalidIntervalError,
    InvalidOptionError,
    InvalidTimezoneError,
    Job,
    JobsQueryOptions,
    RemoveJobsOptions,
    UnknownJobError,
    backoff,
)
from agenda_decl._clock import utcnow
from agenda_decl.testing import EventRecorder, FakeClock
from tests.conformance.conftest import MakeAgenda
from tests.conformance.scheduling import Ledger, stored, wait_until

pytestmark = pytest.mark.asyncio


# -- running -----------------------------------------------------------------------------------


async def test_a_job_runs_once_with_its_data(make_agenda: MakeAgenda) -> None:
    agenda, ledger = make_agenda(), Ledger()
    agenda.define("send-email", ledger.handler)
    events = EventRecorder(agenda)
    await agenda.start()
    job = await agenda.now("send-email", {"to": "a@b.c"})
    await events.wait_for("complete")
    await asyncio.sleep(0.3)
    assert ledger.runs == [("send-email", {"to": "a@b.c"})]
    assert [e.event for e in events.events] == ["start", "success", "complete"]
    state = await stored(agenda, job)
    assert (state.state, state.locked_at, state.next_run_at) == ("completed", None, None)
    assert state.last_finished_at >= state.last_run_at


async def test_per_name_events(make_agenda: MakeAgenda) -> None:
    agenda, seen = make_agenda(), []
    agenda.define("a", lambda job: None)
    for event in ("start:a", "success:a", "complete:a"):
        agenda.on(event, lambda job, event=event: seen.append(event))
    done = asyncio.Event()
    agenda.on("complete:a", lambda job: done.set())
    await agenda.start()
    await agenda.now("a")
    await asyncio.wait_for(done.wait(), 10)
    assert seen == ["start:a", "success:a", "complete:a"]


async def test_plain_handlers_run_in_a_worker_thread(make_agenda: MakeAgenda) -> None:
    agenda, threads = make_agenda(), []
    done = asyncio.Event()
    agenda.define("sync", lambda job: threads.append(threading.current_thread()))
    agenda.on("complete:sync", lambda job: done.set())
    await agenda.start()
    await agenda.now("sync")
    await asyncio.wait_for(done.wait(), 10)
    assert threads and threads[0] is not threading.main_thread()


async def test_a_failing_one_off_job_runs_once_and_ends_failed(make_agenda: MakeAgenda) -> None:
    agenda, runs = make_agenda(), []

    async def fail(job: Job[Any]) -> None:
        runs.append(job.attrs.id)
        raise RuntimeError("Intentional failure")

    agenda.define("fails", fail)
    events = EventRecorder(agenda)
    await agenda.start()
    job = await agenda.now("fails")
    await events.wait_for("complete")
    await asyncio.sleep(0.4)
    assert len(runs) == 1
    assert [e.error for e in events.of("fail")] == ["Intentional failure"]
    state = await stored(agenda, job)
    assert (state.state, state.fail_reason, state.fail_count, state.next_run_at) == (
        "failed", "Intentional failure", 1, None,
    )


async def test_a_fail_listener_can_reschedule(make_agenda: MakeAgenda) -> None:
    agenda, attempts = make_agenda(), []

    def handler(job: Job[Any]) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first time fails")

    def retry_now(error: BaseException, job: Job[Any]) -> None:
        job.attrs.next_run_at = utcnow()

    agenda.define("retry-me", handler)
    agenda.on("fail:retry-me", retry_now)
    events = EventRecorder(agenda)
    await agenda.start()
    job = await agenda.now("retry-me")
    await events.wait_for("success")
    assert len(attempts) == 2
    await events.wait_for("complete", 2)
    state = await stored(agenda, job)
    assert (state.state, state.fail_count) == ("completed", 1)


async def test_backoff_retries_then_gives_up(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()

    async def always_fails(job: Job[Any]) -> None:
        raise TimeoutError("still down")

    agenda.define("flaky", always_fails, backoff=backoff.constant(delay=50, max_retries=2))
    events = EventRecorder(agenda)
    await agenda.start()
    job = await agenda.now("flaky", {"n": 1})
    exhausted = await events.wait_for("retry exhausted")
    await events.wait_for("complete", 3)  # the final state is saved before `complete`
    assert len(events.of("start")) == 3
    assert len(events.of("retry")) == 2
    assert exhausted[0].error == "still down"
    state = await stored(agenda, job)
    assert (state.state, state.fail_count, state.next_run_at) == ("failed", 3, None)


async def test_concurrency_bounds_parallel_runs(make_agenda: MakeAgenda) -> None:
    agenda, active, peak = make_agenda(), [0], [0]

    async def slow(job: Job[Any]) -> None:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await asyncio.sleep(0.05)
        active[0] -= 1

    agenda.define("one-at-a-time", slow, concurrency=1)
    events = EventRecorder(agenda)
    for i in range(3):
        await agenda.now("one-at-a-time", {"i": i})
    await agenda.start()
    await events.wait_for("complete", 3)
    assert peak[0] == 1


async def test_max_concurrency_runs_the_highest_priority_first(make_agenda: MakeAgenda) -> None:
    agenda, ledger = make_agenda(max_concurrency=1), Ledger()
    agenda.define("p", ledger.handler)
    when = utcnow() - timedelta(seconds=1)
    for priority in (-10, 10, 0):
        await agenda.create("p", {"priority": priority}).priority(priority).schedule(when).save()
    await agenda.start()
    await ledger.wait_for(3)
    assert [data["priority"] for _, data in ledger.runs] == [10, 0, -10]


async def test_due_jobs_run_earliest_first_then_in_arrival_order(
    make_agenda: MakeAgenda,
) -> None:
    agenda, ledger = make_agenda(max_concurrency=1), Ledger()
    agenda.define("fifo", ledger.handler, concurrency=1)
    base = utcnow() - timedelta(seconds=10)
    for i, offset in enumerate((5, 0, 5, 5, 1)):
        await agenda.schedule(base + timedelta(seconds=offset), "fifo", {"i": i})
    await agenda.start()
    await ledger.wait_for(5)
    assert [data["i"] for _, data in ledger.runs] == [1, 4, 0, 2, 3]


async def test_lock_limit_bounds_claimed_jobs(make_agenda: MakeAgenda) -> None:
    agenda, release = make_agenda(lock_limit=1), asyncio.Event()

    async def blocks(job: Job[Any]) -> None:
        await release.wait()

    agenda.define("blocker", blocks)
    await agenda.now("blocker")
    await agenda.now("blocker")
    await agenda.start()
    await asyncio.sleep(0.5)
    stats = await agenda.get_running_stats()
    assert (stats.locked_jobs, stats.running_jobs) == (1, 1)
    release.set()


async def test_a_job_with_a_stale_lock_is_taken_over(make_agenda: MakeAgenda) -> None:
    agenda, ledger = make_agenda(), Ledger()
    agenda.define("crashed", ledger.handler, lock_lifetime="1 minute")
    job = agenda.create("crashed", {"crash": True})
    await job.save()
    job.attrs.locked_at = utcnow() - timedelta(minutes=2)  # a worker died holding it
    job.attrs.next_run_at = None
    await agenda.repository.save_job_state(job.attrs)
    await agenda.start()
    await ledger.wait_for(1)
    assert ledger.runs == [("crashed", {"crash": True})]


async def test_a_crashed_run_is_taken_over_before_the_backlog(make_agenda: MakeAgenda) -> None:
    """Crash recovery within lock_lifetime + process_every whatever the backlog: a one-off
    job whose worker died mid-run (its start write cleared next_run_at) is claimed in the
    first claim once its lock is stale, ahead of every due job, even with lock_limit 1."""
    clock = FakeClock(utcnow())
    agenda, ledger = make_agenda(clock=clock, lock_limit=1), Ledger()
    agenda.define("work", ledger.handler, lock_lifetime="1 minute")
    for i in range(20):
        await agenda.schedule(clock.now() - timedelta(minutes=5), "work", {"i": i})
    crashed = await agenda.create("work", {"i": "crashed"}).save()
    crashed.attrs.next_run_at = None  # what the start write of a one-off stores
    crashed.attrs.last_run_at = crashed.attrs.locked_at = clock.now()
    await agenda.repository.save_job_state(crashed.attrs)
    clock.advance(timedelta(minutes=1))  # the crash was one lock lifetime ago
    await agenda.start()
    await ledger.wait_for(3)
    assert ledger.runs[:3] == [("work", {"i": "crashed"}), ("work", {"i": 0}), ("work", {"i": 1})]


async def test_a_live_lock_is_not_taken_over(make_agenda: MakeAgenda) -> None:
    agenda, ledger = make_agenda(), Ledger()
    agenda.define("held", ledger.handler, lock_lifetime="1 minute")
    job = await agenda.create("held").save()
    job.attrs.locked_at = utcnow() - timedelta(seconds=10)
    await agenda.repository.save_job_state(job.attrs)
    await agenda.start()
    await asyncio.sleep(0.5)
    assert ledger.runs == []


async def test_disabled_jobs_do_not_run(make_agenda: MakeAgenda) -> None:
    agenda, ledger = make_agenda(), Ledger()
    agenda.define("off", ledger.handler)
    await agenda.create("off").disable().save()
    await agenda.start()
    await asyncio.sleep(0.5)
    assert ledger.runs == []
    assert await agenda.enable(RemoveJobsOptions(name="off")) == 1
    await ledger.wait_for(1)


async def test_repeating_jobs_run_again(make_agenda: MakeAgenda) -> None:
    agenda, ledger = make_agenda(), Ledger()
    agenda.define("tick", ledger.handler)
    job = await agenda.every("200 ms", "tick", {"k": 1})
    await agenda.start()
    await ledger.wait_for(3)
    assert all(run == ("tick", {"k": 1}) for run in ledger.runs)
    state = await stored(agenda, job)
    assert state.repeat_interval == "200 ms"
    assert state.next_run_at is not None


async def test_every_twice_keeps_one_job(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.define("report", lambda job: None)
    await agenda.every("1 minute", "report")
    again = await agenda.every("5 minutes", "report", timezone="America/New_York")
    result = await agenda.query_jobs(JobsQueryOptions(name="report"))
    assert result.total == 1
    assert (result.jobs[0].repeat_interval, result.jobs[0].id) == ("5 minutes", again.attrs.id)
    assert result.jobs[0].repeat_timezone == "America/New_York"


async def test_every_with_a_new_interval_follows_it(make_agenda: MakeAgenda) -> None:
    """every("1 day") ran once (its next run is a day away); every("1 minute") for the same
    name makes the next run at most a minute away. every() again with the same interval keeps
    the pending next run (Agenda's rule)."""
    clock = FakeClock(utcnow())
    agenda = make_agenda(clock=clock)
    agenda.define("report", lambda job: None)
    daily = await agenda.every("1 day", "report")
    current = await stored(agenda, daily)
    current.next_run_at = clock.now() + timedelta(days=1)  # as the first run leaves it
    await agenda.repository.save_job_state(current)
    again = await agenda.every("1 day", "report")
    assert again.attrs.next_run_at == clock.now() + timedelta(days=1)
    minutely = await agenda.every("1 minute", "report")
    assert minutely.attrs.id == daily.attrs.id
    final = await stored(agenda, minutely)
    assert final.repeat_interval == "1 minute"
    assert final.next_run_at <= clock.now() + timedelta(minutes=1)


async def test_a_schedule_changed_while_the_job_runs_is_kept(make_agenda: MakeAgenda) -> None:
    """A repeating job's interval is changed (as ``agenda-decl apply`` does: the stored
    job with a new interval and next_run_at, saved) while it runs. The run's final state write
    keeps the new next_run_at instead of putting back the one of the old interval."""
    clock = FakeClock(utcnow())
    agenda, started, release = make_agenda(clock=clock), asyncio.Event(), asyncio.Event()

    async def wait(job: Job[Any]) -> None:
        started.set()
        await release.wait()

    agenda.define("daily", wait)
    events = EventRecorder(agenda)
    job = await agenda.every("1 day", "daily")
    await agenda.start()
    await asyncio.wait_for(started.wait(), 10)
    current = await stored(agenda, job)
    changed = await Job(agenda, current).repeat_every("1 minute").save()
    new_next = changed.attrs.next_run_at
    assert new_next is not None and new_next <= clock.now() + timedelta(minutes=1)
    release.set()
    await events.wait_for("complete")
    final = await stored(agenda, job)
    assert (final.repeat_interval, final.next_run_at) == ("1 minute", new_next)
    assert final.last_finished_at is not None and final.locked_at is None


async def test_every_with_skip_immediate_waits_one_interval(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.define("later", lambda job: None)
    job = await agenda.every("5 minutes", "later", skip_immediate=True)
    assert job.attrs.next_run_at is not None
    assert job.attrs.next_run_at > utcnow() + timedelta(minutes=4)


async def test_remove_on_complete_deletes_only_successful_one_offs(
    make_agenda: MakeAgenda,
) -> None:
    agenda = make_agenda(remove_on_complete=True)
    agenda.define("ok", lambda job: None)

    def boom(job: Job[Any]) -> None:
        raise RuntimeError("boom")

    agenda.define("bad", boom)
    events = EventRecorder(agenda)
    await agenda.start()
    ok, bad = await agenda.now("ok"), await agenda.now("bad")
    await events.wait_for("complete", 2)
    await wait_until(lambda: _gone(agenda, ok))
    assert (await stored(agenda, bad)).state == "failed"


async def _gone(agenda: Agenda, job: Job[Any]) -> bool:
    return await stored(agenda, job) is None


async def test_a_notification_starts_a_job_before_the_next_poll(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda(process_every="30 seconds",
                         notification_channel=InMemoryNotificationChannel())
    ledger = Ledger()
    agenda.define("fast", ledger.handler)
    await agenda.start()
    await asyncio.sleep(0.2)  # let the first poll pass
    await agenda.now("fast", {"x": 1})
    await ledger.wait_for(1, timeout=5)
    assert ledger.runs == [("fast", {"x": 1})]


class BrokenChannel(InMemoryNotificationChannel):
    async def _open(self) -> None:
        raise ConnectionError("channel server down")


async def test_a_dead_channel_costs_latency_not_jobs(make_agenda: MakeAgenda) -> None:
    agenda, ledger = make_agenda(notification_channel=BrokenChannel()), Ledger()
    errors: list[BaseException] = []
    agenda.on("error", errors.append)
    agenda.define("still-runs", ledger.handler)
    await agenda.start()
    await agenda.now("still-runs")
    await ledger.wait_for(1)
    assert any("channel server down" in str(e) for e in errors)


# -- creating and managing ----------------------------------------------------------------------


async def test_schedule_with_a_fake_clock(make_agenda: MakeAgenda) -> None:
    clock = FakeClock(utcnow())
    agenda, ledger = make_agenda(clock=clock), Ledger()
    agenda.define("later", ledger.handler)
    job = await agenda.schedule("in 5 minutes", "later", {"n": 1})
    assert job.attrs.next_run_at == clock.now() + timedelta(minutes=5)
    await agenda.start()
    await asyncio.sleep(0.4)
    assert ledger.runs == []
    clock.advance(timedelta(minutes=5))
    await ledger.wait_for(1)
    assert ledger.runs == [("later", {"n": 1})]


async def test_schedule_and_every_take_several_names(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    for name in ("a", "b"):
        agenda.define(name, lambda job: None)
    jobs = await agenda.schedule("in 1 hour", ["a", "b"], {"x": 1})
    assert sorted(j.attrs.name for j in jobs) == ["a", "b"]
    repeating = await agenda.every("1 hour", ["a", "b"])
    assert len({j.attrs.id for j in repeating}) == 2
    assert (await agenda.query_jobs()).total == 4


async def test_unique_jobs_via_the_job_api(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.define("sync-user", lambda job: None)
    first = await agenda.create("sync-user", {"user": 7, "v": 1}).unique({"data.user": 7}).save()
    second = await agenda.create("sync-user", {"user": 7, "v": 2}).unique({"data.user": 7}).save()
    assert first.attrs.id == second.attrs.id
    jobs = (await agenda.query_jobs(JobsQueryOptions(name="sync-user"))).jobs
    assert [j.data for j in jobs] == [{"user": 7, "v": 2}]


async def test_debounce_via_the_job_api(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.define("reindex", lambda job: None)
    for i in range(5):
        job = agenda.create("reindex", {"doc": 7, "i": i})
        await job.unique({"data.doc": 7}).debounce(2000, max_wait=10_000).save()
    jobs = (await agenda.query_jobs(JobsQueryOptions(name="reindex"))).jobs
    assert [j.data["i"] for j in jobs] == [4]
    assert jobs[0].next_run_at is not None
    assert jobs[0].next_run_at > utcnow() + timedelta(seconds=1)


async def test_cancel_disable_enable_and_purge(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.define("keep", lambda job: None)
    agenda.declare("drop")
    await agenda.now("keep")
    await agenda.now("drop")
    await agenda.now("drop")
    assert await agenda.disable(RemoveJobsOptions(name="drop")) == 2
    assert await agenda.cancel(RemoveJobsOptions()) == 0
    assert await agenda.cancel(RemoveJobsOptions(name="drop")) == 2
    await agenda.now("drop")
    del agenda.definitions["drop"]
    assert await agenda.purge() == 1
    assert [j.name for j in (await agenda.query_jobs()).jobs] == ["keep"]


async def test_overview(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.define("o", lambda job: None)
    await agenda.now("o")
    await agenda.schedule("in 1 hour", "o")
    (overview,) = await agenda.get_jobs_overview()
    assert (overview.name, overview.total, overview.queued, overview.scheduled) == ("o", 2, 1, 1)


# -- bad input stores nothing --------------------------------------------------------------------


async def test_bad_input_is_refused_and_nothing_is_stored(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.define("known", lambda job: None)
    with pytest.raises(UnknownJobError, match="'typo'"):
        await agenda.now("typo")
    with pytest.raises(InvalidIntervalError, match="'fivee minutes'"):
        await agenda.every("fivee minutes", "known")
    with pytest.raises(InvalidDateError, match="'next blursday'"):
        await agenda.schedule("next blursday", "known")
    with pytest.raises(InvalidTimezoneError, match="Mars/Olympus"):
        await agenda.every("1 hour", "known", timezone="Mars/Olympus")
    with pytest.raises(InvalidOptionError, match="-1"):
        agenda.define("negative", lambda job: None, concurrency=-1)
    with pytest.raises(InvalidIntervalError, match="'soon'"):
        Agenda(agenda.backend, process_every="soon")
    with pytest.raises(InvalidOptionError, match="'urgent'"):
        agenda.create("known").priority("urgent")
    with pytest.raises(UnknownJobError, match="'typo'"):
        await agenda.every("1 hour", ["known", "typo"])
    assert (await agenda.query_jobs()).total == 0
    assert "negative" not in agenda.definitions
