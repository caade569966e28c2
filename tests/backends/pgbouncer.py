"""A private PgBouncer (Debian's ``pgbouncer``) in transaction pooling mode in front of the
shared PostgreSQL's database ``test``, for the conformance suite through a pooler.

``.ci/run`` starts one (``python -m tests.backends.pgbouncer start DIR`` prints its URL) and
exports ``AGENDA_TEST_PGBOUNCER_URL``; without that variable the first test that needs it
starts one for the test run (:func:`pgbouncer_url`), stopped when the run ends. PgBouncer
refuses to run as root, so as root it runs as the ``postgres`` user. A missing binary is a
failure, never a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

#: The pooler of ``.ci/run``, when it started one.
ENV_URL = "AGENDA_TEST_PGBOUNCER_URL"
_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
_started: list[PgBouncer] = []


class PgBouncerMissing(RuntimeError):
    """pgbouncer is not installed or did not start."""


def _binary() -> str:
    found = shutil.which("pgbouncer") or next((p for p in _PATHS if os.path.exists(p)), None)
    if found is None:
        raise PgBouncerMissing(
            "pgbouncer is not installed: apt-get install pgbouncer (.ci/run installs it)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PgBouncer:
    """``pool_mode = transaction``, trust authentication (a userlist file in ``folder``),
    listening on a free loopback port, database ``test`` of ``target`` (a PostgreSQL URL)."""

    def __init__(self, folder: Path, target: str) -> None:
        self.folder = folder
        self.port = _free_port()
        parts = urlsplit(target)
        self._server = (parts.hostname or "127.0.0.1", parts.port or 5432,
                        parts.path.lstrip("/") or "test", parts.username or "postgres")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        _, _, database, user = self._server
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _config(self) -> Path:
        host, port, database, user = self._server
        (self.folder / "userlist.txt").write_text(f'"{user}" ""\n')
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{database} = host={host} port={port} dbname={database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.folder / 'userlist.txt'}\n"
            "pool_mode = transaction\nmax_client_conn = 2000\ndefault_pool_size = 10\n"
            "ignore_startup_parameters = extra_float_digits,options\nadmin_users = postgres\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\n"
            f"pidfile = {self.folder / 'pgbouncer.pid'}\n"
        )
        if os.geteuid() == 0:  # pgbouncer will not run as root
            for path in (self.folder, *self.folder.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        return config

    def _argv(self, *options: str) -> list[str]:
        argv = [_binary(), *options, str(self._config())]
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self, *, daemon: bool = False) -> None:
        """Start it (``daemon``: in the background, outliving this process) and wait until
        it accepts connections."""
        argv = self._argv("-d") if daemon else self._argv()
        if daemon:
            subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, timeout=30)
        else:
            # It logs to its logfile; a pipe nobody reads would fill and stop it.
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port),
                                                                        0.2):
                return
            time.sleep(0.05)
        log = self.folder / "pgbouncer.log"
        raise PgBouncerMissing(f"pgbouncer did not start on port {self.port}: "
                               f"{log.read_text() if log.exists() else ''}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def pgbouncer_url() -> str:
    """The URL of a pooler in front of the shared server's ``test`` database: ``.ci/run``'s,
    else one started now for the rest of this process (raises :class:`PgBouncerMissing`)."""
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    if not _started:
        from tests.backends.servers import POSTGRES_URL

        bouncer = PgBouncer(Path(tempfile.mkdtemp(prefix="agenda-test-pgbouncer-")), POSTGRES_URL)
        bouncer.start()
        _started.append(bouncer)
        atexit.register(bouncer.stop)
    return _started[0].url


def main(argv: list[str]) -> int:
    """``start DIR [TARGET_URL]``: a daemon whose files are in DIR; prints its URL.
    ``stop DIR``: stops the daemon started there."""
    command, folder = argv[0], Path(argv[1])
    if command == "start":
        folder.mkdir(parents=True, exist_ok=True)
        target = argv[2] if len(argv) > 2 else "postgresql://postgres@127.0.0.1:5432/test"
        bouncer = PgBouncer(folder, target)
        bouncer.start(daemon=True)
        print(bouncer.url)
        return 0
    pidfile = folder / "pgbouncer.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), 15)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
