"""``agenda-decl run`` for production, in a subprocess on SQLite, PostgreSQL and Redis: the
Prometheus metrics and the health check scraped over HTTP while a worker runs (their values
match the jobs that ran), ``--log-format json``, ``--only``/``--exclude``/``--concurrency``,
``--wait-for-store``, and the retention of completed jobs set in agenda.yaml."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.test_cli import (
    CLI,
    SECRET,
    TICK,
    Env,
    base_environ,
    closed_port,
    finish,
    make_env,
    without_module,
)

pytestmark = pytest.mark.timeout(240)

HOURLY = TICK.replace("1 second", "1 hour")
BOOM = "- {job: boom, every: 1 hour}\n"


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(request.param, tmp_path)


def ok(env: Env, *args: str) -> str:
    result = env.run(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


class JsonWorker:
    """A worker started with ``--log-format json``: every stdout line is read as JSON."""

    def __init__(self, env: Env, *args: str, **environ: str) -> None:
        self.process = env.start("run", "--log-format", "json", *args, **environ)
        self.events: list[dict[str, Any]] = []

    def until(self, done: Any, what: str, seconds: float = 40) -> dict[str, Any]:
        """Read lines until ``done(event)``; that event."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            # The handler's own print("tick ran with", 1) runs in its thread and writes its
            # parts apart, so the worker's lines, and another run's print, may land between
            # them: pieces of it, in any order.
            if "{" not in line:
                pieces = line.replace("tick", " tick ").replace("1", " 1 ").split()
                assert set(pieces) <= {"tick", "ran", "with", "1"}, line
                continue
            event = json.loads(line[line.index("{"):])  # each worker line is one JSON object
            self.events.append(event)
            if done(event):
                return event
        _out, err = finish(self.process)
        pytest.fail(f"no {what} from the worker: {self.events} {err}")

    def port(self) -> int:
        port: int = self.until(lambda e: e["event"] == "metrics", "metrics line")["port"]
        return port

    def stop(self) -> tuple[str, str]:
        self.process.send_signal(signal.SIGTERM)
        return finish(self.process)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str,
          /, **labels: str) -> float:
    return metrics.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_metrics_and_health_match_the_jobs_that_ran(env: Env) -> None:
    env.write(HOURLY + BOOM)
    ok(env, "apply", "--yes")
    for _ in range(2):
        ok(env, "jobs", "run-now", "tick")  # tick runs 3 times, boom fails once
    worker = JsonWorker(env, "--metrics-port", "0", "--metrics-host", "127.0.0.1")
    try:
        port = worker.port()
        ended: list[dict[str, Any]] = []
        while len(ended) < 4:
            ended.append(worker.until(lambda e: e["event"] in ("success", "fail"), "job end"))
        time.sleep(1.5)  # a poll after the last run
        status, text = get(port, "/metrics")
        assert status == 200
        metrics = samples(text)
        health_status, health = get(port, "/healthz")
        assert get(port, "/nope")[0] == 404
    finally:
        _out, err = worker.stop()
    assert worker.process.returncode == 0, err
    assert sorted((e["event"], e["name"]) for e in ended) == [
        ("fail", "boom"), ("success", "tick"), ("success", "tick"), ("success", "tick")]
    failed = next(e for e in ended if e["event"] == "fail")
    assert failed["error"] == "RuntimeError: boom from the handler"
    assert isinstance(failed["duration_ms"], int) and failed["job_id"]

    assert value(metrics, "agenda_decl_jobs_started_total", name="tick") == 3
    assert value(metrics, "agenda_decl_jobs_succeeded_total", name="tick") == 3
    assert value(metrics, "agenda_decl_jobs_completed_total", name="tick") == 3
    assert value(metrics, "agenda_decl_jobs_failed_total", name="tick") == 0
    assert value(metrics, "agenda_decl_jobs_started_total", name="boom") == 1
    assert value(metrics, "agenda_decl_jobs_failed_total", name="boom") == 1
    assert value(metrics, "agenda_decl_jobs_completed_total", name="boom") == 1
    assert value(metrics, "agenda_decl_job_duration_seconds_count", name="tick") == 3
    assert value(metrics, "agenda_decl_jobs_running", name="tick") == 0
    assert value(metrics, "agenda_decl_claim_duration_seconds_count", name="tick") >= 1
    assert value(metrics, "agenda_decl_stored_jobs", name="boom", state="failed") == 1
    assert value(metrics, "agenda_decl_stored_jobs", name="tick", state="completed") == 2
    assert value(metrics, "agenda_decl_queue_size", name="tick") == 0
    assert value(metrics, "agenda_decl_last_successful_poll_timestamp_seconds") > time.time() - 60
    # Every storage here has a channel of its own (SQLite: the change watcher).
    assert value(metrics, "agenda_decl_notification_channel_state",
                 agenda_decl_notification_channel_state="connected") == 1

    assert health_status == 200
    answer = json.loads(health)
    assert answer["status"] == "ok" and answer["store"] == {"reachable": True, "error": None}
    assert answer["channel"]["state"] == "connected"
    assert answer["seconds_since_poll"] < 5
    assert "Traceback" not in err


