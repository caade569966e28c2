"""The SQLite change watcher between two processes on one file: a worker that polls every 60
seconds starts a job another process enqueued long before its next poll. With the watcher off
the same job waits (the control that shows the watcher, not the poll, started it). The
watcher does not look after the worker's own claims and state writes, and never misses
another connection's commit for them."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

from agenda_decl import Agenda
from agenda_decl.backends.sqlite import SQLiteBackend
from agenda_decl.connectors.sqlite import ChangeCounter, SQLiteConnector, open_watcher

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker(db: Path, out: Path, *, watch: bool) -> Iterator[subprocess.Popen[bytes]]:
    out.mkdir()
    command = [sys.executable, "-m", "tests.integration.sqlite_watch_worker", str(db), str(out),
               "1" if watch else "0"]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (out / "ready").exists():
            assert process.poll() is None, "the worker exited before its first poll"
            assert time.monotonic() < deadline, "the worker did not start within 60 s"
            time.sleep(0.05)
        yield process
    finally:
        (out / "stop").write_text("stop")
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def enqueue(db: Path, token: str) -> None:
    """Another process's enqueue (this one's Agenda never starts processing)."""
    agenda = Agenda(SQLiteBackend(db))
    agenda.define("touch", lambda job: None)
    await agenda.now("touch", {"token": token})
    await agenda.stop()


async def ran_within(out: Path, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (out / "ran").exists() and (token := (out / "ran").read_text()):
            return token
        await asyncio.sleep(0.02)
    return None


async def test_a_job_enqueued_by_another_process_starts_before_any_poll(tmp_path: Path) -> None:
    db, out, token = tmp_path / "jobs.db", tmp_path / "worker", uuid4().hex
    with worker(db, out, watch=True):
        polled_at = time.monotonic()
        await enqueue(db, token)
        # The worker's next poll is 60 s after its first: only the watcher can start it now.
        assert await ran_within(out, 20) == token
        assert time.monotonic() - polled_at < 60


async def test_without_the_watcher_the_job_waits_for_the_poll(tmp_path: Path) -> None:
    db, out, token = tmp_path / "jobs.db", tmp_path / "worker", uuid4().hex
    with worker(db, out, watch=False):
        await enqueue(db, token)
        assert await ran_within(out, 2) is None


def watchers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "agenda-sqlite-watch"]


async def test_a_save_in_the_workers_own_process_wakes_it_and_the_watcher_ends_on_stop(
    tmp_path: Path,
) -> None:
    before = len(watchers())
    agenda = Agenda(SQLiteBackend(tmp_path / "jobs.db"), process_every="60 seconds")
    ran = asyncio.Event()
    agenda.define("touch", lambda job: ran.set())
    await agenda.start()
    assert len(watchers()) == before + 1
    await agenda.now("touch")
    await asyncio.wait_for(ran.wait(), 20)  # the poll is 60 s away
    await agenda.stop()
    assert len(watchers()) == before


def _schema(c: sqlite3.Connection) -> None:
    c.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")


async def test_the_counter_skips_our_quiet_commits_but_never_another_connections(
    tmp_path: Path,
) -> None:
    """The claims and state writes of the store's own connection (quiet writes) do not make
    the watcher look; a commit of another connection does, even when it lands between two
    of ours within one look; an ordinary write of our own connection does too."""
    path = str(tmp_path / "jobs.db")
    connector = SQLiteConnector(path, busy_timeout_ms=5000, create_schema=_schema,
                                has_schema=lambda c: True)
    await connector.connect()
    watcher = open_watcher(path, 5000)
    counter = ChangeCounter(watcher, path, connector.own_commits)
    other = sqlite3.connect(path, isolation_level=None)

    def insert(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (1)")

    try:
        assert not counter.changed()
        for _ in range(3):
            await connector.write(insert, quiet=True)
        assert not counter.changed()
        other.execute("INSERT INTO t VALUES (2)")
        assert counter.changed()
        await connector.write(insert, quiet=True)
        other.execute("INSERT INTO t VALUES (3)")
        await connector.write(insert, quiet=True)
        assert counter.changed()
        await connector.write(insert, quiet=True)
        assert not counter.changed()
        await connector.write(insert)
        assert counter.changed()
    finally:
        other.close()
        counter.close()
        watcher.close()
        await connector.close()
