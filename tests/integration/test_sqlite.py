"""SQLite backend specifics: the file layout, WAL, identifiers, and several workers on one file."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agenda_decl._clock import utcnow
from agenda_decl._model import JobParameters, JobsQueryOptions
from agenda_decl.backends.sqlite import SQLiteBackend, network_filesystem
from agenda_decl.connectors import sqlite as sqlite_connector
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError

COLUMNS = [
    "id", "name", "priority", "next_run_at", "type", "locked_at", "last_finished_at",
    "failed_at", "fail_count", "fail_reason", "repeat_timezone", "last_run_at",
    "repeat_interval", "data", "repeat_at", "disabled", "progress", "fork",
    "last_modified_by", "debounce_started_at", "created_at", "updated_at", "start_date",
    "end_date", "skip_days",
]  # fmt: skip
INDEXES = {
    "agenda_jobs_single_job_idx",
    "agenda_jobs_locked_at_idx",
    "agenda_jobs_next_run_at_desc_idx",
    "agenda_jobs_next_run_at_asc_idx",
    "agenda_jobs_claim_due_idx",
    "agenda_jobs_claim_stale_idx",
    "agenda_jobs_failed_idx",
}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agenda.db"


@pytest.fixture
async def backend(db_path: Path) -> AsyncIterator[SQLiteBackend]:
    made = SQLiteBackend(db_path)
    await made.connect()
    yield made
    await made.disconnect()


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to the file, as another program would open it."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        yield connection


def due_job(name: str = "work", **fields: Any) -> JobParameters[Any]:
    fields.setdefault("next_run_at", utcnow() - timedelta(seconds=1))
    return JobParameters(name=name, **fields)


# -- layout --------------------------------------------------------------------------------------


async def test_schema_has_the_postgres_columns_and_the_indexes(
    backend: SQLiteBackend, db_path: Path
) -> None:
    with raw(db_path) as connection:
        columns = [row[1] for row in connection.execute('PRAGMA table_info("agenda_jobs")')]
        indexes = {
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'agenda_jobs'"
                " AND sql IS NOT NULL"
            )
        }
        single = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'agenda_jobs_single_job_idx'"
        ).fetchone()[0]
    assert columns == COLUMNS
    assert indexes == INDEXES
    assert "UNIQUE" in single and "type = 'single'" in single


def _indexes(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'agenda_jobs'"
        " AND sql IS NOT NULL")}


async def test_a_file_of_an_older_version_gets_the_job_list_indexes_on_open(
    db_path: Path,
) -> None:
    """Files made before the job-list indexes had a partial next_run_at_idx: opening one
    replaces it, and the jobs in it stay."""
    first = SQLiteBackend(db_path)
    await first.connect()
    await first.repository.save_job(due_job("kept"))
    await first.disconnect()
    with raw(db_path) as connection:
        connection.execute("DROP INDEX agenda_jobs_next_run_at_desc_idx")
        connection.execute("DROP INDEX agenda_jobs_next_run_at_asc_idx")
        connection.execute("DROP INDEX agenda_jobs_failed_idx")
        connection.execute('CREATE INDEX "agenda_jobs_next_run_at_idx" ON agenda_jobs'
                           " (next_run_at) WHERE next_run_at IS NOT NULL")
    reopened = SQLiteBackend(db_path)
    await reopened.connect()
    try:
        result = await reopened.repository.query_jobs(JobsQueryOptions(
            sort={"next_run_at": "asc"}))
        assert [job.name for job in result.jobs] == ["kept"]
    finally:
        await reopened.disconnect()
    with raw(db_path) as connection:
        assert _indexes(connection) == INDEXES


async def test_wal_mode_is_on(backend: SQLiteBackend, db_path: Path) -> None:
    with raw(db_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_file_of_an_older_version_loses_the_find_and_lock_index_on_open(
    db_path: Path,
) -> None:
    """Files made before the claim indexes had Agenda's find-and-lock index, which no claim
    reads any more: opening one drops it (it only cost writes), and its due job is claimed."""
    first = SQLiteBackend(db_path)
    await first.connect()
    await first.repository.save_job(due_job("kept"))
    await first.disconnect()
    with raw(db_path) as connection:
        connection.execute('CREATE INDEX "agenda_jobs_find_and_lock_idx" ON agenda_jobs'
                           " (name, next_run_at, priority DESC, locked_at, disabled)"
                           " WHERE disabled = 0")
    reopened = SQLiteBackend(db_path)
    await reopened.connect()
    try:
        now = utcnow()
        claimed = await reopened.repository.get_next_jobs_to_run(
            "kept", now, now - timedelta(minutes=10), 5, now)
        assert [job.name for job in claimed] == ["kept"]
    finally:
        await reopened.disconnect()
    with raw(db_path) as connection:
        assert _indexes(connection) == INDEXES


async def test_instants_are_integer_milliseconds_and_read_back_aware_utc(
    backend: SQLiteBackend, db_path: Path
) -> None:
    start, end = utcnow() + timedelta(days=1), utcnow() + timedelta(days=30)
    saved = await backend.repository.save_job(
        due_job(start_date=start, end_date=end, skip_days=[0, 6])
    )
    assert saved.id
    with raw(db_path) as connection:
        types = connection.execute(
            "SELECT typeof(next_run_at), typeof(start_date), typeof(created_at), skip_days"
            " FROM agenda_jobs"
        ).fetchone()
    assert types == ("integer", "integer", "integer", "[0, 6]")
    stored = await backend.repository.get_job_by_id(saved.id)
    assert stored is not None
    assert (stored.start_date, stored.end_date, stored.skip_days) == (start, end, [0, 6])
    assert stored.start_date is not None and stored.start_date.utcoffset() == timedelta(0)


async def test_repeat_interval_keeps_ints_and_strings(
    backend: SQLiteBackend, db_path: Path
) -> None:
    repository = backend.repository
    values: list[str | int] = [5000, "5 minutes", "5000", "*/5 * * * *"]
    saved = [await repository.save_job(due_job(repeat_interval=v)) for v in values]
    loaded = [await repository.get_job_by_id(job.id) for job in saved if job.id]
    assert [job.repeat_interval for job in loaded if job] == values
    assert [type(job.repeat_interval) for job in loaded if job] == [int, str, str, str]
    with raw(db_path) as connection:
        kinds = [row[0] for row in connection.execute(
            "SELECT typeof(repeat_interval) FROM agenda_jobs ORDER BY rowid"
        )]  # fmt: skip
    assert kinds == ["integer", "text", "text", "text"]


async def test_string_zero_interval_is_repeating_but_integer_zero_is_not(
    backend: SQLiteBackend,
) -> None:
    repository = backend.repository
    await repository.save_job(due_job("text-zero", repeat_interval="0"))
    await repository.save_job(due_job("int-zero", repeat_interval=0))
    result = await repository.query_jobs(JobsQueryOptions(sort={"name": "asc"}))
    assert [(job.name, job.state) for job in result.jobs] == [
        ("int-zero", "queued"),
        ("text-zero", "repeating"),
    ]


async def test_unique_keys_match_by_json_value_not_by_sql_value(backend: SQLiteBackend) -> None:
    """The SQL prefilter only narrows; the shared rule decides (True is not 1, dict order and
    odd key names do not matter)."""
    repository = backend.repository

    async def save(unique: dict[str, Any], data: Any, name: str = "work") -> str:
        saved = await repository.save_job(due_job(name, unique=unique, data=data))
        assert saved.id
        return saved.id

    flag_true = await save({"data.flag": True}, {"flag": True})
    flag_one = await save({"data.flag": 1}, {"flag": 1})
    assert flag_true != flag_one
    assert await save({"data.flag": True}, {"flag": True, "v": 2}) == flag_true
    nested = await save({"data.obj": {"a": 1, "b": 2}}, {"obj": {"a": 1, "b": 2}})
    assert await save({"data.obj": {"b": 2, "a": 1}}, {"obj": {"b": 2, "a": 1}}) == nested
    odd = await save({'data.we"ird': "x"}, {'we"ird': "x"})
    assert await save({'data.we"ird': "x"}, {'we"ird': "x", "v": 2}) == odd
    missing = await save({"data.absent": None}, {"other": 1}, "absent")  # missing is null
    assert await save({"data.absent": None}, {"absent": None}, "absent") == missing
    assert (await repository.query_jobs()).total == 5


async def test_search_folds_unicode_case(backend: SQLiteBackend) -> None:
    await backend.repository.save_job(due_job("Überweisung-Prüfen"))
    await backend.repository.save_job(due_job("other"))
    result = await backend.repository.query_jobs(JobsQueryOptions(search="üBERWEISUNG-PRÜ"))
    assert [job.name for job in result.jobs] == ["Überweisung-Prüfen"]


# -- refused input -------------------------------------------------------------------------------


@pytest.mark.parametrize("table_name", ["jobs; drop", 'a"b', "1jobs", "", "x" * 64])
def test_bad_table_names_are_refused(db_path: Path, table_name: str) -> None:
    with pytest.raises(InvalidOptionError, match="table_name") as raised:
        SQLiteBackend(db_path, table_name=table_name)
    assert repr(table_name) in str(raised.value)


async def test_a_custom_table_name_gets_its_own_table_and_indexes(db_path: Path) -> None:
    backend = SQLiteBackend(db_path, table_name="Other_Jobs")
    await backend.connect()
    await backend.repository.save_job(due_job())
    await backend.disconnect()
    with raw(db_path) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"Other_Jobs", "Other_Jobs_claim_due_idx", "Other_Jobs_single_job_idx"} <= names


async def test_data_that_is_not_json_is_refused_and_nothing_stored(
    backend: SQLiteBackend, db_path: Path
) -> None:
    for bad in ({"when": object()}, {"x": float("inf")}, {1j: 1}):
        with pytest.raises(InvalidOptionError, match="work"):
            await backend.repository.save_job(due_job(data=bad))
    with pytest.raises(InvalidOptionError, match="repeat_interval"):
        await backend.repository.save_job(due_job(repeat_interval=1.5))
    with raw(db_path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM agenda_jobs").fetchone()[0] == 0


async def test_the_table_refuses_invalid_json_from_other_writers(
    backend: SQLiteBackend, db_path: Path
) -> None:
    with raw(db_path) as connection, pytest.raises(sqlite3.IntegrityError):
        connection.execute(
            "INSERT INTO agenda_jobs (id, name, data, created_at, updated_at)"
            " VALUES ('x', 'n', '{not json', 0, 0)"
        )


def test_network_filesystems_are_detected() -> None:
    mountinfo = textwrap.dedent(
        r"""
        27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
        40 27 0:50 / /srv/shared rw,relatime shared:1 - nfs4 server:/export rw,vers=4.2
        41 40 0:51 / /srv/shared/local\040disk rw,relatime - ext4 /dev/vdb rw
        """
    )
    assert network_filesystem("/srv/shared/jobs.db", mountinfo) == "nfs4"
    assert network_filesystem("/srv/shared/sub/dir/jobs.db", mountinfo) == "nfs4"
    assert network_filesystem("/srv/shared/local disk/jobs.db", mountinfo) is None
    assert network_filesystem("/srv/sharedx/jobs.db", mountinfo) is None
    assert network_filesystem("/tmp/jobs.db", mountinfo) is None


async def test_a_file_on_a_network_filesystem_is_refused(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_connector, "network_filesystem", lambda path: "nfs")
    backend = SQLiteBackend(db_path)
    with pytest.raises(InvalidOptionError, match=r"network filesystem \(nfs\)"):
        await backend.connect()
    assert not await asyncio.to_thread(db_path.exists)


async def test_an_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "missing-dir" / "agenda.db")
    with pytest.raises(BackendUnavailableError, match="missing-dir"):
        await backend.connect()


# -- lifecycle -----------------------------------------------------------------------------------


async def test_connect_is_idempotent_and_close_stops_the_thread(db_path: Path) -> None:
    backend = SQLiteBackend(db_path)
    before = set(threading.enumerate())
    await asyncio.gather(backend.connect(), backend.connect())
    await backend.connect()
    workers = [t for t in set(threading.enumerate()) - before if t.name.startswith("agenda-sqlite")]
    assert len(workers) == 1
    await backend.repository.save_job(due_job())
    await backend.close()
    await backend.close()
    workers[0].join(timeout=10)
    assert not workers[0].is_alive()
    again = SQLiteBackend(db_path)
    await again.connect()
    assert (await again.repository.query_jobs()).total == 1
    await again.disconnect()


async def test_in_memory_database_works_for_one_repository() -> None:
    backend = SQLiteBackend(":memory:")
    await backend.connect()
    saved = await backend.repository.save_job(due_job())
    assert saved.id and await backend.repository.get_job_by_id(saved.id) is not None
    assert backend.notification_channel is None
    await backend.disconnect()


def _count_in_forked_child(backend: SQLiteBackend, results: Any) -> None:
    results.put(asyncio.run(backend.repository.query_jobs()).total)


async def test_a_forked_child_opens_its_own_connection(backend: SQLiteBackend) -> None:
    await backend.repository.save_job(due_job())
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_count_in_forked_child, args=(backend, results))
    child.start()
    assert await asyncio.to_thread(results.get, timeout=60) == 1
    await asyncio.to_thread(child.join, 60)
    assert child.exitcode == 0
    assert (await backend.repository.query_jobs()).total == 1  # the parent's is untouched


async def test_a_file_created_by_another_process_is_used_as_is(db_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio
        from agenda_decl._model import JobParameters
        from agenda_decl.backends.sqlite import SQLiteBackend

        async def main():
            backend = SQLiteBackend({str(db_path)!r})
            await backend.connect()
            await backend.repository.save_job(JobParameters(name="from-child", data={{"k": 1}}))
            await backend.disconnect()

        asyncio.run(main())
        """
    )
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], check=True, cwd=Path.cwd(), timeout=60
    )
    backend = SQLiteBackend(db_path)
    await backend.connect()
    result = await backend.repository.query_jobs()
    assert [(job.name, job.data) for job in result.jobs] == [("from-child", {"k": 1})]
    await backend.disconnect()


