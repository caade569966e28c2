"""The job commands of the installed ``agenda-decl`` in a subprocess, on SQLite, the real
PostgreSQL and the real Redis: show, retry, run-now, cancel, delete, pause/resume (and how
plan and apply meet a pause), purge, and the filters and paging of ``jobs``. Every command
refuses a job it cannot find, with a message and exit code 1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.test_cli import TICK, TWO, Env, drop_postgres_table, make_env

pytestmark = pytest.mark.timeout(240)

BOOM = "- {job: boom, every: 1 hour}\n"


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """The store with its job log on (``jobs show`` prints a failure's traceback from it)."""
    for made in make_env(request.param, tmp_path):
        log_table = f"{made.storage.split('table_name: ')[1].rstrip('}')}_logs" if (
            request.param == "postgres") else None
        made.storage = made.storage[:-1] + ", logging: true" + (
            f", log_table_name: {log_table}}}" if log_table else "}")
        yield made
        if log_table:
            drop_postgres_table(log_table)


def ok(env: Env, *args: str) -> str:
    result = env.run(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def as_json(env: Env, *args: str) -> Any:
    return json.loads(ok(env, *args, "--json"))


def refused(env: Env, *args: str, kind: str, message: str) -> None:
    """The command fails with exit 1, ``message`` on stderr and the error as JSON."""
    result = env.run(*args)
    assert result.returncode == 1, (args, result.stdout)
    assert message in result.stderr, (args, result.stderr)
    assert "Traceback" not in result.stderr
    with_json = env.run(*args, "--json")
    assert with_json.returncode == 1
    assert json.loads(with_json.stdout)["error"]["kind"] == kind, with_json.stdout


def by_name(env: Env, name: str) -> list[dict[str, Any]]:
    return [job for job in env.jobs() if job["name"] == name]


def run_worker(env: Env, seconds: int = 3) -> str:
    result = env.run("run", "--exit-after", f"{seconds} seconds", timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_show_retry_and_the_failure_column(env: Env) -> None:
    env.write(TICK.replace("1 second", "1 hour") + BOOM)
    ok(env, "apply", "--yes")
    run_worker(env)
    (failed,) = as_json(env, "jobs", "--failed")["jobs"]
    assert (failed["name"], failed["state"], failed["fail_count"]) == ("boom", "failed", 1)
    assert failed["last_run_failed"] is True
    header, *rows = ok(env, "jobs", "--name", "boom").splitlines()
    assert header.split()[-2:] == ["LAST", "FAILURE"]
    assert rows[0].endswith("boom from the handler")

    shown = as_json(env, "jobs", "show", failed["id"])
    assert (shown["id"], shown["state"], shown["schedule_key"]) == (failed["id"], "failed",
                                                                    "boom")
    assert {"locked_at", "progress", "last_modified_by", "repeat_interval"} <= set(shown)
    assert shown["last_failure"]["reason"] == "boom from the handler"
    assert shown["last_failure"]["fail_count"] == 1
    traceback = shown["last_failure"]["traceback"]
    assert traceback.startswith("Traceback (most recent call last):"), traceback
    assert "RuntimeError: boom from the handler" in traceback
    text = ok(env, "jobs", "show", failed["id"])
    assert "state:" in text and "last failure:" in text and "boom from the handler" in text
    refused(env, "jobs", "show", "no-such-id", kind="not_found",
            message="no job with id no-such-id")

    tick_id = by_name(env, "tick")[0]["id"]
    refused(env, "jobs", "retry", tick_id, kind="agenda", message="only failed jobs")
    refused(env, "jobs", "retry", failed["id"], "no-such-id", kind="not_found",
            message="no job with id no-such-id")
    before = time.time()
    assert "fail_count 1 kept" in ok(env, "jobs", "retry", failed["id"])
    (retried,) = by_name(env, "boom")
    due = retried["next_run_at"]
    assert due is not None and _epoch(due) <= time.time() and _epoch(due) >= before - 1
    assert run_worker(env).count("fail    boom") == 1
    (again,) = by_name(env, "boom")
    assert (again["fail_count"], again["state"]) == (2, "failed")
    assert as_json(env, "jobs", "retry", "--name", "boom", "--failed")["retried"] == 1
    assert as_json(env, "jobs", "retry", "--name", "tick", "--failed")["retried"] == 0
    refused(env, "jobs", "retry", "--name", "nope", "--failed", kind="not_found",
            message="no job named 'nope'")
    refused(env, "jobs", "retry", kind="usage", message="--name NAME --failed")


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_run_now_runs_a_schedule_once_and_keeps_its_schedule(env: Env) -> None:
    env.write(TICK.replace("1 second", "1 hour"))
    ok(env, "apply", "--yes")
    assert run_worker(env).count("tick ran with 1") == 1
    (schedule,) = env.jobs()
    done = as_json(env, "jobs", "run-now", "tick")
    assert done["how"] == "copy" and done["of"]["id"] == schedule["id"]
    assert done["of"]["next_run_at"] == schedule["next_run_at"]
    copy = next(job for job in env.jobs() if job["id"] == done["id"])
    assert (copy["state"], copy["data"], copy["schedule_key"]) == ("queued", {"n": 1}, None)
    assert run_worker(env).count("tick ran with 1") == 1  # the copy, once
    after = next(job for job in env.jobs() if job["id"] == schedule["id"])
    assert after["next_run_at"] == schedule["next_run_at"]  # the schedule is intact
    assert after["last_run_at"] == schedule["last_run_at"]
    assert next(job for job in env.jobs() if job["id"] == done["id"])["state"] == "completed"
    assert env.run("plan", "--detailed-exitcode").returncode == 0  # a copy is no schedule

    one_off = as_json(env, "jobs", "run-now", done["id"])  # a one-off by id: moved to now
    assert one_off["how"] == "moved" and one_off["id"] == done["id"]
    refused(env, "jobs", "run-now", "nope", kind="not_found",
            message="'nope' is neither a job with a schedule in agenda.yaml")
    refused(env, "jobs", "run-now", "tick", "--key", "other", kind="not_found",
            message="declares no schedule of job 'tick' with key 'other'")


def test_cancel_and_delete_count_and_confirm(env: Env) -> None:
    env.write(TWO)
    ok(env, "apply", "--yes")
    copies = [as_json(env, "jobs", "run-now", "tick")["id"] for _ in range(3)]
    no_tty = env.run("jobs", "cancel", copies[0])
    assert no_tty.returncode == 1
    assert "not a terminal" in no_tty.stderr and "--yes" in no_tty.stderr
    assert len(by_name(env, "tick")) == 4  # nothing deleted
    refused(env, "jobs", "cancel", copies[0], "no-such-id", "--yes", kind="not_found",
            message="no job with id no-such-id")
    assert len(by_name(env, "tick")) == 4
    assert "Deleted 1 job(s)." in ok(env, "jobs", "cancel", copies[0], "--yes")

    refused(env, "jobs", "delete", "--name", "tick", kind="not_confirmed",
            message="not a terminal")
    deleted = as_json(env, "jobs", "delete", "--name", "tick", "--state", "queued", "--yes")
    assert deleted["deleted"] == 2
    assert sorted(job["id"] for job in deleted["jobs"]) == sorted(copies[1:])
    assert [job["state"] for job in by_name(env, "tick")] == ["repeating"]
    none_left = as_json(env, "jobs", "delete", "--name", "tick", "--state", "failed", "--yes")
    assert none_left["deleted"] == 0
    refused(env, "jobs", "delete", "--name", "nope", "--yes", kind="not_found",
            message="no job named 'nope'")
    schedule = env.run("jobs", "delete", "--name", "boom", "--yes")
    assert schedule.returncode == 0 and "next apply creates them again" in schedule.stderr
    assert by_name(env, "boom") == []


def test_a_pause_is_shown_by_plan_and_kept_by_apply_until_resumed(env: Env) -> None:
    env.write(TWO)
    ok(env, "apply", "--yes")
    paused = as_json(env, "jobs", "pause", "boom", "--key", "nightly", "--by", "alice@ops",
                     "--reason", "incident 42")
    assert paused["paused"] == 1 and paused["paused_by"] == "alice@ops"
    plan = ok(env, "plan")
    assert "paused by alice@ops since" in plan and "(incident 42)" in plan
    assert "agenda-decl jobs resume boom --key nightly" in plan
    assert env.run("plan", "--detailed-exitcode").returncode == 2
    assert as_json(env, "plan")["paused"][0]["by"] == "alice@ops"

    env.write(TWO.replace("0 3 * * *", "0 4 * * *"))  # a deploy that changes the schedule
    applied = ok(env, "apply", "--yes")
    assert "1 updated" in applied and "kept paused" in applied
    (boom,) = by_name(env, "boom")
    assert boom["disabled"] is True and boom["repeat_interval"] == "0 4 * * *"
    assert boom["paused"]["by"] == "alice@ops"
    assert "paused by alice@ops" in ok(env, "jobs", "show", boom["id"])
    assert "No changes" not in ok(env, "apply", "--yes")  # still paused, still reported

    assert as_json(env, "jobs", "resume", "boom", "--key", "nightly")["resumed"] == 1
    (boom,) = by_name(env, "boom")
    assert (boom["disabled"], boom["paused"]) == (False, None)
    assert env.run("plan", "--detailed-exitcode").returncode == 0

    assert "Paused 1 job(s)" in ok(env, "jobs", "pause", "tick")  # by name
    assert by_name(env, "tick")[0]["disabled"] is True
    assert as_json(env, "jobs", "pause", "tick")["left"][0]["why"].startswith("already paused")
    assert "Resumed 1 job(s)" in ok(env, "jobs", "resume", "tick")
    refused(env, "jobs", "pause", "nope", kind="not_found", message="no job named 'nope'")
    refused(env, "jobs", "resume", "boom", "--key", "other", kind="not_found",
            message="declares no schedule of job 'boom' with key 'other'")


def test_a_schedule_declared_disabled_is_not_resumed(env: Env) -> None:
    env.write(TICK.replace("}\n", ", disabled: true}\n"))
    ok(env, "apply", "--yes")
    refused(env, "jobs", "resume", "tick", "--key", "tick", kind="agenda",
            message="declared disabled in agenda.yaml")
    left = as_json(env, "jobs", "resume", "tick")["left"]
    assert left[0]["why"] == "its schedule is declared disabled in agenda.yaml"


def test_purge_deletes_completed_jobs_older_than_a_duration(env: Env) -> None:
    env.write(TICK.replace("1 second", "1 hour"))
    ok(env, "apply", "--yes")
    ok(env, "jobs", "run-now", "tick")
    run_worker(env)
    assert sorted(job["state"] for job in env.jobs()) == ["completed", "repeating"]
    assert as_json(env, "jobs", "purge", "--completed", "--older-than", "1h")["deleted"] == 0
    time.sleep(1.5)
    dry = as_json(env, "jobs", "purge", "--completed", "--older-than", "1s", "--dry-run")
    assert dry["would_delete"] == 1 and len(env.jobs()) == 2
    assert "Deleted 1 completed job(s)" in ok(env, "jobs", "purge", "--completed",
                                               "--older-than", "1s")
    assert [job["state"] for job in env.jobs()] == ["repeating"]
    bare = env.run("jobs", "purge", "--completed", "--older-than", "5")
    assert bare.returncode == 1 and "did you mean '5 seconds'" in bare.stderr


def test_jobs_filters_and_pages(env: Env) -> None:
    env.write(TWO)
    ok(env, "apply", "--yes")
    for _ in range(3):
        ok(env, "jobs", "run-now", "tick")
    everything = as_json(env, "jobs")
    assert everything["total"] == 5
    names = [job["name"] for job in everything["jobs"]]
    assert names == ["boom"] + ["tick"] * 4
    assert as_json(env, "jobs", "--search", "IC")["total"] == 4  # in the name, any case
    assert as_json(env, "jobs", "--search", "oo")["total"] == 1
    page = as_json(env, "jobs", "--limit", "2", "--page", "2")
    assert (page["total"], page["skip"], len(page["jobs"])) == (5, 2, 2)
    assert [job["id"] for job in page["jobs"]] == [job["id"] for job in everything["jobs"][2:4]]
    skipped = as_json(env, "jobs", "--limit", "2", "--skip", "4")
    assert [job["id"] for job in skipped["jobs"]] == [everything["jobs"][4]["id"]]
    table = ok(env, "jobs", "--limit", "2")
    assert "(1-2 of 5 shown; --skip 2 for the next page, --limit 0 for all)" in table
    assert as_json(env, "jobs", "--failed")["total"] == 0
    assert as_json(env, "jobs", "--name", "tick", "--state", "queued")["total"] == 3
