"""The JobRepository contract, run over every backend (see tests/backends)."""

from __future__ import annotations

import asyncio
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

pytestmark = pytest.mark.asyncio


def at(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def job(name: str = "test-job", **fields: Any) -> JobParameters[Any]:
    fields.setdefault("next_run_at", utcnow())
    fields.setdefault("data", {})
    return JobParameters(name=name, **fields)


async def save(repo: JobRepository, name: str = "test-job", **fields: Any) -> JobParameters[Any]:
    return await repo.save_job(job(name, **fields))


async def names_of(repo: JobRepository, **options: Any) -> list[str]:
    result = await repo.query_jobs(JobsQueryOptions(**options))
    return [j.name for j in result.jobs]


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


# -- query_jobs ----------------------------------------------------------------------------------


async def seed_three(repository: JobRepository) -> None:
    await save(repository, "job-a", priority=10, next_run_at=at(60), data={"type": "alpha", "n": 1})
    await save(repository, "job-b", priority=5, next_run_at=at(120), data={"type": "beta"})
    await save(repository, "job-a", priority=15, next_run_at=at(180), data={"type": "alpha"})


async def test_query_filters(repository: JobRepository) -> None:
    await seed_three(repository)
    assert (await repository.query_jobs()).total == 3
    assert (await repository.query_jobs(JobsQueryOptions(name="job-a"))).total == 2
    assert (await repository.query_jobs(JobsQueryOptions(names=["job-a", "job-b"]))).total == 3
    assert (await repository.query_jobs(JobsQueryOptions(name="nope"))).jobs == []
    assert (await repository.query_jobs(JobsQueryOptions(search="JOB"))).total == 3
    assert (await repository.query_jobs(JobsQueryOptions(search="job-c"))).total == 0
    assert (await repository.query_jobs(JobsQueryOptions(search="-b", name="job-a"))).total == 0


async def test_query_search_is_literal(repository: JobRepository) -> None:
    await save(repository, "100%_done")
    await save(repository, "100xxdone")
    await save(repository, "a.b*c")
    assert await names_of(repository, search="%_") == ["100%_done"]
    assert await names_of(repository, search=".b*") == ["a.b*c"]
    assert await names_of(repository, search="(") == []


async def test_query_by_ids(repository: JobRepository) -> None:
    a = await save(repository, "a")
    await save(repository, "b")
    c = await save(repository, "c")
    assert a.id and c.id
    result = await repository.query_jobs(JobsQueryOptions(ids=[a.id, c.id]))
    assert sorted(j.name for j in result.jobs) == ["a", "c"]
    assert (await repository.query_jobs(JobsQueryOptions(id=a.id, name="b"))).total == 0


async def test_query_data_is_containment(repository: JobRepository) -> None:
    await save(repository, data={"nested": {"key": "value", "x": 1}, "array": [1, 2, 3]})
    await save(repository, data={"nested": {"key": "other"}})
    await save(repository, data={"key": "value"})
    await save(repository, data={"n": 1})
    await save(repository, data={"n": True})

    async def total(data: Any) -> int:
        return (await repository.query_jobs(JobsQueryOptions(data=data))).total

    assert await total({"nested": {"key": "value"}}) == 1
    assert await total({"array": [3, 1]}) == 1
    assert await total({"key": "value"}) == 1
    assert await total({"key": "val"}) == 0
    assert await total({"n": 1}) == 1
    assert await total({"missing": None}) == 0


async def test_query_data_filter_refuses_operators(repository: JobRepository) -> None:
    await save(repository, data={"a": 1})
    for bad in ({"$where": "1"}, {"a": {"$ne": None}}, {"a.b": 1}):
        with pytest.raises(errors.InvalidOptionError, match=r"\$where|\$ne|a\.b"):
            await repository.query_jobs(JobsQueryOptions(data=bad))
        with pytest.raises(errors.InvalidOptionError):
            await repository.remove_jobs(RemoveJobsOptions(data=bad))
    assert (await repository.query_jobs()).total == 1


async def test_query_pagination_counts_before_paging(repository: JobRepository) -> None:
    for i in range(5):
        await save(repository, "page", next_run_at=at(i * 10), data={"i": i})
    result = await repository.query_jobs(JobsQueryOptions(limit=2))
    assert (len(result.jobs), result.total) == (2, 5)
    assert [j.data["i"] for j in result.jobs] == [4, 3]
    result = await repository.query_jobs(JobsQueryOptions(limit=2, skip=2))
    assert [j.data["i"] for j in result.jobs] == [2, 1]
    result = await repository.query_jobs(JobsQueryOptions(skip=4))
    assert [j.data["i"] for j in result.jobs] == [0]
    assert (await repository.query_jobs(JobsQueryOptions(skip=9))).jobs == []


async def test_query_sorting(repository: JobRepository) -> None:
    for priority, name in ((3, "c"), (1, "a"), (2, "b")):
        await save(repository, name, priority=priority, next_run_at=at(priority))
    await save(repository, "z", priority=0, next_run_at=None)

    async def order(**sort: Any) -> list[str]:
        return await names_of(repository, sort=sort)

    assert await order(priority="desc") == ["c", "b", "a", "z"]
    assert await order(name="asc") == ["a", "b", "c", "z"]
    assert await order(next_run_at="asc") == ["a", "b", "c", "z"]
    assert await order(next_run_at="desc") == ["c", "b", "a", "z"]
    assert await names_of(repository) == ["c", "b", "a", "z"]


async def test_query_state_filter_and_states(repository: JobRepository) -> None:
    now = utcnow()
    await save(repository, "scheduled", next_run_at=at(3600))
    await save(repository, "queued", next_run_at=at(-60))
    await save(repository, "repeating", next_run_at=at(60), repeat_interval="1 minute")
    failed = await save(repository, "failed", next_run_at=None)
    done = await save(repository, "completed", next_run_at=None)
    running = await save(repository, "running", next_run_at=None)
    await save(repository, "paused", next_run_at=at(-60), disabled=True)
    failed.failed_at = failed.last_finished_at = now
    failed.fail_count, failed.fail_reason = 1, "boom"
    await repository.save_job_state(failed)
    done.last_finished_at = now
    await repository.save_job_state(done)
    running.locked_at = now
    await repository.save_job_state(running)
    for state in ("scheduled", "repeating", "failed", "completed", "running"):
        result = await repository.query_jobs(JobsQueryOptions(state=state))  # type: ignore[arg-type]
        assert [(j.name, j.state) for j in result.jobs] == [(state, state)]
    queued = await repository.query_jobs(JobsQueryOptions(state="queued", sort={"name": "asc"}))
    assert [j.name for j in queued.jobs] == ["paused", "queued"]
    assert await names_of(repository, state="paused") == ["paused"]
    assert "paused" not in await names_of(repository, include_disabled=False)
    assert (await repository.query_jobs(JobsQueryOptions(state="queued", limit=1))).total == 2


async def test_a_job_repeating_at_a_time_of_day_is_repeating(repository: JobRepository) -> None:
    """One vocabulary: a repeating job has repeat_interval or repeat_at (an `at:` schedule),
    in the computed state, the state filter and the overview of every store."""
    await save(repository, "at-job", next_run_at=at(3600), repeat_at="3:30pm")
    await save(repository, "at-job", next_run_at=at(3600), repeat_at="")  # empty: not repeating
    await save(repository, "once", next_run_at=at(3600))
    repeating = await repository.query_jobs(JobsQueryOptions(state="repeating"))
    assert [(j.name, j.repeat_at, j.state) for j in repeating.jobs] == [
        ("at-job", "3:30pm", "repeating")]
    scheduled = await repository.query_jobs(JobsQueryOptions(state="scheduled",
                                                             sort={"name": "asc"}))
    assert [j.name for j in scheduled.jobs] == ["at-job", "once"]
    overview = {entry.name: entry for entry in await repository.get_jobs_overview()}
    assert (overview["at-job"].repeating, overview["at-job"].scheduled) == (1, 1)


async def test_overview_counts_per_name(repository: JobRepository) -> None:
    now = utcnow()
    await save(repository, "overview-job", next_run_at=at(60))
    done = await save(repository, "overview-job", next_run_at=None)
    done.last_finished_at = now
    await repository.save_job_state(done)
    await save(repository, "overview-job", next_run_at=at(-5), disabled=True)
    await save(repository, "other-job", next_run_at=at(60), repeat_interval="1 hour")
    overview = {entry.name: entry for entry in await repository.get_jobs_overview()}
    assert list(overview) == ["other-job", "overview-job"]
    entry = overview["overview-job"]
    assert (entry.total, entry.scheduled, entry.completed, entry.queued, entry.paused) == (
        3,
        1,
        1,
        1,
        1,
    )
    assert (overview["other-job"].total, overview["other-job"].repeating) == (1, 1)


# -- remove / disable / enable --------------------------------------------------------------------


async def test_remove_by_name_ids_and_data(repository: JobRepository) -> None:
    a = await save(repository, "remove-test", data={"k": 1})
    b = await save(repository, "remove-test", data={"k": 2})
    c = await save(repository, "keep-test", data={"k": 1})
    assert a.id and b.id and c.id
    assert await repository.remove_jobs(RemoveJobsOptions(name="remove-test", data={"k": 1})) == 1
    assert await repository.remove_jobs(RemoveJobsOptions(ids=[b.id, c.id], name="keep-test")) == 1
    assert await names_of(repository) == ["remove-test"]


async def test_remove_with_not_names(repository: JobRepository) -> None:
    for name in ("a", "b", "c"):
        await save(repository, name)
    assert await repository.remove_jobs(RemoveJobsOptions(not_names=["a", "b"])) == 1
    assert sorted(await names_of(repository)) == ["a", "b"]


@pytest.mark.parametrize(
    "options",
    [RemoveJobsOptions(), RemoveJobsOptions(data={}), RemoveJobsOptions(ids=[]),
     RemoveJobsOptions(names=[]), RemoveJobsOptions(not_names=[])],
    ids=["empty", "empty-data", "empty-ids", "empty-names", "empty-not-names"],
)
async def test_options_that_select_nothing_touch_nothing(
    repository: JobRepository, options: RemoveJobsOptions
) -> None:
    await save(repository, data={"a": 1})
    assert await repository.remove_jobs(options) == 0
    assert await repository.disable_jobs(options) == 0
    result = await repository.query_jobs()
    assert (result.total, result.jobs[0].disabled) == (1, False)


async def test_disable_and_enable(repository: JobRepository) -> None:
    await save(repository, "d")
    await save(repository, "d")
    await save(repository, "e")
    assert await repository.disable_jobs(RemoveJobsOptions(name="d")) == 2
    assert await names_of(repository, state="paused") == ["d", "d"]
    assert await repository.disable_jobs(RemoveJobsOptions(name="non-existent")) == 0
    assert await repository.enable_jobs(RemoveJobsOptions(name="d")) == 2
    assert await names_of(repository, state="paused") == []


# -- every criterion applies (AND), for remove/disable/enable and query -------------------------

#: The jobs of the criteria tests: label -> (name, data).
CRITERIA_JOBS = {
    "a1": ("a", {"k": 1}),
    "a2": ("a", {"k": 2}),
    "b1": ("b", {"k": 1}),
    "c1": ("c", {"k": 1}),
}

#: (test id, criteria with job labels in place of ids, labels of the jobs that must match).
REMOVE_CRITERIA = [
    ("id+ids-overlapping", {"id": "a1", "ids": ["a1", "b1"]}, {"a1"}),
    ("id+ids-disjoint", {"id": "a1", "ids": ["b1", "c1"]}, set()),
    ("id+name-mismatch", {"id": "a1", "name": "b"}, set()),
    ("malformed-id+ids", {"id": "not-an-id", "ids": ["a1"]}, set()),
    ("ids-with-a-malformed-one", {"ids": ["a1", "not-an-id"]}, {"a1"}),
    ("name+names-overlapping", {"name": "a", "names": ["a", "b"]}, {"a1", "a2"}),
    ("name+names-disjoint", {"name": "a", "names": ["b", "c"]}, set()),
    ("names+not_names", {"names": ["a", "b"], "not_names": ["a"]}, {"b1"}),
    ("name+not_names-excluding-it", {"name": "a", "not_names": ["a"]}, set()),
    ("name+not_names-other", {"name": "a", "not_names": ["b"]}, {"a1", "a2"}),
    ("ids+not_names", {"ids": ["a1", "b1"], "not_names": ["a"]}, {"b1"}),
    (
        "ids+names+data",
        {"ids": ["a1", "a2", "b1", "c1"], "names": ["a", "c"], "data": {"k": 1}},
        {"a1", "c1"},
    ),
    ("not_names-alone", {"not_names": ["a", "c"]}, {"b1"}),
    (
        "every-criterion",
        {"id": "a1", "ids": ["a1", "a2"], "name": "a", "names": ["a", "b"],
         "not_names": ["b"], "data": {"k": 1}},
        {"a1"},
    ),
    (
        "every-criterion-but-data",
        {"id": "a1", "ids": ["a1", "a2"], "name": "a", "names": ["a", "b"],
         "not_names": ["b"], "data": {"k": 2}},
        set(),
    ),
]

QUERY_CRITERIA = [
    ("id+ids-overlapping", {"id": "a1", "ids": ["a1", "b1"]}, {"a1"}),
    ("id+ids-disjoint", {"id": "a1", "ids": ["b1"]}, set()),
    ("malformed-id+ids", {"id": "not-an-id", "ids": ["a1"]}, set()),
    ("name+names-overlapping", {"name": "a", "names": ["a", "b"]}, {"a1", "a2"}),
    ("name+names-disjoint", {"name": "a", "names": ["b"]}, set()),
    ("ids+name", {"ids": ["a1", "b1"], "name": "b"}, {"b1"}),
    (
        "ids+names+data",
        {"ids": ["a1", "a2", "b1", "c1"], "names": ["a", "c"], "data": {"k": 1}},
        {"a1", "c1"},
    ),
    ("name+names+search", {"name": "a", "names": ["a", "b"], "search": "B"}, set()),
    ("names+search", {"names": ["a", "b"], "search": "B"}, {"b1"}),
    (
        "every-criterion",
        {"id": "a1", "ids": ["a1", "a2"], "name": "a", "names": ["a", "b"], "data": {"k": 1}},
        {"a1"},
    ),
]


async def seed_criteria_jobs(repository: JobRepository) -> dict[str, str]:
    """Save :data:`CRITERIA_JOBS`; return label -> id."""
    ids: dict[str, str] = {}
    for label, (name, data) in CRITERIA_JOBS.items():
        saved = await save(repository, name, data=data)
        assert saved.id
        ids[label] = saved.id
    return ids


def with_ids(criteria: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The criteria with job labels replaced by the jobs' ids (unknown labels kept as is)."""
    resolved = dict(criteria)
    if "id" in resolved:
        resolved["id"] = ids.get(resolved["id"], resolved["id"])
    if "ids" in resolved:
        resolved["ids"] = [ids.get(label, label) for label in resolved["ids"]]
    return resolved


async def stored_labels(
    repository: JobRepository, ids: dict[str, str], *, disabled: bool | None = None
) -> set[str]:
    """Labels of the stored jobs (only those with ``disabled`` equal to it, when given)."""
    labels = {job_id: label for label, job_id in ids.items()}
    jobs = (await repository.query_jobs()).jobs
    return {
        labels[str(j.id)] for j in jobs if disabled is None or j.disabled is disabled
    }


def criteria_cases(cases: list[tuple[str, dict[str, Any], set[str]]]) -> Any:
    return pytest.mark.parametrize(
        ("criteria", "expected"),
        [(criteria, expected) for _, criteria, expected in cases],
        ids=[case_id for case_id, _, _ in cases],
    )


@criteria_cases(REMOVE_CRITERIA)
async def test_remove_applies_every_criterion(
    repository: JobRepository, criteria: dict[str, Any], expected: set[str]
) -> None:
    ids = await seed_criteria_jobs(repository)
    options = RemoveJobsOptions(**with_ids(criteria, ids))
    assert await repository.remove_jobs(options) == len(expected)
    assert await stored_labels(repository, ids) == set(CRITERIA_JOBS) - expected


@criteria_cases(REMOVE_CRITERIA)
async def test_disable_applies_every_criterion(
    repository: JobRepository, criteria: dict[str, Any], expected: set[str]
) -> None:
    ids = await seed_criteria_jobs(repository)
    options = RemoveJobsOptions(**with_ids(criteria, ids))
    assert await repository.disable_jobs(options) == len(expected)
    assert await stored_labels(repository, ids, disabled=True) == expected


@criteria_cases(REMOVE_CRITERIA)
async def test_enable_applies_every_criterion(
    repository: JobRepository, criteria: dict[str, Any], expected: set[str]
) -> None:
    ids = await seed_criteria_jobs(repository)
    assert await repository.disable_jobs(RemoveJobsOptions(names=["a", "b", "c"])) == 4
    options = RemoveJobsOptions(**with_ids(criteria, ids))
    assert await repository.enable_jobs(options) == len(expected)
    assert await stored_labels(repository, ids, disabled=False) == expected


@criteria_cases(QUERY_CRITERIA)
async def test_query_applies_every_criterion(
    repository: JobRepository, criteria: dict[str, Any], expected: set[str]
) -> None:
    ids = await seed_criteria_jobs(repository)
    labels = {job_id: label for label, job_id in ids.items()}
    result = await repository.query_jobs(JobsQueryOptions(**with_ids(criteria, ids)))
    assert {labels[str(j.id)] for j in result.jobs} == expected
    assert result.total == len(expected)


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


async def claim(repository: JobRepository, name: str, **kwargs: Any) -> JobParameters[Any] | None:
    now = utcnow()
    return await repository.get_next_job_to_run(
        name,
        kwargs.get("next_scan_at", now + timedelta(seconds=5)),
        kwargs.get("lock_deadline", now - timedelta(minutes=10)),
        now,
        last_modified_by="tester",
    )


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
