"""``agenda-decl dashboard`` in a subprocess: where it listens, the credentials it needs off
loopback (from the environment, never printed), and its clear errors."""

from __future__ import annotations

import base64
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.acceptance.test_cli import TICK, Env, closed_port
from tests.acceptance.test_cli import sqlite_env as sqlite_env  # the fixture

pytestmark = pytest.mark.timeout(120)

TOKEN = "dash-T0ken-5ecret-81f2"
PASSWORD = "dash-Pa55word-77ab"


def start_dashboard(env: Env) -> tuple[subprocess.Popen[str], str]:
    port = closed_port()
    server = env.start("dashboard", "--port", str(port))
    assert server.stdout is not None
    line = server.stdout.readline()
    assert "dashboard of acceptance on http://127.0.0.1:" in line, (
        line, server.stderr.read() if server.poll() is not None and server.stderr else "")
    return server, f"http://127.0.0.1:{port}"


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        _out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
    return err


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_off_loopback_it_needs_credentials_from_the_environment(sqlite_env: Env) -> None:
    sqlite_env.write(TICK)
    refused = sqlite_env.run("dashboard", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 1
    assert "needs credentials: set AGENDA_DECL_DASHBOARD_TOKEN" in refused.stderr
    half = sqlite_env.run("dashboard", "--port", "0", AGENDA_DECL_DASHBOARD_USER="ops")
    assert half.returncode == 1
    assert "set both AGENDA_DECL_DASHBOARD_USER and AGENDA_DECL_DASHBOARD_PASSWORD" in half.stderr

    port = closed_port()
    server = sqlite_env.start("dashboard", "--host", "0.0.0.0", "--port", str(port),
                              AGENDA_DECL_DASHBOARD_TOKEN=TOKEN)
    assert server.stdout is not None
    line = server.stdout.readline()
    try:
        assert f":{port}/ (actions on, credentials required)" in line, line
        url = f"http://127.0.0.1:{port}/"
        assert status_of(url) == 401
        assert status_of(url, {"Authorization": f"Bearer {TOKEN}"}) == 200
        assert status_of(url, {"Authorization": "Bearer nope"}) == 401
    finally:
        errors = stop(server)
    assert TOKEN not in line + errors


def test_basic_auth_on_loopback_when_set(sqlite_env: Env) -> None:
    sqlite_env.write(TICK)
    port = closed_port()
    server = sqlite_env.start("dashboard", "--port", str(port), "--read-only",
                              AGENDA_DECL_DASHBOARD_USER="ops",
                              AGENDA_DECL_DASHBOARD_PASSWORD=PASSWORD)
    assert server.stdout is not None
    line = server.stdout.readline()
    try:
        assert "(read-only, credentials required)" in line, line
        good = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
        url = f"http://127.0.0.1:{port}/jobs"
        assert status_of(url, {"Authorization": f"Basic {good}"}) == 200
        assert status_of(url) == 401
    finally:
        errors = stop(server)
    assert PASSWORD not in line + errors
    # read-only on a store that does not exist yet: it created nothing
    assert not (sqlite_env.dir / "jobs.db").exists()


def test_a_port_in_use_is_a_clear_error(sqlite_env: Env) -> None:
    sqlite_env.write(TICK)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = sqlite_env.run("dashboard", "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_it_serves_until_stopped(sqlite_env: Env) -> None:
    sqlite_env.write(TICK)
    assert sqlite_env.run("apply", "--yes").returncode == 0
    server, base = start_dashboard(sqlite_env)
    try:
        assert status_of(base + "/schedules") == 200
        assert status_of(base + "/static/dashboard.js") == 200
    finally:
        errors = stop(server)
    assert "Traceback" not in errors, errors
