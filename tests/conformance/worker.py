"""A worker process for the multi-process tests: runs ``ledger`` jobs until told to stop.

    python -m tests.conformance.worker BACKEND SPEC_JSON LEDGER STOPFILE

Each run appends ``job_id data.i worker`` to LEDGER (one short O_APPEND write per line, which
Linux keeps whole), so the test can count how often each job ran. With ``AGENDA_TEST_HANG`` set,
a handler hangs after recording (the test then kills the process mid-run), and
``AGENDA_TEST_LOCK_LIFETIME`` sets the lock lifetime of the jobs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from agenda_decl import Agenda, Job
from tests.backends import load


async def main(backend_name: str, spec: dict[str, Any], ledger: Path, stop_file: Path) -> None:
    backend = load(backend_name).backend_from_spec(spec)
    agenda = Agenda(backend, process_every="200 ms", max_concurrency=20, name=f"w{os.getpid()}")
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    hang = bool(os.environ.get("AGENDA_TEST_HANG"))

    async def record(job: Job[Any]) -> None:
        os.write(fd, f"{job.attrs.id} {job.attrs.data['i']} {os.getpid()}\n".encode())
        if hang:
            await asyncio.Event().wait()

    lifetime = os.environ.get("AGENDA_TEST_LOCK_LIFETIME", "10 minutes")
    agenda.define("ledger", record, concurrency=10, lock_lifetime=lifetime)
    await agenda.start()
    while not await asyncio.to_thread(stop_file.exists):
        await asyncio.sleep(0.1)
    await agenda.drain(timeout="10 seconds")
    os.close(fd)


if __name__ == "__main__":
    name, spec_json, ledger_path, stop_path = sys.argv[1:5]
    asyncio.run(main(name, json.loads(spec_json), Path(ledger_path), Path(stop_path)))
