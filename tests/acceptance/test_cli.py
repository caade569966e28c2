"""The installed ``agenda-decl`` command in a subprocess, on SQLite (a temporary directory), the
real PostgreSQL and the real Redis (a table / key prefix of its own per test, removed after):
validate, plan exit codes, apply twice, prune, run, drain on SIGTERM, jobs, and no secret from
the environment in any output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backends.servers import POSTGRES_URL, REDIS_URL, server_missing

pytestmark = pytest.mark.timeout(180)

SECRET = "Sup3r-S3cret-Pw-4711"
TOKEN = "tok-9b1e0c5a77f3"


def cli_path() -> str:
    beside = Path(sys.executable).parent / "agenda-decl"
    found = str(beside) if beside.exists() else shutil.which("agenda-decl")
    assert found, "the agenda-decl command is not installed (pip install -e .)"
    return found


CLI = cli_path()

HANDLERS = '''
import time


def tick(job):
    print("tick ran with", job.attrs.data["n"], flush=True)


def slow(job):
    time.sleep(float(job.attrs.data.get("seconds", 2)))


def boom(job):
    raise RuntimeError("boom from the handler")
'''


class Env:
    """A config directory plus the environment the command runs with."""

    def __init__(self, directory: Path, storage: str, environ: dict[str, str]) -> None:
        self.dir = directory
        self.storage = storage
        self.environ = environ
        (directory / "acc_handlers.py").write_text(HANDLERS)

    def write(self, schedules: str = "", *, scheduler: str = "", jobs: str = "") -> Path:
        text = textwrap.dedent(f"""\
            version: 1
            backend:
              storage: {self.storage}
            scheduler: {{name: acceptance, process_every: 500 ms{scheduler}}}
            jobs:
              tick:
                handler: acc_handlers:tick
                payload: {{n: int}}
              slow:
                handler: acc_handlers:slow
                payload: {{seconds: {{type: float, default: 2}}}}
              boom:
                handler: acc_handlers:boom
            """) + textwrap.indent(textwrap.dedent(jobs), "  ")
        text += "schedules:\n" + textwrap.indent(textwrap.dedent(schedules), "  ") \
            if schedules.strip() else "schedules: []\n"
        path = self.dir / "agenda.yaml"
        path.write_text(text)
        return path

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args], cwd=self.dir, env={**self.environ, **env}, capture_output=True,
            text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [CLI, *args], cwd=self.dir, env={**self.environ, **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )

    def jobs(self) -> list[dict[str, Any]]:
        result = self.run("jobs", "--json", "--limit", "0")
        assert result.returncode == 0, result.stderr
        jobs: list[dict[str, Any]] = json.loads(result.stdout)["jobs"]
        return jobs


def base_environ() -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("AGENDA", "DATABASE_URL", "PYTEST"))}
    environ["PYTHONUNBUFFERED"] = "1"
    return environ


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(request.param, tmp_path)


@pytest.fixture
def sqlite_env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env("sqlite", tmp_path)


def make_env(kind: str, tmp_path: Path) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:10]
    environ = base_environ()
    if kind == "sqlite":
        yield Env(tmp_path, "{type: sqlite, path: jobs.db}", environ)
    elif kind == "postgres":
        table = f"acc_{suffix}"
        environ["DATABASE_URL"] = POSTGRES_URL
        yield Env(tmp_path, f'{{type: postgres, connection_string: "${{DATABASE_URL}}", '
                            f"table_name: {table}}}", environ)
        drop_postgres_table(table)
    else:
        prefix = f"acc_{suffix}:"
        yield Env(tmp_path, f'{{type: redis, connection_string: "{REDIS_URL}", '
                            f'key_prefix: "{prefix}"}}', environ)
        drop_redis_keys(prefix)


def drop_postgres_table(table: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
            function = sql.Identifier(f"update_{table.lower()}_updated_at")
            conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function))
    except psycopg.OperationalError as error:
        server_missing("PostgreSQL", error)


def drop_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    except redis.ConnectionError as error:
        server_missing("Redis", error)
    finally:
        client.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


TICK = "- {job: tick, every: 1 second, data: {n: 1}}\n"
TWO = TICK + "- {job: boom, key: nightly, cron: '0 3 * * *', timezone: Europe/Berlin}\n"


# -- validate -----------------------------------------------------------------------------------


def test_validate_a_good_file(sqlite_env: Env) -> None:
    sqlite_env.write(TWO)
    result = sqlite_env.run("validate")
    assert result.returncode == 0, result.stderr
    assert "agenda.yaml: valid." in result.stdout
    assert "schedules:     2" in result.stdout
    assert not (sqlite_env.dir / "jobs.db").exists()  # no database needed
    as_json = json.loads(sqlite_env.run("validate", "--json").stdout)
    assert as_json["valid"] is True


def test_validate_needs_no_database(tmp_path: Path) -> None:
    environ = base_environ()
    environ["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    env = Env(tmp_path, '{type: postgres, connection_string: "${DATABASE_URL}"}', environ)
    env.write(TICK)
    result = env.run("validate")
    assert result.returncode == 0, result.stderr


def test_validate_a_broken_file_names_file_line_and_column(sqlite_env: Env) -> None:
    path = sqlite_env.write(
        "- {job: tick, every: 1 second, data: {n: one}}\n- {job: nope, cron: '61 * * * *'}\n",
        jobs="""\
          bad:
            handler: acc_handlers:tick
            concurrency: -2
        """,
    )
    lines = path.read_text().splitlines()
    result = sqlite_env.run("validate")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    concurrency_line = next(i for i, line in enumerate(lines, 1) if "concurrency: -2" in line)
    column = lines[concurrency_line - 1].index("-2") + 1
    assert f"agenda.yaml:{concurrency_line}:{column}: jobs.bad.concurrency: " in result.stderr
    schedule_line = next(i for i, line in enumerate(lines, 1) if "n: one" in line)
    assert f"agenda.yaml:{schedule_line}:" in result.stderr
    assert "schedules[0].data.n" in result.stderr
    assert "schedules[1].job" in result.stderr
    assert "schedules[1].cron" in result.stderr
    as_json = sqlite_env.run("validate", "--json")
    assert as_json.returncode == 1
    issues = json.loads(as_json.stdout)["issues"]
    assert {"file", "line", "column", "path", "message"} <= set(issues[0])


MISSING_DRIVERS = [
    # backend as written, the module made missing, the extra, where the problem is reported
    ("storage: {type: postgres, connection_string: 'postgresql://h/db'}", "psycopg", "postgres",
     "storage: {type: postgres"),
    ("storage: {type: postgres, connection_string: 'postgresql://h/db'}", "psycopg_pool",
     "postgres", "storage: {type: postgres"),
    ("storage: {type: redis, connection_string: 'redis://h'}", "redis", "redis",
     "storage: {type: redis"),
    ("storage: {type: sqlite}\n  notifications: {type: redis, connection_string: 'redis://h'}",
     "redis", "redis", "notifications: {type: redis"),
    # once, though the change stream needs pymongo too
    ("storage: {type: mongo, address: 'mongodb://h/db'}\n  notifications: "
     "{type: mongo-changestream}", "pymongo", "mongo", "storage: {type: mongo"),
]


def without_module(env: Env, module: str) -> dict[str, str]:
    """The environment of a Python without ``module``: a sitecustomize on PYTHONPATH sets
    ``sys.modules[module] = None``, which makes ``import module`` raise ModuleNotFoundError as
    if it were not installed (nothing is uninstalled)."""
    shim = env.dir / "no_driver"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    return {**env.environ, "PYTHONPATH": str(shim)}


@pytest.mark.parametrize(("backend", "module", "extra", "at"), MISSING_DRIVERS)
def test_a_missing_driver_names_the_extra_to_install(
    tmp_path: Path, backend: str, module: str, extra: str, at: str
) -> None:
    env = Env(tmp_path, "{type: sqlite}", base_environ())
    path = env.write(TICK)
    text = path.read_text().replace("  storage: {type: sqlite}", "  " + backend)
    path.write_text(text)
    line, column = next((number, line.index(at) + len(at) - len(at.split()[-1]) + 1)
                        for number, line in enumerate(text.splitlines(), 1) if at in line)
    where, kind = at.split(": {type: ")
    expected = (f"agenda.yaml:{line}:{column}: backend.{where}.type: {kind} needs the {module} "
                f"driver: pip install 'agenda-decl[{extra}]'")
    environ = without_module(env, module)
    commands = [("validate",)]
    if module == "psycopg":  # the commands that build a backend say the same
        commands += [("plan",), ("jobs",), ("run", "--exit-after", "1 second")]
    for args in commands:
        result = subprocess.run([CLI, *args], cwd=env.dir, env=environ, capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
        assert result.returncode == 1, (args, result.stdout)
        assert result.stderr == f"agenda-decl: {expected}\n", args


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    env = Env(tmp_path, "{type: sqlite}", base_environ())
    result = env.run("-c", "missing.yaml", "plan")
    assert result.returncode == 1
    assert "missing.yaml" in result.stderr
    assert "Traceback" not in result.stderr


# -- plan / apply -------------------------------------------------------------------------------


def test_plan_exit_codes_and_apply_twice(env: Env) -> None:
    env.write(TWO)
    planned = env.run("plan", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stderr
    assert "+ create" in planned.stdout and "next runs:" in planned.stdout
    assert "Plan: 2 to create" in planned.stdout
    assert env.jobs() == []  # plan wrote nothing

    applied = env.run("apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "Applied: 2 created" in applied.stdout
    assert "done: + create" in applied.stdout

    again = env.run("apply", "--yes")
    assert again.returncode == 0, again.stderr
    assert "No changes" in again.stdout
    assert env.run("plan", "--detailed-exitcode").returncode == 0
    plain = env.run("plan")
    assert plain.returncode == 0 and "No changes" in plain.stdout

    env.write(TWO.replace("every: 1 second", "every: 2 seconds"))
    changed = env.run("plan", "--detailed-exitcode", "--json")
    assert changed.returncode == 2
    (update,) = [c for c in json.loads(changed.stdout)["changes"] if c["action"] == "update"]
    assert update["diffs"][0] == {"field": "repeat_interval", "old": "1 second",
                                  "new": "2 seconds"}

    (env.dir / "agenda.yaml").write_text("version: 1\nbackend: {storage: {type: nope}}\n")
    broken = env.run("plan", "--detailed-exitcode")
    assert broken.returncode == 1
    assert "agenda.yaml:2:" in broken.stderr


def test_a_usage_error_exits_1_not_2(sqlite_env: Env) -> None:
    """A CI step `plan --detailed-exitcode` treats 2 as "changes pending": a typo must fail."""
    sqlite_env.write(TICK)
    result = sqlite_env.run("plan", "--detailed-exitcode", "--prnue")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "agenda-decl: unrecognized arguments: --prnue" in result.stderr


def test_apply_without_a_terminal_needs_yes(sqlite_env: Env) -> None:
    sqlite_env.write(TICK)
    refused = sqlite_env.run("apply")
    assert refused.returncode == 1
    assert "--yes" in refused.stderr and "not a terminal" in refused.stderr
    assert sqlite_env.jobs() == []
    assert sqlite_env.run("apply", "--auto-approve").returncode == 0
    assert len(sqlite_env.jobs()) == 1
    assert "No changes" in sqlite_env.run("apply").stdout  # nothing to confirm


def test_prune_deletes_only_undeclared_managed_jobs(env: Env) -> None:
    env.write(TWO)
    assert env.run("apply", "--yes").returncode == 0
    env.write(TICK)
    kept = env.run("apply", "--yes")
    assert kept.returncode == 0, kept.stderr
    assert "orphaned" in kept.stdout and "use --prune" in kept.stdout
    assert sorted(job["name"] for job in env.jobs()) == ["boom", "tick"]
    planned = env.run("plan", "--prune", "--detailed-exitcode")
    assert planned.returncode == 2
    assert "- delete" in planned.stdout
    pruned = env.run("apply", "--yes", "--prune", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["deleted"] == 1
    assert [job["name"] for job in env.jobs()] == ["tick"]


# -- run ----------------------------------------------------------------------------------------


def test_run_processes_a_schedule_and_prints_each_job(env: Env) -> None:
    env.write(TICK + "- {job: boom, every: 1 hour}\n")
    assert env.run("apply", "--yes").returncode == 0
    result = env.run("run", "--exit-after", "3 seconds", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'worker "acceptance:' in out and 'running 3 job type(s)' in out
    assert "start   tick id=" in out
    assert "success tick id=" in out and " ms" in out
    assert "tick ran with 1" in out
    assert "fail    boom id=" in out and "RuntimeError: boom from the handler" in out
    assert "--exit-after 3s reached: draining" in out
    assert "stopped:" in out
    tick = next(job for job in env.jobs() if job["name"] == "tick")
    assert tick["last_run_at"] is not None
    assert tick["state"] == "repeating"
    boom = next(job for job in env.jobs() if job["name"] == "boom")
    assert boom["fail_count"] == 1 and boom["state"] == "failed"


def test_the_readme_demo_on_the_shipped_agenda_yaml(tmp_path: Path) -> None:
    """apply, enqueue from plain code, run, apply again: the README's demo command."""
    root = Path(__file__).resolve().parents[2]
    shutil.copy(root / "agenda.yaml", tmp_path / "agenda.yaml")
    environ = {**base_environ(), "PYTHONPATH": str(root)}  # examples.handlers

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=tmp_path, env=environ, capture_output=True, text=True,
                              timeout=90, check=False)

    assert "Applied: 3 created" in call(CLI, "apply", "--yes").stdout
    enqueued = call(sys.executable, str(root / "examples" / "enqueue.py"), "agenda.yaml")
    assert enqueued.returncode == 0, enqueued.stderr
    assert "refused, nothing stored: send-welcome.data.plan: expected one of" in enqueued.stdout
    run = call(CLI, "run", "--exit-after", "8 seconds")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("welcome mail to") == 4
    assert "welcome mail to ada@example.com (plan pro)" in run.stdout
    assert "welcome mail to ken@example.com (plan free)" in run.stdout
    assert "welcome mail to lin@example.com (plan free)" in run.stdout
    assert "welcome mail to grace@example.com (plan free)" in run.stdout
    assert "heartbeat: demo is alive" in run.stdout
    again = call(CLI, "apply", "--yes")
    assert "No changes" in again.stdout, again.stdout


