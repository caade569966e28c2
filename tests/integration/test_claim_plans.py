"""Claims stay flat with the backlog: with many completed jobs of the claimed name and a
backlog of another name, the claim reads through the claim indexes (EXPLAIN), never a scan of
the table or of every row of the name, and takes the right jobs. Speed itself is measured in
bench/; this checks the plan that makes it flat. ``AGENDA_TEST_LONG=1`` uses the sizes of the
issue (1,000,000 completed, 100,000 due of another name)."""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from agenda_decl._model import JobsQueryOptions
from agenda_decl.backends.postgres import queries as pg_queries
from agenda_decl.backends.sqlite import SQLiteBackend
from agenda_decl.backends.sqlite import queries as sqlite_queries
from tests.backends.postgres import make_backend
from tests.backends.servers import POSTGRES_URL

LONG = os.environ.get("AGENDA_TEST_LONG") == "1"
#: Completed jobs of the claimed name, due jobs of another name, due jobs of the claimed name.
COMPLETED, OTHER, DUE = (1_000_000, 100_000, 10_000) if LONG else (50_000, 10_000, 1_000)
LIMIT = 50


def _params(now: datetime) -> dict[str, Any]:
    return {"name": "target", "limit": LIMIT, "by": "plan-test", "now": now,
            "next_scan_at": now + timedelta(seconds=5),
            "lock_deadline": now - timedelta(minutes=10)}


# -- SQLite ---------------------------------------------------------------------------------


def _fill_sqlite(path: Path, now_ms: int) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as c:
        c.execute("BEGIN")
        insert = ("INSERT INTO agenda_jobs (id, name, next_run_at, created_at, updated_at, "
                  "last_finished_at) VALUES (?, ?, ?, ?, ?, ?)")
        c.executemany(insert, ((f"c{i}", "target", None, now_ms, now_ms, now_ms)
                               for i in range(COMPLETED)))
        # One next_run_at for a whole backlog, as a bulk enqueue makes it.
        c.executemany(insert, ((f"o{i}", "other", now_ms - 3_600_000, now_ms, now_ms, None)
                               for i in range(OTHER)))
        c.executemany(insert, ((f"t{i:06}", "target", now_ms - 60_000, now_ms, now_ms, None)
                               for i in range(DUE)))
        c.execute("COMMIT")


def _sqlite_plan(path: Path, name: str, params: dict[str, Any]) -> list[str]:
    statement = sqlite_queries.render(name, table='"agenda_jobs"', prefix="agenda_jobs")
    with closing(sqlite3.connect(path)) as c:
        return [row[3] for row in c.execute(f"EXPLAIN QUERY PLAN {statement}", params)]


async def _filled_sqlite(path: Path) -> tuple[SQLiteBackend, datetime, int]:
    """A connected backend on ``path`` (its tables and indexes), filled by ``_fill_sqlite``;
    its "now", and that in milliseconds."""
    backend = SQLiteBackend(path, watch_changes=False)
    await backend.connect()
    now = datetime.now(UTC).replace(microsecond=0)
    now_ms = sqlite_queries.to_ms(now)
    assert now_ms is not None
    _fill_sqlite(path, now_ms)
    return backend, now, now_ms


async def test_sqlite_claims_read_only_the_claim_indexes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    backend, now, _now_ms = await _filled_sqlite(path)
    params = {key: sqlite_queries.to_ms(value) if isinstance(value, datetime) else value
              for key, value in _params(now).items()}
    due, stale = _sqlite_plan(path, "claim_due", params), _sqlite_plan(path, "claim_stale", params)
    assert any("USING INDEX agenda_jobs_claim_due_idx (name=? AND next_run_at<?)" in step
               for step in due), due
    assert not any("TEMP B-TREE" in step for step in due), due
    assert any("USING INDEX agenda_jobs_claim_stale_idx (name=? AND locked_at<?)" in step
               for step in stale), stale
    assert not any(step.startswith("SCAN agenda_jobs") for step in due + stale), due + stale
    probe = _sqlite_plan(path, "first_waiting", {"name": "target"})
    assert any("agenda_jobs_claim_due_idx" in step for step in probe), probe
    try:
        claimed = await backend.repository.get_next_jobs_to_run(
            "target", now + timedelta(seconds=5), now - timedelta(minutes=10), LIMIT, now)
        assert [job.id for job in claimed] == [f"t{i:06}" for i in range(LIMIT)]
    finally:
        await backend.disconnect()


# -- PostgreSQL -----------------------------------------------------------------------------


