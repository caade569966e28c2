"""Redis-specific behaviour: Agenda v6's key layout, jobs written by Node Agenda, lock
staleness on touched jobs, the pub/sub channel's recovery, and secret-free errors."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from agenda_decl import Agenda, Job, JobId, JobNotification, JobsQueryOptions
from agenda_decl._clock import utcnow
from agenda_decl._convert import format_datetime
from agenda_decl._model import JobParameters
from agenda_decl.backends.redis import RedisBackend, RedisNotificationChannel
from agenda_decl.errors import BackendUnavailableError
from agenda_decl.notifications.base import ReconnectOptions
from agenda_decl.testing import EventRecorder
from tests.backends import Inbox
from tests.backends import redis as redis_backends
from tests.backends.servers import REDIS_URL

pytestmark = pytest.mark.asyncio

MAX_SAFE = 9007199254740991


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RedisBackend]:
    async with redis_backends.make_backend(tmp_path, health_check_interval=200) as made:
        yield made


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    made = Redis.from_url(REDIS_URL, decode_responses=True)
    yield made
    await made.aclose()


def key(backend: RedisBackend, suffix: str) -> str:
    return f"{backend.repository.key_prefix}{suffix}"


def ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


async def hash_of(client: Redis, name: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in (await client.hgetall(name)).items()}


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


# -- Agenda v6's layout (reference section 5.2, cases 87-91) ------------------------------------


async def test_a_saved_job_is_an_agenda_v6_hash(backend: RedisBackend, client: Redis) -> None:
    repo = backend.repository
    when = utcnow() + timedelta(minutes=1)
    saved = await repo.save_job(
        JobParameters(name="hash-test", priority=5, next_run_at=when, data={"key": "value"},
                      start_date=when, skip_days=[0, 6]),
        last_modified_by="tester",
    )
    assert saved.id and uuid.UUID(saved.id).version == 4
    fields = await hash_of(client, key(backend, f"job:{saved.id}"))
    assert (fields["id"], fields["name"], fields["priority"]) == (saved.id, "hash-test", "5")
    assert fields["data"] == json.dumps({"key": "value"}, separators=(",", ":"))
    assert (fields["nextRunAt"], fields["type"], fields["disabled"], fields["fork"]) == (
        format_datetime(when), "normal", "false", "false",
    )
    assert set(fields) == NODE_FIELDS | {"insertOrder"}  # no lockedAt, no noData
    assert (fields["lockedAtMs"], fields["failCount"], fields["repeatInterval"]) == (
        "null", "null", "null",
    )
    assert (fields["lastModifiedBy"], fields["startDate"], fields["skipDays"]) == (
        "tester", format_datetime(when), "[0,6]",
    )
    assert fields["createdAt"].endswith("Z") and fields["updatedAt"].endswith("Z")
    score = await client.zscore(key(backend, "jobs:by_next_run_at"), saved.id)
    assert score == ms(when) + (100 - 5) / 1000
    assert await client.smembers(key(backend, "jobs:by_name:hash-test")) == {saved.id}
    assert await client.smembers(key(backend, "jobs:all")) == {saved.id}


async def test_scores_sets_and_the_single_pointer(backend: RedisBackend, client: Redis) -> None:
    repo = backend.repository
    await repo.save_job(JobParameters(name="zset", next_run_at=utcnow(), priority=150))
    done = await repo.save_job(JobParameters(name="zset", next_run_at=None, priority=-10))
    single = await repo.save_job(JobParameters(name="set-test", type="single",
                                               next_run_at=utcnow()))
    zset = key(backend, "jobs:by_next_run_at")
    assert await client.zcard(zset) == 3
    assert await client.zscore(zset, str(done.id)) == MAX_SAFE
    assert await client.scard(key(backend, "jobs:by_name:set-test")) == 1
    assert await client.get(key(backend, "jobs:single:set-test")) == single.id


async def test_a_batch_of_mixed_jobs_is_stored_as_one_by_one_saves_store_it(
    backend: RedisBackend, client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """insert_jobs sends a run of jobs that differ only in id and data as one row, and adds
    each key's members in one command: every job's hash, its place in the sets and sorted
    sets, the due index and the known counts come out as saving each alone leaves them, for
    runs of jobs that differ in name, priority, data (none), disabled and due time, and for
    a batch large enough that a command's members are sent in slices."""
    monkeypatch.setattr("agenda_decl.backends.base.INSERT_BATCH", 5000)
    repo, now = backend.repository, utcnow()
    jobs = [JobParameters(name="bulk", data={"i": i}, next_run_at=now) for i in range(4500)]
    jobs += [JobParameters(name="other", data=None, priority=5, next_run_at=now),
             JobParameters(name="bulk", data={"x": 1}, disabled=True, next_run_at=now),
             JobParameters(name="bulk", data={"y": 2}, next_run_at=None),
             JobParameters(name="bulk", data={"i": 4500}, next_run_at=now)]
    stored = await repo.insert_jobs(jobs)
    for job, record in zip(jobs, stored, strict=True):
        read = await repo.get_job_by_id(str(record.id))
        assert read is not None and (read.name, read.data, read.priority, read.disabled) == (
            job.name, job.data, job.priority, job.disabled)
    assert await client.scard(key(backend, "jobs:all")) == 4504
    assert await client.scard(key(backend, "jobs:by_name:bulk")) == 4503
    assert await client.get(key(backend, "decl:known:bulk")) == "4503"
    assert await client.get(key(backend, "decl:known:other")) == "1"
    assert await client.zscore(key(backend, "jobs:by_next_run_at"), str(stored[-2].id)) == (
        MAX_SAFE)
    # due: every bulk job with a next run that is not disabled, in the batch's order
    due = await repo.get_next_jobs_to_run("bulk", now, now - timedelta(minutes=10), 5000, now)
    assert [job.data for job in due] == [{"i": i} for i in range(4501)]
    assert [job.name for job in await repo.get_next_jobs_to_run(
        "other", now, now - timedelta(minutes=10), 5, now)] == ["other"]


