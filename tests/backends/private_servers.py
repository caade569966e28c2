"""Servers of a test's own, for what must not be done to the shared ones: restarting them,
stopping them, terminating every client connection.

* :class:`PrivatePostgres`: Debian's PostgreSQL binaries (``initdb``, ``pg_ctl``), a cluster
  in a temporary folder, on a free loopback port, trust authentication, database
  ``postgres``. Run as root (CI containers), the server runs as the ``postgres`` user
  (``initdb`` refuses root), through ``runuser``.
* :class:`PrivateRedis`: ``redis-server`` on a free loopback port with its data in a
  temporary folder. By default with the append-only file fsynced on every write
  (``appendonly yes``, ``appendfsync always``), so that a restart keeps every acknowledged
  write; ``persistent=False`` runs it as a cache (no AOF, no RDB), where a restart loses
  everything, which is data loss by configuration, not something a client can ride out.
* :class:`PrivateRedisCluster`: a Redis Cluster of three masters (no replicas), each a
  ``redis-server --cluster-enabled yes`` on free loopback ports (data port and bus port),
  joined with ``redis-cli --cluster create``; ``.ci/lib.sh``'s ``start_redis_cluster`` does
  the same in shell for ``.ci/run``.

A missing binary fails the test that asked for the server, loudly; it never skips.
The fixtures ``private_postgres`` and ``private_redis`` give a started server and remove it
afterwards; import them into a test module to use them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where PostgreSQL's server binaries are (the newest Debian version, or the environment's).
PG_BIN = os.environ.get("AGENDA_TEST_PG_BIN") or next(
    iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), "/usr/lib/postgresql/15/bin"
)
REDIS_SERVER = os.environ.get("AGENDA_TEST_REDIS_SERVER", "redis-server")
REDIS_CLI = os.environ.get("AGENDA_TEST_REDIS_CLI", "redis-cli")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _require(path: str, what: str) -> str:
    found = shutil.which(path)
    if found is None:
        pytest.fail(
            f"{what} is needed for this test and is not installed ({path} not found). On "
            "Debian: apt-get install postgresql redis-server (AGENDA_TEST_PG_BIN and "
            "AGENDA_TEST_REDIS_SERVER point elsewhere).",
            pytrace=False,
        )
    return found


def _wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder, on a port of its own (see the module
    docstring). ``url`` connects to it (add a password: trust authentication ignores it)."""

    def __init__(self) -> None:
        self.initdb = _require(os.path.join(PG_BIN, "initdb"), "PostgreSQL's initdb")
        self.pg_ctl = _require(os.path.join(PG_BIN, "pg_ctl"), "PostgreSQL's pg_ctl")
        self.as_root = os.geteuid() == 0
        if self.as_root:
            _require("runuser", "runuser (to run PostgreSQL as the postgres user)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="agenda-test-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(self.initdb, "-D", str(self.data), "--auth=trust", "--username=postgres",
                  "--no-sync", "--encoding=UTF8", "--no-instructions")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_with_password(self, password: str) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60) -> None:
        argv = ["runuser", "-u", "postgres", "--", *command] if self.as_root else list(command)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"{' '.join(command[:2])} failed: {result.stderr}{result.stdout}\n{log}",
                        pytrace=False)

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run(self.pg_ctl, "start", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (what a restart or ``systemctl stop`` does: every client
        connection is terminated) or ``immediate`` (a crash: no shutdown checkpoint)."""
        self._run(self.pg_ctl, "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def restart(self, down_for: float = 0.0) -> None:
        """Stop (fast), stay down ``down_for`` seconds, start again."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def remove(self) -> None:
        argv = [self.pg_ctl, "stop", "-D", str(self.data), "-m", "immediate", "-w"]
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` on a port of its own (see the module docstring); ``password`` sets
    ``requirepass``."""

    def __init__(self, *, persistent: bool = True, password: str | None = None) -> None:
        self.binary = _require(REDIS_SERVER, "redis-server")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="agenda-test-redis-"))
        self.persistent = persistent
        self.password = password
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--logfile", str(self.dir / "server.log")]
        if self.persistent:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not _wait_for_port(self.port, 30):
            log_file = self.dir / "server.log"
            log = log_file.read_text() if log_file.exists() else ""
            pytest.fail(f"redis-server did not start on port {self.port}:\n{log}", pytrace=False)

    def stop(self) -> None:
        """Shut down as on SIGTERM (the AOF, when on, already holds every write)."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=30)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def freeze(self) -> None:
        """Stop the process (SIGSTOP): its connections stay open and nothing answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def remove(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedisCluster:
    """Three cluster-enabled ``redis-server`` masters in a temporary folder, joined into one
    cluster; ``url`` (``redis+cluster://``) names the first node, ``nodes`` all three."""

    def __init__(self, masters: int = 3) -> None:
        self.binary = _require(REDIS_SERVER, "redis-server")
        self.cli = _require(REDIS_CLI, "redis-cli")
        self.dir = Path(tempfile.mkdtemp(prefix="agenda-test-redis-cluster-"))
        self.ports = [free_port() for _ in range(masters)]
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.nodes[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            folder = self.dir / str(port)
            folder.mkdir()
            # The bus port is the data port + 10000 unless given; that one may be taken.
            argv = [self.binary, "--port", str(port), "--cluster-port", str(free_port()),
                    "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                    "--cluster-config-file", str(folder / "nodes.conf"), "--dir", str(folder),
                    "--save", "", "--appendonly", "no", "--daemonize", "no",
                    "--logfile", str(folder / "server.log")]
            self._processes.append(subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
            if not _wait_for_port(port, 30):
                self._fail(f"redis-server --cluster-enabled yes did not start on port {port}")
        create = subprocess.run(
            [self.cli, "--cluster", "create", *self.nodes, "--cluster-replicas", "0",
             "--cluster-yes"], capture_output=True, text=True, timeout=120, check=False,
            stdin=subprocess.DEVNULL)
        if create.returncode != 0:
            self._fail(f"redis-cli --cluster create failed: {create.stdout}{create.stderr}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in self._info(port) for port in self.ports):
                return
            time.sleep(0.2)
        self._fail("the cluster did not reach cluster_state:ok within 60 s")

    def _info(self, port: int) -> str:
        result = subprocess.run([self.cli, "-p", str(port), "cluster", "info"],
                                capture_output=True, text=True, timeout=30, check=False)
        return result.stdout

    def _fail(self, message: str) -> None:
        logs = "\n".join(f"{log}:\n{log.read_text()}" for log in self.dir.glob("*/server.log"))
        self.remove()
        pytest.fail(f"{message}\n{logs}", pytrace=False)

    def remove(self) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            process.kill()
            process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PostgreSQL server of the test's own, removed afterwards."""
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A started ``redis-server`` of the test's own, with the append-only file fsynced on
    every write (a restart keeps every acknowledged write), removed afterwards."""
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.remove()