# -- concurrency ---------------------------------------------------------------------------------


async def seed(backend: SQLiteBackend, count: int) -> set[str]:
    ids: set[str] = set()
    for i in range(count):
        saved = await backend.repository.save_job(due_job(data={"i": i}))
        assert saved.id
        ids.add(saved.id)
    return ids


async def claim_all(backend: SQLiteBackend, batch: int) -> list[str]:
    """Claim batches until none are left; return the ids this worker got."""
    claimed: list[str] = []
    while True:
        now = utcnow()
        jobs = await backend.repository.get_next_jobs_to_run(
            "work", now + timedelta(seconds=5), now - timedelta(minutes=10), batch, now
        )
        if not jobs:
            return claimed
        claimed.extend(str(job.id) for job in jobs)


async def test_two_backends_on_one_file_claim_each_job_once(
    backend: SQLiteBackend, db_path: Path
) -> None:
    ids = await seed(backend, 200)
    other = SQLiteBackend(db_path)
    await other.connect()
    try:
        results = await asyncio.gather(
            claim_all(backend, 3), claim_all(other, 7), claim_all(backend, 5), claim_all(other, 1)
        )
    finally:
        await other.disconnect()
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == ids


def _claim_in_child(path: str, batch: int, start: Any, results: Any) -> None:
    async def run() -> list[str]:
        backend = SQLiteBackend(path, busy_timeout=20)
        await backend.connect()
        start.wait(60)  # a barrier: every claimer is connected before any starts
        try:
            return await claim_all(backend, batch)
        finally:
            await backend.disconnect()

    results.put(asyncio.run(run()))