async def test_owned_and_shared_clients(backend: RedisBackend, client: Redis) -> None:
    assert backend.owns_connection
    shared = RedisBackend(client=client, key_prefix=backend.repository.key_prefix)
    assert not shared.owns_connection
    await shared.connect()
    await shared.disconnect()
    assert await client.ping()


async def test_a_shared_client_survives_the_channel(client: Redis) -> None:
    channel = RedisNotificationChannel(client=client, channel_name=f"t:{uuid.uuid4().hex}")
    await channel.connect()
    await channel.disconnect()
    assert await client.ping()


# -- jobs written by Node Agenda 6.2.6 (no keys of ours) ----------------------------------------

#: The fields of a job hash of @agendajs/redis-backend 3.0.7 (jobToHash in
#: RedisJobRepository.js): the lock is lockedAtMs alone, there is no lockedAt field.
NODE_FIELDS = {
    "id", "name", "priority", "nextRunAt", "type", "lockedAtMs", "lastFinishedAt", "failedAt",
    "failCount", "failReason", "repeatTimezone", "lastRunAt", "repeatInterval", "data",
    "repeatAt", "disabled", "progress", "fork", "lastModifiedBy", "debounceStartedAt",
    "startDate", "endDate", "skipDays", "createdAt", "updatedAt",
}


