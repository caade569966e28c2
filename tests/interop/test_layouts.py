"""The store each side creates, compared field by field: agenda-decl must create and write what
the published npm packages create and write."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from redis.asyncio import Redis

from tests.backends.servers import POSTGRES_URL, REDIS_URL
from tests.interop.conftest import Ledger, Sides, Store

pytestmark = pytest.mark.timeout(120)


async def _pair(kind: str) -> tuple[Sides, Sides]:
    """Two stores of one kind, one made by Node and one by agenda-decl."""
    node_made = Sides(Store(kind, uuid4().hex[:12]), "node-first", Ledger())
    python_made = Sides(Store(kind, uuid4().hex[:12]), "python-first", Ledger())
    return node_made, python_made


async def _columns(table: str) -> dict[str, tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        cursor = await conn.execute(
            "SELECT column_name, udt_name, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_name = %s", (table,))
        return {row[0]: tuple(row[1:]) for row in await cursor.fetchall()}


async def _indexes(table: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        cursor = await conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,))
        return {
            name.replace(table, "T"): definition.replace(table, "T")
            for name, definition in await cursor.fetchall()
        }


async def _triggers(table: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        cursor = await conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            (f'"{table}"',))
        return {row[0].replace(table, "T") for row in await cursor.fetchall()}


async def test_postgres_table_is_the_one_node_creates() -> None:
    node_made, python_made = await _pair("postgres")
    try:
        await node_made.node()
        await python_made.python()
        node_table, python_table = node_made.store.table, python_made.store.table
        assert await _columns(python_table) == await _columns(node_table)
        python_indexes = await _indexes(python_table)
        # Node's indexes exactly, plus agenda-decl's claim and job list indexes (Node
        # ignores them).
        assert python_indexes.pop("T_claim_due_idx").endswith(
            "(name, next_run_at, priority DESC, created_at, id) WHERE ((disabled = false) AND "
            "(locked_at IS NULL) AND (next_run_at IS NOT NULL))")
        assert python_indexes.pop("T_next_run_desc_idx").endswith(
            "(next_run_at DESC NULLS LAST, created_at, id)")
        assert python_indexes.pop("T_next_run_asc_idx").endswith("(next_run_at, created_at, id)")
        assert python_indexes.pop("T_failed_idx").endswith(
            "(name, last_finished_at DESC NULLS LAST, created_at, id) "
            "WHERE (failed_at IS NOT NULL)")
        assert python_indexes.pop("T_name_idx").endswith(
            "(name, next_run_at, created_at, id) INCLUDE (disabled)")
        assert python_indexes == await _indexes(node_table)
        assert await _triggers(python_table) == await _triggers(node_table)
    finally:
        for made in (node_made, python_made):
            await made.close()
            await made.store.drop()


_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _shape(value: str) -> str:
    """The encoding class of a stored hash value."""
    if value == "null":
        return "null"
    if _ISO.match(value):
        return "iso"
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return "number"
    if value in ("true", "false"):
        return "bool"
    return "text"


async def _job_hashes(prefix: str) -> dict[str, dict[str, str]]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        hashes = {}
        async for key in client.scan_iter(match=f"{prefix}job:*"):
            job = await client.hgetall(key)
            hashes[job["name"]] = job
        return hashes
    finally:
        await client.aclose()


#: Fields only agenda-decl writes, which Node ignores: the insertion order it sorts ties by,
#: and ``noData`` on a job saved without data (its ``data`` is Node's ``'{}'``, compared
#: below; ``noData`` makes it read back as None in Python, as in every other store).
_OWN_FIELDS = {"insertOrder", "noData"}


async def test_redis_jobs_are_the_hashes_node_writes() -> None:
    node_made, python_made = await _pair("redis")
    try:
        node = await node_made.node()
        python = await python_made.python()
        python.declare("plain")
        python.declare("empty")
        python.declare("weekly")
        await node.request("now", name="plain", data={"a": 1})
        await node.request("now", name="empty")
        await node.request("every", interval="1 week", name="weekly",
                           options={"skipDays": [0, 6], "timezone": "Europe/Berlin"})
        await python.now("plain", {"a": 1})
        await python.now("empty")
        await python.every("1 week", "weekly", timezone="Europe/Berlin", skip_days=[0, 6])
        by_node = await _job_hashes(node_made.store.prefix)
        by_python = await _job_hashes(python_made.store.prefix)
        for name in ("plain", "empty", "weekly"):
            theirs, ours = by_node[name], by_python[name]
            assert set(ours) - _OWN_FIELDS == set(theirs), name
            assert {k: _shape(v) for k, v in ours.items() if k not in _OWN_FIELDS} == {
                k: _shape(v) for k, v in theirs.items()
            }, name
            for field in ("data", "skipDays", "repeatInterval", "repeatTimezone", "type"):
                assert ours[field] == theirs[field], (name, field)
    finally:
        for made in (node_made, python_made):
            await made.close()
            await made.store.drop()
