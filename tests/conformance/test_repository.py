"""The JobRepository contract, run over every backend (see tests/backends)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agenda_decl import errors
from agenda_decl._clock import utcnow
from agenda_decl._model import (
    DebounceOptions,
    JobParameters,
    JobsQueryOptions,
    RemoveJobsOptions,
    UniqueOptions,
)
from agenda_decl.interfaces import JobRepository
from tests.conformance.repository import at, claim, job, save

pytestmark = pytest.mark.asyncio


# -- save_job ----------------------------------------------------------------------------------


async def test_insert_returns_the_stored_job(repository: JobRepository) -> None:
    saved = await save(repository, priority=10, data={"foo": "bar"})
    assert saved.id
    assert (saved.name, saved.priority, saved.type, saved.data) == (
        "test-job",
        10,
        "normal",
        {"foo": "bar"},
    )
    loaded = await repository.get_job_by_id(saved.id)
    assert loaded is not None
    assert loaded.data == {"foo": "bar"}
    assert loaded.next_run_at == saved.next_run_at


async def test_insert_twice_makes_two_jobs(repository: JobRepository) -> None:
    first = await save(repository)
    second = await save(repository)
    assert first.id != second.id
    assert (await repository.query_jobs()).total == 2


async def test_update_by_id_keeps_the_id(repository: JobRepository) -> None:
    saved = await save(repository, priority=10)
    saved.priority = 20
    saved.data = {"version": 2}
    updated = await repository.save_job(saved)
    assert updated.id == saved.id
    assert (updated.priority, updated.data) == (20, {"version": 2})
    assert (await repository.query_jobs()).total == 1


async def test_update_by_id_of_a_removed_job_returns_input_and_inserts_nothing(
    repository: JobRepository,
) -> None:
    saved = await save(repository)
    assert saved.id
    await repository.remove_jobs(RemoveJobsOptions(id=saved.id))
    saved.priority = 3
    result = await repository.save_job(saved)
    assert result is saved
    assert (await repository.query_jobs()).total == 0


async def test_save_never_writes_processor_fields(repository: JobRepository) -> None:
    now = utcnow()
    saved = await save(
        repository, locked_at=now, last_run_at=now, fail_count=4, fail_reason="x", progress=5.0
    )
    assert saved.id
    stored = await repository.get_job_by_id(saved.id)
    assert stored is not None
    assert (stored.locked_at, stored.last_run_at, stored.fail_count, stored.progress) == (
        None,
        None,
        None,
        None,
    )
    stored.fail_count, stored.last_finished_at = 2, now
    await repository.save_job_state(stored)
    stored.fail_count, stored.last_finished_at = None, None
    stored.data = {"changed": True}
    await repository.save_job(stored)
    again = await repository.get_job_by_id(saved.id)
    assert again is not None
    assert (again.fail_count, again.last_finished_at, again.data) == (2, now, {"changed": True})


async def test_constraints_and_interval_round_trip(repository: JobRepository) -> None:
    start, end = at(60), at(3600)
    saved = await save(
        repository,
        repeat_interval=5000,
        repeat_timezone="Europe/Berlin",
        repeat_at="3:30pm",
        start_date=start,
        end_date=end,
        skip_days=[0, 6],
        fork=False,
        disabled=True,
    )
    assert saved.id
    stored = await repository.get_job_by_id(saved.id)
    assert stored is not None
    assert stored.repeat_interval == 5000
    assert (stored.start_date, stored.end_date, stored.skip_days) == (start, end, [0, 6])
    assert (stored.repeat_timezone, stored.repeat_at, stored.disabled) == (
        "Europe/Berlin",
        "3:30pm",
        True,
    )
    text = await save(repository, "other", repeat_interval="5 minutes")
    assert text.id
    reloaded = await repository.get_job_by_id(text.id)
    assert reloaded is not None
    assert reloaded.repeat_interval == "5 minutes"


async def test_non_json_data_is_refused_and_nothing_stored(repository: JobRepository) -> None:
    with pytest.raises(errors.InvalidOptionError, match="test-job"):
        await save(repository, data={"when": object()})
    with pytest.raises(errors.InvalidOptionError):
        await save(repository, data={"x": float("nan")})
    assert (await repository.query_jobs()).total == 0


async def test_nested_json_data_round_trips(repository: JobRepository) -> None:
    data = {"s": "ü", "n": 1.5, "b": False, "none": None, "list": [1, {"k": [True]}]}
    saved = await save(repository, data=data)
    assert saved.id
    stored = await repository.get_job_by_id(saved.id)
    assert stored is not None
    assert stored.data == data


async def test_no_data_and_empty_data_read_back_as_saved(repository: JobRepository) -> None:
    """A job saved without data reads back as None and one with ``{}`` as ``{}``, in every
    store (Redis stores both as Node's ``'{}'`` and tells them apart with a field of ours)."""
    bare, empty = await save(repository, data=None), await save(repository, data={})
    assert (bare.data, empty.data) == (None, {})
    assert bare.id and empty.id
    reloaded = [await repository.get_job_by_id(bare.id), await repository.get_job_by_id(empty.id)]
    assert [job.data if job else "missing" for job in reloaded] == [None, {}]
    listed = (await repository.query_jobs(JobsQueryOptions(name="test-job"))).jobs
    assert {job.id: job.data for job in listed} == {bare.id: None, empty.id: {}}
    assert [job.id for job in (await repository.query_jobs(JobsQueryOptions(data={}))).jobs] == [
        empty.id]
    claimed = await repository.get_next_jobs_to_run("test-job", at(1), at(-600), 10)
    assert {job.id: job.data for job in claimed} == {bare.id: None, empty.id: {}}


# -- single and unique --------------------------------------------------------------------------


async def test_single_jobs_upsert_by_name(repository: JobRepository) -> None:
    first = await save(repository, "single-job", type="single", priority=5, data={"run": 1},
                       next_run_at=at(60))
    second = await save(repository, "single-job", type="single", priority=10,
                        data={"run": 2}, next_run_at=at(120))
    assert first.id == second.id
    assert (second.priority, second.data) == (10, {"run": 2})
    assert (await repository.query_jobs(JobsQueryOptions(name="single-job"))).total == 1


async def test_single_keeps_a_pending_schedule_when_the_new_time_is_due(
    repository: JobRepository,
) -> None:
    """Agenda's rule, while the timing stays the same: a due incoming next_run_at does not
    replace a pending stored one (a process restarted with the same every() keeps its
    schedule). Other fields are updated."""
    later = at(300)
    await save(repository, "s", type="single", repeat_interval="1 minute", next_run_at=later,
               repeat_timezone="Europe/Paris", skip_days=[0], data={"v": 1})
    again = await save(repository, "s", type="single", repeat_interval="1 minute",
                       repeat_timezone="Europe/Paris", skip_days=[0], next_run_at=at(-1),
                       data={"v": 2})
    assert (again.next_run_at, again.data) == (later, {"v": 2})


TIMING_CHANGES: list[dict[str, Any]] = [
    {"repeat_interval": "1 minute"},
    {"repeat_interval": "*/5 * * * *"},
    {"repeat_timezone": "America/New_York"},
    {"repeat_at": "3:30pm"},
    {"start_date": datetime(2020, 1, 2, tzinfo=UTC)},
    {"end_date": datetime(2999, 1, 1, tzinfo=UTC)},
    {"skip_days": [6]},
]


@pytest.mark.parametrize("change", TIMING_CHANGES, ids=lambda c: next(iter(c)))
async def test_single_with_a_new_timing_follows_it(
    repository: JobRepository, change: dict[str, Any]
) -> None:
    """A re-save of a single job whose timing (_model.TIMING_FIELDS) differs from the stored
    one takes the incoming next_run_at even when it is due: the job follows its new schedule
    (every("1 day") then every("1 minute") must not leave the next run a day away)."""
    timing: dict[str, Any] = {"repeat_interval": "1 day", "skip_days": [0]}
    await save(repository, "s", type="single", next_run_at=at(86_400), **timing)
    due = at(-1)
    again = await save(repository, "s", type="single", next_run_at=due, **{**timing, **change})
    assert again.next_run_at == due
    assert again.id
    stored = await repository.get_job_by_id(again.id)
    assert stored is not None and stored.next_run_at == due
    assert (await repository.query_jobs(JobsQueryOptions(name="s"))).total == 1


async def test_single_and_normal_jobs_of_one_name_coexist(repository: JobRepository) -> None:
    await save(repository, "s", type="single")
    await save(repository, "s")
    await save(repository, "s", type="single")
    assert (await repository.query_jobs(JobsQueryOptions(name="s"))).total == 2


async def test_unique_upserts_on_the_key(repository: JobRepository) -> None:
    key = {"data.type": "active", "data.user_id": "123"}
    first = await save(repository, unique=key, data={"type": "active", "user_id": "123", "o": 1})
    second = await save(repository, unique=key, data={"type": "active", "user_id": "123", "o": 2})
    assert first.id == second.id
    result = await repository.query_jobs()
    assert result.total == 1
    assert result.jobs[0].data["o"] == 2


async def test_unique_insert_only_keeps_the_first(repository: JobRepository) -> None:
    key = {"data.user_id": 1}
    opts = UniqueOptions(insert_only=True)
    first = await save(repository, unique=key, unique_opts=opts, data={"user_id": 1, "v": "first"})
    second = await save(repository, unique=key, unique_opts=opts,
                        data={"user_id": 1, "v": "second"})
    assert first.id == second.id
    assert second.data["v"] == "first"
    assert (await repository.query_jobs()).total == 1


async def test_different_unique_values_make_different_jobs(repository: JobRepository) -> None:
    await save(repository, unique={"data.user_id": 123}, data={"user_id": 123})
    await save(repository, unique={"data.user_id": 456}, data={"user_id": 456})
    await save(repository, "other", unique={"data.user_id": 123}, data={"user_id": 123})
    assert (await repository.query_jobs()).total == 3


async def test_unique_key_with_an_operator_is_refused(repository: JobRepository) -> None:
    with pytest.raises(errors.InvalidOptionError, match=r"\$where"):
        await save(repository, unique={"$where": "1"})
    assert (await repository.query_jobs()).total == 0


def debounced(delay: int, **options: Any) -> dict[str, Any]:
    return {
        "unique": {"data.key": "k"},
        "unique_opts": UniqueOptions(debounce=DebounceOptions(delay=delay, **options)),
    }


async def test_trailing_debounce_pushes_the_run_back(repository: JobRepository) -> None:
    now = utcnow()
    first = await repository.save_job(job(data={"key": "k", "i": 0}, **debounced(1000)), now=now)
    assert first.next_run_at == now + timedelta(seconds=1)
    assert first.debounce_started_at == now
    later = now + timedelta(milliseconds=200)
    second = await repository.save_job(
        job(data={"key": "k", "i": 1}, **debounced(1000)), now=later
    )
    assert second.id == first.id
    assert second.next_run_at == later + timedelta(seconds=1)
    assert second.debounce_started_at == now
    assert second.data["i"] == 1


async def test_trailing_debounce_max_wait_forces_a_run(repository: JobRepository) -> None:
    now = utcnow()
    await repository.save_job(job(data={"key": "k"}, **debounced(2000, max_wait=500)), now=now)
    later = now + timedelta(milliseconds=600)
    forced = await repository.save_job(
        job(data={"key": "k"}, **debounced(2000, max_wait=500)), now=later
    )
    assert forced.next_run_at == later
    assert forced.debounce_started_at is None


async def test_leading_debounce_keeps_the_first_time(repository: JobRepository) -> None:
    now = utcnow()
    options = debounced(5000, strategy="leading")
    first = await repository.save_job(job(data={"key": "k", "i": 0}, next_run_at=now, **options),
                                      now=now)
    assert first.next_run_at == now
    later = now + timedelta(seconds=1)
    second = await repository.save_job(
        job(data={"key": "k", "i": 1}, next_run_at=later, **options), now=later
    )
    assert (second.id, second.next_run_at, second.data["i"]) == (first.id, now, 1)


async def test_debounce_without_unique_inserts_each_time(repository: JobRepository) -> None:
    options = UniqueOptions(debounce=DebounceOptions(delay=1000))
    await save(repository, unique_opts=options)
    await save(repository, unique_opts=options)
    assert (await repository.query_jobs()).total == 2


# -- lookups -------------------------------------------------------------------------------------


async def test_get_job_by_id_of_missing_or_malformed_ids(repository: JobRepository) -> None:
    saved = await save(repository, "get-by-id-test", data={"key": "value"})
    assert saved.id
    loaded = await repository.get_job_by_id(saved.id)
    assert loaded is not None
    assert (loaded.id, loaded.name, loaded.data) == (saved.id, "get-by-id-test", {"key": "value"})
    await repository.remove_jobs(RemoveJobsOptions(id=saved.id))
    assert await repository.get_job_by_id(saved.id) is None
    assert await repository.get_job_by_id("not-an-id") is None
    assert (await repository.query_jobs(JobsQueryOptions(id="not-an-id"))).total == 0
    assert await repository.remove_jobs(RemoveJobsOptions(id="not-an-id")) == 0


async def test_distinct_names_and_queue_size(repository: JobRepository) -> None:
    assert await repository.get_distinct_job_names() == []
    await save(repository, "name-b", next_run_at=at(-60))
    await save(repository, "name-a", next_run_at=at(-30))
    await save(repository, "name-a", next_run_at=at(60))
    await save(repository, "name-c", next_run_at=None)
    assert await repository.get_distinct_job_names() == ["name-a", "name-b", "name-c"]
    assert await repository.get_queue_size() == 2


# -- state writes --------------------------------------------------------------------------------


async def test_save_job_state_writes_the_state_fields(repository: JobRepository) -> None:
    saved = await save(repository)
    now = utcnow()
    saved.last_run_at = saved.last_finished_at = saved.failed_at = now
    saved.progress, saved.fail_count, saved.fail_reason = 50, 1, "Test error"
    saved.next_run_at = None
    saved.data = {"ignored": True}
    await repository.save_job_state(saved, last_modified_by="worker-1")
    assert saved.id
    stored = await repository.get_job_by_id(saved.id)
    assert stored is not None
    assert (stored.last_run_at, stored.last_finished_at, stored.failed_at) == (now, now, now)
    assert (stored.progress, stored.fail_count, stored.fail_reason) == (50, 1, "Test error")
    assert (stored.next_run_at, stored.data, stored.last_modified_by) == (None, {}, "worker-1")


async def test_save_job_state_of_a_missing_job_raises(repository: JobRepository) -> None:
    saved = await save(repository)
    assert saved.id
    await repository.remove_jobs(RemoveJobsOptions(id=saved.id))
    with pytest.raises(errors.JobNotFoundError, match="test-job"):
        await repository.save_job_state(saved)
    with pytest.raises(ValueError, match="without job ID"):
        await repository.save_job_state(job())


async def test_a_fenced_state_write_needs_the_lock_it_holds(repository: JobRepository) -> None:
    """Fencing: a state write with a lock token is applied only while the stored lock is that
    token (compared at millisecond precision); otherwise nothing of it is written. Without a
    token the write is unfenced, as before."""
    await save(repository, "fenced", next_run_at=at(-1))
    claimed = await claim(repository, "fenced")
    assert claimed is not None and claimed.id and claimed.locked_at is not None
    token = claimed.locked_at
    stale = attrs_copy(claimed, locked_at=None, progress=10, last_finished_at=at(0),
                       fail_count=3, next_run_at=None)
    with pytest.raises(errors.LockLostError, match="fenced") as lost:
        await repository.save_job_state(stale, lock_token=token - timedelta(seconds=1))
    assert lost.value.job_id == claimed.id
    stored = await repository.get_job_by_id(claimed.id)
    assert stored is not None
    assert (stored.locked_at, stored.progress, stored.fail_count) == (token, None, None)
    assert stored.next_run_at == claimed.next_run_at and stored.last_finished_at is None
    # The right token (sub-millisecond digits are not compared) writes.
    touched = attrs_copy(claimed, locked_at=token + timedelta(seconds=1), progress=20)
    await repository.save_job_state(touched, lock_token=token + timedelta(microseconds=400))
    stored = await repository.get_job_by_id(claimed.id)
    assert stored is not None and (stored.locked_at, stored.progress) == (touched.locked_at, 20)
    # The old token is stale now.
    with pytest.raises(errors.LockLostError):
        await repository.save_job_state(stale, lock_token=token)
    # Unfenced: written whatever the stored lock.
    await repository.save_job_state(attrs_copy(claimed, locked_at=None, progress=30))
    stored = await repository.get_job_by_id(claimed.id)
    assert stored is not None and (stored.locked_at, stored.progress) == (None, 30)
    # An unlocked job rejects every token; a removed one is missing, not fenced out.
    with pytest.raises(errors.LockLostError):
        await repository.save_job_state(stale, lock_token=token)
    await repository.remove_jobs(RemoveJobsOptions(id=claimed.id))
    with pytest.raises(errors.JobNotFoundError):
        await repository.save_job_state(stale, lock_token=token)


async def test_fenced_state_writes_in_a_batch(repository: JobRepository) -> None:
    """save_job_states with lock_tokens: each job with a token is written only while its
    stored lock is that token; the ids not written (fenced out or missing) are returned."""
    for name in ("kept", "lost", "free"):
        await save(repository, name, next_run_at=at(-1))
    kept, lost, free = [await claim(repository, name) for name in ("kept", "lost", "free")]
    assert kept and lost and free and kept.id and lost.id and free.id
    assert kept.locked_at and lost.locked_at
    tokens = {kept.id: kept.locked_at, lost.id: lost.locked_at - timedelta(milliseconds=1)}
    writes = [attrs_copy(j, locked_at=None, progress=50) for j in (kept, lost, free)]
    assert await repository.save_job_states(writes, lock_tokens=tokens) == [lost.id]
    for state, expected in ((kept, (None, 50)), (lost, (lost.locked_at, None)),
                            (free, (None, 50))):
        assert state.id
        stored = await repository.get_job_by_id(state.id)
        assert stored is not None and (stored.locked_at, stored.progress) == expected


def attrs_copy(params: JobParameters[Any], **changes: Any) -> JobParameters[Any]:
    copied = copy.deepcopy(params)
    for name, value in changes.items():
        setattr(copied, name, value)
    return copied


async def test_save_job_state_keeps_a_next_run_at_set_by_a_timing_change(
    repository: JobRepository,
) -> None:
    """A reschedule made during a run survives the run's state write: while a job runs, its
    schedule is changed (interval and next_run_at); the run's
    state write, which carries the old interval, keeps the new next_run_at and writes the rest.
    The same in a batch next to a job whose timing did not change."""
    changed = await save(repository, "w7", next_run_at=at(-1), repeat_interval="1 day")
    steady = await save(repository, "w7-steady", next_run_at=at(-1), repeat_interval="1 day")
    running = await claim(repository, "w7")
    other = await claim(repository, "w7-steady")
    assert running is not None and other is not None and changed.id
    assert (running.id, other.id) == (changed.id, steady.id)
    rescheduled = await repository.get_job_by_id(changed.id)
    assert rescheduled is not None
    rescheduled.repeat_interval, rescheduled.next_run_at = "1 minute", at(60)
    new_next = (await repository.save_job(rescheduled)).next_run_at
    started, day_later = utcnow(), at(86_400)
    for state in (running, other):
        state.last_run_at, state.next_run_at, state.progress = started, day_later, 10
    await repository.save_job_state(running, last_modified_by="w1")
    stored = await repository.get_job_by_id(changed.id)
    assert stored is not None
    assert (stored.next_run_at, stored.repeat_interval) == (new_next, "1 minute")
    assert (stored.last_run_at, stored.progress, stored.locked_at) == (
        started, 10, running.locked_at,
    )
    assert stored.last_modified_by == "w1"
    running.locked_at, running.last_finished_at = None, at(1)
    running.fail_count, running.fail_reason, running.failed_at = 1, "boom", at(1)
    assert await repository.save_job_states([running, other]) == []
    stored = await repository.get_job_by_id(changed.id)
    assert stored is not None
    assert (stored.next_run_at, stored.locked_at) == (new_next, None)
    assert stored.last_finished_at == running.last_finished_at
    assert (stored.fail_count, stored.fail_reason) == (1, "boom")
    assert stored.failed_at == running.failed_at
    assert other.id
    unchanged = await repository.get_job_by_id(other.id)
    assert unchanged is not None and unchanged.next_run_at == day_later
    assert unchanged.last_run_at == started


TIMINGS: list[dict[str, Any]] = [
    {},
    {"repeat_interval": 60_000},
    {"repeat_interval": "60000"},
    {"repeat_interval": "5 minutes"},
    {"repeat_interval": "*/5 * * * *", "repeat_timezone": "America/New_York"},
    {"repeat_at": "3:30pm", "repeat_timezone": "Europe/Paris"},
    {"repeat_interval": "1 hour", "start_date": datetime(2020, 1, 2, 3, 4, 5, 678000, UTC),
     "end_date": datetime(2999, 1, 1, tzinfo=UTC), "skip_days": [0, 6]},
    {"repeat_interval": "1 hour", "skip_days": []},
]


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
async def test_save_job_state_with_unchanged_timing_writes_next_run_at(
    repository: JobRepository, batched: bool
) -> None:
    """The timing a claimed job carries compares equal to what is stored, whatever its form,
    so the run's next_run_at is written (a false mismatch would make the job run forever)."""
    for timing in TIMINGS:
        await save(repository, "timed", next_run_at=at(-1), **timing)
    claimed = await repository.get_next_jobs_to_run(
        "timed", at(5), at(-600), len(TIMINGS), utcnow()
    )
    assert len(claimed) == len(TIMINGS)
    later = at(3600)
    for state in claimed:
        state.next_run_at, state.last_run_at = later, utcnow()
    if batched:
        assert await repository.save_job_states(claimed) == []
    else:
        for state in claimed:
            await repository.save_job_state(state)
    for state in claimed:
        assert state.id
        stored = await repository.get_job_by_id(state.id)
        assert stored is not None
        assert stored.next_run_at == later, (state.repeat_interval, state.repeat_at)


async def test_long_fail_reasons_are_truncated(repository: JobRepository) -> None:
    saved = await save(repository)
    saved.fail_reason, saved.failed_at = "x" * 100_000, utcnow()
    await repository.save_job_state(saved)
    assert saved.id
    stored = await repository.get_job_by_id(saved.id)
    assert stored is not None and stored.fail_reason is not None
    assert 1000 < len(stored.fail_reason) <= 8000