async def write_agenda_job(client: Redis, backend: RedisBackend, **fields: str) -> str:
    """A job as @agendajs/redis-backend 3.0.7 inserts it (jobToHash, then the sets and the
    score); nothing else. The interop suite (tests/interop) runs the real package."""
    job_id = str(uuid.uuid4())
    stamp = format_datetime(utcnow())
    values: dict[Any, Any] = {
        "id": job_id, "name": "node-job", "priority": "0", "nextRunAt": "null",
        "type": "normal", "lockedAtMs": "null", "lastFinishedAt": "null", "failedAt": "null",
        "failCount": "null", "failReason": "null", "repeatTimezone": "null",
        "lastRunAt": "null", "repeatInterval": "null", "data": '{"from":"node"}',
        "repeatAt": "null", "disabled": "false", "progress": "null", "fork": "false",
        "lastModifiedBy": "null", "debounceStartedAt": "null", "startDate": "null",
        "endDate": "null", "skipDays": "null", "createdAt": stamp, "updatedAt": stamp, **fields,
    }
    assert set(values) == NODE_FIELDS
    await client.hset(key(backend, f"job:{job_id}"), mapping=values)
    await client.sadd(key(backend, "jobs:all"), job_id)
    await client.sadd(key(backend, f"jobs:by_name:{values['name']}"), job_id)
    next_run = values["nextRunAt"]
    score = MAX_SAFE if next_run == "null" else _node_score(next_run, int(values["priority"]))
    await client.zadd(key(backend, "jobs:by_next_run_at"), {job_id: score})
    return job_id


def _node_score(iso: str, priority: int) -> float:
    from agenda_decl._convert import parse_datetime

    return ms(parse_datetime(iso)) + (100 - min(max(priority, 0), 99)) / 1000


async def claim(backend: RedisBackend, name: str, lock_deadline: Any = None) -> Any:
    now = utcnow()
    return await backend.repository.get_next_job_to_run(
        name, now + timedelta(seconds=5), lock_deadline or now - timedelta(minutes=10), now
    )


async def test_a_job_written_by_node_agenda_is_found_listed_and_claimed(
    backend: RedisBackend, client: Redis
) -> None:
    due = format_datetime(utcnow() - timedelta(seconds=30))
    job_id = await write_agenda_job(client, backend, nextRunAt=due, repeatInterval="60000")
    repo = backend.repository
    loaded = await repo.get_job_by_id(job_id)
    assert loaded is not None
    assert (loaded.name, loaded.data, loaded.repeat_interval) == ("node-job", {"from": "node"},
                                                                 60000)
    listed = await repo.query_jobs(JobsQueryOptions(name="node-job", data={"from": "node"}))
    assert [(j.id, j.state) for j in listed.jobs] == [(job_id, "repeating")]
    assert await repo.get_distinct_job_names() == ["node-job"]
    assert [o.total for o in await repo.get_jobs_overview()] == [1]
    assert await repo.get_queue_size() == 1
    claimed = await claim(backend, "node-job")
    assert claimed is not None and claimed.id == job_id and claimed.locked_at is not None
    fields = await hash_of(client, key(backend, f"job:{job_id}"))
    assert set(fields) == NODE_FIELDS and fields["lockedAtMs"] == str(ms(claimed.locked_at))
    assert await claim(backend, "node-job") is None


async def test_a_job_node_rescheduled_is_claimed_at_its_new_time(
    backend: RedisBackend, client: Redis
) -> None:
    """Node moves a job earlier in its hash and the global set only (it keeps no due index of
    a name); the sweep of the name brings the job into ours."""
    repo = backend.repository
    saved = await repo.save_job(JobParameters(name="node-job", next_run_at=utcnow()
                                              + timedelta(hours=1)))
    assert await claim(backend, "node-job") is None
    due = utcnow() - timedelta(seconds=5)
    await client.hset(key(backend, f"job:{saved.id}"), "nextRunAt", format_datetime(due))
    await client.zadd(key(backend, "jobs:by_next_run_at"), {str(saved.id): _node_score(
        format_datetime(due), 0)})
    claimed: list[Any] = []

    async def claimed_it() -> bool:
        claimed.append(await claim(backend, "node-job"))
        return claimed[-1] is not None

    await wait_until(claimed_it, timeout=5)
    assert claimed[-1].id == saved.id


