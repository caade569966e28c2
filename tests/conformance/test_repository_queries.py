"""The JobRepository contract for queries, the overview and remove/disable/enable by criteria,
over every backend."""

from __future__ import annotations

from typing import Any

import pytest

from agenda_decl import errors
from agenda_decl._clock import utcnow
from agenda_decl._model import (
    JobsQueryOptions,
    RemoveJobsOptions,
)
from agenda_decl.interfaces import JobRepository
from tests.conformance.repository import at, names_of, save

pytestmark = pytest.mark.asyncio


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
