"""The JobLogger contract (agenda_decl.interfaces.JobLogger), run over the built-in logger of
every backend (see tests/backends/job_logs.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from agenda_decl import JobLogEntry, JobLogQuery, JobLogRetention
from agenda_decl.errors import InvalidOptionError
from agenda_decl.interfaces import AgendaBackend, JobLogger
from tests.backends import BACKENDS, POSTGRES_KINDS
from tests.backends.job_logs import _backend, make_logged_backend, with_log_name

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def entry(ms: int = 0, **fields: Any) -> JobLogEntry:
    values: dict[str, Any] = {"level": "info", "event": "start", "job_name": "work",
                              "job_id": "job-1", "message": "job started"}
    return JobLogEntry(timestamp=at(ms), **{**values, **fields})


@pytest.fixture(params=BACKENDS)
async def logged(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[tuple[str, AgendaBackend]]:
    async with make_logged_backend(request.param, tmp_path) as backend:
        yield request.param, backend


@pytest.fixture
def logger(logged: tuple[str, AgendaBackend]) -> JobLogger:
    assert logged[1].logger is not None
    return logged[1].logger


async def messages(logger: JobLogger, **query: Any) -> list[str]:
    result = await logger.get_logs(JobLogQuery(**query))
    return [e.message for e in result.entries]


# -- writing and reading back -----------------------------------------------------------------


async def test_an_entry_reads_back_with_every_field(logger: JobLogger) -> None:
    written = entry(
        5, level="error", event="fail", message="job failed: boom", duration=1234,
        error="Traceback (most recent call last):\n  ...\nValueError: boom", fail_count=3,
        retry_delay=5000, retry_attempt=2, agenda_name="worker-1", meta={"k": [1, "two"]},
    )
    await logger.log(written)
    result = await logger.get_logs()
    assert result.total == 1
    (read,) = result.entries
    assert read.id
    assert read == attrs.evolve(written, id=read.id)
    assert read.timestamp.tzinfo is not None


async def test_absent_fields_read_back_as_none(logger: JobLogger) -> None:
    await logger.log(JobLogEntry(timestamp=at(0), level="debug", event="locked",
                                 job_name="work", message="job locked"))
    (read,) = (await logger.get_logs()).entries
    assert (read.job_id, read.duration, read.error, read.fail_count, read.retry_delay,
            read.retry_attempt, read.agenda_name, read.meta) == (None,) * 8
    assert (read.level, read.event, read.job_name) == ("debug", "locked", "work")


async def test_zero_and_unicode_values_are_kept(logger: JobLogger) -> None:
    await logger.log(entry(0, duration=0, fail_count=0, message="fertig ✓ 完了",
                           error="é" * 9000))
    (read,) = (await logger.get_logs()).entries
    assert (read.duration, read.fail_count, read.message) == (0, 0, "fertig ✓ 完了")
    assert read.error == "é" * 9000


async def test_log_many_writes_every_entry(logger: JobLogger) -> None:
    await logger.log_many([entry(i, message=f"m{i}") for i in range(7)])
    assert await messages(logger, sort="asc") == [f"m{i}" for i in range(7)]


# -- order and paging -------------------------------------------------------------------------


async def test_newest_first_unless_asc(logger: JobLogger) -> None:
    await logger.log_many([entry(ms, message=f"m{ms}") for ms in (20, 0, 10)])
    assert await messages(logger) == ["m20", "m10", "m0"]
    assert await messages(logger, sort="asc") == ["m0", "m10", "m20"]


async def test_entries_of_one_timestamp_keep_the_written_order(
    logged: tuple[str, AgendaBackend], logger: JobLogger
) -> None:
    if logged[0] in POSTGRES_KINDS:
        pytest.skip("PostgreSQL's ids are random UUIDs: Node's table keeps no write order")
    await logger.log_many([entry(0, message=f"m{i}") for i in range(12)])
    assert await messages(logger, sort="asc") == [f"m{i}" for i in range(12)]
    assert await messages(logger) == [f"m{i}" for i in reversed(range(12))]


async def test_paging_and_total(logger: JobLogger) -> None:
    await logger.log_many([entry(ms, message=f"m{ms}") for ms in range(10)])
    result = await logger.get_logs(JobLogQuery(limit=3, offset=2))
    assert [e.message for e in result.entries] == ["m7", "m6", "m5"]
    assert result.total == 10
    assert len((await logger.get_logs()).entries) == 10
    assert (await logger.get_logs(JobLogQuery(limit=0))).entries == []
    assert (await logger.get_logs(JobLogQuery(limit=0))).total == 10
    everything = await logger.get_logs(JobLogQuery(limit=None, sort="asc"))
    assert len(everything.entries) == 10
    beyond = await logger.get_logs(JobLogQuery(offset=20))
    assert (beyond.entries, beyond.total) == ([], 10)


async def test_the_default_page_is_fifty(logger: JobLogger) -> None:
    await logger.log_many([entry(ms) for ms in range(55)])
    result = await logger.get_logs()
    assert (len(result.entries), result.total) == (50, 55)


# -- criteria ---------------------------------------------------------------------------------


async def _mixed(logger: JobLogger) -> None:
    await logger.log_many([
        entry(0, job_id="a", job_name="send", level="info", event="start", message="1"),
        entry(1, job_id="a", job_name="send", level="error", event="fail", message="2"),
        entry(2, job_id="b", job_name="send", level="warn", event="retry:exhausted",
              message="3"),
        entry(3, job_id="c", job_name="report", level="info", event="complete", message="4"),
        entry(4, job_id=None, job_name="report", level="debug", event="locked", message="5"),
    ])


@pytest.mark.parametrize(("query", "expected"), [
    ({"job_id": "a"}, ["1", "2"]),
    ({"job_name": "report"}, ["4", "5"]),
    ({"job_id": "a", "job_name": "report"}, []),
    ({"job_id": "c", "job_name": "report"}, ["4"]),
    ({"level": "info"}, ["1", "4"]),
    ({"level": ["error", "warn"]}, ["2", "3"]),
    ({"event": "retry:exhausted"}, ["3"]),
    ({"event": ["start", "locked"], "job_name": "report"}, ["5"]),
    ({"from_date": at(1), "to_date": at(3)}, ["2", "3", "4"]),
    ({"from_date": at(3)}, ["4", "5"]),
    ({"to_date": at(0)}, ["1"]),
    ({"job_name": "send", "level": "info", "to_date": at(0)}, ["1"]),
])
async def test_every_criterion_applies(logger: JobLogger, query: dict[str, Any],
                                       expected: list[str]) -> None:
    await _mixed(logger)
    result = await logger.get_logs(JobLogQuery(sort="asc", **query))
    assert ([e.message for e in result.entries], result.total) == (expected, len(expected))


async def test_criteria_and_paging_together(logger: JobLogger) -> None:
    await logger.log_many([entry(ms, level="error" if ms % 2 else "info", message=str(ms))
                           for ms in range(10)])
    result = await logger.get_logs(JobLogQuery(level="error", limit=2, offset=1))
    assert ([e.message for e in result.entries], result.total) == (["7", "5"], 5)


def test_a_query_refuses_what_no_store_has() -> None:
    with pytest.raises(InvalidOptionError):
        JobLogQuery(level="fatal")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError):
        JobLogQuery(event=["start", "stop"])  # type: ignore[list-item]
    with pytest.raises(InvalidOptionError):
        JobLogQuery(limit=-1)
    with pytest.raises(InvalidOptionError):
        JobLogQuery(from_date=datetime(2026, 1, 1))


# -- clearing and retention -------------------------------------------------------------------


async def test_clear_logs_deletes_what_the_query_matches(logger: JobLogger) -> None:
    await _mixed(logger)
    assert await logger.clear_logs(JobLogQuery(job_name="send", level=["error", "warn"])) == 2
    assert await messages(logger, sort="asc") == ["1", "4", "5"]
    # paging does not limit a delete
    assert await logger.clear_logs(JobLogQuery(limit=1, offset=1)) == 3
    assert (await logger.get_logs()).total == 0


async def test_clear_logs_without_a_query_deletes_everything(logger: JobLogger) -> None:
    await _mixed(logger)
    assert await logger.clear_logs() == 5
    assert (await logger.get_logs()).total == 0
    assert await logger.clear_logs() == 0
    await logger.log(entry(9, message="after"))
    assert await messages(logger) == ["after"]


async def test_clear_logs_keeps_the_job_and_name_indexes_right(logger: JobLogger) -> None:
    await _mixed(logger)
    await logger.clear_logs(JobLogQuery(to_date=at(1)))
    assert await messages(logger, job_id="a") == []
    assert await messages(logger, job_name="send") == ["3"]
    assert (await logger.get_logs(JobLogQuery(job_name="send"))).total == 1


async def test_prune_by_age(logger: JobLogger) -> None:
    logger.retention = JobLogRetention(max_age="1 minute")
    await logger.log_many([entry(-120_000, message="old"), entry(-60_000, message="edge"),
                           entry(-59_999, message="young"), entry(0, message="new")])
    assert await logger.prune(T0) == 1
    assert await messages(logger) == ["new", "young", "edge"]


async def test_prune_by_count(logger: JobLogger) -> None:
    logger.retention = JobLogRetention(max_entries=3)
    await logger.log_many([entry(ms, message=str(ms)) for ms in range(6)])
    assert await logger.prune(T0) == 3
    assert await messages(logger) == ["5", "4", "3"]
    assert await logger.prune(T0) == 0


async def test_prune_without_retention_keeps_everything(logger: JobLogger) -> None:
    logger.retention = None
    await logger.log(entry(-10**9))
    assert await logger.prune(T0) == 0
    assert (await logger.get_logs()).total == 1


def test_retention_refuses_bounds_that_keep_nothing() -> None:
    with pytest.raises(InvalidOptionError):
        JobLogRetention(max_entries=0)
    with pytest.raises(InvalidOptionError):
        JobLogRetention(max_age=0)
    assert JobLogRetention(max_age="2 days").max_age == 2 * 86_400_000


# -- storage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
async def test_reads_never_create_the_storage(kind: str, tmp_path: Path) -> None:
    async with _backend(kind, tmp_path, with_log_name(kind)) as backend:
        logger = backend.logger
        assert logger is not None
        result = await logger.get_logs(JobLogQuery(job_name="x"))
        assert (result.entries, result.total) == ([], 0)
        assert await logger.clear_logs(JobLogQuery(job_name="x")) == 0
        assert await logger.clear_logs() == 0
        if kind in POSTGRES_KINDS:
            import psycopg

            from tests.backends.servers import POSTGRES_URL

            async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
                cursor = await conn.execute("SELECT to_regclass(%s) IS NULL",
                                            (logger.table_name,))  # type: ignore[attr-defined]
                assert (await cursor.fetchone()) == (True,)


async def test_connect_is_idempotent(logger: JobLogger) -> None:
    await logger.log(entry(0))
    await logger.connect()
    await logger.connect()
    assert (await logger.get_logs()).total == 1