_FILL = """
INSERT INTO {table} (name, next_run_at, last_finished_at, created_at)
SELECT 'target', NULL, now(), now() - interval '1 day' FROM generate_series(1, %(completed)s);
INSERT INTO {table} (name, next_run_at, created_at)
SELECT 'other', now() - interval '1 hour', now() FROM generate_series(1, %(other)s);
INSERT INTO {table} (name, next_run_at, created_at)
SELECT 'target', now() - interval '1 minute', now() + g * interval '1 microsecond'
FROM generate_series(1, %(due)s) AS g;
"""


async def test_postgres_claims_read_only_the_claim_index(tmp_path: Path) -> None:
    async with make_backend(tmp_path, disable_notifications=True) as backend:
        table = sql.Identifier(backend.repository.table_name)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            for statement in _FILL.strip().split(";\n"):
                await conn.execute(sql.SQL(statement).format(table=table),  # type: ignore[arg-type]
                                   {"completed": COMPLETED, "other": OTHER, "due": DUE})
            await conn.execute(sql.SQL("ANALYZE {}").format(table))
            now = datetime.now(UTC)
            claim = pg_queries.render("claim", table=table)
            async with conn.transaction(force_rollback=True):
                cursor = await conn.execute(sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) ") + claim,
                                            _params(now))
                plan = "\n".join(row[0] for row in await cursor.fetchall())
        index = f"{backend.repository.table_name}_claim_due_idx"
        assert f"Index Scan using {index}" in plan, plan
        assert "Seq Scan" not in plan, plan
        assert "Rows Removed by Filter" not in plan, plan
        claimed = await backend.repository.get_next_jobs_to_run(
            "target", now + timedelta(seconds=5), now - timedelta(minutes=10), LIMIT, now)
        assert len(claimed) == LIMIT
        assert {job.name for job in claimed} == {"target"}
        assert all(job.next_run_at is not None for job in claimed)


# -- the dashboard's job list (SQLite) --------------------------------------------------------


async def test_sqlite_job_list_pages_are_read_off_the_next_run_indexes(tmp_path: Path) -> None:
    """A page of the job list sorted by next run, either way, is a walk of the index to the
    limit (no sort of the table, whose completed jobs have no next run), a state filter seeks
    its range, and the overview's newest failure of a name is a seek of the failed jobs: the
    page costs the same with 50,000 jobs or 50."""
    path = tmp_path / "jobs.db"
    backend, _now, now_ms = await _filled_sqlite(path)
    cases = {
        "desc": (JobsQueryOptions(sort={"next_run_at": "desc"}, limit=LIMIT),
                 "SCAN agenda_jobs USING INDEX agenda_jobs_next_run_at_desc_idx"),
        "asc": (JobsQueryOptions(sort={"next_run_at": "asc"}, limit=LIMIT, skip=LIMIT),
                "SCAN agenda_jobs USING INDEX agenda_jobs_next_run_at_asc_idx"),
        "queued": (JobsQueryOptions(state="queued", sort={"next_run_at": "desc"}, limit=LIMIT),
                   "SEARCH agenda_jobs USING INDEX agenda_jobs_next_run_at_desc_idx "
                   "(next_run_at<?)"),
        "newest failure": (JobsQueryOptions(name="target", state="failed",
                                            sort={"last_finished_at": "desc"}, limit=1),
                           "SEARCH agenda_jobs USING INDEX agenda_jobs_failed_idx (name=?)"),
    }
    try:
        for label, (options, step) in cases.items():
            page, _, params = sqlite_queries.page_statements(
                options, table='"agenda_jobs"', prefix="agenda_jobs")
            with closing(sqlite3.connect(path)) as c:
                plan = [row[3] for row in c.execute(f"EXPLAIN QUERY PLAN {page}",
                                                     {**params, "now": now_ms})]
            assert plan == [step], (label, plan)
        desc, asc, queued, failed = [await backend.repository.query_jobs(options)
                                     for options, _ in cases.values()]
        assert [job.id for job in desc.jobs] == [f"t{i:06}" for i in range(LIMIT)]
        assert [job.id for job in asc.jobs] == [f"o{i}" for i in range(LIMIT, 2 * LIMIT)]
        assert [job.id for job in queued.jobs] == [f"t{i:06}" for i in range(LIMIT)]
        assert desc.total == asc.total == COMPLETED + OTHER + DUE
        assert queued.total == OTHER + DUE
        assert failed.jobs == []
    finally:
        await backend.disconnect()


