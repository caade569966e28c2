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


def start_workers(
    name: str, spec: dict[str, object], ledger: Path, stop: Path, *, count: int = WORKERS,
    **environ: str,
) -> list[subprocess.Popen[bytes]]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), **environ}
    command = [sys.executable, "-m", "tests.conformance.worker", name, json.dumps(spec),
               str(ledger), str(stop)]
    return [subprocess.Popen(command, cwd=root, env=env) for _ in range(count)]


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


async def test_a_job_whose_worker_is_killed_runs_again(
    backend_name: str, tmp_path: Path
) -> None:
    """SIGKILL a worker in the middle of a run: once the lock expires another worker runs the
    job. The lost run counts as a failed attempt only while the rerun goes on (see
    test_a_run_that_never_finished_counts_until_the_rerun_ends): the rerun succeeded."""
    module = load(backend_name)
    async with module.make_backend(tmp_path) as backend:
        producer = Agenda(backend)
        producer.declare("ledger")
        job = await producer.now("ledger", {"i": 7})
        ledger, stop = tmp_path / "ledger.txt", tmp_path / "stop"
        spec = module.backend_spec(backend)
        (doomed,) = start_workers(backend_name, spec, ledger, stop, count=1,
                                  AGENDA_TEST_HANG="1", AGENDA_TEST_LOCK_LIFETIME="2 seconds")
        await wait_for_lines(ledger, 1, [doomed])
        doomed.kill()
        doomed.wait(timeout=30)
        (survivor,) = start_workers(backend_name, spec, ledger, stop, count=1,
                                    AGENDA_TEST_LOCK_LIFETIME="2 seconds")
        try:
            await wait_for_lines(ledger, 2, [survivor])
        finally:
            stop.touch()
            assert survivor.wait(timeout=60) == 0
        assert [(job_id, pid) for job_id, _, pid in read_ledger(ledger)] == [
            (job.attrs.id, str(doomed.pid)), (job.attrs.id, str(survivor.pid))]
        (final,) = (await producer.query_jobs(id=job.attrs.id)).jobs
        assert (final.state, final.fail_count, final.locked_at) == ("completed", None, None)
        assert final.fail_reason is None
        await producer.stop()


async def enqueue(backend: AgendaBackend) -> None:
    agenda = Agenda(backend)
    agenda.declare("ledger")
    for i in range(JOBS):
        await agenda.now("ledger", {"i": i})