def test_health_is_503_while_the_worker_waits_for_the_store(tmp_path: Path) -> None:
    """A store that is not up yet: a line per attempt, /healthz answers 503, the secret in the
    connection string is never printed, and SIGTERM ends the wait."""
    environ = base_environ()
    environ["DATABASE_URL"] = f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port()}/test"
    env = Env(tmp_path, '{type: postgres, connection_string: "${DATABASE_URL}", '
                        f"table_name: acc_{uuid.uuid4().hex[:10]}}}", environ)
    env.write(HOURLY)
    worker = JsonWorker(env, "--wait-for-store", "60s", "--metrics-port", "0",
                        "--metrics-host", "127.0.0.1")
    try:
        port = worker.port()
        first = worker.until(lambda e: e["event"] == "waiting_for_store", "waiting line")
        assert first["attempt"] == 1 and "retrying in" in first["message"]
        status, body = get(port, "/healthz")
        assert status == 503
        answer = json.loads(body)
        assert answer["status"] == "waiting" and answer["store"]["reachable"] is False
        assert "***" in answer["store"]["error"] and SECRET not in body
        worker.until(lambda e: e.get("attempt") == 2, "second attempt")
    finally:
        out, err = worker.stop()
    assert worker.process.returncode == 0, err
    assert "stopped while waiting for the store" in out
    assert SECRET not in out + err + json.dumps(worker.events)

    gave_up = env.run("run", "--wait-for-store", "2s", timeout=60)
    assert gave_up.returncode == 1
    assert gave_up.stdout.count("store not reachable (attempt") >= 2
    assert "cannot connect" in gave_up.stderr and "Traceback" not in gave_up.stderr
    assert SECRET not in gave_up.stdout + gave_up.stderr


def test_only_exclude_and_concurrency_choose_what_a_worker_runs(env: Env) -> None:
    (env.dir / "acc_broken.py").write_text("raise ImportError('needs a library not here')\n")
    env.write(HOURLY + BOOM, jobs="broken:\n  handler: acc_broken:run\n")
    ok(env, "apply", "--yes")
    only = env.run("run", "--only", "tick", "--exit-after", "2 seconds", timeout=60)
    assert only.returncode == 0, only.stderr  # acc_broken is not imported
    assert "running 1 job type(s): tick" in only.stdout
    assert "no handler here for: boom, broken, slow" in only.stdout
    assert "tick ran with 1" in only.stdout and "start   boom" not in only.stdout
    excluded = env.run("run", "--exclude", "tick", "broken", "--concurrency", "3",
                       "--exit-after", "2 seconds", timeout=60)
    assert excluded.returncode == 0, excluded.stderr
    assert "running 2 job type(s): slow, boom" in excluded.stdout
    assert "concurrency: 3" in excluded.stdout
    assert "fail    boom" in excluded.stdout and "tick ran" not in excluded.stdout
    unknown = env.run("run", "--only", "nope", "--exit-after", "1 second")
    assert unknown.returncode == 1
    assert "--only: no job named 'nope' in the file" in unknown.stderr
    zero = env.run("run", "--concurrency", "0")
    assert zero.returncode == 1 and "expected an integer >= 1" in zero.stderr


def test_a_worker_applies_the_retention_of_completed_jobs(env: Env) -> None:
    env.write(HOURLY, scheduler=", retention: {completed: 1 second, check_every: 1 second}")
    ok(env, "apply", "--yes")
    for _ in range(2):
        ok(env, "jobs", "run-now", "tick")
    out = env.run("run", "--exit-after", "6 seconds", timeout=60)
    assert out.returncode == 0, out.stderr
    deleted = [int(line.split("deleted ")[1].split()[0]) for line in out.stdout.splitlines()
               if "retention: deleted" in line]
    assert sum(deleted) == 2, out.stdout
    assert [job["state"] for job in env.jobs()] == ["repeating"]


def test_metrics_without_prometheus_client_name_the_extra(tmp_path: Path) -> None:
    env = Env(tmp_path, "{type: sqlite, path: jobs.db}", base_environ())
    env.write(HOURLY)
    result = subprocess.run([CLI, "run", "--metrics-port", "0", "--exit-after", "1s"],
                            cwd=env.dir, env=without_module(env, "prometheus_client"),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "pip install 'agenda-decl[metrics]'" in result.stderr
    assert "Traceback" not in result.stderr

