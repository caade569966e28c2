"""The interop suite: agenda-decl and the real Node Agenda v6 (the npm packages pinned in
tests/interop/node/package-lock.json, installed by `.ci/run` with `npm ci`) on one store.

Each test gets a store of its own (a PostgreSQL table, or a Redis key prefix, with its own
notification channel), in both creation orders: `node-first` (a Node process connects first and
creates the table, the usual case when Python workers join a Node deployment) and
`python-first`. A Node process is driven through tests/interop/node/agent.mjs; a shared ledger
records every handler start on either side."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import attrs
import pytest

from agenda_decl import Agenda, Job
from agenda_decl.backends.postgres import PostgresBackend
from agenda_decl.backends.redis import RedisBackend
from agenda_decl.interfaces import AgendaBackend
from tests.backends.postgres import drop_table
from tests.backends.redis import delete_keys
from tests.backends.servers import MONGODB_URL, POSTGRES_URL, REDIS_URL

NODE_DIR = Path(__file__).parent / "node"
AGENT = NODE_DIR / "agent.mjs"
#: MongoDB joins when a server is given (none can be installed on our machines).
STORES = ["postgres", "redis"] + (["mongo"] if os.environ.get("AGENDA_TEST_MONGODB_URL") else [])
#: Who made the store: Node, agenda-decl, or agenda-decl 0.1.0 before its layouts followed the
#: npm packages (agenda-decl connects first and migrates it; tests/interop/legacy.py).
ORDERS = ["node-first", "python-first", "legacy-first"]

pytestmark = pytest.mark.timeout(240)


def node_ready() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; the interop suite needs Node.js 20", pytrace=False)
    if not (NODE_DIR / "node_modules" / "agenda" / "package.json").exists():
        pytest.fail(
            "the pinned npm packages are not installed: run `npm ci` in tests/interop/node "
            "(.ci/run does)", pytrace=False,
        )
    return node


@attrs.define
class Run:
    """One handler start, on either side."""

    worker: str
    job_id: str
    job_name: str
    data: Any


class Ledger:
    """Every handler start and end, from Python handlers and from Node's event lines."""

    def __init__(self) -> None:
        self.starts: list[Run] = []
        self.ends: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    def started(self, run: Run) -> None:
        self.starts.append(run)
        self.changed.set()

    def ended(self, event: dict[str, Any]) -> None:
        self.ends.append(event)
        self.changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        async def loop() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)

    def runs_by_id(self) -> dict[str, list[Run]]:
        runs: dict[str, list[Run]] = {}
        for run in self.starts:
            runs.setdefault(run.job_id, []).append(run)
        return runs


class NodeAgent:
    """A Node Agenda process on the test's store."""

    def __init__(self, process: asyncio.subprocess.Process, ledger: Ledger) -> None:
        self._process = process
        self._ledger = ledger
        self._ids = 0
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self.errors: list[str] = []
        self._reader = asyncio.ensure_future(self._read())

    async def request(self, op: str, **arguments: Any) -> Any:
        self._ids += 1
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[self._ids] = reply
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"id": self._ids, "op": op, **arguments}).encode())
        self._process.stdin.write(b"\n")
        await self._process.stdin.drain()
        return await asyncio.wait_for(reply, 120)

    async def _read(self) -> None:
        assert self._process.stdout is not None
        async for line in self._process.stdout:
            message = json.loads(line)
            if "id" in message:
                self._settle(message)
            elif message["event"] == "start":
                self._ledger.started(
                    Run("node", message["jobId"], message["jobName"], message["data"])
                )
            elif message["event"] == "error":
                self.errors.append(message["error"])
            else:
                self._ledger.ended(message)

    def _settle(self, message: dict[str, Any]) -> None:
        reply = self._replies.pop(message["id"])
        if message["ok"]:
            reply.set_result(message["result"])
        else:
            reply.set_exception(RuntimeError(f"node: {message['error']}"))

    async def kill(self) -> None:
        """SIGKILL, as a crash: nothing is unlocked or written."""
        self._process.kill()
        await self._process.wait()
        self._reader.cancel()

    async def close(self) -> None:
        if self._process.returncode is None:
            try:
                await asyncio.wait_for(self.request("exit"), 10)
                await asyncio.wait_for(self._process.wait(), 10)
            except (TimeoutError, RuntimeError, ConnectionError):
                self._process.kill()
                await self._process.wait()
        self._reader.cancel()


