"""The operator's actions (agenda_decl.operations) on the in-memory store with a fake clock:
what a pause leaves for plan and apply (kept, shown, stale markers ignored), the next run after
a resume, run-now keeping a schedule, retry keeping fail_count, purge by finish time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from agenda_decl import Agenda, Job, JobParameters, JobsQueryOptions
from agenda_decl.config import plan_output
from agenda_decl.config.pause import PauseMark, pause_of
from agenda_decl.config.payload import PAUSED_KEY
from agenda_decl.config.reconcile import apply, plan
from agenda_decl.errors import JobNotFoundError
from agenda_decl.operations import (
    OperationRefusedError,
    found_by_ids,
    pause,
    purge_completed,
    resume,
    retry,
    run_now,
    schedule_job,
)
from agenda_decl.testing import FakeClock
from tests.unit.test_reconcile import INVOICE, REPORT, START, config, make_agenda

MARK = PauseMark(by="alice@ops", at="2026-01-05T12:00:00.000Z", reason="incident")


async def stored(agenda: Agenda, name: str) -> JobParameters[Any]:
    (job,) = (await agenda.query_jobs(JobsQueryOptions(name=name))).jobs
    return job


async def test_apply_keeps_an_operators_pause_and_plan_shows_it() -> None:
    agenda, file = make_agenda(), config(INVOICE, REPORT)
    await apply(agenda, file)
    job = await schedule_job(agenda, file, "nightly-report", None)
    await pause(agenda, [job], MARK)
    planned = await plan(agenda, file)
    assert not planned.has_changes and not planned.in_sync
    (paused,) = planned.paused
    assert paused.paused == MARK and paused.key == "nightly-report"
    assert "paused by alice@ops since 2026-01-05T12:00:00.000Z (incident)" in (
        plan_output.format_plan(planned))
    assert plan_output.plan_to_json(planned)["paused"][0]["by"] == "alice@ops"

    changed = config(INVOICE, attrs.evolve(REPORT, cron="0 4 * * *", data={"format": "csv"}))
    result = await apply(agenda, changed)
    assert result.updated == 1
    after = await stored(agenda, "nightly-report")
    assert after.disabled and pause_of(after) == MARK
    assert after.repeat_interval == "0 4 * * *" and after.data["format"] == "csv"
    assert "kept paused" in plan_output.format_apply_result(result)


async def test_a_stale_marker_on_an_enabled_job_is_no_pause_and_apply_removes_it() -> None:
    agenda, file = make_agenda(), config(INVOICE)
    await apply(agenda, file)
    job = await stored(agenda, "send-invoice")
    stale = attrs.evolve(job, data={**job.data, PAUSED_KEY: MARK.to_data()})
    await Job(agenda, JobParameters(**{f.name: getattr(stale, f.name)
                                       for f in attrs.fields(JobParameters)})).save()
    planned = await plan(agenda, file)
    assert planned.paused == () and planned.has_changes
    await apply(agenda, file)
    assert PAUSED_KEY not in (await stored(agenda, "send-invoice")).data


async def test_resume_runs_a_cron_job_at_its_next_tick_not_at_once() -> None:
    clock = FakeClock(START)
    agenda, file = make_agenda(clock=clock), config(REPORT)
    await apply(agenda, file)
    job = await stored(agenda, "nightly-report")
    await pause(agenda, [job], MARK)
    clock.advance(timedelta(days=3))  # three 3am ticks pass while paused
    result = await resume(agenda, [await stored(agenda, "nightly-report")])
    (resumed,) = result.changed
    assert not resumed.disabled and PAUSED_KEY not in resumed.data
    assert resumed.next_run_at is not None and resumed.next_run_at > clock.now()
    assert resumed.next_run_at - clock.now() <= timedelta(days=1)
    assert (await plan(agenda, file)).in_sync


async def test_resume_leaves_a_schedule_declared_disabled() -> None:
    agenda = make_agenda()
    file = config(attrs.evolve(INVOICE, disabled=True))
    await apply(agenda, file)
    job = await stored(agenda, "send-invoice")
    result = await resume(agenda, [job], declared_disabled={("billing", "send-invoice",
                                                             "send-invoice")})
    assert result.changed == [] and "declared disabled" in result.left[0][1]


async def test_run_now_copies_a_repeating_job_and_keeps_its_schedule() -> None:
    agenda, file = make_agenda(), config(INVOICE)
    await apply(agenda, file)
    schedule = await stored(agenda, "send-invoice")
    done = await run_now(agenda, schedule)
    assert done.how == "copy" and done.job.id != schedule.id
    assert done.job.data == {"customer_id": 7, "amount_cents": 900, "currency": "EUR"}
    assert done.job.repeat_interval is None and done.job.next_run_at == agenda.clock.now()
    again = await found_by_ids(agenda, [str(schedule.id)])
    assert again[0].next_run_at == schedule.next_run_at
    assert (await plan(agenda, file)).in_sync  # the copy is not the schedule's


async def test_retry_keeps_fail_count_and_refuses_jobs_that_did_not_fail() -> None:
    agenda = make_agenda()
    job = await agenda.create("cleanup").save()
    with pytest.raises(OperationRefusedError, match="not failed"):
        await retry(agenda, [job.attrs])
    job.fail("boom")
    job.attrs.fail_count = 4
    job.attrs.next_run_at = None
    await agenda.save_job_state(job.attrs)
    (failed,) = await found_by_ids(agenda, [str(job.attrs.id)])
    (retried,) = await retry(agenda, [failed])
    assert retried.next_run_at == agenda.clock.now()
    (after,) = await found_by_ids(agenda, [str(job.attrs.id)])
    assert (after.fail_count, after.fail_reason, after.next_run_at) == (4, "boom",
                                                                       agenda.clock.now())
    with pytest.raises(JobNotFoundError, match="no jobs with ids x, y"):
        await found_by_ids(agenda, [str(job.attrs.id), "x", "y"])


async def test_purge_deletes_completed_jobs_by_finish_time() -> None:
    clock = FakeClock(START)
    agenda = make_agenda(clock=clock)
    finished = []
    for age in (10, 3):
        job = await agenda.create("cleanup").save()
        job.attrs.last_run_at = job.attrs.last_finished_at = START - timedelta(days=age)
        job.attrs.next_run_at = None
        await agenda.save_job_state(job.attrs)
        finished.append(job.attrs.id)
    await agenda.create("cleanup").save()  # queued: never purged
    older = timedelta(days=7)
    assert await purge_completed(agenda, older, names=["cleanup"], dry_run=True) == 1
    assert await purge_completed(agenda, older, names=["code-job"]) == 0
    assert await purge_completed(agenda, older, names=["cleanup"]) == 1
    left = {job.id for job in (await agenda.query_jobs(JobsQueryOptions())).jobs}
    assert finished[0] not in left and finished[1] in left and len(left) == 2
    assert datetime.now(UTC) > START  # the fake clock, not the wall clock, decides
