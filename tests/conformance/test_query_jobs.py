"""query_jobs as the dashboard's job list uses it, the same on every store: a data filter
that tells JSON types apart and reaches into arrays, sorts in both directions with nulls
last and insertion order between equals, and the total of a last page and of a page past
the end (a store may know it without counting again, it must not differ)."""

from __future__ import annotations

from typing import Any

import pytest

from agenda_decl._model import JobsQueryOptions
from agenda_decl.interfaces import JobRepository
from tests.conformance.repository import at, names_of, save

pytestmark = pytest.mark.asyncio


async def test_query_data_tells_types_apart_and_reaches_into_arrays(
    repository: JobRepository,
) -> None:
    for data in ({"v": 1}, {"v": 1.0}, {"v": True}, {"v": "1"}, {"v": None}, {"v": {"w": 1}},
                 {"list": [{"id": 1, "tags": ["a", "b"]}, {"id": 2}]}, {"é": "ü"}):
        await save(repository, "typed", data=data)

    async def total(data: Any) -> int:
        return (await repository.query_jobs(JobsQueryOptions(data=data))).total

    assert await total({"v": 1}) == 2  # 1 and 1.0, as JSON numbers compare
    assert await total({"v": True}) == 1
    assert await total({"v": "1"}) == 1
    assert await total({"v": None}) == 1
    assert await total({"v": {}}) == 1
    assert await total({"v": {"w": 1}}) == 1
    assert await total({"list": [{"id": 2}]}) == 1
    assert await total({"list": [{"tags": ["b"]}, {"id": 2}]}) == 1
    assert await total({"list": [{"id": 1, "tags": ["c"]}]}) == 0
    assert await total({"list": []}) == 1
    assert await total({"list": {}}) == 0
    assert await total({"é": "ü"}) == 1
    assert await total({}) == 8


async def test_query_sorts_nulls_last_then_in_insertion_order(repository: JobRepository) -> None:
    early, late = at(60).replace(microsecond=0), at(120)
    for name, when in (("late", late), ("none-1", None), ("early-1", early), ("early-2", early),
                       ("none-2", None)):
        await save(repository, name, next_run_at=when)
    assert await names_of(repository, sort={"next_run_at": "asc"}) == [
        "early-1", "early-2", "late", "none-1", "none-2"]
    assert await names_of(repository, sort={"next_run_at": "desc"}) == [
        "late", "early-1", "early-2", "none-1", "none-2"]
    page = await repository.query_jobs(
        JobsQueryOptions(sort={"next_run_at": "asc"}, skip=2, limit=2))
    assert ([job.name for job in page.jobs], page.total) == (["late", "none-1"], 5)


async def test_query_total_of_the_last_page_and_past_the_end(repository: JobRepository) -> None:
    for i in range(5):
        await save(repository, "paged", next_run_at=at(60 + i), data={"i": i % 2})

    async def page(**options: Any) -> tuple[int, int]:
        result = await repository.query_jobs(JobsQueryOptions(**options))
        return len(result.jobs), result.total

    assert await page(limit=2, skip=4) == (1, 5)
    assert await page(limit=2, skip=9) == (0, 5)
    assert await page(limit=5) == (5, 5)
    assert await page(limit=6) == (5, 5)
    assert await page(skip=5) == (0, 5)
    assert await page(data={"i": 1}, limit=2) == (2, 2)
    assert await page(data={"i": 0}, limit=2) == (2, 3)
    assert await page(data={"i": 0}, limit=2, skip=2) == (1, 3)
    assert await page(state="scheduled", limit=10) == (5, 5)
    assert await page(state="queued", limit=10, skip=1) == (0, 0)


async def test_query_search_folds_case_beyond_ascii(repository: JobRepository) -> None:
    for name in ("Ärger-Report", "ärger-mail", "ARGER", "Argument"):
        await save(repository, name)
    assert sorted(await names_of(repository, search="ÄRG")) == ["Ärger-Report", "ärger-mail"]
    assert sorted(await names_of(repository, search="arg")) == ["ARGER", "Argument"]
    assert await names_of(repository, search="r-r") == ["Ärger-Report"]
