"""The scenario runner of the fault harness: a store, a producer in this process, worker
processes (tests/faults/worker.py) with the reference's settings (3 workers, 3 s locks, 500 ms
polling), the faults, and the counting rules applied to the ledger (tests/faults/ledger.py).

``run_scenario`` enqueues the jobs (all before the workers start: a backlog; or while they
run), injects what the scenario asks for (SIGKILL of the busiest worker and a replacement,
``stop()`` of one worker, a fault of the test's own such as a server restart, at fractions of
the enqueued jobs), waits until every job completed, then a further ``lock_lifetime + 2 *
process_every`` (a run that should not happen again has time to show), drains the workers and
counts. The store's own view (jobs stored as completed, jobs with a failed attempt) is read
with a fresh connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import attrs
from redis.asyncio import Redis

from agenda_decl import Agenda, JobsQueryOptions, compute_job_state
from tests.backends import load
from tests.backends.postgres import drop_table, unique_names
from tests.backends.redis import delete_keys, unique_prefix
from tests.backends.servers import POSTGRES_URL, REDIS_URL
from tests.faults.ledger import Findings, LedgerWriter, count, read_events
from tests.faults.worker import JOB, WorkerConfig

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("AGENDA_TEST_LONG") == "1"

#: The reference harness's settings.
WORKERS, LOCK_LIFETIME_MS, PROCESS_EVERY_MS = 3, 3000, 500
#: What a killed worker's jobs may take to restart: the Done-when goal of issue 12.
RESTART_GOAL = (LOCK_LIFETIME_MS + PROCESS_EVERY_MS) / 1000

Fault = Callable[[], Awaitable[None]]


@attrs.frozen
class Store:
    """Where the jobs live: a module of tests/backends and its ``backend_from_spec`` spec."""

    backend: str
    spec: dict[str, Any]


@asynccontextmanager
async def shared_store(backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A store of its own on the shared servers (or a SQLite file), removed afterwards. Not
    created here: the first worker or the producer creates it."""
    if backend == "sqlite":
        yield Store("sqlite", {"path": str(tmp_path / f"faults-{uuid4().hex[:8]}.db"),
                               "table_name": "agenda_jobs"})
    elif backend == "postgres":
        store = postgres_store(POSTGRES_URL)
        try:
            yield store
        finally:
            await drop_table(store.spec["table_name"])
    elif backend == "redis":
        store = redis_store(REDIS_URL)
        try:
            yield store
        finally:
            await delete_redis_keys(store)
    else:
        raise ValueError(f"no fault-harness store for {backend!r}")


def postgres_store(url: str) -> Store:
    table, channel = unique_names()
    return Store("postgres", {"url": url, "table_name": table, "channel_name": channel})


def redis_store(url: str) -> Store:
    prefix = unique_prefix()
    return Store("redis", {"url": url, "key_prefix": prefix, "channel_name": f"{prefix}jobs"})


async def delete_redis_keys(store: Store) -> None:
    client = Redis.from_url(store.spec["url"])
    try:
        await delete_keys(client, store.spec["key_prefix"])
    finally:
        await client.aclose()


@attrs.frozen
class Scenario:
    name: str
    jobs: int
    handler_ms: int
    workers: int = WORKERS
    #: Enqueue every job before the workers start (else while they run).
    backlog: bool = True
    #: Pause between two enqueues when not a backlog (seconds).
    enqueue_gap: float = 0.0
    #: SIGKILL the busiest worker this many times, ``kill_every`` seconds apart (or later,
    #: once another worker is ready), the first ``kill_every`` after the first start; each is
    #: replaced by a new worker at once.
    kills: int = 0
    kill_every: float = 2.0
    slow_first_ms: int = 0
    touch_every_ms: int = 0
    #: ``stop()`` one worker this long after the first start (seconds).
    stop_one_after: float | None = None
    #: The workers start at one moment, before the producer connects (an empty store).
    barrier: bool = False
    #: When to inject the test's own fault: fractions of the jobs enqueued.
    fault_at: tuple[float, ...] = ()