@pytest.mark.slow
async def test_worker_processes_on_one_file_claim_each_job_once(
    backend: SQLiteBackend, db_path: Path
) -> None:
    ids = await seed(backend, 200)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(5), context.Queue()
    children = [
        context.Process(target=_claim_in_child, args=(str(db_path), batch, start, results))
        for batch in (1, 3, 4, 10)
    ]
    for child in children:
        child.start()
    await asyncio.to_thread(start.wait, 60)
    mine = await claim_all(backend, 2)
    theirs = [await asyncio.to_thread(results.get, timeout=120) for _ in children]
    for child in children:
        await asyncio.to_thread(child.join, 60)
        assert child.exitcode == 0
    claimed = mine + [job_id for result in theirs for job_id in result]
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == ids


async def wait_until(condition: Any, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_locked_database_is_retried_not_surfaced(db_path: Path) -> None:
    backend = SQLiteBackend(db_path, busy_timeout=10)
    await backend.connect()
    with raw(db_path) as blocker:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
        save = asyncio.create_task(backend.repository.save_job(due_job()))
        claim = asyncio.create_task(claim_all(backend, 5))
        await wait_until(lambda: backend.repository.busy_retries >= 2)
        assert not save.done()
        blocker.execute("COMMIT")
        saved = await save
        assert saved.id
        await claim
    assert (await backend.repository.query_jobs()).total == 1
    await backend.disconnect()


async def test_a_database_locked_past_the_retry_window_is_unavailable(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_connector, "BUSY_RETRY_WINDOW", 0.2)
    backend = SQLiteBackend(db_path, busy_timeout=10)
    await backend.connect()
    with raw(db_path) as blocker:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(BackendUnavailableError, match="stayed locked"):
            await backend.repository.save_job(due_job())
        blocker.execute("ROLLBACK")
    assert (await backend.repository.query_jobs()).total == 0
    await backend.disconnect()


async def test_reads_are_not_blocked_by_a_writer(backend: SQLiteBackend, db_path: Path) -> None:
    await seed(backend, 3)
    with raw(db_path) as blocker:
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("DELETE FROM agenda_jobs")
        assert (await backend.repository.query_jobs()).total == 3  # WAL: readers see the snapshot
        blocker.execute("ROLLBACK")
