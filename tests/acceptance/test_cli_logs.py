"""``agenda-decl logs`` and ``run -v`` in a subprocess, on SQLite, the real PostgreSQL and the
real Redis (tests/acceptance/test_cli.py's environments, with the storage's ``logging`` on and
a log table of their own)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.test_cli import TICK, Env, drop_postgres_table, make_env

pytestmark = pytest.mark.timeout(180)

BOOM = "- {job: boom, every: 1 hour}\n"


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def logged_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    table = f"acc_logs_{uuid.uuid4().hex[:10]}"
    for env in make_env(request.param, tmp_path):
        extra = ", logging: true"
        if request.param in ("sqlite", "postgres"):
            extra += f", log_table_name: {table}"
        env.storage = env.storage[:-1] + extra + "}"
        yield env
    if request.param == "postgres":
        drop_postgres_table(table)


def logs(env: Env, *args: str) -> dict[str, Any]:
    result = env.run("logs", "--json", *args)
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_logs_show_the_runs_and_a_failures_traceback(logged_env: Env) -> None:
    env = logged_env
    env.write(TICK + BOOM)
    assert env.run("apply", "--yes").returncode == 0
    worker = env.run("run", "-v", "--exit-after", "3 seconds", timeout=60)
    assert worker.returncode == 0, worker.stderr
    # run -v: the traceback under the failure's line, starting at the handler
    out = worker.stdout
    failure = out[out.index("fail    boom id="):]
    assert "    Traceback (most recent call last):\n" in failure
    assert 'acc_handlers.py", line' in failure and "in boom" in failure
    assert "    RuntimeError: boom from the handler" in failure
    assert "agenda_decl/runtime" not in failure.split("RuntimeError")[0]

    everything = logs(env, "--limit", "0")
    events = {(e["job_name"], e["event"]) for e in everything["entries"]}
    assert {("tick", "locked"), ("tick", "start"), ("tick", "success"), ("tick", "complete"),
            ("boom", "start"), ("boom", "fail"), ("boom", "complete")} <= events
    assert everything["total"] == len(everything["entries"])
    stamps = [e["timestamp"] for e in everything["entries"]]
    assert stamps == sorted(stamps)  # the newest page, oldest first
    assert {e["agenda_name"].split(":")[0] for e in everything["entries"]} == {"acceptance"}

    errors = logs(env, "--level", "error")
    assert errors["total"] == 1
    (fail,) = errors["entries"]
    assert (fail["event"], fail["fail_count"]) == ("fail", 1)
    assert fail["message"] == "job failed: boom from the handler"
    assert fail["error"].startswith("Traceback (most recent call last):")
    assert fail["error"].endswith("RuntimeError: boom from the handler")

    boom_id = fail["job_id"]
    by_job = logs(env, "--job", boom_id, "--event", "start", "--event", "complete")
    assert sorted(e["event"] for e in by_job["entries"]) == ["complete", "start"]
    assert logs(env, "--name", "tick", "--limit", "2")["entries"][-1]["job_name"] == "tick"
    assert logs(env, "--since", "tomorrow")["total"] == 0
    assert logs(env, "--since", "1 hour")["total"] == everything["total"]

    table = env.run("logs", "--level", "error")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "LEVEL", "EVENT", "NAME", "JOB", "ID",
                                "MESSAGE"]
    assert "error  fail   boom" in lines[1] and "job failed: boom from the handler" in lines[1]
    assert lines[2] == "    Traceback (most recent call last):"
    assert lines[-1] == "    RuntimeError: boom from the handler"


def test_run_without_v_prints_no_traceback(logged_env: Env) -> None:
    env = logged_env
    env.write(BOOM)
    assert env.run("apply", "--yes").returncode == 0
    worker = env.run("run", "--exit-after", "2 seconds", timeout=60)
    assert worker.returncode == 0, worker.stderr
    assert "RuntimeError: boom from the handler" in worker.stdout
    assert "Traceback" not in worker.stdout


def test_logs_with_logging_off_read_nothing_and_create_nothing(tmp_path: Path) -> None:
    for env in make_env("sqlite", tmp_path):
        env.write(BOOM)
        assert env.run("apply", "--yes").returncode == 0
        assert env.run("run", "--exit-after", "2 seconds", timeout=60).returncode == 0
        result = env.run("logs")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("No log entries. (this file's storage has logging off")
        with sqlite3.connect(env.dir / "jobs.db") as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "agenda_logs" not in tables


def test_logs_refuses_a_bad_option(tmp_path: Path) -> None:
    for env in make_env("sqlite", tmp_path):
        env.write()
        for args, message in [
            (("--since", "5"), "'5' needs a unit"),
            (("--since", "whenever"), "a duration back from now"),
            (("--level", "fatal"), "invalid choice: 'fatal'"),
        ]:
            result = env.run("logs", *args)
            assert result.returncode == 1
            assert message in result.stderr
