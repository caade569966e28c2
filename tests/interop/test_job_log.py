"""The job log shared with Node Agenda 6.2.6 (the npm packages, through agent.mjs), in every
creation order of the store: entries a Node worker writes, agenda-decl reads with the same
fields; entries an agenda-decl worker writes (a failure's traceback included), Node's
``getLogs`` reads and its ``clearLogs`` deletes, so Agendash shows both.

What is shared here is the log (the PostgreSQL ``<table>_logs`` table, created by whichever
side connects first, or the Redis ``log:*``/``logs:*`` keys under the test's prefix). On
PostgreSQL the Python worker keeps its jobs in a table of its own: sharing one jobs table with
Node is test_shared_store.py's subject, and it needs that suite's layout fixes; the log
must not depend on them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from agenda_decl import Agenda, Job, JobLogEntry, JobLogQuery, backoff
from agenda_decl.backends.postgres import PostgresBackend
from agenda_decl.backends.redis import RedisBackend
from agenda_decl.interfaces import AgendaBackend
from tests.backends.postgres import drop_table
from tests.backends.servers import MONGODB_URL, POSTGRES_URL, REDIS_URL
from tests.interop.conftest import NodeAgent, Sides, Store

NODE_NAME, PYTHON_NAME = "node-logger", "py-logger"


def python_backend(store: Store) -> AgendaBackend:
    """The store's log as Node addresses it (``logTable`` is ``<table>_logs``, Redis keeps it
    under the prefix, Mongo in ``agenda_logs``)."""
    if store.kind == "postgres":
        return PostgresBackend(
            connection_string=POSTGRES_URL, table_name=f"{store.table}_py",
            channel_name=f"{store.channel}:py", log_table_name=f"{store.table}_logs",
        )
    if store.kind == "mongo":
        from agenda_decl.backends.mongo import MongoBackend

        return MongoBackend(address=str(MONGODB_URL), collection=f"{store.table}_py")
    return RedisBackend(connection_string=REDIS_URL, key_prefix=store.prefix,
                        channel_name=f"{store.channel}:py")


class Pair:
    """A Node worker and a Python Agenda that both log, connected in the test's order."""

    def __init__(self, sides: Sides) -> None:
        self.sides = sides
        self.python: Agenda | None = None
        suffix = sides.store.suffix
        self.names = {key: f"{key}-{suffix}" for key in ("node-ok", "node-fail", "py-ok",
                                                         "py-fail")}

    async def connect(self) -> tuple[NodeAgent, Agenda]:
        if self.sides.order == "node-first":
            node = await self._node()
            return node, await self._python()
        if self.sides.order == "legacy-first":
            await self.sides.store.make_legacy()
        python = await self._python()
        return await self._node(), python

    async def _node(self) -> NodeAgent:
        node = await self.sides.node(name=NODE_NAME, process_every=200)
        await node.request("enableLogging")
        return node

    async def _python(self) -> Agenda:
        self.python = Agenda(python_backend(self.sides.store), name=PYTHON_NAME,
                             process_every="200 ms", logging=True)
        await self.python.ready()
        return self.python

    async def close(self) -> None:
        if self.python is not None:
            await self.python.stop()
        store = self.sides.store
        if store.kind == "postgres":
            await drop_table(f"{store.table}_py")
        elif store.kind == "mongo":
            from pymongo import MongoClient

            with MongoClient(MONGODB_URL) as client:
                db = client.get_default_database()
                db.drop_collection(f"{store.table}_py")
                db.get_collection("agenda_logs").delete_many(
                    {"jobName": {"$in": list(self.names.values())}})


@pytest.fixture
async def pair(sides: Sides) -> AsyncIterator[Pair]:
    made = Pair(sides)
    try:
        yield made
    finally:
        await made.close()


async def python_entries(agenda: Agenda, until: str, **query: Any) -> list[JobLogEntry]:
    """The entries of ``query``, oldest first, once one with the event ``until`` is there
    (Node writes its entries after its events, fire and forget)."""
    async with asyncio.timeout(20):
        while True:
            result = await agenda.get_logs(JobLogQuery(sort="asc", limit=None, **query))
            if any(entry.event == until for entry in result.entries):
                return result.entries
            await asyncio.sleep(0.1)


