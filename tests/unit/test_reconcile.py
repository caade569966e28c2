"""plan/apply of declared schedules on the in-memory store with a fake clock: creates, updates,
orphans and pruning, idempotency (a second apply writes nothing), ownership, progress kept
across updates, validation before any write, concurrent applies, next-run rules."""

from __future__ import annotations

import asyncio
import pickle
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from agenda_decl import Agenda, Job, JobParameters, JobsQueryOptions, RemoveJobsOptions
from agenda_decl.config import plan_output, reconcile
from agenda_decl.config.errors import ConfigError, StalePlanError
from agenda_decl.config.model import (
    AgendaConfig,
    BackendConfig,
    JobConfig,
    PayloadField,
    ScheduleConfig,
    SchedulerConfig,
    SQLiteStorage,
)
from agenda_decl.config.reconcile import MANAGED_BY_KEY, SCHEDULE_KEY_KEY, apply, plan
from agenda_decl.config.stored import id_order
from agenda_decl.testing import FakeClock, InMemoryBackend, InMemoryJobRepository

START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
JOBS = {
    "send-invoice": JobConfig(payload={
        "customer_id": PayloadField(type="int"),
        "amount_cents": PayloadField(type="int"),
        "currency": PayloadField(type="str", default="EUR"),
    }),
    "nightly-report": JobConfig(payload={
        "format": PayloadField(type="str", choices=["pdf", "csv"]),
    }),
    "cleanup": JobConfig(priority="high"),
}
INVOICE = ScheduleConfig(job="send-invoice", every="1 hour",
                         data={"customer_id": 7, "amount_cents": 900})
REPORT = ScheduleConfig(job="nightly-report", cron="0 3 * * *", timezone="Europe/Berlin",
                        data={"format": "pdf"})
CLEANUP = ScheduleConfig(job="cleanup", at="3:30pm", timezone="America/New_York")


def config(*schedules: ScheduleConfig, owner: str = "billing") -> AgendaConfig:
    return AgendaConfig(
        version=1,
        backend=BackendConfig(storage=SQLiteStorage(type="sqlite")),
        scheduler=SchedulerConfig(name=owner),
        jobs=JOBS,
        schedules=list(schedules),
    )


class CountingRepository(InMemoryJobRepository):
    """Counts every write; with ``interleave`` each call yields to the loop first, so two
    concurrent appliers really interleave (the in-memory store never suspends by itself)."""

    WRITERS = ("save_job", "insert_jobs", "save_job_state", "remove_jobs", "disable_jobs",
               "enable_jobs", "lock_job", "unlock_job", "unlock_jobs")

    def __init__(self, interleave: bool = False) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.interleave = interleave

    async def _pause(self) -> None:
        if self.interleave:
            await asyncio.sleep(0)

    async def query_jobs(self, options: JobsQueryOptions | None = None) -> Any:
        await self._pause()
        return await super().query_jobs(options)

    async def save_job(self, job: JobParameters[Any], **kwargs: Any) -> JobParameters[Any]:
        await self._pause()
        self.writes.append(f"save_job {job.name}")
        return await super().save_job(job, **kwargs)

    async def insert_jobs(
        self, jobs: Sequence[JobParameters[Any]], **kwargs: Any
    ) -> list[JobParameters[Any]]:
        await self._pause()
        self.writes.extend(f"insert_jobs {job.name}" for job in jobs)
        return await super().insert_jobs(jobs, **kwargs)

    async def save_job_state(self, job: JobParameters[Any], **kwargs: Any) -> None:
        self.writes.append(f"save_job_state {job.name}")
        await super().save_job_state(job, **kwargs)

    async def remove_jobs(self, options: Any) -> int:
        await self._pause()
        self.writes.append("remove_jobs")
        return await super().remove_jobs(options)

    async def disable_jobs(self, options: Any) -> int:
        self.writes.append("disable_jobs")
        return await super().disable_jobs(options)

    async def enable_jobs(self, options: Any) -> int:
        self.writes.append("enable_jobs")
        return await super().enable_jobs(options)


class CountingBackend(InMemoryBackend):
    def __init__(self, interleave: bool = False) -> None:
        super().__init__()
        self._repository = CountingRepository(interleave)

    @property
    def repository(self) -> CountingRepository:
        assert isinstance(self._repository, CountingRepository)
        return self._repository


def make_agenda(
    backend: CountingBackend | None = None, clock: FakeClock | None = None
) -> Agenda:
    agenda = Agenda(backend or CountingBackend(), clock=clock or FakeClock(START),
                    name="test-applier")
    for name, job in JOBS.items():
        agenda.declare(name, priority=job.priority)
    agenda.declare("code-job")
    return agenda