@attrs.frozen
class Outcome:
    """A finished scenario: the counting rules' findings and what the store says."""

    scenario: str
    backend: str
    findings: Findings
    stored_completed: int
    #: Jobs whose stored fail_count is above 0 (a run recorded as a failed attempt).
    stored_failed_attempts: int
    exit_codes: list[int]
    producer_errors: list[str]
    seconds: float
    worker_logs: str

    def report(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "backend": self.backend,
                **self.findings.summary(), "stored_completed": self.stored_completed,
                "stored_failed_attempts": self.stored_failed_attempts,
                "producer_errors": len(self.producer_errors), "seconds": round(self.seconds, 1)}

    def describe(self) -> str:
        """For assertion messages: the counts, then the workers' stderr tails."""
        return f"{json.dumps(self.report())}\n{self.producer_errors[:3]}\n{self.worker_logs}"


class Fleet:
    """The worker processes of one run."""

    def __init__(self, store: Store, scenario: Scenario, folder: Path) -> None:
        self.folder = folder
        self.control = folder / "control"
        self.control.mkdir(parents=True)
        self.ledger_path = folder / "ledger.jsonl"
        self.ledger = LedgerWriter(self.ledger_path)
        self.config = WorkerConfig(
            backend=store.backend, spec=store.spec, ledger=str(self.ledger_path),
            control=str(self.control), handler_ms=scenario.handler_ms,
            lock_lifetime_ms=LOCK_LIFETIME_MS, process_every_ms=PROCESS_EVERY_MS,
            slow_first_ms=scenario.slow_first_ms, touch_every_ms=scenario.touch_every_ms,
            barrier=scenario.barrier)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()

    def spawn(self, count: int = 1) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for _ in range(count):
            log = open(self.folder / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "tests.faults.worker", self.config.to_json()],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def events(self) -> list[dict[str, Any]]:
        return read_events(self.ledger_path)

    def counted(self, kind: str) -> int:
        return sum(1 for e in self.events() if e["kind"] == kind)

    def ready_workers(self) -> list[subprocess.Popen[bytes]]:
        """The workers that got ready and were not killed, busiest first (most handlers
        running, by the ledger)."""
        running: dict[int, int] = {}
        ready: set[int] = set()
        for event in self.events():
            if event["kind"] == "ready":
                ready.add(int(event["pid"]))
            elif event["kind"] in ("start", "return"):
                pid = int(event["attempt"].split(".")[0])
                running[pid] = running.get(pid, 0) + (1 if event["kind"] == "start" else -1)
        live = [p for p in self.processes
                if p.pid in ready and p.pid not in self.killed and p.poll() is None]
        return sorted(live, key=lambda p: -running.get(p.pid, 0))

    def kill_busiest(self) -> None:
        """SIGKILL the ready worker with the most handlers running, and start another."""
        victim = self.ready_workers()[0]
        victim.kill()
        victim.wait()
        self.killed.add(victim.pid)
        self.ledger.write("kill", pid=victim.pid)
        self.spawn()

    def stop_one(self) -> None:
        """Ask the busiest ready worker to ``stop()`` while its jobs run."""
        self.ready_workers()[0].send_signal(signal.SIGUSR1)

    def drain(self) -> list[int]:
        (self.control / "drain").touch()
        codes = []
        for process in self.processes:
            if process.pid in self.killed:
                continue
            try:
                codes.append(process.wait(timeout=60))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        return codes

    def abort(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def logs(self, lines: int = 15) -> str:
        tails = []
        for log in sorted(self.folder.glob("worker-*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            if text:
                tails.append(f"-- {log.name}\n" + "\n".join(text))
        return "\n".join(tails)


async def run_scenario(store: Store, scenario: Scenario, folder: Path,
                       fault: Fault | None = None, timeout: float = 240) -> Outcome:
    started = time.monotonic()
    fleet = Fleet(store, scenario, folder)
    producer = Agenda(load(store.backend).backend_from_spec(store.spec), name="fault-producer")
    producer.declare(JOB)
    enqueued: list[str] = []
    producer_errors: list[str] = []
    try:
        if scenario.barrier:
            fleet.spawn(scenario.workers)
            await _until(lambda: fleet.counted("waiting") >= scenario.workers, 60,
                         "workers at the barrier")
            (fleet.control / "go").touch()
            await _until(lambda: fleet.counted("ready") >= scenario.workers, 60,
                         "workers ready")
        if scenario.backlog:
            await _enqueue(producer, scenario, fleet.ledger, enqueued, producer_errors, None)
        if not scenario.barrier:
            fleet.spawn(scenario.workers)
        if not scenario.backlog:
            await _until(lambda: fleet.counted("ready") >= scenario.workers, 60,
                         "workers ready")
        meddling = asyncio.create_task(_meddle(fleet, scenario))
        if not scenario.backlog:
            await _enqueue(producer, scenario, fleet.ledger, enqueued, producer_errors, fault)
        await _until(lambda: _all_completed(fleet, producer, enqueued), timeout,
                     "every job completed")
        await meddling
        await asyncio.sleep((LOCK_LIFETIME_MS + 2 * PROCESS_EVERY_MS) / 1000)
        codes = fleet.drain()
        stored = (await producer.query_jobs(JobsQueryOptions(name=JOB))).jobs
        completed = {str(job.id) for job in stored if compute_job_state(job) == "completed"}
    except BaseException:
        fleet.abort()
        raise
    finally:
        await producer.stop()
    return Outcome(
        scenario=scenario.name, backend=store.backend,
        findings=count(fleet.events(), enqueued, LOCK_LIFETIME_MS / 1000, stored=completed),
        stored_completed=len(completed),
        stored_failed_attempts=sum(1 for job in stored if job.fail_count),
        exit_codes=codes, producer_errors=producer_errors,
        seconds=time.monotonic() - started, worker_logs=fleet.logs())


async def _enqueue(producer: Agenda, scenario: Scenario, ledger: LedgerWriter,
                   enqueued: list[str], errors: list[str], fault: Fault | None) -> None:
    """Enqueue the jobs one ``now()`` at a time; run ``fault`` (concurrently) at its
    fractions. An exception in the producer is recorded, and enqueuing goes on."""
    marks = [round(f * scenario.jobs) for f in scenario.fault_at]
    faults: list[asyncio.Task[None]] = []
    for number in range(scenario.jobs):
        if fault is not None and number in marks:  # one fault at a time, in order
            faults.append(asyncio.create_task(_after(faults[-1:], fault)))
        try:
            job = await producer.now(JOB, {"n": number})
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
            continue
        enqueued.append(str(job.attrs.id))
        if not scenario.backlog:  # for enqueue-to-start latency
            ledger.write("enqueue", job=str(job.attrs.id))
        if scenario.enqueue_gap:
            await asyncio.sleep(scenario.enqueue_gap)
    await asyncio.gather(*faults)


async def _after(previous: list[asyncio.Task[None]], fault: Fault) -> None:
    await asyncio.gather(*previous)
    await fault()


async def _meddle(fleet: Fleet, scenario: Scenario) -> None:
    """The kills and the ``stop()``, timed from the first start."""
    if not scenario.kills and scenario.stop_one_after is None:
        return
    await _until(lambda: any(e["kind"] == "start" for e in fleet.events()), 60, "a first start")
    if scenario.stop_one_after is not None:
        await asyncio.sleep(scenario.stop_one_after)
        fleet.stop_one()
    for _ in range(scenario.kills):
        await asyncio.sleep(scenario.kill_every)
        # A survivor must be ready to take the jobs over: what is measured is the library's
        # recovery, not how long a replacement process takes to import on a busy machine.
        await _until(lambda: len(fleet.ready_workers()) >= 2, 60, "two ready workers")
        fleet.kill_busiest()


async def _all_completed(fleet: Fleet, producer: Agenda, enqueued: list[str]) -> bool:
    """Whether every job completed: by the ledger (``success``), else (a worker killed after
    its end write was stored, before it told) by the store."""
    events = fleet.events()
    starts = {e["attempt"]: e["job"] for e in events if e["kind"] == "start"}
    done = {starts.get(e["attempt"]) for e in events if e["kind"] == "success"}
    missing = set(enqueued) - done
    if not enqueued or len(missing) > 20:
        return False
    stored = await producer.query_jobs(JobsQueryOptions(ids=sorted(missing))) if missing else None
    return stored is None or all(compute_job_state(job) == "completed" for job in stored.jobs)


async def _until(check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
                 ) -> None:
    deadline = time.monotonic() + timeout
    while not await _value(check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        await asyncio.sleep(0.2)


async def _value(result: bool | Awaitable[bool]) -> bool:
    return result if isinstance(result, bool) else await result
