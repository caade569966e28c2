"""A worker process of the fault harness: a real ``Agenda`` running the ``fault`` job and
writing every handler start, touch and return, and the scheduler's events (``success``, which
comes once the end is stored; a fenced-out write; an end not stored; other errors), to the
ledger.

    python -m tests.faults.worker CONFIG_JSON

Control (files in ``WorkerConfig.control``, and one signal):

* ``go``: with ``barrier`` set, the worker writes ``waiting`` once imported and connects only
  once this file exists, so that several processes start at the same moment;
* ``drain``: claim nothing more, let running jobs finish (``drain()``), exit 0;
* ``SIGUSR1``: ``stop()`` while jobs run, then keep the event loop up until this process's
  handlers have returned (their end writes go out after ``stop()``), exit 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import cattrs

from agenda_decl import Agenda, Job
from agenda_decl.errors import LockLostError, StateWriteError
from tests.backends import load
from tests.faults.ledger import LedgerWriter

JOB = "fault"


@attrs.frozen
class WorkerConfig:
    """Everything a worker process needs (passed as JSON on its command line)."""

    backend: str  # a module of tests/backends
    spec: dict[str, Any]  # its backend_from_spec() argument
    ledger: str
    control: str
    handler_ms: int
    lock_lifetime_ms: int = 3000
    process_every_ms: int = 500
    concurrency: int = 5  # Agenda's default per job name
    max_concurrency: int = 20  # Agenda's default
    #: The first run of each job lasts this long instead (0: no slow first run).
    slow_first_ms: int = 0
    #: ``touch()`` this often while the handler runs (0: never).
    touch_every_ms: int = 0
    barrier: bool = False

    def to_json(self) -> str:
        return json.dumps(cattrs.unstructure(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        return cattrs.structure(json.loads(text), cls)


class FaultWorker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.control = Path(config.control)
        self.ledger = LedgerWriter(Path(config.ledger))
        self.pid = os.getpid()
        self.attempts = 0
        #: The attempt each job of this process is in (job id -> attempt id).
        self.running: dict[str, str] = {}
        #: Attempts whose handler has not returned yet.
        self.live: set[str] = set()
        self.stop_requested = asyncio.Event()

    def agenda(self) -> Agenda:
        config = self.config
        agenda = Agenda(load(config.backend).backend_from_spec(config.spec),
                        name=f"fault-worker-{self.pid}", process_every=config.process_every_ms,
                        max_concurrency=config.max_concurrency)
        agenda.define(JOB, self.handle, concurrency=config.concurrency,
                      lock_lifetime=config.lock_lifetime_ms)
        agenda.on("success", self.on_success)
        agenda.on("error", self.on_error)
        return agenda

    async def handle(self, job: Job[Any]) -> None:
        assert job.attrs.id is not None
        self.attempts += 1
        attempt = f"{self.pid}.{self.attempts}"
        self.running[job.attrs.id] = attempt
        self.live.add(attempt)
        self.ledger.write("start", attempt=attempt, job=job.attrs.id, pid=self.pid,
                          lock=_epoch(job.lock_token))
        outcome = "raised"
        try:
            await self.work(job, attempt)
            outcome = "ok"
        finally:
            self.live.discard(attempt)
            self.ledger.write("return", attempt=attempt, outcome=outcome)

    async def work(self, job: Job[Any], attempt: str) -> None:
        config = self.config
        duration = config.handler_ms
        if config.slow_first_ms and self._first_run(str(job.attrs.id)):
            duration = config.slow_first_ms
        ends = time.monotonic() + duration / 1000
        step = config.touch_every_ms / 1000 if config.touch_every_ms else None
        while (left := ends - time.monotonic()) > 0:
            await asyncio.sleep(left if step is None else min(step, left))
            if step is not None and ends - time.monotonic() > 0:
                await job.touch()
                self.ledger.write("touch", attempt=attempt, lock=_epoch(job.lock_token))

    def _first_run(self, job_id: str) -> bool:
        """Whether no worker ran this job before (a marker file made with O_EXCL)."""
        try:
            os.close(os.open(self.control / f"ran-{job_id}", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def on_success(self, job: Any) -> None:
        """``success``: emitted once the run's end is stored."""
        attempt = self.running.get(str(job.attrs.id)) if isinstance(job, Job) else None
        if attempt is not None:  # not a relayed event of another worker's job
            self.ledger.write("success", attempt=attempt)

    def on_error(self, error: BaseException) -> None:
        """A fenced-out write (``lost``), an end that was not stored (``unstored``), anything
        else (``error``)."""
        attempt = self.running.get(str(getattr(error, "job_id", None)))
        if isinstance(error, LockLostError) and attempt is not None:
            self.ledger.write("lost", attempt=attempt)
        elif isinstance(error, StateWriteError) and attempt is not None:
            self.ledger.write("unstored", attempt=attempt, cause=repr(error.__cause__)[:200])
        else:
            self.ledger.write("error", pid=self.pid, error=type(error).__name__,
                              message=str(error)[:300])

    async def run(self) -> None:
        if self.config.barrier:  # imported and waiting: the runner releases all at once
            self.ledger.write("waiting", pid=self.pid)
            while not await asyncio.to_thread((self.control / "go").exists):
                await asyncio.sleep(0.01)
        agenda = self.agenda()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.stop_requested.set)
        await agenda.start()
        self.ledger.write("ready", pid=self.pid)
        drain = self.control / "drain"
        while not self.stop_requested.is_set() and not await asyncio.to_thread(drain.exists):
            await asyncio.sleep(0.05)
        if self.stop_requested.is_set():
            await self.stop_while_running(agenda)
        else:
            await agenda.drain(timeout="30 seconds")
        self.ledger.write("exit", pid=self.pid)
        self.ledger.close()

    async def stop_while_running(self, agenda: Agenda) -> None:
        """``stop()`` with handlers running, then wait for them to return (up to 30 s)."""
        running = sorted(self.live)
        await agenda.stop()
        self.ledger.write("stop", pid=self.pid, running=running)
        deadline = time.monotonic() + 30
        while self.live and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the end writes after the last return


def _epoch(moment: Any) -> float:
    return 0.0 if moment is None else float(moment.timestamp())


if __name__ == "__main__":
    asyncio.run(FaultWorker(WorkerConfig.from_json(sys.argv[1])).run())