@pytest.fixture
def agenda() -> Agenda:
    return make_agenda()


def writes(agenda: Agenda) -> list[str]:
    repository = agenda.repository
    assert isinstance(repository, CountingRepository)
    return repository.writes


def clock_of(agenda: Agenda) -> FakeClock:
    assert isinstance(agenda.clock, FakeClock)
    return agenda.clock


async def all_jobs(agenda: Agenda) -> list[JobParameters[Any]]:
    return list((await agenda.query_jobs(JobsQueryOptions(sort={"name": "asc"}))).jobs)


async def managed(agenda: Agenda, key: str, owner: str = "billing") -> JobParameters[Any]:
    found = (await agenda.query_jobs(JobsQueryOptions(
        data={MANAGED_BY_KEY: owner, SCHEDULE_KEY_KEY: key}))).jobs
    assert len(found) == 1, found
    return found[0]


async def simulate_run(agenda: Agenda, key: str, *, at: datetime, failed: bool = False) -> None:
    """What a worker writes after running the job (state fields only)."""
    job = await managed(agenda, key)
    params = JobParameters(**{f.name: getattr(job, f.name) for f in attrs.fields(JobParameters)})
    params.last_run_at = at
    params.last_finished_at = at + timedelta(seconds=1)
    if failed:
        params.fail_count = 2
        params.fail_reason = "boom"
        params.failed_at = params.last_finished_at
    params.next_run_at = at + timedelta(hours=1)
    await agenda.repository.save_job_state(params)


def actions(result: reconcile.Plan) -> list[tuple[str, str]]:
    return [(change.action, change.key) for change in result.changes]


# -- create / unchanged ------------------------------------------------------------------------


async def test_plan_on_an_empty_store_creates_and_writes_nothing(agenda: Agenda) -> None:
    result = await plan(agenda, config(INVOICE, REPORT, CLEANUP))
    assert actions(result) == [("create", "send-invoice"), ("create", "nightly-report"),
                               ("create", "cleanup")]
    assert result.has_changes
    assert writes(agenda) == []
    assert await all_jobs(agenda) == []


async def test_apply_creates_marked_normal_repeating_jobs(agenda: Agenda) -> None:
    result = await apply(agenda, config(INVOICE, REPORT, CLEANUP))
    assert (result.created, result.updated, result.deleted, result.unchanged) == (3, 0, 0, 0)
    invoice = await managed(agenda, "send-invoice")
    assert invoice.type == "normal"
    assert invoice.data == {"customer_id": 7, "amount_cents": 900, "currency": "EUR",
                            MANAGED_BY_KEY: "billing", SCHEDULE_KEY_KEY: "send-invoice"}
    assert invoice.repeat_interval == "1 hour"
    assert invoice.next_run_at == START  # a new interval schedule runs now
    report = await managed(agenda, "nightly-report")
    assert report.repeat_interval == "0 3 * * *"
    assert report.repeat_timezone == "Europe/Berlin"
    assert report.next_run_at == datetime(2026, 1, 6, 2, 0, tzinfo=UTC)  # 03:00 CET
    cleanup = await managed(agenda, "cleanup")
    assert (cleanup.repeat_interval, cleanup.repeat_at) == (None, "3:30pm")
    assert cleanup.next_run_at == datetime(2026, 1, 5, 20, 30, tzinfo=UTC)  # 15:30 EST
    assert cleanup.priority == 10  # the job's priority when the schedule sets none
    assert [change.id for change in result.done] == [invoice.id, report.id, cleanup.id]


async def test_second_apply_changes_nothing_and_writes_nothing(agenda: Agenda) -> None:
    file = config(INVOICE, REPORT, CLEANUP)
    await apply(agenda, file)
    before = await all_jobs(agenda)
    writes(agenda).clear()
    clock_of(agenda).advance(timedelta(minutes=5))
    again = await plan(agenda, file)
    assert [change.action for change in again.changes] == ["unchanged"] * 3
    assert not again.has_changes
    result = await apply(agenda, file)
    assert not result.changed
    assert result.unchanged == 3
    assert writes(agenda) == []
    assert await all_jobs(agenda) == before
    assert "No changes" in plan_output.format_plan(again)
    assert "No changes" in plan_output.format_apply_result(result)


async def test_apply_is_idempotent_after_the_jobs_ran(agenda: Agenda) -> None:
    file = config(INVOICE, REPORT)
    await apply(agenda, file)
    await simulate_run(agenda, "send-invoice", at=START, failed=True)
    writes(agenda).clear()
    assert not (await apply(agenda, file)).changed
    assert writes(agenda) == []


