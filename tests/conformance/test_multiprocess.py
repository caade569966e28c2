"""Several worker processes on one store: every job runs exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from agenda_decl import Agenda
from agenda_decl.interfaces import AgendaBackend
from tests.backends import MULTIPROCESS_BACKENDS, load

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

JOBS = 1000
WORKERS = 2


@pytest.fixture(params=MULTIPROCESS_BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start_workers(name: str, spec: dict[str, object], ledger: Path, stop: Path) -> list[
    subprocess.Popen[bytes]
]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "tests.conformance.worker", name, json.dumps(spec),
               str(ledger), str(stop)]
    return [subprocess.Popen(command, cwd=root, env=env) for _ in range(WORKERS)]


def read_ledger(ledger: Path) -> list[list[str]]:
    if not ledger.exists():
        return []
    return [line.split() for line in ledger.read_text().splitlines() if line]


async def wait_for_lines(ledger: Path, count: int, workers: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 240
    while len(read_ledger(ledger)) < count:
        assert all(w.poll() is None for w in workers), "a worker process died"
        assert time.monotonic() < deadline, f"only {len(read_ledger(ledger))} of {count} ran"
        await asyncio.sleep(0.2)


async def test_two_workers_run_every_job_exactly_once(backend_name: str, tmp_path: Path) -> None:
    module = load(backend_name)
    async with module.make_backend(tmp_path) as backend:
        await enqueue(backend)
        ledger, stop = tmp_path / "ledger.txt", tmp_path / "stop"
        workers = start_workers(backend_name, module.backend_spec(backend), ledger, stop)
        try:
            await wait_for_lines(ledger, JOBS, workers)
            await asyncio.sleep(1)  # time for a duplicate run to show up, if any
        finally:
            stop.touch()
            codes = [w.wait(timeout=60) for w in workers]
        assert codes == [0] * WORKERS
        runs = read_ledger(ledger)
        per_job = Counter(job_id for job_id, _, _ in runs)
        assert len(per_job) == JOBS
        assert max(per_job.values()) == 1, [j for j, n in per_job.items() if n > 1][:5]
        assert sorted(int(i) for _, i, _ in runs) == list(range(JOBS))
        result = await Agenda(backend).query_jobs(name="ledger", state="completed")
        assert result.total == JOBS


async def enqueue(backend: AgendaBackend) -> None:
    agenda = Agenda(backend)
    agenda.declare("ledger")
    for i in range(JOBS):
        await agenda.now("ledger", {"i": i})
