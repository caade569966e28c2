"""Repeating jobs, failures and notifications across agenda-decl and Node Agenda 6.2.6, each in
both creation orders on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agenda_decl import JobsQueryOptions, timing
from agenda_decl._convert import parse_datetime
from tests.interop.conftest import NodeAgent, Sides

CRON = "*/2 * * * * *"  # every 2 seconds (6 fields: seconds first), in a zone of its own
ZONE = "America/New_York"


async def _one_round(sides: Sides, side: str, names: list[str], runs_before: int) -> None:
    """A worker of one side alone runs each due repeating job once, then stops, leaving no
    lock behind: Node's stop() unlocks the jobs it locked ahead and has not started, then its
    runs still going are awaited (their end writes stored) before the process exits;
    agenda-decl's drain() does both."""
    def each_started() -> bool:
        # Each name, not a count: one job may come due twice before another's first run
        # (two cron ticks), and a count would end the round with a name never run.
        return set(names) <= {run.job_name for run in sides.ledger.starts[runs_before:]}

    if side == "node":
        node = await sides.node(process_every=200, name=f"node-round-{runs_before}")
        for name in names:
            await node.request("define", name=name)
        await node.request("start")
        await sides.ledger.wait_for(each_started, timeout=30)
        await node.request("stop")
        await sides.ledger.all_complete()
        await node.close()
        sides.agents.remove(node)
    else:
        python = await sides.python(process_every=200, name=f"py-round-{runs_before}")
        for name in names:
            sides.define_python(python, name)
        await python.start()
        await sides.ledger.wait_for(each_started, timeout=30)
        await python.drain(timeout="30 seconds")
        await python.stop()
        sides.agendas.remove(python)


def _expected_next(job: Any, interval: str, zone: str | None) -> datetime:
    last_run = parse_datetime(job["lastRunAt"])
    if timing.is_cron(interval):
        return timing.next_cron_time(interval, last_run, zone)
    return last_run + timedelta(milliseconds=timing.parse_duration(interval))


async def test_repeating_jobs_run_alternately_by_both_sides(sides: Sides) -> None:
    creator, python = await sides.both(node={"name": "node-creator"})
    python.declare("tick")
    python.declare("cron-tick")
    python.declare("one-off")
    if sides.order == "node-first":
        await creator.request("every", interval="2 seconds", name="tick", data={"k": "interval"})
        await creator.request("every", interval=CRON, name="cron-tick", data={"k": "cron"},
                              options={"timezone": ZONE})
        await creator.request("schedule", when="in 2 seconds", name="one-off", data={"k": 1})
    else:
        await python.every("2 seconds", "tick", {"k": "interval"})
        await python.every(CRON, "cron-tick", {"k": "cron"}, timezone=ZONE)
        await python.schedule("in 2 seconds", "one-off", {"k": 1})
    await creator.close()
    sides.agents.remove(creator)

    await _one_round(sides, "node", ["tick", "cron-tick", "one-off"], 0)
    for round_number, side in enumerate(["python", "node", "python"], start=1):
        await _one_round(sides, side, ["tick", "cron-tick"], len(sides.ledger.starts))
        jobs = {job.name: job for job in
                (await python.query_jobs(JobsQueryOptions(names=["tick", "cron-tick"]))).jobs}
        assert len(jobs) == 2, f"round {round_number}: one job per name, got {list(jobs)}"

    counts = Counter(run.job_name for run in sides.ledger.starts)
    assert counts["one-off"] == 1
    tick_workers = {run.worker for run in sides.ledger.starts if run.job_name == "tick"}
    assert tick_workers == {"node", "python"}
    stored = {job["name"]: job for job in await (await sides.node()).request("query")}
    assert parse_datetime(stored["tick"]["nextRunAt"]) == _expected_next(
        stored["tick"], "2 seconds", None)
    assert parse_datetime(stored["cron-tick"]["nextRunAt"]) == _expected_next(
        stored["cron-tick"], CRON, ZONE)
    assert stored["one-off"]["nextRunAt"] is None and stored["one-off"]["lastFinishedAt"]