# -- updates -----------------------------------------------------------------------------------


async def test_data_change_updates_in_place_and_keeps_progress(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE))
    await simulate_run(agenda, "send-invoice", at=START, failed=True)
    ran = await managed(agenda, "send-invoice")
    clock_of(agenda).advance(timedelta(minutes=10))
    changed = attrs.evolve(INVOICE, data={"customer_id": 7, "amount_cents": 1000},
                           priority="high")
    result = await plan(agenda, config(changed))
    (change,) = result.changes
    assert change.action == "update"
    assert change.id == ran.id
    assert {diff.field for diff in change.diffs} == {"data", "priority"}
    assert "data.amount_cents: 900 -> 1000" in plan_output.format_plan(result)
    await apply(agenda, result)
    after = await managed(agenda, "send-invoice")
    assert after.id == ran.id
    assert after.data["amount_cents"] == 1000
    assert after.priority == 10
    for field in ("last_run_at", "last_finished_at", "failed_at", "fail_count", "fail_reason",
                  "next_run_at"):
        assert getattr(after, field) == getattr(ran, field), field


async def test_changed_interval_runs_one_new_interval_after_the_last_run(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE))
    await simulate_run(agenda, "send-invoice", at=START)
    clock_of(agenda).advance(timedelta(minutes=10))
    result = await apply(agenda, config(attrs.evolve(INVOICE, every="2 hours")))
    assert result.updated == 1
    after = await managed(agenda, "send-invoice")
    assert after.repeat_interval == "2 hours"
    assert after.next_run_at == START + timedelta(hours=2)  # not "now"
    assert after.last_run_at == START


async def test_changed_interval_already_overdue_runs_now(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE))
    await simulate_run(agenda, "send-invoice", at=START)
    clock_of(agenda).advance(timedelta(minutes=50))
    await apply(agenda, config(attrs.evolve(INVOICE, every="30 minutes")))
    after = await managed(agenda, "send-invoice")
    assert after.next_run_at == START + timedelta(minutes=50)


async def test_changed_interval_of_a_job_that_never_ran_runs_now(agenda: Agenda) -> None:
    await apply(agenda, config(attrs.evolve(INVOICE, skip_immediate=True)))
    assert (await managed(agenda, "send-invoice")).next_run_at == START + timedelta(hours=1)
    clock_of(agenda).advance(timedelta(minutes=5))
    await apply(agenda, config(attrs.evolve(INVOICE, every="3 hours")))
    assert (await managed(agenda, "send-invoice")).next_run_at == START + timedelta(minutes=5)


async def test_changed_cron_runs_at_its_next_tick(agenda: Agenda) -> None:
    await apply(agenda, config(REPORT))
    await simulate_run(agenda, "nightly-report", at=START - timedelta(hours=10))
    result = await apply(agenda, config(attrs.evolve(REPORT, cron="0 18 * * *")))
    assert result.updated == 1
    after = await managed(agenda, "nightly-report")
    assert after.next_run_at == datetime(2026, 1, 5, 17, 0, tzinfo=UTC)  # 18:00 CET today
    assert after.last_run_at == START - timedelta(hours=10)


async def test_timezone_change_recomputes_the_next_tick(agenda: Agenda) -> None:
    await apply(agenda, config(REPORT))
    result = await plan(agenda, config(attrs.evolve(REPORT, timezone="Asia/Tokyo")))
    (change,) = result.changes
    assert [(d.field, d.old, d.new) for d in change.diffs] == [
        ("repeat_timezone", "Europe/Berlin", "Asia/Tokyo")
    ]
    await apply(agenda, result)
    assert (await managed(agenda, "nightly-report")).next_run_at == datetime(
        2026, 1, 5, 18, 0, tzinfo=UTC)  # 03:00 JST on the 6th


async def test_disabled_maps_to_job_disabled_and_reenabling_recomputes(agenda: Agenda) -> None:
    await apply(agenda, config(attrs.evolve(REPORT, disabled=True)))
    job = await managed(agenda, "nightly-report")
    assert job.disabled
    result = await plan(agenda, config(attrs.evolve(REPORT, disabled=True)))
    assert result.changes[0].action == "unchanged"
    assert result.changes[0].next_runs == ()
    clock_of(agenda).advance(timedelta(days=3))
    await apply(agenda, config(REPORT))
    job = await managed(agenda, "nightly-report")
    assert not job.disabled
    assert job.next_run_at == datetime(2026, 1, 9, 2, 0, tzinfo=UTC)  # no catch-up run


