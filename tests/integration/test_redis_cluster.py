"""Redis Cluster specifics (the conformance suite runs on the cluster too, as the
``redis_cluster`` backend): the key prefix's hash tag, one slot for every key of a store, and
notifications that cross nodes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from agenda_decl import Agenda, Job, JobsQueryOptions
from agenda_decl._model import JobParameters
from agenda_decl.backends.redis import RedisBackend
from agenda_decl.connectors.redis_urls import node_url
from agenda_decl.errors import InvalidOptionError
from tests.backends import redis_cluster
from tests.backends.redis import delete_keys


@pytest.mark.parametrize("prefix", ["agenda:", "{}agenda:", "agenda:{"])
def test_a_key_prefix_without_a_hash_tag_is_refused(prefix: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        RedisBackend(connection_string="redis+cluster://127.0.0.1:7000", key_prefix=prefix)
    assert f"invalid key_prefix: {prefix!r} has no hash tag" in str(info.value)


async def test_every_key_of_a_store_is_in_the_slot_of_its_tag(tmp_path: Path) -> None:
    ran: list[str] = []
    async with redis_cluster.make_backend(tmp_path, logging=True) as backend:
        agenda = Agenda(backend, process_every="100 ms")
        agenda.define("a", lambda job: ran.append("a"))
        agenda.define("b", lambda job: ran.append("b"), concurrency=2)
        await agenda.start()
        try:
            await agenda.now("a", {"n": 1})
            await agenda.every("1 hour", "b")
            await agenda.schedule("in 1 hour", "a", None)
            async with asyncio.timeout(10):
                while sorted(ran) != ["a", "b"]:
                    await asyncio.sleep(0.05)
        finally:
            await agenda.stop(close_connection=False)
        client = backend.client
        assert isinstance(client, RedisCluster)
        prefix = backend.repository.key_prefix
        keys = [key async for key in client.scan_iter(match=prefix.replace("{", "[{]") + "*")]
        assert any(":decl:due:" in key for key in keys) and any(":log:" in key for key in keys)
        slots = {client.keyslot(key) for key in keys}
        assert slots == {client.keyslot(prefix)}


async def test_a_job_enqueued_through_one_node_wakes_a_worker_listening_on_another(
    tmp_path: Path,
) -> None:
    """Each backend names another master: the notification crosses nodes, so the worker,
    which polls only once a minute, starts the job at once."""
    first, second, *_ = redis_cluster.node_urls()
    prefix = redis_cluster.unique_prefix()
    options: dict[str, Any] = {"key_prefix": prefix, "channel_name": f"{prefix}jobs"}
    producer = RedisBackend(connection_string=first.replace("redis://", "redis+cluster://"),
                            **options)
    consumer = RedisBackend(connection_string=second.replace("redis://", "redis+cluster://"),
                            **options)
    started = asyncio.Event()

    async def work(job: Job[Any]) -> None:
        started.set()

    worker = Agenda(consumer, process_every="1 minute")
    worker.define("wake", work)
    enqueuer = Agenda(producer)
    enqueuer.define("wake", work)  # defined, not started: it only enqueues
    try:
        await worker.start()
        await enqueuer.now("wake", {"x": 1})
        async with asyncio.timeout(10):
            await started.wait()
    finally:
        await worker.stop()
        await enqueuer.stop(close_connection=False)
        await delete_keys(producer.client, prefix)
        await producer.disconnect()


def test_the_cluster_url_names_the_node_it_starts_from() -> None:
    assert node_url("redis+cluster://u:p@10.0.0.1:7000/0") == "redis://u:p@10.0.0.1:7000/0"
    assert node_url("rediss+cluster://10.0.0.1:7000") == "rediss://10.0.0.1:7000"
    assert node_url("redis://10.0.0.1:6379") == "redis://10.0.0.1:6379"


async def test_a_burst_of_enqueues_waits_for_connections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """More concurrent calls than a node's pool holds: they wait for a connection (redis-py's
    cluster would raise MaxConnectionsError, which would read as an outage and be retried)."""
    async with redis_cluster.make_backend(tmp_path) as backend:
        repository = backend.repository
        with caplog.at_level(logging.WARNING, logger="agenda_decl"):
            await asyncio.gather(*(repository.save_job(JobParameters(name="burst", data={"i": i}))
                                   for i in range(300)))
        assert (await repository.query_jobs(JobsQueryOptions(name="burst"))).total == 300
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