def test_generate_check_and_the_handles_in_application_code(sqlite_env: Env) -> None:
    """generate writes agenda_jobs.py; --check passes; a script enqueues through a handle (the
    handles load agenda.yaml themselves); after an edit of the file --check fails."""
    sqlite_env.write(TICK)
    assert sqlite_env.run("generate", "--check").returncode == 1  # not generated yet
    written = sqlite_env.run("generate")
    assert written.returncode == 0, written.stderr
    assert written.stdout == "wrote agenda_jobs.py (3 job handles)\n"
    assert not (sqlite_env.dir / "jobs.db").exists()  # no database needed
    checked = sqlite_env.run("generate", "--check")
    assert checked.returncode == 0, checked.stderr
    script = ("from agenda_decl import run_sync\n"
              "from agenda_jobs import CONFIG, TickPayload, tick\n"
              "job = run_sync(tick.now(TickPayload(n=41)))\n"
              "run_sync(CONFIG.agenda.stop())\n")
    enqueued = subprocess.run([sys.executable, "-c", script], cwd=sqlite_env.dir,
                              env=sqlite_env.environ, capture_output=True, text=True,
                              timeout=60, check=False)
    assert enqueued.returncode == 0, enqueued.stderr
    assert [job["data"] for job in sqlite_env.jobs()] == [{"n": 41}]
    sqlite_env.write(TICK, jobs="extra: {payload: {flag: bool}}\n")
    stale = sqlite_env.run("generate", "--check")
    assert stale.returncode == 1
    assert "agenda_jobs.py is stale (it does not match agenda.yaml); run: agenda-decl " \
        "generate -c agenda.yaml" in stale.stderr
    assert "+class ExtraPayload:" in stale.stderr
    assert sqlite_env.run("generate").stdout == "wrote agenda_jobs.py (4 job handles)\n"