async def test_a_job_that_lost_its_next_run_gets_one(agenda: Agenda) -> None:
    await apply(agenda, config(REPORT))
    job = await managed(agenda, "nightly-report")
    job.next_run_at = None
    await agenda.repository.save_job(job)
    (change,) = (await plan(agenda, config(REPORT))).changes
    assert change.action == "update"
    assert [d.field for d in change.diffs] == ["next_run_at"]


async def test_a_running_jobs_final_write_keeps_the_change_and_drift_is_repaired(
    agenda: Agenda,
) -> None:
    daily = attrs.evolve(INVOICE, every="1 day")
    await apply(agenda, config(daily))
    running = await managed(agenda, "send-invoice")  # claimed by a worker at START
    clock_of(agenda).advance(timedelta(minutes=1))
    await apply(agenda, config(INVOICE))  # every 1 hour, while the job runs
    assert (await managed(agenda, "send-invoice")).next_run_at == START + timedelta(minutes=1)
    # The run ends with the next run it computed from the old schedule: its state write
    # carries the old interval, so the store keeps the apply's next run (a state write writes
    # next_run_at only while the stored timing is the one it read) and writes the rest.
    running.last_run_at, running.next_run_at = START, START + timedelta(days=1)
    await agenda.repository.save_job_state(running)
    stored = await managed(agenda, "send-invoice")
    assert (stored.next_run_at, stored.last_run_at) == (START + timedelta(minutes=1), START)
    assert actions(await plan(agenda, config(INVOICE))) == [("unchanged", "send-invoice")]

    # A writer without that check (Node Agenda v6 on the same store) can still leave a next
    # run later than the schedule's next tick: plan reports it as drift, apply repairs it.
    stored.next_run_at = START + timedelta(days=1)
    await agenda.repository.save_job_state(stored)
    (change,) = (await plan(agenda, config(INVOICE))).changes
    assert change.action == "update"
    assert [(d.field, d.old, d.new) for d in change.diffs] == [
        ("next_run_at", START + timedelta(days=1), START + timedelta(hours=1))]
    await apply(agenda, config(INVOICE))
    assert (await managed(agenda, "send-invoice")).next_run_at == START + timedelta(hours=1)
    assert actions(await plan(agenda, config(INVOICE))) == [("unchanged", "send-invoice")]


async def test_a_retry_backoff_past_the_next_tick_is_not_drift(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE))
    job = await managed(agenda, "send-invoice")
    job.last_run_at, job.failed_at = START, START + timedelta(seconds=1)
    job.fail_count, job.next_run_at = 3, START + timedelta(hours=4)  # backing off
    await agenda.repository.save_job_state(job)
    assert actions(await plan(agenda, config(INVOICE))) == [("unchanged", "send-invoice")]


# -- ownership, orphans, prune -----------------------------------------------------------------


async def test_removed_schedule_is_orphaned_and_kept_without_prune(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE, REPORT))
    result = await plan(agenda, config(INVOICE))
    assert actions(result) == [("unchanged", "send-invoice")]
    assert [(o.key, o.job) for o in result.orphaned] == [("nightly-report", "nightly-report")]
    assert not result.has_changes
    text = plan_output.format_plan(result)
    assert "orphaned" in text and "kept, use --prune" in text
    writes(agenda).clear()
    applied = await apply(agenda, config(INVOICE))
    assert writes(agenda) == []
    assert len(applied.orphaned) == 1
    await managed(agenda, "nightly-report")  # still there


async def test_prune_deletes_only_this_owners_undeclared_jobs(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE, REPORT))
    await apply(agenda, config(REPORT, owner="other-app"))
    code_every = await agenda.every("5 minutes", "code-job", {"x": 1})
    code_now = await agenda.now("nightly-report", {"format": "csv"})
    code_lookalike = await agenda.now("send-invoice", {MANAGED_BY_KEY: "someone-else"})
    result = await plan(agenda, config(INVOICE), prune=True)
    assert actions(result) == [("unchanged", "send-invoice"), ("delete", "nightly-report")]
    assert result.changes[1].reason == "pruned"
    assert result.has_changes
    applied = await apply(agenda, config(INVOICE), prune=True)
    assert applied.deleted == 1
    remaining = {job.id for job in await all_jobs(agenda)}
    assert {code_every.attrs.id, code_now.attrs.id, code_lookalike.attrs.id} <= remaining
    assert len(remaining) == 5  # invoice, other-app's report and the three code jobs
    await managed(agenda, "nightly-report", owner="other-app")
    assert (await plan(agenda, config(INVOICE), prune=True)).has_changes is False


