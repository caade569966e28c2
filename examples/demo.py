"""The quick-start demo: jobs on the embedded SQLite default, run by one worker.

    python examples/demo.py

Creates a few jobs (one now, one with a priority, one that fails once and is retried, one
repeating every 2 seconds), runs them for a few seconds, and prints each run as it happens
and the final state of every job.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from agenda_decl import Agenda, InMemoryNotificationChannel, Job, backoff
from agenda_decl.backends.sqlite import SQLiteBackend

attempts: dict[str, int] = {}


def say(line: str) -> None:
    # One write per line: handlers in worker threads print too.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def send_email(job: Job[dict[str, str]]) -> None:
    say(f"  send-email     -> to {job.attrs.data['to']}")


def resize(job: Job[dict[str, int]]) -> None:  # plain functions run in a worker thread
    say(f"  resize-image   -> image {job.attrs.data['image']} at {job.attrs.data['width']}px")


async def flaky_sync(job: Job[dict[str, str]]) -> None:
    attempts[job.attrs.data["account"]] = attempts.get(job.attrs.data["account"], 0) + 1
    if attempts[job.attrs.data["account"]] == 1:
        raise ConnectionError("upstream timed out")
    say(f"  sync-account   -> account {job.attrs.data['account']} synced on attempt 2")


async def heartbeat(job: Job[Any]) -> None:
    say("  heartbeat      -> still alive")


async def main(path: Path, seconds: float) -> None:
    agenda = Agenda(
        backend=SQLiteBackend(path=str(path)),
        # One process: an in-memory channel makes new jobs start at once instead of at the
        # next poll.
        notification_channel=InMemoryNotificationChannel(),
        process_every="1 second",
    )
    agenda.define("send-email", send_email, concurrency=5)
    agenda.define("resize-image", resize, priority="high")
    agenda.define("sync-account", flaky_sync, backoff=backoff.constant(delay=500, max_retries=3))
    agenda.define("heartbeat", heartbeat)
    agenda.on("fail", lambda error, job: say(f"  {job.attrs.name:<14} !! failed: {error}"))

    print(f"Jobs are stored in {path}\nRunning for {seconds:g} seconds:")
    await agenda.start()
    await agenda.now("send-email", {"to": "ada@example.com"})
    await agenda.now("resize-image", {"image": 7, "width": 640})
    await agenda.now("sync-account", {"account": "acme"})
    await agenda.every("2 seconds", "heartbeat")
    await asyncio.sleep(seconds)
    await agenda.drain(timeout="10 seconds", close_connection=False)

    print("\nFinal state of every job:")
    for job in (await agenda.query_jobs(sort={"name": "asc"})).jobs:
        last = job.last_run_at.strftime("%H:%M:%S") if job.last_run_at else "never"
        say(f"  {job.name:<14} {job.state:<10} last run {last}  failures: {job.fail_count or 0}")
    await agenda.stop()


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(main(Path(directory) / "demo.db", seconds))