def test_sigterm_drains_running_jobs(env: Env) -> None:
    env.write("- {job: slow, every: 1 hour, data: {seconds: 2}}\n")
    assert env.run("apply", "--yes").returncode == 0
    worker = env.start("run", "--drain-timeout", "20 seconds")
    try:
        assert worker.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = worker.stdout.readline()
            lines.append(line)
            if "start   slow" in line:
                break
        else:
            pytest.fail(f"the slow job never started: {lines}")
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err
    assert "SIGTERM: draining" in out
    assert "success slow" in out
    assert "stopped: 1 job(s) finished while draining." in out


def start_slow_worker(env: Env, *args: str, **environ: str) -> subprocess.Popen[str]:
    """A worker running `slow`, a plain `def` handler (so in a thread) sleeping 60 seconds;
    returned once the job has started."""
    env.write("- {job: slow, every: 1 hour, data: {seconds: 60}}\n")
    assert env.run("apply", "--yes").returncode == 0
    worker = env.start("run", *args, **environ)
    wait_for_line(worker, "start   slow")
    return worker


def wait_for_line(worker: subprocess.Popen[str], text: str) -> None:
    assert worker.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and worker.poll() is None:
        lines.append(worker.stdout.readline())
        if text in lines[-1]:
            return
    pytest.fail(f"no {text!r} from the worker: {lines}")