async def test_an_empty_file_with_prune_removes_every_managed_job(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE, REPORT, CLEANUP))
    await agenda.now("cleanup")
    applied = await apply(agenda, config(), prune=True)
    assert applied.deleted == 3
    assert [job.name for job in await all_jobs(agenda)] == ["cleanup"]


async def test_prune_via_a_plan_without_prune(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE, REPORT))
    shown = await plan(agenda, config(INVOICE))
    result = await apply(agenda, shown, prune=True)
    assert result.deleted == 1


async def test_several_schedules_of_one_job_with_keys(agenda: Agenda) -> None:
    eu = attrs.evolve(INVOICE, key="invoice-eu")
    us = attrs.evolve(INVOICE, key="invoice-us", data={"customer_id": 8, "amount_cents": 5,
                                                       "currency": "USD"})
    await apply(agenda, config(eu, us))
    assert (await managed(agenda, "invoice-eu")).data["currency"] == "EUR"
    assert (await managed(agenda, "invoice-us")).data["currency"] == "USD"
    writes(agenda).clear()
    assert not (await apply(agenda, config(eu, us))).changed
    assert writes(agenda) == []


async def test_a_schedule_moved_to_another_job_is_a_new_one(agenda: Agenda) -> None:
    await apply(agenda, config(attrs.evolve(REPORT, key="nightly")))
    old = await managed(agenda, "nightly")
    moved = ScheduleConfig(job="cleanup", key="nightly", cron="0 3 * * *")
    result = await plan(agenda, config(moved))
    assert actions(result) == [("create", "nightly")]
    assert [(o.job, o.id) for o in result.orphaned] == [("nightly-report", old.id)]
    assert "now runs job cleanup" in plan_output.format_plan(result)
    pruned = await plan(agenda, config(moved), prune=True)
    assert actions(pruned) == [("create", "nightly"), ("delete", "nightly")]
    await apply(agenda, pruned)
    jobs = await all_jobs(agenda)
    assert [(job.name, job.id != old.id) for job in jobs] == [("cleanup", True)]


async def test_one_key_for_schedules_of_different_jobs(agenda: Agenda) -> None:
    first = ScheduleConfig(job="cleanup", key="daily", every="1 day")
    second = ScheduleConfig(job="nightly-report", key="daily", every="1 day",
                            data={"format": "csv"})
    await apply(agenda, config(first, second))
    writes(agenda).clear()
    assert not (await apply(agenda, config(first, second))).changed
    assert writes(agenda) == []
    assert len(await all_jobs(agenda)) == 2


async def test_duplicates_found_at_plan_time_keep_the_smallest_id(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE))
    kept = await managed(agenda, "send-invoice")
    copy = JobParameters(**{f.name: getattr(kept, f.name) for f in attrs.fields(JobParameters)})
    copy.id = None
    await agenda.repository.save_job(copy)
    jobs = (await agenda.query_jobs(JobsQueryOptions(name="send-invoice"))).jobs
    ids = sorted((str(job.id) for job in jobs), key=id_order)
    result = await plan(agenda, config(INVOICE))
    assert actions(result) == [("delete", "send-invoice"), ("unchanged", "send-invoice")]
    assert result.changes[0].id == ids[1]
    assert result.changes[0].reason == "duplicate"
    await apply(agenda, result)
    assert (await managed(agenda, "send-invoice")).id == ids[0]


# -- plans as data, and stale plans ------------------------------------------------------------


def _values(value: Any) -> list[Any]:
    """Every value inside an attrs value, a mapping or a sequence, recursively."""
    if attrs.has(type(value)):
        inner = [getattr(value, field.name) for field in attrs.fields(type(value))]
    elif isinstance(value, Mapping):
        inner = list(value.values())
    elif isinstance(value, list | tuple):
        inner = list(value)
    else:
        return [value]
    return [value, *(found for item in inner for found in _values(item))]


async def test_a_plan_is_an_immutable_value_without_live_jobs(agenda: Agenda) -> None:
    await apply(agenda, config(REPORT))
    result = await plan(agenda, config(INVOICE, attrs.evolve(REPORT, data={"format": "csv"})))
    assert [change.action for change in result.changes] == ["create", "update"]
    assert not any(isinstance(value, Job | Agenda) for value in _values(result))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.changes[0].key = "other"  # type: ignore[misc]
    write = result.changes[1].write
    assert write is not None
    assert write.fields["data"]["format"] == "csv"
    with pytest.raises(TypeError):
        write.fields["priority"] = 5  # type: ignore[index]
    assert pickle.loads(pickle.dumps(result)) == result  # plain data: it can be kept
    await apply(agenda, result)
    assert write.fields["data"]["format"] == "csv"  # applying wrote copies
    assert result.changes[1].id == (await managed(agenda, "nightly-report")).id