async def test_node_entries_read_by_agenda_decl(pair: Pair) -> None:
    node, python = await pair.connect()
    ok_name, fail_name = pair.names["node-ok"], pair.names["node-fail"]
    await node.request("define", name=ok_name)
    await node.request("define", name=fail_name, behaviour="fail", message="boom from node")
    await node.request("start")
    ok = await node.request("now", name=ok_name, data={"n": 1})
    bad = await node.request("now", name=fail_name, data={})

    oks = await python_entries(python, "complete", job_id=ok["id"])
    assert {"start", "success", "complete"} <= {e.event for e in oks}
    assert {(e.job_id, e.job_name, e.agenda_name) for e in oks} == {
        (ok["id"], ok_name, NODE_NAME)}
    by_event = {e.event: e for e in oks}
    assert (by_event["start"].level, by_event["start"].message) == ("info", "job started")
    assert by_event["success"].message == "job succeeded"
    assert isinstance(by_event["success"].duration, int) and by_event["success"].duration >= 0
    assert by_event["complete"].message == "job complete"
    assert all(e.id and e.timestamp.tzinfo is not None for e in oks)
    if "locked" in by_event:
        assert (by_event["locked"].level, by_event["locked"].message) == ("debug", "job locked")

    fails = await python_entries(python, "complete", job_name=fail_name)
    (fail,) = [e for e in fails if e.event == "fail"]
    assert (fail.level, fail.job_id, fail.message, fail.error, fail.fail_count) == (
        "error", bad["id"], "job failed: boom from node", "boom from node", 1)
    errors = await python.get_logs(JobLogQuery(level="error", job_name=fail_name))
    assert errors.total == 1
    stamps = [e.timestamp for e in fails]
    assert stamps == sorted(stamps)


async def test_agenda_decl_entries_read_and_cleared_by_node(pair: Pair) -> None:
    node, python = await pair.connect()
    ok_name, fail_name = pair.names["py-ok"], pair.names["py-fail"]

    async def fails(job: Job[Any]) -> None:
        raise ValueError("py boom")

    python.define(ok_name, lambda job: None)
    python.define(fail_name, fails, backoff=backoff.constant(delay=50, max_retries=1))
    done = asyncio.Event()
    python.on(f"retry exhausted:{fail_name}", lambda *args: done.set())
    await python.start()
    ok = await python.now(ok_name)
    bad = await python.now(fail_name)
    await asyncio.wait_for(done.wait(), 20)
    await python_entries(python, "complete", job_id=str(ok.attrs.id))
    await python_entries(python, "retry:exhausted", job_id=str(bad.attrs.id))
    await asyncio.sleep(0.3)  # the last complete entry
    await python.job_log.settle()

    read = await node.request("getLogs", query={"jobName": fail_name, "sort": "asc",
                                                "limit": 100})
    entries = read["entries"]
    assert read["total"] == len(entries)
    events = [e["event"] for e in entries]
    assert events[:3] == ["locked", "start", "fail"] or events[:2] == ["start", "fail"]
    assert {"retry", "retry:exhausted", "complete"} <= set(events)
    fail = next(e for e in entries if e["event"] == "fail")
    assert (fail["level"], fail["jobId"], fail["jobName"], fail["message"], fail["failCount"],
            fail["agendaName"]) == ("error", str(bad.attrs.id), fail_name,
                                    "job failed: py boom", 1, PYTHON_NAME)
    assert fail["error"].startswith("Traceback (most recent call last):")
    assert fail["error"].endswith("ValueError: py boom")
    assert fail["_id"]
    datetime.fromisoformat(fail["timestamp"].replace("Z", "+00:00"))
    retry = next(e for e in entries if e["event"] == "retry")
    assert (retry["level"], retry["retryDelay"], retry["retryAttempt"], retry["error"],
            retry["message"]) == ("info", 50, 1, "py boom", "retry #1 scheduled in 50ms")
    exhausted = next(e for e in entries if e["event"] == "retry:exhausted")
    assert (exhausted["level"], exhausted["failCount"]) == ("warn", 2)
    for absent in ("duration", "retryDelay", "meta"):
        assert fail.get(absent) is None

    oks = await node.request("getLogs", query={"jobId": str(ok.attrs.id)})
    success = next(e for e in oks["entries"] if e["event"] == "success")
    assert (success["message"], success["agendaName"]) == ("job succeeded", PYTHON_NAME)
    assert isinstance(success["duration"], int)
    errors = await node.request("getLogs", query={"jobName": fail_name, "level": "error"})
    assert errors["total"] == 2

    cleared = await node.request("clearLogs", query={"jobName": ok_name})
    assert cleared == oks["total"] > 0
    assert (await python.get_logs(JobLogQuery(job_name=ok_name))).total == 0
    assert (await python.get_logs(JobLogQuery(job_name=fail_name))).total == read["total"]