def finish(worker: subprocess.Popen[str]) -> tuple[str, str]:
    """The rest of the worker's output; it must end long before its handler would."""
    try:
        return worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_ends_a_worker_at_once(
    sqlite_env: Env, signum: signal.Signals
) -> None:
    """Even with a plain `def` handler still sleeping in its thread (the interpreter would
    wait for that thread at exit, and a third Ctrl-C ended in a traceback)."""
    worker = start_slow_worker(sqlite_env)
    worker.send_signal(signum)
    wait_for_line(worker, f"{signum.name}: draining")
    worker.send_signal(signum)
    _out, err = finish(worker)
    assert worker.returncode == 128 + signum  # 130 for SIGINT, 143 for SIGTERM
    assert "Traceback" not in err
    assert err.splitlines() == [
        f"agenda-decl: stopped by a second signal ({signum.name}): 1 job(s) still running "
        "were abandoned; their locks stay until lock_lifetime runs out, then another worker "
        "runs them (this run counts as a failed attempt)"]
    (job,) = sqlite_env.jobs()
    assert job["state"] == "running"  # still locked: no other worker starts it meanwhile


def test_a_drain_that_times_out_after_a_signal_ends_the_worker(sqlite_env: Env) -> None:
    worker = start_slow_worker(sqlite_env, "--drain-timeout", "1 second")
    worker.send_signal(signal.SIGTERM)
    _out, err = finish(worker)
    assert worker.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert "drain timed out: 1 job(s) still running were abandoned" in err


