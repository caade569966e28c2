"""A worker for the SQLite change-watch test: polls only every 60 seconds, so only the change
watcher can start a job another process enqueues in the meantime.

    python -m tests.integration.sqlite_watch_worker DB OUT_DIR WATCH(1|0)

Writes OUT_DIR/ready once its first poll is done, OUT_DIR/ran (the job's token) when the job
runs, and stops when OUT_DIR/stop appears.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from agenda_decl import Agenda, Job
from agenda_decl.backends.sqlite import SQLiteBackend
from agenda_decl.runtime.events import PollReport


async def main(path: str, out: Path, watch: bool) -> None:
    agenda = Agenda(SQLiteBackend(path, watch_changes=watch), process_every="60 seconds")

    def touch(job: Job[Any]) -> None:
        (out / "ran").write_text(job.attrs.data["token"])

    polled = asyncio.Event()

    def on_poll(report: PollReport) -> None:
        polled.set()

    agenda.define("touch", touch)
    agenda.on("poll", on_poll)
    await agenda.start()
    await polled.wait()
    (out / "ready").write_text("ready")
    while not (out / "stop").exists():
        await asyncio.sleep(0.05)
    await agenda.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"))