async def test_apply_refuses_a_plan_made_on_another_state(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE, REPORT))
    shown = await plan(agenda, config(attrs.evolve(INVOICE, every="2 hours"), REPORT))
    await apply(agenda, config(attrs.evolve(INVOICE, priority="high"), REPORT))  # another apply
    writes(agenda).clear()
    with pytest.raises(StalePlanError, match=r"storage changed since the plan was made.*plan "
                       r"again"):
        await apply(agenda, shown)
    assert writes(agenda) == []
    assert (await managed(agenda, "send-invoice")).repeat_interval == "1 hour"
    await apply(agenda, await plan(agenda, config(attrs.evolve(INVOICE, every="2 hours"),
                                                  REPORT)))
    assert (await managed(agenda, "send-invoice")).repeat_interval == "2 hours"


@pytest.mark.parametrize("change", ["paused", "deleted", "created"])
async def test_any_change_to_the_managed_jobs_makes_a_plan_stale(
    agenda: Agenda, change: str
) -> None:
    await apply(agenda, config(INVOICE))
    shown = await plan(agenda, config(INVOICE, REPORT), prune=True)
    if change == "paused":  # `agenda-decl jobs pause`, or a disable() in code
        await agenda.disable(RemoveJobsOptions(name="send-invoice"))
    elif change == "deleted":
        await agenda.cancel(RemoveJobsOptions(name="send-invoice"))
    else:  # another apply created the same schedule: applying too would make a copy
        await apply(agenda, config(INVOICE, REPORT))
    writes(agenda).clear()
    with pytest.raises(StalePlanError):
        await apply(agenda, shown)
    assert writes(agenda) == []


async def test_runs_between_plan_and_apply_do_not_make_it_stale(agenda: Agenda) -> None:
    """Workers write run state, which the plan does not decide from: the plan applies, and a
    next run it keeps is the one storage has then, not the one it saw."""
    await apply(agenda, config(INVOICE))
    shown = await plan(agenda, config(attrs.evolve(INVOICE, priority="high")))
    await simulate_run(agenda, "send-invoice", at=START)  # next run: START + 1 hour
    result = await apply(agenda, shown)
    assert result.updated == 1
    after = await managed(agenda, "send-invoice")
    assert (after.priority, after.next_run_at, after.last_run_at) == (
        10, START + timedelta(hours=1), START)


async def test_a_plan_applied_later_schedules_from_the_time_of_the_apply(
    agenda: Agenda,
) -> None:
    """A confirmation prompt may keep a plan waiting: a new cron schedule then starts at its
    next tick after the apply, not at a tick that passed while waiting (no catch-up run)."""
    shown = await plan(agenda, config(REPORT))
    assert shown.changes[0].next_runs[0].utc == datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    clock_of(agenda).advance(timedelta(days=1))
    await apply(agenda, shown)
    assert (await managed(agenda, "nightly-report")).next_run_at == datetime(
        2026, 1, 7, 2, 0, tzinfo=UTC)


# -- validation before writing -----------------------------------------------------------------


async def test_bad_data_in_one_schedule_stops_the_whole_apply_before_any_write(
    agenda: Agenda,
) -> None:
    bad = ScheduleConfig(job="nightly-report", key="bad", cron="0 4 * * *",
                         data={"format": "docx", "extra": 1})
    with pytest.raises(ConfigError) as caught:
        await apply(agenda, config(INVOICE, REPORT, bad))
    paths = [issue.path for issue in caught.value.issues]
    assert paths == ["schedules[2].data.extra", "schedules[2].data.format"]
    assert writes(agenda) == []
    assert await all_jobs(agenda) == []