def with_a_store_that_hangs_on_close(env: Env) -> dict[str, str]:
    """PYTHONPATH for a worker whose connections never finish closing (a store that stopped
    answering): a sitecustomize makes drain()'s teardown wait forever."""
    site = env.dir / "hung_close"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""\
        import asyncio
        from agenda_decl.agenda import Agenda

        async def _never(self, close_connection):
            await asyncio.sleep(3600)

        Agenda._teardown = _never
        """))
    return {"PYTHONPATH": str(site)}


def test_closing_connections_cannot_hold_up_a_second_signal(sqlite_env: Env) -> None:
    """After a second signal the connections get a few seconds to close, no more."""
    worker = start_slow_worker(sqlite_env, **with_a_store_that_hangs_on_close(sqlite_env))
    worker.send_signal(signal.SIGINT)
    wait_for_line(worker, "SIGINT: draining")
    worker.send_signal(signal.SIGINT)
    _out, err = finish(worker)
    assert worker.returncode == 130
    assert err.startswith("agenda-decl: stopped by a second signal (SIGINT): any jobs still "
                          "running were abandoned; their locks stay")


def test_closing_connections_cannot_hold_up_a_drain_that_timed_out(sqlite_env: Env) -> None:
    """After the first signal: the drain timeout plus those few seconds, no more."""
    worker = start_slow_worker(sqlite_env, "--drain-timeout", "1 second",
                               **with_a_store_that_hangs_on_close(sqlite_env))
    worker.send_signal(signal.SIGTERM)
    _out, err = finish(worker)
    assert worker.returncode == 143
    assert err.startswith("agenda-decl: drain timed out: any jobs still running were abandoned")


def test_a_drain_that_times_out_after_exit_after_exits_1(sqlite_env: Env) -> None:
    sqlite_env.write("- {job: slow, every: 1 hour, data: {seconds: 60}}\n")
    assert sqlite_env.run("apply", "--yes").returncode == 0
    result = sqlite_env.run("run", "--exit-after", "2 seconds", "--drain-timeout", "1 second",
                            timeout=40)  # well before the handler's 60 seconds
    assert result.returncode == 1
    assert "drain timed out: 1 job(s) still running were abandoned" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_reports_a_bad_handler_path(sqlite_env: Env) -> None:
    sqlite_env.write(jobs="""\
      ghost:
        handler: acc_handlers:does_not_exist
    """)
    result = sqlite_env.run("run", "--exit-after", "1 second")
    assert result.returncode == 1
    assert "acc_handlers:does_not_exist" in result.stderr
    assert "Traceback" not in result.stderr


# -- jobs ---------------------------------------------------------------------------------------


def test_jobs_lists_state_as_a_table_and_as_json(env: Env) -> None:
    env.write(TWO)
    assert env.run("apply", "--yes").returncode == 0
    table = env.run("jobs")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "DISABLED", "NEXT", "RUN", "(UTC)",
                              "LAST", "RUN", "(UTC)", "FAILS", "LAST", "FAILURE"]
    assert len(rows) == 2 and all("repeating" in row for row in rows)
    data = json.loads(env.run("jobs", "--json", "--name", "boom").stdout)
    assert data["total"] == 1
    (job,) = data["jobs"]
    assert (job["name"], job["state"], job["managed_by"], job["schedule_key"]) == (
        "boom", "repeating", "acceptance", "nightly")
    assert job["repeat_timezone"] == "Europe/Berlin"
    assert json.loads(env.run("jobs", "--json", "--state", "failed").stdout)["jobs"] == []
    assert "1 of 2 shown" in env.run("jobs", "--limit", "1").stdout


def run_with_closed_stdout(
    env: Env, *args: str, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command with a stdout whose reader has gone, as in `agenda-decl jobs | head -2`
    once head has its lines (closed before the command starts, so every write finds it
    closed, not only those that outrun the pipe's buffer)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([CLI, *args], cwd=env.dir, env=environ or env.environ,
                              stdout=write, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              text=True, timeout=60, check=False)
    finally:
        os.close(write)


def test_a_closed_stdout_ends_a_command_quietly(sqlite_env: Env) -> None:
    sqlite_env.write(TWO)
    assert sqlite_env.run("apply", "--yes").returncode == 0
    # Buffered (a user's default) fails at the flush on exit, unbuffered at the first write.
    buffered = {k: v for k, v in sqlite_env.environ.items() if k != "PYTHONUNBUFFERED"}
    for environ in (buffered, sqlite_env.environ):
        for args in (("jobs",), ("jobs", "--json"), ("plan",), ("validate",)):
            result = run_with_closed_stdout(sqlite_env, *args, environ=environ)
            assert (result.returncode, result.stderr) == (141, ""), args
    result = run_with_closed_stdout(sqlite_env, "--help", environ=buffered)  # argparse's
    assert (result.returncode, result.stderr) == (141, "")


def test_a_worker_whose_stdout_closes_drains_and_exits_quietly(sqlite_env: Env) -> None:
    """`agenda-decl run | head`: without a reader the worker stops as on SIGTERM (no new
    jobs, running ones finish) instead of running on unseen or dying mid-job."""
    sqlite_env.write(TICK)
    assert sqlite_env.run("apply", "--yes").returncode == 0
    result = run_with_closed_stdout(sqlite_env, "run")  # no --exit-after: only EPIPE stops it
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


# -- secrets ------------------------------------------------------------------------------------


def test_no_secret_from_the_environment_is_ever_printed(tmp_path: Path) -> None:
    table = f"acc_{uuid.uuid4().hex[:10]}"
    environ = base_environ()
    environ["DATABASE_URL"] = f"postgresql://postgres:{SECRET}@127.0.0.1:5432/test"
    environ["API_TOKEN"] = TOKEN
    env = Env(tmp_path, f'{{type: postgres, connection_string: "${{DATABASE_URL}}", '
                        f"table_name: {table}}}", environ)
    outputs: list[str] = []

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        result = env.run(*args, **extra)
        outputs.extend([result.stdout, result.stderr])
        return result

    try:
        env.write(TICK + "- {job: boom, key: with-token, every: 1 hour, "
                  "data: {token: '${API_TOKEN}'}}\n")
        assert run("validate").returncode == 0
        assert run("validate", "--json").returncode == 0
        assert run("plan").returncode == 0
        assert run("plan", "--json").returncode == 0
        assert run("apply", "--yes").returncode == 0
        assert run("jobs").returncode == 0
        assert run("jobs", "--json").returncode == 0
        assert run("run", "--exit-after", "2 seconds").returncode == 0
        env.write("- {job: tick, every: 1 second, data: {n: oops}}\n")
        assert run("validate").returncode == 1  # an error message about the file
        env.write(TICK)
        assert run("plan", "--prune").returncode == 0
        # The same secret pointing at a closed port: every command fails cleanly.
        down = f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port()}/test"
        for args in (("plan",), ("apply", "--yes"), ("jobs",), ("run", "--exit-after", "1 second")):
            result = run(*args, DATABASE_URL=down)
            assert result.returncode == 1, args
            assert "cannot connect" in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr
        redis_down = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"
        (tmp_path / "redis.yaml").write_text(
            "version: 1\nbackend:\n  storage: {type: redis, connection_string: "
            '"${REDIS_DOWN}"}\njobs: {tick: {handler: "acc_handlers:tick"}}\n')
        for args in (("plan",), ("jobs", "--json"), ("run", "--exit-after", "1 second")):
            result = run("-c", "redis.yaml", *args, REDIS_DOWN=redis_down)
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
        down_json = run("-c", "redis.yaml", "jobs", "--json", REDIS_DOWN=redis_down)
        error = json.loads(down_json.stdout)["error"]  # with --json, on stdout as well
        assert error["kind"] == "backend" and "redis://:***@127.0.0.1" in error["message"]
    finally:
        drop_postgres_table(table)
    text = "\n".join(outputs)
    assert "tok-9b1e" in TOKEN and "jobs" in text  # the outputs were captured
    assert SECRET not in text
    assert TOKEN not in text
    assert "postgres:***@127.0.0.1" in text or "***" in text


def test_two_concurrent_applies_end_like_one(env: Env) -> None:
    env.write(TWO + "- {job: tick, key: second, every: 1 hour, data: {n: 2}}\n")
    first, second = env.start("apply", "--yes"), env.start("apply", "--yes")
    for process in (first, second):
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    jobs = env.jobs()
    assert sorted((job["name"], job["schedule_key"]) for job in jobs) == [
        ("boom", "nightly"), ("tick", "second"), ("tick", "tick")]
    again = env.run("apply", "--yes")
    assert "No changes" in again.stdout
