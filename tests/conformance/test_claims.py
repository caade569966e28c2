"""The JobRepository contract for locks and claims, over every backend: due jobs in order,
stale locks first, each job to one claimer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from agenda_decl._clock import utcnow
from agenda_decl._model import (
    JobParameters,
    RemoveJobsOptions,
)
from agenda_decl.interfaces import JobRepository
from tests.conformance.repository import at, claim, save

pytestmark = pytest.mark.asyncio


# -- locking -------------------------------------------------------------------------------------


async def test_lock_job_and_unlock(repository: JobRepository) -> None:
    saved = await save(repository, next_run_at=at(-1))
    assert saved.id
    locked = await repository.lock_job(saved)
    assert locked is not None
    assert (locked.id, locked.locked_at is not None) == (saved.id, True)
    assert await repository.lock_job(saved) is None
    await repository.unlock_job(locked)
    stored = await repository.get_job_by_id(saved.id)
    assert stored is not None and stored.locked_at is None


async def test_unlock_job_keeps_the_lock_of_a_finished_job(repository: JobRepository) -> None:
    saved = await save(repository, next_run_at=None)
    saved.locked_at = utcnow()
    await repository.save_job_state(saved)
    await repository.unlock_job(saved)
    assert saved.id
    stored = await repository.get_job_by_id(saved.id)
    assert stored is not None and stored.locked_at is not None
    await repository.unlock_jobs([saved.id])
    await repository.unlock_jobs([])
    stored = await repository.get_job_by_id(saved.id)
    assert stored is not None and stored.locked_at is None


async def test_claim_takes_due_jobs_in_order(repository: JobRepository) -> None:
    same = at(-60)
    await save(repository, "runner", next_run_at=same, priority=5, data={"p": "low"})
    await save(repository, "runner", next_run_at=same, priority=10, data={"p": "high"})
    await save(repository, "runner", next_run_at=at(-120), priority=-5, data={"p": "earliest"})
    await save(repository, "runner", next_run_at=at(3600), data={"p": "future"})
    await save(repository, "other", next_run_at=at(-600))
    claimed = [await claim(repository, "runner") for _ in range(4)]
    assert [c.data["p"] if c else None for c in claimed] == ["earliest", "high", "low", None]
    assert all(c.locked_at and c.last_modified_by == "tester" for c in claimed if c)


async def test_claim_within_the_scan_window(repository: JobRepository) -> None:
    await save(repository, "soon", next_run_at=at(3))
    assert await claim(repository, "soon", next_scan_at=utcnow()) is None
    assert await claim(repository, "soon") is not None


async def test_claim_skips_disabled_and_locked(repository: JobRepository) -> None:
    await save(repository, "d", next_run_at=at(-60), disabled=True)
    assert await claim(repository, "d") is None
    await save(repository, "l", next_run_at=at(-60))
    assert await claim(repository, "l") is not None
    assert await claim(repository, "l") is None


async def test_claim_takes_over_stale_locks_whatever_next_run_at(
    repository: JobRepository,
) -> None:
    for next_run_at in (None, at(3600)):
        saved = await save(repository, "stale", next_run_at=next_run_at)
        saved.locked_at = at(-700)
        await repository.save_job_state(saved)
    fresh = await save(repository, "stale", next_run_at=None)
    fresh.locked_at = at(-1)
    await repository.save_job_state(fresh)
    first, second = await claim(repository, "stale"), await claim(repository, "stale")
    assert first is not None and second is not None
    assert first.id != second.id
    assert await claim(repository, "stale") is None


async def test_stale_locks_are_claimed_before_a_backlog_of_due_jobs(
    repository: JobRepository,
) -> None:
    """Crash recovery does not wait for the backlog: a running job whose lock went stale (its
    start write cleared next_run_at, or moved it to the next occurrence) is claimed before
    any due job, so even a claim of one takes it."""
    for i in range(30):
        await save(repository, "backlog", next_run_at=at(-600 + i), data={"i": i})
    for kind, next_run_at in (("one-off", None), ("repeating", at(3600))):
        crashed = await save(repository, "backlog", next_run_at=next_run_at, data={"i": kind})
        crashed.locked_at = crashed.last_run_at = at(-700)
        await repository.save_job_state(crashed)
    now = utcnow()
    deadline = now - timedelta(minutes=10)
    first = await repository.get_next_jobs_to_run("backlog", now, deadline, 1, now)
    assert [j.data["i"] for j in first] == ["repeating"]
    rest = await repository.get_next_jobs_to_run("backlog", now, deadline, 3, now)
    assert [j.data["i"] for j in rest] == ["one-off", 0, 1]
    assert all(j.locked_at is not None for j in first + rest)


async def test_batch_claim_takes_each_job_once(repository: JobRepository) -> None:
    for i in range(25):
        await save(repository, "batch", next_run_at=at(-i), data={"i": i})
    now = utcnow()

    async def claim_batch() -> list[JobParameters[Any]]:
        return await repository.get_next_jobs_to_run(
            "batch", now + timedelta(seconds=5), now - timedelta(minutes=10), 10, now
        )

    batches = await asyncio.gather(*(claim_batch() for _ in range(4)))
    ids = [j.id for batch in batches for j in batch]
    # Concurrent claims skip each other's rows, so how the 25 split is up to the store.
    assert all(len(batch) <= 10 for batch in batches)
    assert len(ids) == len(set(ids)) == 25
    for batch in batches:
        times = [j.next_run_at for j in batch if j.next_run_at]
        assert times == sorted(times)


async def test_concurrent_single_claims_never_share_a_job(repository: JobRepository) -> None:
    for _ in range(10):
        await save(repository, "race", next_run_at=at(-1))
    claimed = await asyncio.gather(*(claim(repository, "race") for _ in range(15)))
    ids = [c.id for c in claimed if c]
    assert len(ids) == 10 == len(set(ids))


async def claim_many(repository: JobRepository, name: str, limit: int) -> list[JobParameters[Any]]:
    now = utcnow()
    return await repository.get_next_jobs_to_run(
        name, now + timedelta(seconds=5), now - timedelta(minutes=10), limit, now
    )


async def test_another_names_due_jobs_do_not_change_what_is_claimed(
    repository: JobRepository,
) -> None:
    # More due jobs of another name than one page of any store's scan, all earlier than ours.
    for i in range(150):
        await save(repository, "other", next_run_at=at(-600 - i))
    await save(repository, "mine", next_run_at=at(-2), data={"n": 2})
    await save(repository, "mine", next_run_at=at(-3), data={"n": 1})
    await save(repository, "mine", next_run_at=at(3600), data={"n": "future"})
    claimed = await claim_many(repository, "mine", 10)
    assert [c.data for c in claimed] == [{"n": 1}, {"n": 2}]
    assert len(await claim_many(repository, "other", 200)) == 150


async def test_a_claim_follows_every_change_of_a_jobs_schedule(
    repository: JobRepository,
) -> None:
    """Rescheduling, disabling, enabling, unlocking, a state write and a removal each change
    whether and when a job is claimed, at once."""
    late = await save(repository, "flow", next_run_at=at(3600), data={"j": "late"})
    early = await save(repository, "flow", next_run_at=at(-60), data={"j": "early"})
    gone = await save(repository, "flow", next_run_at=at(-120), data={"j": "gone"})
    assert await repository.remove_jobs(RemoveJobsOptions(id=gone.id)) == 1
    late.next_run_at = at(-90)  # rescheduled: now the earliest
    await repository.save_job(late)
    assert await repository.disable_jobs(RemoveJobsOptions(id=early.id)) == 1
    first = await claim(repository, "flow")
    assert first is not None and first.data == {"j": "late"}
    assert await claim(repository, "flow") is None  # early is disabled
    assert await repository.enable_jobs(RemoveJobsOptions(id=early.id)) == 1
    await repository.unlock_job(first)  # released before it started: claimable again
    again = [await claim(repository, "flow") for _ in range(3)]
    assert [c.data["j"] if c else None for c in again] == ["late", "early", None]
    finished = again[0]
    assert finished is not None
    finished.locked_at, finished.next_run_at = None, at(-1)  # ran; due again at once
    await repository.save_job_state(finished)
    last = await claim(repository, "flow")
    assert last is not None and last.id == finished.id


async def test_a_large_backlog_of_the_name_is_claimed_in_order(
    repository: JobRepository,
) -> None:
    for i in range(130):
        await save(repository, "backlog", next_run_at=at(-1000 + i), data={"i": i})
    claimed = await claim_many(repository, "backlog", 120)
    claimed += await claim_many(repository, "backlog", 120)
    assert [c.data["i"] for c in claimed] == list(range(130))