async def test_a_daily_cron_in_a_time_zone_is_computed_alike(sides: Sides) -> None:
    node, python = await sides.both()
    python.declare("weekday-report")
    python.declare("weekday-report-node")
    before = datetime.now(UTC)
    made_by_python = await python.every("30 9 * * 1-5", "weekday-report", timezone=ZONE)
    made_by_node = await node.request("every", interval="30 9 * * 1-5",
                                      name="weekday-report-node", options={"timezone": ZONE})
    expected = timing.next_cron_time("30 9 * * 1-5", before, ZONE)
    assert made_by_python.attrs.next_run_at == expected
    assert parse_datetime(made_by_node["nextRunAt"]) == expected
    read_by_node = {j["name"]: j for j in await node.request("query")}
    assert parse_datetime(read_by_node["weekday-report"]["nextRunAt"]) == expected
    assert read_by_node["weekday-report"]["repeatTimezone"] == ZONE


async def _stored_failure(worker: NodeAgent, reason: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = (await worker.request("query", name="flaky"))[0]
        if job.get("failReason") == reason and job.get("lockedAt") is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"Node's end write of the failed run never reached the store: {job}")


async def _fail_once(sides: Sides, side: str, reason: str) -> None:
    """A worker of one side alone runs the repeating job "flaky" once; it fails with
    ``reason``. The worker stops before the job is due again and once the run's end write is
    stored (the fail event comes before it)."""
    if side == "node":
        fails = sum(1 for end in sides.ledger.ends if end["event"] == "fail")
        worker = await sides.node(process_every=200, name="node-failing")
        await worker.request("define", name="flaky", behaviour="fail", message=reason)
        await worker.request("start")
        await sides.ledger.wait_for(
            lambda: sum(1 for end in sides.ledger.ends if end["event"] == "fail") > fails)
        # Node emits `fail` before its end write, and its stop() does not wait for that write:
        # stop only once the store shows this run's failure.
        await _stored_failure(worker, reason)
        await worker.request("stop")
        await sides.ledger.all_complete()
        await worker.close()
        sides.agents.remove(worker)
        return
    agenda = await sides.python(process_every=200, name="py-failing")
    failed = asyncio.Event()
    sides.define_python(agenda, "flaky", fail=reason)
    agenda.on("fail:flaky", lambda *args: failed.set())
    await agenda.start()
    await asyncio.wait_for(failed.wait(), 30)
    await agenda.drain(timeout="30 seconds")
    await agenda.stop()
    sides.agendas.remove(agenda)


async def test_failures_read_alike_and_counts_add_up_across_sides(sides: Sides) -> None:
    reader, python = await sides.both()
    python.declare("flaky")
    await reader.request("every", interval="1 second", name="flaky", data={})
    for count, side in enumerate(["node", "python", "node", "python"], start=1):
        reason = f"boom from {side} #{count}"
        await _fail_once(sides, side, reason)
        seen_by_node = (await reader.request("query", name="flaky"))[0]
        seen_by_python = (await python.query_jobs(JobsQueryOptions(name="flaky"))).jobs[0]
        assert seen_by_node["failCount"] == count
        assert seen_by_node["failReason"] == reason
        assert seen_by_node["failedAt"] == seen_by_node["lastFinishedAt"]
        assert seen_by_node.get("lockedAt") is None
        assert seen_by_python.fail_count == count
        assert seen_by_python.fail_reason == reason
        assert seen_by_python.failed_at == seen_by_python.last_finished_at
        assert seen_by_python.locked_at is None


async def test_an_enqueue_on_one_side_wakes_the_other_at_once(sides: Sides) -> None:
    if sides.store.kind == "mongo":
        pytest.skip("@agendajs/mongo-backend has no notification channel (MongoBackend.js): "
                    "across runtimes only polling, or change streams on both sides (a replica "
                    "set), can start a job the other side enqueued")
    # both poll only every 30 s: only the notification can start the jobs in time
    node, python = await sides.both(
        node={"process_every": 30_000, "name": "node-listener"},
        python={"process_every": "30 seconds", "name": "py-listener"},
    )
    await node.request("define", name="to-node")
    sides.define_python(python, "to-python")
    python.declare("to-node")
    await node.request("start")
    await python.start()
    await asyncio.sleep(1)  # both have done their first poll

    latencies = {}
    for name, enqueue in [
        ("to-node", lambda: python.now("to-node", {"from": "python"})),
        ("to-python", lambda: node.request("now", name="to-python", data={"from": "node"})),
    ]:
        sent = time.monotonic()
        await enqueue()
        await sides.ledger.wait_for(
            lambda name=name: any(r.job_name == name for r in sides.ledger.starts), timeout=20)
        latencies[name] = time.monotonic() - sent
    print(f"enqueue -> start across languages: {latencies}")
    assert all(latency < 10 for latency in latencies.values()), latencies
    workers = {run.job_name: run.worker for run in sides.ledger.starts}
    assert workers == {"to-node": "node", "to-python": "python"}