async def test_a_job_node_enqueues_into_a_large_name_is_claimed_at_once(
    backend: RedisBackend, client: Redis
) -> None:
    """The name has more jobs than one slow sweep reads, and was swept a moment ago: the
    claim sees that the name has a member none of our writes added and sweeps it whole."""
    repo = backend.repository
    later = utcnow() + timedelta(hours=1)
    for _ in range(250):
        await repo.save_job(JobParameters(name="node-job", next_run_at=later))
    assert await claim(backend, "node-job") is None  # the slow sweep's gate is now shut
    due = format_datetime(utcnow() - timedelta(seconds=5))
    job_id = await write_agenda_job(client, backend, nextRunAt=due)
    claimed = await claim(backend, "node-job")
    assert claimed is not None and claimed.id == job_id


async def test_connect_indexes_every_due_job_of_a_store_without_the_due_index(
    client: Redis,
) -> None:
    """A store Node Agenda (or an agenda-decl from before the due index) filled: connect puts
    every job into its name's due index, so one claim finds them all, however many."""
    prefix = redis_backends.unique_prefix()
    made = RedisBackend(connection_string=REDIS_URL, key_prefix=prefix)
    try:
        await made.connect()
        due = format_datetime(utcnow() - timedelta(minutes=1))
        ids = {await write_agenda_job(client, made, nextRunAt=due) for _ in range(250)}
        await client.delete(key(made, "decl:layout"))
        again = RedisBackend(connection_string=REDIS_URL, key_prefix=prefix)
        await again.connect()
        await again.disconnect()
        now = utcnow()
        claimed = await made.repository.get_next_jobs_to_run(
            "node-job", now, now - timedelta(minutes=10), 300, now)
        assert {job.id for job in claimed} == ids
    finally:
        await made.disconnect()
        await redis_backends.delete_keys(client, prefix)


async def test_a_stale_node_lock_on_a_job_that_is_not_due_is_taken_over(
    backend: RedisBackend, client: Redis
) -> None:
    """A Node worker died mid-run of a one-off job (nextRunAt null, so it is never due)."""
    long_ago = utcnow() - timedelta(hours=1)
    job_id = await write_agenda_job(client, backend, lockedAtMs=str(ms(long_ago)))
    claimed = await claim(backend, "node-job")
    assert claimed is not None and claimed.id == job_id


async def test_a_lock_that_node_touched_is_not_stale(backend: RedisBackend, client: Redis) -> None:
    """Node's touch() is a saveJobState that rewrites lockedAtMs (3.0.7 has no other lock
    field): staleness counts from the touch."""
    claimed_at, touched_at = utcnow() - timedelta(hours=1), utcnow() - timedelta(seconds=5)
    job_id = await write_agenda_job(client, backend, nextRunAt=format_datetime(claimed_at),
                                    lockedAtMs=str(ms(claimed_at)))
    await client.hset(key(backend, f"job:{job_id}"), mapping={
        "lockedAtMs": str(ms(touched_at)), "progress": "50",
        "updatedAt": format_datetime(touched_at),
    })
    assert await claim(backend, "node-job", utcnow() - timedelta(minutes=10)) is None
    assert await claim(backend, "node-job", utcnow()) is not None


async def test_locks_are_lockedatms_alone(backend: RedisBackend, client: Redis) -> None:
    """Claims, state writes and unlocks write lockedAtMs only, as Node 3.0.7 does; a lock
    Node wrote is seen (no second claim)."""
    job_id = await write_agenda_job(client, backend, nextRunAt=format_datetime(utcnow()))
    job_key = key(backend, f"job:{job_id}")
    claimed = await claim(backend, "node-job")
    assert claimed is not None and claimed.locked_at is not None
    assert set(await hash_of(client, job_key)) == NODE_FIELDS
    assert await claim(backend, "node-job") is None
    await backend.repository.unlock_jobs([job_id])
    assert await client.hget(job_key, "lockedAtMs") == "null"
    ours = await backend.repository.save_job(
        JobParameters(name="mine", next_run_at=utcnow(), data={"k": 1}))
    await client.hset(key(backend, f"job:{ours.id}"), "lockedAtMs", str(ms(utcnow())))  # Node's
    assert await claim(backend, "mine") is None
    stored = await backend.repository.get_job_by_id(str(ours.id))
    assert stored is not None and stored.locked_at is not None
    assert set(await hash_of(client, key(backend, f"job:{ours.id}"))) == NODE_FIELDS | {
        "insertOrder"}