async def test_every_problem_of_every_schedule_is_reported_at_once(agenda: Agenda) -> None:
    schedules = [
        ScheduleConfig(job="nope", every="1 hour"),
        ScheduleConfig(job="cleanup", key="a", every="1 hour", cron="0 3 * * *"),
        ScheduleConfig(job="cleanup", key="b", cron="61 * * * *"),
        ScheduleConfig(job="cleanup", key="c", every="0 3 * * *"),
        ScheduleConfig(job="cleanup", key="d", every="1 hour", timezone="Mars/Olympus"),
        ScheduleConfig(job="cleanup", key="e", every="1 hour", start_date="in 5 minutes"),
        ScheduleConfig(job="cleanup", key="f", every="1 hour", skip_days=["caturday"]),
        ScheduleConfig(job="cleanup", key="g", at="25:00"),
        ScheduleConfig(job="cleanup", key="h", every="1 hour", start_date="2026-02-01",
                       end_date="2026-01-01"),
        ScheduleConfig(job="cleanup", key="a", every="2 hours"),
        ScheduleConfig(job="cleanup", key="i", cron="0 3 * * *", skip_immediate=True),
        ScheduleConfig(job="send-invoice", key="j", every="1 hour",
                       data={"customer_id": "7", "amount_cents": 1, MANAGED_BY_KEY: "x"}),
    ]
    with pytest.raises(ConfigError) as caught:
        await plan(agenda, config(*schedules))
    paths = [issue.path for issue in caught.value.issues]
    assert paths == [
        "schedules[0].job",
        "schedules[1].cron",
        "schedules[2].cron",
        "schedules[3].every",
        "schedules[4].timezone",
        "schedules[5].start_date",
        "schedules[6].skip_days[0]",
        "schedules[7].at",
        "schedules[8].end_date",
        "schedules[9].key",
        "schedules[10].skip_immediate",
        f"schedules[11].data.{MANAGED_BY_KEY}",
        "schedules[11].data.customer_id",
    ]
    text = str(caught.value)
    assert "unknown job 'nope'" in text
    assert "Mars/Olympus" in text
    assert "relative dates would change on every apply" in text
    assert writes(agenda) == []
    reconcile.check_schedules(config(INVOICE, REPORT))  # no storage needed
    with pytest.raises(ConfigError):
        reconcile.check_schedules(config(*schedules), agenda=agenda)
    with pytest.raises(ConfigError) as again:
        reconcile.check_schedules(config(*schedules))
    assert [issue.path for issue in again.value.issues] == paths


async def test_a_job_not_declared_on_the_agenda_is_refused() -> None:
    agenda = Agenda(CountingBackend(), clock=FakeClock(START))
    with pytest.raises(ConfigError, match="not defined or declared"):
        await plan(agenda, config(INVOICE))


# -- dates, skip days, next runs ---------------------------------------------------------------


async def test_start_and_end_dates_are_read_in_the_schedule_zone(agenda: Agenda) -> None:
    schedule = attrs.evolve(REPORT, start_date="2026-02-01", end_date="2026-02-03T12:00:00Z")
    result = await plan(agenda, config(schedule))
    (change,) = result.changes
    assert [fire.utc for fire in change.next_runs] == [
        datetime(2026, 2, 1, 2, 0, tzinfo=UTC),
        datetime(2026, 2, 2, 2, 0, tzinfo=UTC),
        datetime(2026, 2, 3, 2, 0, tzinfo=UTC),
    ]
    await apply(agenda, result)
    job = await managed(agenda, "nightly-report")
    assert job.start_date == datetime(2026, 1, 31, 23, 0, tzinfo=UTC)  # midnight in Berlin
    assert job.end_date == datetime(2026, 2, 3, 12, 0, tzinfo=UTC)
    ended = attrs.evolve(REPORT, start_date="2026-02-01", end_date="2026-02-02T12:00:00Z")
    (change,) = (await plan(agenda, config(ended))).changes
    assert len(change.next_runs) == 2  # the end date cuts the list short


async def test_skip_days_by_name_and_number(agenda: Agenda) -> None:
    weekdays = ScheduleConfig(job="cleanup", every="1 day", skip_days=["sat", "Sunday", 5])
    clock_of(agenda).set(datetime(2026, 1, 8, 9, 0, tzinfo=UTC))  # a Thursday
    (change,) = (await plan(agenda, config(weekdays))).changes
    assert [fire.utc.strftime("%a %d") for fire in change.next_runs] == [
        "Thu 08", "Mon 12", "Tue 13"]
    await apply(agenda, config(weekdays))
    assert (await managed(agenda, "cleanup")).skip_days == [0, 5, 6]


async def test_next_runs_in_utc_and_in_the_schedule_zone(agenda: Agenda) -> None:
    (change,) = (await plan(agenda, config(REPORT))).changes
    assert [(f.utc.hour, f.local.hour, f.zone) for f in change.next_runs] == [
        (2, 3, "Europe/Berlin")] * 3
    assert [f.local.day for f in change.next_runs] == [6, 7, 8]
    (change,) = (await plan(agenda, config(INVOICE))).changes
    assert [f.utc for f in change.next_runs] == [START + timedelta(hours=h) for h in range(3)]
    assert change.next_runs[0].zone == "UTC"


async def test_next_runs_of_an_overdue_job_start_now(agenda: Agenda) -> None:
    await apply(agenda, config(INVOICE))
    clock_of(agenda).advance(timedelta(minutes=90))
    (change,) = (await plan(agenda, config(INVOICE))).changes
    assert change.next_runs[0].utc == START + timedelta(minutes=90)
    assert change.next_runs[1].utc == START + timedelta(minutes=150)