# -- the dashboard's job list (PostgreSQL) ----------------------------------------------------


def _read_off(plan: str, index: str) -> bool:
    """Whether the page's LIMIT reads straight off ``index`` (no sort between them)."""
    lines = plan.splitlines()
    return any("Limit" in line and re.search(rf"Index (Only )?Scan using {index}\b", after)
               for line, after in itertools.pairwise(lines))


async def test_postgres_job_list_pages_are_read_off_the_next_run_indexes(tmp_path: Path) -> None:
    """As the SQLite test above: a page sorted by next run, either way, is a walk of an index
    to the limit (no sort of the matches), a state filter seeks its range of next_run_at, the
    overview's newest failure and next run of a name are seeks, and the overview reads the
    table once."""
    async with make_backend(tmp_path, disable_notifications=True) as backend:
        t = backend.repository.table_name
        table = sql.Identifier(t)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            for statement in _FILL.strip().split(";\n"):
                await conn.execute(sql.SQL(statement).format(table=table),  # type: ignore[arg-type]
                                   {"completed": COMPLETED, "other": OTHER, "due": DUE})
            await conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
            now = datetime.now(UTC)
            cases = {
                "desc": (JobsQueryOptions(sort={"next_run_at": "desc"}, limit=LIMIT),
                         f"{t}_next_run_desc_idx"),
                "asc": (JobsQueryOptions(sort={"next_run_at": "asc"}, limit=LIMIT, skip=LIMIT),
                        f"{t}_next_run_asc_idx"),
                "queued": (JobsQueryOptions(state="queued", sort={"next_run_at": "desc"},
                                            limit=LIMIT), f"{t}_next_run_desc_idx"),
                "newest failure": (JobsQueryOptions(name="target", state="failed",
                                                    sort={"last_finished_at": "desc"}, limit=1),
                                   f"{t}_failed_idx"),
                # Either index gives the name's jobs in this order: the planner picks by its
                # estimates.
                "next run of a name": (JobsQueryOptions(name="other", include_disabled=False,
                                                        sort={"next_run_at": "asc"}, limit=1),
                                       f"({t}_name_idx|{t}_next_run_asc_idx)"),
            }
            plans, counts = {}, {}
            for label, (options, _) in cases.items():
                statements = pg_queries.page_statements(options, t)
                assert statements is not None
                page, count, params = statements
                for found, statement in ((plans, page), (counts, count)):
                    cursor = await conn.execute(sql.SQL("EXPLAIN (COSTS OFF) ") + statement,
                                                {**params, "now": now})
                    found[label] = "\n".join(row[0] for row in await cursor.fetchall())
            overview = pg_queries.render("overview", table=table)
            cursor = await conn.execute(sql.SQL("EXPLAIN (COSTS OFF) ") + overview, {"now": now})
            overview_plan = [row[0] for row in await cursor.fetchall()]
            # The due jobs of the target, in insertion order (they share one next run).
            cursor = await conn.execute(sql.SQL(
                "SELECT id::text FROM {} WHERE name = 'target' AND next_run_at IS NOT NULL "
                "ORDER BY created_at LIMIT %s").format(table), (LIMIT,))
            first_due = [row[0] for row in await cursor.fetchall()]
            cursor = await conn.execute(sql.SQL(
                "SELECT id::text FROM {} WHERE name = 'other' "
                "ORDER BY next_run_at, created_at, id LIMIT 1").format(table))
            first_other = [row[0] for row in await cursor.fetchall()]
        for label, (_, index) in cases.items():
            assert _read_off(plans[label], index), (label, plans[label])
            assert "Seq Scan" not in plans[label], (label, plans[label])
        assert "Index Cond: (next_run_at <=" in plans["queued"], plans["queued"]
        # The total of a full page of one name's jobs reads the name's index only (the
        # table was vacuumed: every page is visible to all).
        assert f"Index Only Scan using {t}_name_idx" in counts["next run of a name"], counts
        assert sum(f"Scan on {t}" in line for line in overview_plan) == 1, overview_plan
        desc, asc, queued, failed, next_run = [await backend.repository.query_jobs(options)
                                               for options, _ in cases.values()]
        assert [job.id for job in desc.jobs] == [job.id for job in queued.jobs] == first_due
        assert [job.id for job in next_run.jobs] == first_other
        assert next_run.total == OTHER
        assert {job.name for job in asc.jobs} == {"other"}
        assert desc.total == asc.total == COMPLETED + OTHER + DUE
        assert queued.total == OTHER + DUE
        assert failed.jobs == []