# -- jobs without data --------------------------------------------------------------------------


async def test_a_job_without_data_is_stored_as_node_stores_it(
    backend: RedisBackend, client: Redis
) -> None:
    """'{}' as Node writes it (its unique scan parses every job's data as an object), and
    read back as no data, as in every other store; Node's own '{}' stays an empty object."""
    repo = backend.repository
    bare = await repo.save_job(JobParameters(name="bare", next_run_at=utcnow()))
    empty = await repo.save_job(JobParameters(name="bare", data={}, next_run_at=utcnow()))
    node_id = await write_agenda_job(client, backend, name="bare", data="{}")
    assert bare.data is None and empty.data == {}
    bare_hash = await hash_of(client, key(backend, f"job:{bare.id}"))
    assert (bare_hash["data"], bare_hash["noData"]) == ("{}", "true")
    assert "noData" not in await hash_of(client, key(backend, f"job:{empty.id}"))
    listed = (await repo.query_jobs(JobsQueryOptions(name="bare"))).jobs
    by_id = {job.id: job.data for job in listed}
    assert by_id == {bare.id: None, empty.id: {}, node_id: {}}
    assert {job.id for job in (await repo.query_jobs(JobsQueryOptions(data={}))).jobs} == {
        empty.id, node_id}
    bare.data = {"now": "some"}
    await repo.save_job(bare)
    assert "noData" not in await hash_of(client, key(backend, f"job:{bare.id}"))
    reloaded = await repo.get_job_by_id(str(bare.id))
    assert reloaded is not None and reloaded.data == {"now": "some"}


# -- hashes of agenda-decl 0.1 ------------------------------------------------------------------


async def test_connect_heals_the_hashes_of_agenda_decl_0_1(client: Redis) -> None:
    """0.1 wrote an ISO lockedAt next to lockedAtMs (and judged locks by it) and data 'null'
    for no data. Connect drops lockedAt, carries it into lockedAtMs only where that field is
    missing, stores no data as '{}' + noData, once per prefix."""
    prefix = f"agenda-test:{uuid.uuid4().hex}:"
    made = RedisBackend(connection_string=REDIS_URL, key_prefix=prefix)
    long_ago = utcnow() - timedelta(hours=1)
    legacy = {
        # locked by 0.1 (both fields alike)
        "locked": {"lockedAt": format_datetime(long_ago), "lockedAtMs": str(ms(long_ago))},
        # 0.1 claimed it, then Node 3.x (lockedAtMs only) ran it and unlocked it
        "finished": {"lockedAt": format_datetime(long_ago), "lockedAtMs": "null"},
        # a lock from before lockedAtMs existed
        "old-lock": {"lockedAt": format_datetime(long_ago)},
        "idle": {"lockedAt": "null", "lockedAtMs": "null", "data": "null"},
    }
    try:
        await made.connect()  # an empty prefix: nothing to heal
        ids = {}
        for name, fields in legacy.items():
            ids[name] = await write_agenda_job(client, made, name=name)
            await client.hset(key(made, f"job:{ids[name]}"), mapping=fields)
            if "lockedAtMs" not in fields:
                await client.hdel(key(made, f"job:{ids[name]}"), "lockedAtMs")
        await client.delete(key(made, "decl:layout"))
        again = RedisBackend(connection_string=REDIS_URL, key_prefix=prefix)
        await again.connect()
        await again.disconnect()
        hashes = {name: await hash_of(client, key(made, f"job:{job_id}"))
                  for name, job_id in ids.items()}
        assert all("lockedAt" not in fields for fields in hashes.values())
        assert hashes["locked"]["lockedAtMs"] == str(ms(long_ago))
        assert hashes["finished"]["lockedAtMs"] == "null"
        assert hashes["old-lock"]["lockedAtMs"] == str(ms(long_ago))
        assert (hashes["idle"]["data"], hashes["idle"]["noData"]) == ("{}", "true")
        idle = await made.repository.get_job_by_id(ids["idle"])
        assert idle is not None and idle.data is None and idle.locked_at is None
        finished = await made.repository.get_job_by_id(ids["finished"])
        assert finished is not None and finished.locked_at is None
        assert await client.get(key(made, "decl:layout")) is not None
    finally:
        await made.disconnect()
        await redis_backends.delete_keys(client, prefix)