async def test_skip_immediate_waits_one_interval(agenda: Agenda) -> None:
    await apply(agenda, config(attrs.evolve(INVOICE, skip_immediate=True)))
    assert (await managed(agenda, "send-invoice")).next_run_at == START + timedelta(hours=1)


# -- progress output and concurrency -----------------------------------------------------------


async def test_on_change_reports_each_write_as_it_happens(agenda: Agenda) -> None:
    await apply(agenda, config(REPORT))
    seen: list[tuple[str, str, int]] = []
    file = config(INVOICE, attrs.evolve(REPORT, data={"format": "csv"}))
    result = await apply(agenda, file,
                         on_change=lambda c: seen.append((c.action, c.key, len(writes(agenda)))))
    assert [(action, key) for action, key, _ in seen] == [
        ("create", "send-invoice"), ("update", "nightly-report")]
    assert [count for _, _, count in seen] == [2, 3]  # called after each write
    assert [plan_output.format_change(c) for c in result.done][1].startswith(
        "~ update    nightly-report (job nightly-report, id ")


async def test_two_concurrent_applies_end_like_one() -> None:
    file = config(INVOICE, REPORT, CLEANUP)
    single = make_agenda(CountingBackend())
    await apply(single, file)
    expected = sorted(_comparable(job) for job in await all_jobs(single))

    shared = CountingBackend(interleave=True)
    first, second = make_agenda(shared), make_agenda(shared)
    results = await asyncio.gather(apply(first, file), apply(second, file))
    assert sum(r.created for r in results) == 6  # both created every schedule ...
    assert sum(r.duplicates_removed for r in results) == 3  # ... and the copies went
    assert sorted(_comparable(job) for job in await all_jobs(first)) == expected
    shared.repository.writes.clear()
    assert not (await apply(first, file)).changed
    assert shared.repository.writes == []


async def test_concurrent_updates_converge() -> None:
    shared = CountingBackend(interleave=True)
    first, second = make_agenda(shared), make_agenda(shared)
    await apply(first, config(INVOICE, REPORT))
    file = config(attrs.evolve(INVOICE, every="2 hours"), CLEANUP)
    await asyncio.gather(apply(first, file, prune=True), apply(second, file, prune=True))
    names = sorted(job.name for job in await all_jobs(first))
    assert names == ["cleanup", "send-invoice"]
    assert not (await plan(first, file, prune=True)).has_changes


def _comparable(job: JobParameters[Any]) -> tuple[Any, ...]:
    return (job.name, job.type, job.repeat_interval, job.repeat_timezone, job.repeat_at,
            job.next_run_at, job.priority, job.disabled, sorted(job.data.items()))


async def test_plan_json_is_plain_data(agenda: Agenda) -> None:
    import json

    result = await plan(agenda, config(REPORT))
    data = plan_output.plan_to_json(result)
    assert json.loads(json.dumps(data)) == data
    (change,) = data["changes"]
    assert change["action"] == "create"
    assert change["next_runs"][0] == {"utc": "2026-01-06T02:00:00.000Z",
                                      "local": "2026-01-06T03:00:00.000+01:00",
                                      "zone": "Europe/Berlin"}
    data_diff = next(d for d in change["diffs"] if d["field"] == "data")
    assert data_diff["new"] == {"format": "pdf"}  # the marker is not shown


async def test_a_class_payload_is_imported_and_checked_by_plan_only(
    agenda: Agenda, tmp_path: Path
) -> None:
    module = f"reconcile_payload_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "import attrs\n\n@attrs.define\nclass Report:\n    format: str\n    copies: int = 1\n"
    )
    jobs = {**JOBS, "nightly-report": JobConfig(payload=f"{module}:Report")}
    good = attrs.evolve(config(REPORT), jobs=jobs)
    bad = attrs.evolve(config(attrs.evolve(REPORT, data={"format": "pdf", "pages": 3})),
                       jobs=jobs)
    reconcile.check_schedules(bad, base_dir=tmp_path, import_payload_classes=False)
    assert module not in sys.modules  # import_payload_classes=False imports nothing
    with pytest.raises(ConfigError, match="pages"):
        await plan(agenda, bad, base_dir=tmp_path)
    assert writes(agenda) == []
    await apply(agenda, good, base_dir=tmp_path)
    job = await managed(agenda, "nightly-report")
    assert {k: v for k, v in job.data.items() if not k.startswith("__")} == {
        "format": "pdf", "copies": 1}
