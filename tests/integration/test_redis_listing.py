"""Redis listings read in slices (``backends.redis.listing``): with slices of three jobs, so
that every page, tie and total crosses slice boundaries, each query answers as the in-memory
store does (the conformance suite's small stores fit in one slice)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agenda_decl import JobsQueryOptions
from agenda_decl._clock import utcnow
from agenda_decl._model import JobParameters, JobsResult
from agenda_decl.backends.redis import RedisBackend, listing
from agenda_decl.interfaces import JobRepository
from agenda_decl.testing import InMemoryJobRepository
from tests.backends import redis as redis_backends
from tests.backends import redis_cluster

pytestmark = pytest.mark.asyncio

SORTS: list[dict[str, str] | None] = [
    None, {"next_run_at": "asc"}, {"next_run_at": "desc"},
    {"next_run_at": "desc", "priority": "asc"}, {"priority": "desc"}, {"name": "asc"},
]
FILTERS: list[dict[str, Any]] = [
    {}, {"name": "b"}, {"state": "queued"}, {"state": "scheduled"}, {"state": "completed"},
    {"state": "paused"}, {"include_disabled": False}, {"data": {"g": 1}},
    {"names": ["a", "c"], "state": "scheduled"},
]
PAGES = [(0, 0), (0, 4), (2, 5), (11, 7), (40, 3)]


@pytest.fixture(params=["redis", "redis_cluster"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisBackend]:
    monkeypatch.setattr(listing, "ROWS_SLICE", 3)
    monkeypatch.setattr(listing, "COUNT_BOUND", 4)
    module = redis_backends if request.param == "redis" else redis_cluster
    async with module.make_backend(tmp_path) as made:
        yield made


async def store(repository: JobRepository) -> None:
    """44 jobs of three names: many share a millisecond (ties the walk must read whole), some
    have no next run, some are disabled, priorities differ."""
    now = utcnow().replace(microsecond=0)
    moments = [now - timedelta(hours=2), now - timedelta(hours=1), now + timedelta(hours=1),
               now + timedelta(hours=3), None]
    for n in range(44):
        await repository.save_job(JobParameters(
            name="abc"[n % 3], next_run_at=moments[(n * 7) % 5 if n % 4 else n % 5],
            priority=(n % 3) * 5 - 5, disabled=n % 6 == 0, data={"n": n, "g": n % 2},
        ))


def numbers(result: JobsResult) -> list[int]:
    return [job.data["n"] for job in result.jobs]


async def test_every_query_answers_as_the_reference_store(backend: RedisBackend) -> None:
    reference = InMemoryJobRepository()
    await store(reference)
    await store(backend.repository)
    for sort, filters, (skip, limit) in itertools.product(SORTS, FILTERS, PAGES):
        options = JobsQueryOptions(sort=sort, skip=skip, limit=limit, **filters)  # type: ignore[arg-type]
        expected = await reference.query_jobs(options)
        found = await backend.repository.query_jobs(options)
        assert numbers(found) == numbers(expected), options
        assert [job.state for job in found.jobs] == [job.state for job in expected.jobs]
        if found.total_exact:
            assert found.total == expected.total, options
        else:  # a lower bound: at least the page's end, at most every match
            assert skip + len(found.jobs) <= found.total <= expected.total, options


async def test_the_overview_counts_every_slice(backend: RedisBackend) -> None:
    reference = InMemoryJobRepository()
    await store(reference)
    await store(backend.repository)
    assert await backend.repository.get_jobs_overview() == await reference.get_jobs_overview()
