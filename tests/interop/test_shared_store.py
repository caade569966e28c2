"""agenda-decl and Node Agenda 6.2.6 sharing one store, each scenario in both creation orders
on PostgreSQL and Redis: jobs one side enqueues, the other runs exactly once with identical
data, and the first then reads as completed with no lock left."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agenda_decl import JobsQueryOptions
from tests.interop.conftest import Sides

#: Varied JSON, as a user would store it: nesting, unicode, number kinds, booleans, null, an
#: ISO date string (which must stay a string on both sides).
SAMPLES: list[Any] = [
    {"nested": {"list": [1, 2, {"deep": [True, False, None]}], "empty": {}}},
    {"unicode": "Grüße, 日本語, emoji 🚀, quote \" and backslash \\"},
    {"int": 42, "negative": -7, "big": 9007199254740991, "float": 3.25, "zero": 0},
    {"flags": [True, False], "nothing": None},
    {"when": "2026-12-01T10:30:00.123Z", "text": ""},
    {"list": list(range(20)), "name": "item"},
]


def sample(index: int) -> dict[str, Any]:
    return {"n": index, **SAMPLES[index % len(SAMPLES)]}


def priority(index: int) -> int:
    return [0, 10, -10, 20, 5][index % 5]


async def test_node_enqueues_python_runs_each_once_with_identical_data(sides: Sides) -> None:
    node, python = await sides.both()
    await node.request("define", name="shared")
    items = [{"data": sample(i), "priority": priority(i)} for i in range(200)]
    ids = await node.request("createMany", name="shared", items=items)
    stored = {job["id"]: job for job in await node.request("query", name="shared")}
    sides.define_python(python, "shared")
    await python.start()
    await sides.ledger.wait_for(lambda: len(sides.ledger.starts) >= 200)
    await python.drain(timeout="30 seconds")

    runs = sides.ledger.runs_by_id()
    assert sorted(runs) == sorted(ids)
    assert all(len(r) == 1 and r[0].worker == "python" for r in runs.values())
    assert {job_id: r[0].data for job_id, r in runs.items()} == {
        job_id: stored[job_id]["data"] for job_id in ids
    }
    after = await node.request("query", name="shared")
    assert len(after) == 200
    assert all(job.get("lockedAt") is None for job in after), "a lock was left behind"
    assert all(job.get("lastFinishedAt") and not job.get("failedAt") for job in after)


async def test_python_enqueues_node_runs_each_once_with_identical_data(sides: Sides) -> None:
    node, python = await sides.both()
    python.declare("shared")
    saved = []
    for i in range(200):
        job = python.create("shared", sample(i)).priority(priority(i))
        saved.append(await job.save())
    await node.request("define", name="shared")
    await node.request("start")
    await sides.ledger.wait_for(lambda: len(sides.ledger.starts) >= 200)
    await sides.ledger.wait_for(lambda: len(sides.ledger.completes) >= 200)

    runs = sides.ledger.runs_by_id()
    assert sorted(runs) == sorted(str(job.attrs.id) for job in saved)
    assert all(len(r) == 1 and r[0].worker == "node" for r in runs.values())
    assert {str(job.attrs.id): job.attrs.data for job in saved} == {
        job_id: r[0].data for job_id, r in runs.items()
    }
    result = await python.query_jobs(JobsQueryOptions(name="shared"))
    assert result.total == 200
    assert all(job.locked_at is None for job in result.jobs), "a lock was left behind"
    assert {job.state for job in result.jobs} == {"completed"}


async def test_one_node_and_one_python_worker_run_each_job_once(sides: Sides) -> None:
    node, python = await sides.both()
    await node.request("define", name="race", behaviour="sleep", ms=2, concurrency=20)
    sides.define_python(python, "race", concurrency=20)
    ids = await node.request("createMany", name="race",
                             items=[{"data": {"n": i}} for i in range(500)])
    for i in range(500):
        ids.append(str((await python.create("race", {"n": 500 + i}).save()).attrs.id))
    await node.request("start")
    await python.start()
    await sides.ledger.wait_for(lambda: len(sides.ledger.starts) >= 1000, timeout=120)
    await python.drain(timeout="30 seconds")
    await node.request("drain")

    counts = Counter(run.job_id for run in sides.ledger.starts)
    assert sorted(counts) == sorted(ids)
    assert [job_id for job_id, n in counts.items() if n > 1] == [], "jobs ran twice"
    workers = Counter(run.worker for run in sides.ledger.starts)
    assert workers["node"] > 0 and workers["python"] > 0, workers
    result = await python.query_jobs(JobsQueryOptions(name="race"))
    assert [job.id for job in result.jobs if job.locked_at is not None] == []


async def test_every_and_unique_from_both_sides_leave_one_job(sides: Sides) -> None:
    node, python = await sides.both()
    python.declare("heartbeat")
    python.declare("mail")
    await node.request("every", interval="5 minutes", name="heartbeat", data={"from": "node"})
    await python.every("5 minutes", "heartbeat", {"from": "python"})
    await node.request("every", interval="5 minutes", name="heartbeat", data={"from": "node"})
    await node.request("unique", name="mail", data={"user": 7, "side": "node"},
                       unique={"data.user": 7})
    await python.create("mail", {"user": 7, "side": "python"}).unique({"data.user": 7}).save()

    python.declare("weekdays")
    await node.request("every", interval="1 day", name="weekdays", data={"from": "node"},
                       options={"skipDays": [0, 6]})
    await python.every("1 day", "weekdays", {"from": "python"}, skip_days=[0, 6])
    weekdays = await node.request("query", name="weekdays")
    assert len(weekdays) == 1 and weekdays[0]["skipDays"] == [0, 6]
    assert weekdays[0]["data"] == {"from": "python"}

    heartbeats = await node.request("query", name="heartbeat")
    mails = await node.request("query", name="mail")
    assert len(heartbeats) == 1 and heartbeats[0]["data"] == {"from": "node"}
    assert len(mails) == 1 and mails[0]["data"] == {"user": 7, "side": "python"}
    assert (await python.query_jobs(JobsQueryOptions(name="heartbeat"))).total == 1


async def test_a_store_of_agenda_decl_0_1_reads_alike_on_both_sides_after_migration(
    sides: Sides,
) -> None:
    if sides.order != "legacy-first":
        return
    node, python = await sides.both()
    by_node = {job["name"]: job for job in await node.request("query")}
    assert by_node["legacy-weekdays"]["skipDays"] == [0, 6]
    assert by_node["legacy-weekdays"]["data"] == {"legacy": True}
    assert by_node["legacy-queued"]["data"] in ({}, None)
    assert by_node["legacy-queued"].get("lockedAt") is None
    by_python = {job.name: job for job in (await python.query_jobs()).jobs}
    assert by_python["legacy-weekdays"].skip_days == [0, 6]
    assert by_python["legacy-weekdays"].repeat_interval == "1 day"