@attrs.define
class Store:
    """One store of the test's own, as both sides address it."""

    kind: str
    suffix: str

    @property
    def table(self) -> str:
        return f"interop_{self.suffix}"

    @property
    def prefix(self) -> str:
        return f"interop-{self.suffix}:"

    @property
    def channel(self) -> str:
        return f"interop:{self.suffix}"

    def node_options(self) -> dict[str, Any]:
        if self.kind == "postgres":
            return {"store": "postgres", "url": POSTGRES_URL, "table": self.table,
                    "logTable": f"{self.table}_logs", "channel": self.channel}
        if self.kind == "mongo":
            return {"store": "mongo", "url": MONGODB_URL, "collection": self.table}
        return {"store": "redis", "url": REDIS_URL, "prefix": self.prefix, "channel": self.channel}

    def python_backend(self) -> AgendaBackend:
        if self.kind == "postgres":
            return PostgresBackend(
                connection_string=POSTGRES_URL, table_name=self.table, channel_name=self.channel
            )
        if self.kind == "mongo":
            from agenda_decl.backends.mongo import MongoBackend

            return MongoBackend(address=str(MONGODB_URL), collection=self.table)
        return RedisBackend(
            connection_string=REDIS_URL, key_prefix=self.prefix, channel_name=self.channel
        )

    async def make_legacy(self) -> None:
        from tests.interop import legacy

        if self.kind == "postgres":
            await legacy.make_postgres(self.table)
        elif self.kind == "redis":
            await legacy.make_redis(self.prefix)

    async def drop(self) -> None:
        if self.kind == "postgres":
            await drop_table(self.table)
            await drop_table(f"{self.table}_logs")
        elif self.kind == "mongo":
            from pymongo import MongoClient

            with MongoClient(MONGODB_URL) as client:
                client.get_default_database().drop_collection(self.table)
        else:
            from redis.asyncio import Redis

            client = Redis.from_url(REDIS_URL)
            try:
                await delete_keys(client, self.prefix)
            finally:
                await client.aclose()


class Sides:
    """Both sides on one store, created in the order the test asks for."""

    def __init__(self, store: Store, order: str, ledger: Ledger) -> None:
        self.store = store
        self.order = order
        self.ledger = ledger
        self.agents: list[NodeAgent] = []
        self.agendas: list[Agenda] = []

    async def node(self, *, process_every: int = 500, name: str = "node-agent",
                   **options: Any) -> NodeAgent:
        process = await asyncio.create_subprocess_exec(
            node_ready(), str(AGENT), cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=2**24,
        )
        agent = NodeAgent(process, self.ledger)
        self.agents.append(agent)
        await agent.request(
            "connect", **self.store.node_options(), processEvery=process_every, name=name,
            **options,
        )
        return agent

    async def python(self, *, process_every: str | int = "500 ms", name: str = "py-worker",
                     **options: Any) -> Agenda:
        agenda = Agenda(backend=self.store.python_backend(), name=name,
                        process_every=process_every, **options)
        self.agendas.append(agenda)
        await agenda.ready()
        return agenda

    async def both(self, **options: Any) -> tuple[NodeAgent, Agenda]:
        """A Node process and a Python Agenda, connected in the test's creation order."""
        if self.order == "node-first":
            node = await self.node(**options.get("node", {}))
            return node, await self.python(**options.get("python", {}))
        if self.order == "legacy-first":
            await self.store.make_legacy()
        python = await self.python(**options.get("python", {}))
        return await self.node(**options.get("node", {})), python

    def define_python(self, agenda: Agenda, name: str, *, fail: str | None = None,
                      **options: Any) -> None:
        ledger = self.ledger

        async def handler(job: Job[Any]) -> None:
            ledger.started(Run("python", str(job.attrs.id), job.attrs.name, job.attrs.data))
            if fail is not None:
                raise RuntimeError(fail)

        agenda.define(name, handler, **options)
        agenda.on(f"complete:{name}", lambda *args: ledger.changed.set())

    async def close(self) -> None:
        for agent in self.agents:
            await agent.close()
        for agenda in self.agendas:
            await agenda.stop()


@pytest.fixture(params=[(s, o) for s in STORES for o in ORDERS],
                ids=[f"{s}-{o}" for s in STORES for o in ORDERS])
async def sides(request: pytest.FixtureRequest) -> AsyncIterator[Sides]:
    kind, order = request.param
    store = Store(kind, uuid4().hex[:12])
    made = Sides(store, order, Ledger())
    try:
        yield made
    finally:
        await made.close()
        await store.drop()
        errors = [e for agent in made.agents for e in agent.errors]
        assert not errors, f"the Node process reported errors: {errors}"


def stored_ids(jobs: list[dict[str, Any]]) -> set[str]:
    return {str(job["id"]) for job in jobs}