# -- lock staleness on the Redis clock --------------------------------------------------------


async def test_touch_keeps_a_job_from_being_judged_stale(backend: RedisBackend) -> None:
    repo = backend.repository
    locked_at = utcnow() - timedelta(minutes=20)
    await repo.save_job(JobParameters(name="toucher", next_run_at=locked_at))
    job = await repo.get_next_job_to_run("toucher", utcnow(), locked_at, locked_at)
    assert job is not None and job.locked_at == locked_at
    job.locked_at = touched_at = locked_at + timedelta(minutes=15)  # what Job.touch() saves
    await repo.save_job_state(job)
    between = locked_at + timedelta(minutes=10)  # after the claim, before the touch
    assert await repo.get_next_job_to_run("toucher", utcnow(), between) is None
    taken = await repo.get_next_job_to_run("toucher", utcnow(), touched_at)
    assert taken is not None and taken.id == job.id


async def test_without_now_the_lock_is_stamped_with_the_redis_clock(
    backend: RedisBackend,
) -> None:
    repo = backend.repository
    await repo.save_job(JobParameters(name="clock", next_run_at=utcnow() - timedelta(seconds=1)))
    before = await repo.server_now()
    job = await repo.get_next_job_to_run("clock", utcnow(), utcnow() - timedelta(minutes=1))
    after = await repo.server_now()
    assert before is not None and after is not None and job is not None
    assert job.locked_at is not None and before <= job.locked_at <= after


# -- the channel -----------------------------------------------------------------------------


def note(name: str) -> JobNotification:
    return JobNotification(job_id=JobId("x"), job_name=name, next_run_at=None, priority=0,
                           timestamp=utcnow())


@pytest.fixture
async def named_channel() -> AsyncIterator[tuple[RedisNotificationChannel, Redis, str]]:
    """A channel on a client with a unique CLIENT SETNAME, so a test can find its connections."""
    client_name = f"agenda-test-{uuid.uuid4().hex}"
    client = Redis.from_url(REDIS_URL, decode_responses=True, client_name=client_name)
    channel = RedisNotificationChannel(client=client, channel_name=f"t:{uuid.uuid4().hex}",
                                       health_check_interval=200)
    yield channel, client, client_name
    await channel.disconnect()
    await client.aclose()


async def subscriber_ids(client: Redis, client_name: str) -> list[str]:
    listed = await client.client_list(_type="pubsub")
    return [str(entry["id"]) for entry in listed if entry.get("name") == client_name]


async def reconnects_after(
    channel: RedisNotificationChannel, client: Redis, fault: Callable[[], Awaitable[Any]]
) -> None:
    states: list[str] = []
    channel.on("stateChange", states.append)
    inbox = Inbox()
    await channel.connect()
    channel.subscribe(inbox)
    await fault()

    async def back() -> bool:
        return "reconnecting" in states and channel.state == "connected"

    await wait_until(back)
    await channel.publish(note("after"))
    await inbox.wait_for_name("after")


async def test_killed_subscriber_connection_reconnects(
    named_channel: tuple[RedisNotificationChannel, Redis, str],
) -> None:
    channel, client, client_name = named_channel

    async def kill() -> None:
        (subscriber,) = await subscriber_ids(client, client_name)
        await client.client_kill_filter(_id=subscriber)

    await reconnects_after(channel, client, kill)


async def test_a_silently_lost_subscription_is_noticed(
    named_channel: tuple[RedisNotificationChannel, Redis, str],
) -> None:
    channel, client, _ = named_channel

    async def unsubscribe_behind_its_back() -> None:
        assert channel._pubsub is not None
        await channel._pubsub.execute_command("UNSUBSCRIBE", channel.channel_name)

    await reconnects_after(channel, client, unsubscribe_behind_its_back)


