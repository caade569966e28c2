"""Locks across agenda-decl and Node Agenda 6.2.6, each scenario in every creation order on
PostgreSQL and Redis: a lock Node's touch() keeps fresh is respected, and a crashed Node
worker's lock is taken over once it has expired (the real package's writes, not imitations)."""

from __future__ import annotations

from typing import Any

from agenda_decl import JobsQueryOptions
from tests.interop.conftest import Sides


async def _enqueue(sides: Sides, name: str) -> str:
    """One one-off job, enqueued by the side that created the store."""
    if sides.order == "node-first":
        creator = await sides.node(name="node-creator")
        job: Any = await creator.request("now", name=name, data={"k": 1})
        await creator.close()
        sides.agents.remove(creator)
        return str(job["id"])
    python = await sides.python(name="py-creator")
    python.declare(name)
    return str((await python.now(name, {"k": 1})).attrs.id)


async def test_a_lock_node_keeps_touching_is_never_taken_over(sides: Sides) -> None:
    job_id = await _enqueue(sides, "long")
    node = await sides.node(process_every=200, name="node-toucher")
    # 8 touches 500 ms apart: the run lasts 4 s, twice its 2 s lock lifetime
    await node.request("define", name="long", behaviour="touch", ms=500, touches=8,
                       lockLifetime=2000)
    await node.request("start")
    await sides.ledger.wait_for(lambda: any(r.job_id == job_id for r in sides.ledger.starts))
    python = await sides.python(process_every=200, name="py-taker")
    sides.define_python(python, "long", lock_lifetime="2 seconds")
    await python.start()
    await sides.ledger.wait_for(lambda: ("node", job_id) in sides.ledger.completes, timeout=30)
    assert [(r.worker, r.job_id) for r in sides.ledger.starts] == [("node", job_id)]
    assert [e["event"] for e in sides.ledger.ends] == ["success"]


async def test_a_killed_node_workers_lock_is_taken_over_once_it_expires(sides: Sides) -> None:
    job_id = await _enqueue(sides, "stuck")
    node = await sides.node(process_every=200, name="node-doomed")
    await node.request("define", name="stuck", behaviour="sleep", ms=600_000, lockLifetime=2000)
    await node.request("start")
    await sides.ledger.wait_for(lambda: any(r.job_id == job_id for r in sides.ledger.starts))
    await node.kill()  # mid-run: its lock stays, and the one-off's nextRunAt is null now
    sides.agents.remove(node)
    python = await sides.python(process_every=200, name="py-rescuer")
    sides.define_python(python, "stuck", lock_lifetime="2 seconds")
    await python.start()
    await sides.ledger.wait_for(lambda: len(sides.ledger.starts) >= 2, timeout=30)
    await python.drain(timeout="10 seconds")
    assert [(r.worker, r.job_id) for r in sides.ledger.starts] == [
        ("node", job_id), ("python", job_id)]
    (job,) = (await python.query_jobs(JobsQueryOptions(name="stuck"))).jobs
    assert job.locked_at is None and job.last_finished_at is not None