async def test_a_subscriber_that_stops_delivering_is_replaced(
    named_channel: tuple[RedisNotificationChannel, Redis, str],
) -> None:
    """Messages stop arriving while the server still counts the subscriber (a half-open
    socket looks like this): the probe that never comes back gives it away."""
    channel, client, _ = named_channel

    async def lose_the_probe() -> None:
        assert channel._pubsub is not None
        await channel._pubsub.execute_command("UNSUBSCRIBE", channel._probe_channel)

    await reconnects_after(channel, client, lose_the_probe)


async def test_malformed_messages_are_ignored(
    named_channel: tuple[RedisNotificationChannel, Redis, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel, client, _ = named_channel
    inbox = Inbox()
    await channel.connect()
    channel.subscribe(inbox)
    for junk in ("not json", '{"jobId": 1}', "[]"):
        await client.publish(channel.channel_name, junk)
        await client.publish(channel.state_channel, junk)
    await channel.publish(note("valid"))
    await inbox.wait_for_name("valid")
    assert inbox.names == ["valid"] and channel.state == "connected"
    assert "malformed" in caplog.text


# -- secrets ---------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connection_errors_never_show_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-Pa55word"
    url = f"redis://agenda:{secret}@127.0.0.1:{closed_port()}/0"
    caplog.set_level(logging.DEBUG)
    backend = RedisBackend(connection_string=url)
    with pytest.raises(BackendUnavailableError) as raised:
        await backend.connect()
    channel = RedisNotificationChannel(connection_string=url)
    errors: list[BaseException] = []
    channel.on("error", errors.append)
    with pytest.raises(BackendUnavailableError) as channel_raised:
        await channel.connect()
    await channel.disconnect()
    await backend.disconnect()
    shown = [str(raised.value), repr(raised.value), repr(backend), repr(backend.repository),
             str(channel_raised.value), repr(channel), caplog.text, *map(str, errors)]
    assert "***" in str(raised.value)
    assert all(secret not in text for text in shown)


# -- the scheduler ---------------------------------------------------------------------------


async def test_a_touching_handler_past_lock_lifetime_is_never_taken_over(
    backend: RedisBackend,
) -> None:
    """Two workers; the job runs 6 lock lifetimes and touches every third of one."""
    runs: list[str] = []

    async def long_job(job: Job[Any]) -> None:
        runs.append(str(job.attrs.id))
        for _ in range(18):
            await asyncio.sleep(0.1)
            await job.touch()

    other = redis_backends.backend_from_spec(redis_backends.backend_spec(backend))
    workers = [Agenda(b, process_every="50 ms", name=f"w{i}")
               for i, b in enumerate((backend, other))]
    for worker in workers:
        worker.define("long", long_job, lock_lifetime=300)
        await worker.start()
    try:
        job = await workers[0].now("long")
        result = await workers[0].query_jobs(JobsQueryOptions(id=job.attrs.id))

        async def completed() -> bool:
            found = await workers[0].query_jobs(JobsQueryOptions(id=job.attrs.id))
            return bool(found.jobs) and found.jobs[0].last_finished_at is not None

        await wait_until(completed, timeout=20)
        assert result.total == 1
        assert runs == [job.attrs.id]
    finally:
        for worker in workers:
            await worker.stop(close_connection=False)
        await other.disconnect()


async def test_every_job_runs_while_the_subscriber_is_killed(client: Redis) -> None:
    """CLIENT KILL of the subscriber connection, twice, while jobs are being enqueued. The
    poll is an hour apart, so what the channel loses is found by the catch-up poll after
    the reconnect (and the wake-ups of finishing jobs), never by a regular poll."""
    client_name = f"agenda-test-{uuid.uuid4().hex}"
    named = Redis.from_url(REDIS_URL, decode_responses=True, client_name=client_name)
    prefix = redis_backends.unique_prefix()
    backend = RedisBackend(client=named, key_prefix=prefix, channel_name=f"{prefix}jobs",
                           health_check_interval=200)
    channel = backend.notification_channel
    assert isinstance(channel, RedisNotificationChannel)
    states: list[str] = []
    channel.on("stateChange", states.append)
    agenda = Agenda(backend, process_every="1 hour")
    runs: list[int] = []
    total = 300
    all_ran = asyncio.Event()
    enqueued = 0

    async def record(job: Job[Any]) -> None:
        runs.append(job.attrs.data["i"])
        if len(set(runs)) == total:
            all_ran.set()

    async def enqueue() -> None:
        nonlocal enqueued
        for i in range(total):
            await agenda.now("work", {"i": i})
            enqueued += 1
            await asyncio.sleep(0.005)

    async def kill_twice() -> list[str]:
        killed: list[str] = []
        for at in (total // 5, total // 2):
            await wait_until(lambda at=at: _true(enqueued >= at and channel.state == "connected"))
            (subscriber,) = await subscriber_ids(client, client_name)
            assert subscriber not in killed
            await client.client_kill_filter(_id=subscriber)
            killed.append(subscriber)
            await wait_until(lambda: _true(channel.state != "connected"))
        return killed

    agenda.define("work", record, concurrency=10)
    await agenda.start()
    try:
        assert channel.state == "connected"
        _, killed = await asyncio.gather(enqueue(), kill_twice())
        assert enqueued == total
        await asyncio.wait_for(all_ran.wait(), 30)
        await wait_until(lambda: _true(channel.state == "connected"))
        assert sorted(runs) == list(range(total))  # every job, each exactly once
        assert states.count("reconnecting") >= 2
        (subscriber,) = await subscriber_ids(client, client_name)
        assert subscriber not in killed

        async def all_completed() -> bool:
            # the last handler has returned; its end write may still be on its way
            result = await agenda.query_jobs(JobsQueryOptions(name="work", state="completed"))
            return result.total == total

        await wait_until(all_completed)
    finally:
        await agenda.stop(close_connection=False)
        await redis_backends.delete_keys(named, prefix)
        await named.aclose()


async def test_jobs_saved_while_the_subscriber_is_down_run_after_the_reconnect(
    client: Redis,
) -> None:
    """An idle worker, the subscriber killed, jobs saved during the outage (their
    notifications are never sent): only the catch-up poll after the reconnect can find them,
    since the regular poll is an hour away and no running job will wake the name."""
    client_name = f"agenda-test-{uuid.uuid4().hex}"
    named = Redis.from_url(REDIS_URL, decode_responses=True, client_name=client_name)
    prefix = redis_backends.unique_prefix()
    backend = RedisBackend(client=named, key_prefix=prefix, channel_name=f"{prefix}jobs",
                           health_check_interval=200)
    channel = backend.notification_channel
    assert isinstance(channel, RedisNotificationChannel)
    channel.reconnect_options = ReconnectOptions(initial_delay=500, jitter=0)
    agenda = Agenda(backend, process_every="1 hour")
    events = EventRecorder(agenda)
    agenda.define("work", lambda job: None)
    await agenda.start()
    try:
        await agenda.now("work", {"i": -1})
        await events.wait_for("complete", 1)  # the channel works; the worker is idle now
        (subscriber,) = await subscriber_ids(client, client_name)
        await client.client_kill_filter(_id=subscriber)
        await wait_until(lambda: _true(channel.state == "reconnecting"))
        for i in range(20):
            await agenda.now("work", {"i": i})
        assert channel.state == "reconnecting"  # every save above went unannounced
        await events.wait_for("complete", 21)
        assert channel.state == "connected"
        assert sorted(e.data["i"] for e in events.of("complete")) == list(range(-1, 20))
    finally:
        await agenda.stop(close_connection=False)
        await redis_backends.delete_keys(named, prefix)
        await named.aclose()


async def _true(value: bool) -> bool:
    return value
