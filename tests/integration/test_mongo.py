"""MongoDB-specific behaviour: Agenda v6's document layout and index, hostile filters, jobs
written by Node Agenda, and the change-stream channel against a scripted change stream.

The repository runs on mongomock, or on a real server when AGENDA_TEST_MONGODB_URL is set
(tests/backends/mongo.py). No server offers change streams here, so the channel is driven by
a fake stream that behaves like a server's: it replays events after a resume token, fails
when told to, and refuses tokens it no longer has.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect, OperationFailure

from agenda_decl import Agenda
from agenda_decl._clock import truncate_ms, utcnow
from agenda_decl._model import JobNotification, JobParameters, JobsQueryOptions, RemoveJobsOptions
from agenda_decl.backends.mongo import (
    MongoBackend,
    MongoChangeStreamNotificationChannel,
    MongoJobRepository,
    ReplicaSetRequiredError,
)
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError, LockLostError
from agenda_decl.notifications.base import ReconnectOptions
from agenda_decl.testing import EventRecorder
from tests.backends.mongo import database, unique_collection
from tests.backends.servers import MONGODB_URL

FAST = ReconnectOptions(initial_delay=1, max_delay=20, jitter=0)


async def eventually(predicate: Callable[[], bool], timeout: float = 5) -> None:
    """Wait until ``predicate()`` holds (raises on timeout); no fixed sleeps."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.fixture
async def db() -> AsyncIterator[Any]:
    with database() as made:
        yield made


@pytest.fixture
async def backend(db: Any) -> AsyncIterator[MongoBackend]:
    collection = unique_collection()
    made = MongoBackend(mongo=db, collection=collection)
    await made.connect()
    yield made
    await made.disconnect()
    db.drop_collection(collection)


@pytest.fixture
def raw(backend: MongoBackend, db: Any) -> Any:
    """The backend's collection, read and written directly (as Node Agenda would)."""
    return db.get_collection(backend.repository.collection_name)


def save(backend: MongoBackend, **fields: Any) -> Awaitable[JobParameters[Any]]:
    fields.setdefault("name", "layout")
    return backend.repository.save_job(JobParameters(**fields), last_modified_by="worker-1")


# -- layout and index ---------------------------------------------------------------------------


async def test_documents_use_agenda_field_names_object_ids_and_bson_dates(
    backend: MongoBackend, raw: Any
) -> None:
    when = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    saved = await save(
        backend, next_run_at=when, data={"to": "a@b.c"}, repeat_interval="5 minutes",
        start_date=when, end_date=when + timedelta(days=1), skip_days=[0, 6],
        unique={"data.to": "a@b.c"},
    )
    assert saved.id is not None
    document = raw.find_one({"_id": ObjectId(saved.id)})
    assert isinstance(document["_id"], ObjectId)
    assert str(document["_id"]) == saved.id
    for field in ("nextRunAt", "startDate", "endDate"):
        assert isinstance(document[field], datetime)
        assert document[field].replace(tzinfo=UTC) == when + (
            timedelta(days=1) if field == "endDate" else timedelta(0)
        )
    assert {
        "name", "priority", "nextRunAt", "type", "data", "repeatInterval", "lastModifiedBy",
        "lockedAt", "lastRunAt", "lastFinishedAt", "failedAt", "failCount", "failReason",
        "progress", "disabled", "skipDays",
    } <= set(document)
    assert "unique" not in document and "uniqueOpts" not in document and "id" not in document
    assert (document["lastModifiedBy"], document["lockedAt"], document["skipDays"]) == (
        "worker-1", None, [0, 6],
    )


async def test_the_lock_index_is_agenda_s(backend: MongoBackend, raw: Any) -> None:
    index = raw.index_information()["findAndLockNextJobIndex"]
    assert list(index["key"]) == [
        ("name", 1), ("nextRunAt", 1), ("priority", -1), ("lockedAt", 1), ("disabled", 1)
    ]
    await backend.repository.connect()  # idempotent: no second index, no conflict
    assert len(raw.index_information()) == 2


async def test_no_index_without_ensure_index(db: Any) -> None:
    collection = unique_collection()
    backend = MongoBackend(mongo=db, collection=collection, ensure_index=False)
    await backend.connect()
    await save(backend)
    assert "findAndLockNextJobIndex" not in db.get_collection(collection).index_information()
    await backend.disconnect()
    db.drop_collection(collection)


# -- hostile input: operator injection in data filters, regex metacharacters in search --


@pytest.mark.parametrize(
    ("data", "key"),
    [({"$where": "sleep(1000)"}, "$where"), ({"a": {"$ne": None}}, "$ne"),
     ({"a.b": 1}, "a.b"), ({"a": [{"$gt": 0}]}, "$gt")],
)
async def test_operator_or_dotted_keys_in_a_data_filter_are_refused_naming_the_key(
    backend: MongoBackend, data: Any, key: str
) -> None:
    await save(backend, data={"a": 1})
    repository = backend.repository
    for call in (
        lambda: repository.query_jobs(JobsQueryOptions(data=data)),
        lambda: repository.remove_jobs(RemoveJobsOptions(data=data)),
        lambda: repository.disable_jobs(RemoveJobsOptions(data=data)),
    ):
        with pytest.raises(InvalidOptionError, match=f"'{key}'".replace("$", r"\$")):
            await call()
    stored = await repository.query_jobs()
    assert (stored.total, stored.jobs[0].disabled) == (1, False)


async def test_a_unique_value_that_looks_like_an_operator_is_a_literal(
    backend: MongoBackend,
) -> None:
    first = await save(backend, data={"x": 2}, unique={"data.x": 2})
    second = await save(backend, data={"x": 3}, unique={"data.x": {"$gt": 0}})
    assert first.id != second.id  # {"$gt": 0} was compared as a value, matching nothing
    stored = await backend.repository.get_job_by_id(str(first.id))
    assert stored is not None and stored.data == {"x": 2}


async def test_search_metacharacters_are_literal_and_long_searches_match_nothing(
    backend: MongoBackend,
) -> None:
    for name in ("a.b*c", "axbbc", "(x)+[y]", "plain"):
        await save(backend, name=name)

    async def found(search: str) -> list[str]:
        result = await backend.repository.query_jobs(JobsQueryOptions(search=search))
        return sorted(job.name for job in result.jobs)

    assert await found("A.B*") == ["a.b*c"]
    assert await found(".*") == []
    assert await found("(x)+[") == ["(x)+[y]"]
    assert await found("x" * 10_000) == []
    assert await found("\x00") == []


async def test_a_full_identical_data_object_matches(backend: MongoBackend) -> None:
    data = {"user": {"id": 7, "tags": ["a", "b"]}, "flag": False, "none": None}
    await save(backend, data=data)
    await save(backend, data={"user": {"id": 7}})
    assert (await backend.repository.query_jobs(JobsQueryOptions(data=data))).total == 1
    flags = JobsQueryOptions(data={"flag": 0})  # false is not 0 in JSON containment
    assert (await backend.repository.query_jobs(flags)).total == 0


async def test_malformed_ids_match_nothing(backend: MongoBackend) -> None:
    saved = await save(backend)
    repository = backend.repository
    for bad in ("", "zz" * 12, "abcdefghijkl", str(saved.id) + "0"):
        assert await repository.get_job_by_id(bad) is None
        assert (await repository.query_jobs(JobsQueryOptions(ids=[bad]))).total == 0
        assert await repository.remove_jobs(RemoveJobsOptions(ids=[bad])) == 0
        assert await repository.lock_job(JobParameters(id=bad, name="layout")) is None  # type: ignore[arg-type]
    assert (await repository.query_jobs()).total == 1


# -- sharing a collection with Node Agenda ------------------------------------------------------


def agenda_document(name: str, next_run_at: datetime | None, **extra: Any) -> dict[str, Any]:
    """A job as @agendajs/mongo-backend 4.0.3 inserts it (saveJob: the props of
    ``toJson(true)`` with every absent field an explicit null; ``disabled`` null unless set;
    naive UTC BSON dates)."""
    document: dict[str, Any] = {
        "name": name, "data": {"from": "node"}, "priority": 0, "type": "normal",
        "nextRunAt": None if next_run_at is None else next_run_at.replace(tzinfo=None),
    }
    for field in ("lockedAt", "lastFinishedAt", "failedAt", "failCount", "failReason",
                  "repeatTimezone", "lastRunAt", "repeatInterval", "repeatAt", "disabled",
                  "progress", "debounceStartedAt", "fork", "startDate", "endDate", "skipDays"):
        document[field] = None
    return {**document, "lastModifiedBy": "node-agent", **extra}


async def test_a_job_written_by_node_agenda_is_listed_claimed_and_kept_intact(
    backend: MongoBackend, raw: Any
) -> None:
    due = utcnow() - timedelta(minutes=1)
    # plus a field Node 4.0.3 does not write (an older Agenda's, another tool's): kept
    inserted = raw.insert_one(agenda_document("node-job", due, failCount=2,
                                              shouldSaveResult=False)).inserted_id
    raw.insert_one({"name": "node-job", "nextRunAt": due.replace(tzinfo=None)})  # sparse
    repository = backend.repository
    listed = await repository.query_jobs(JobsQueryOptions(name="node-job"))
    assert listed.total == 2
    assert {job.state for job in listed.jobs} == {"queued"}
    now = utcnow()
    claimed = await repository.get_next_jobs_to_run(
        "node-job", now, now - timedelta(minutes=10), 5, now
    )
    assert len(claimed) == 2
    first = claimed[0]  # same time; the sparse one has no priority, so it sorts last
    assert first.id == str(inserted)
    assert (first.data, first.fail_count, first.next_run_at) == ({"from": "node"}, 2, due)
    assert (first.disabled, first.fork, first.skip_days) == (False, False, None)
    first.priority = 5
    await repository.save_job(first)  # an update sets known fields only
    document = raw.find_one({"_id": inserted})
    assert (document["shouldSaveResult"], document["priority"]) == (False, 5)


async def test_a_node_interval_stored_as_a_double_reads_back_as_an_integer(
    backend: MongoBackend, raw: Any
) -> None:
    """Node stores numbers beyond int32 as BSON doubles: every(30 days in ms) has
    repeatInterval 2592000000.0. It reads back as the int, and the run's fenced state
    write (which compares the timing) advances the job."""
    month = 30 * 24 * 3600 * 1000
    due = utcnow() - timedelta(seconds=1)
    raw.insert_one(agenda_document("monthly", due, type="single", repeatInterval=float(month)))
    raw.insert_one(agenda_document("minutely", due, repeatInterval=60_000))
    repository = backend.repository
    jobs = {job.name: job for job in (await repository.query_jobs()).jobs}
    assert [type(jobs[n].repeat_interval) for n in ("monthly", "minutely")] == [int, int]
    assert (jobs["monthly"].repeat_interval, jobs["minutely"].repeat_interval) == (month, 60_000)
    now = utcnow()
    (claimed,) = await repository.get_next_jobs_to_run("monthly", now, now - timedelta(minutes=1),
                                                       1, now)
    claimed.last_run_at, claimed.next_run_at = now, now + timedelta(milliseconds=month)
    claimed.locked_at = None
    await repository.save_job_state(claimed, lock_token=now)
    stored = await repository.get_job_by_id(str(claimed.id))
    assert stored is not None
    assert stored.next_run_at == truncate_ms(now + timedelta(milliseconds=month))
    assert stored.locked_at is None and stored.repeat_interval == month


async def test_a_node_save_that_clears_our_lock_makes_our_end_write_a_rejected_one(
    backend: MongoBackend, raw: Any
) -> None:
    """Node 4.0.3's save by id (job.save(), and every() of an existing single job) $sets
    lockedAt, lastRunAt and the failure fields to null: it clears the lock of a job we run.
    Our fenced end write is then refused whole (LockLostError), never half applied."""
    repository = backend.repository
    saved = await repository.save_job(JobParameters(name="shared", next_run_at=utcnow(),
                                                    repeat_interval="1 hour", type="single"))
    now = utcnow()
    (claimed,) = await repository.get_next_jobs_to_run("shared", now, now - timedelta(minutes=1),
                                                       1, now)
    props = agenda_document("shared", now + timedelta(hours=1), type="single",
                            repeatInterval="1 hour")
    raw.update_one({"_id": ObjectId(saved.id)}, {"$set": props})  # Node's save by id
    claimed.last_run_at = claimed.last_finished_at = now
    claimed.locked_at = None
    with pytest.raises(LockLostError):
        await repository.save_job_state(claimed, lock_token=now)
    document = raw.find_one({"_id": ObjectId(saved.id)})
    assert (document["lockedAt"], document["lastRunAt"], document["lastFinishedAt"]) == (
        None, None, None)


# -- connection handling ------------------------------------------------------------------------


async def test_storage_only_backend_and_ownership(db: Any) -> None:
    borrowed = MongoBackend(mongo=db, collection=unique_collection())
    assert borrowed.notification_channel is None
    assert borrowed.owns_connection is False
    await borrowed.connect()
    await borrowed.disconnect()
    assert db.command("ping")["ok"]  # a database passed in is never closed
    await borrowed.connect()  # and the backend can connect again after a disconnect
    await borrowed.disconnect()


@pytest.mark.parametrize(
    "address",
    ["mongodb://localhost:27017/agenda", "mongodb+srv://cluster0.example.net/agenda",
     "mongodb://user:s3cret@db.example.com/agenda",
     "mongodb://a:1,b:2,c:3/agenda?replicaSet=rs0", "localhost/agenda"],
)
def test_constructor_accepts_addresses_without_connecting(address: str) -> None:
    backend = MongoBackend(address=address)
    assert backend.owns_connection is True
    assert backend.notification_channel is None
    assert "s3cret" not in repr(backend)


async def test_an_unreachable_server_is_reported_without_its_password() -> None:
    backend = MongoBackend(
        address="mongodb://agenda:s3cret@127.0.0.1:9/agenda?serverSelectionTimeoutMS=200"
    )
    with pytest.raises(BackendUnavailableError) as raised:
        await backend.connect()
    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1:9" in str(raised.value)


def test_exactly_one_of_address_and_mongo(db: Any) -> None:
    with pytest.raises(InvalidOptionError, match="exactly one"):
        MongoBackend()
    with pytest.raises(InvalidOptionError, match="exactly one"):
        MongoBackend(address="mongodb://x/y", mongo=db)
    with pytest.raises(InvalidOptionError, match="collection"):
        MongoBackend(mongo=db, collection="bad$name")


async def test_calls_before_connect_say_so(db: Any) -> None:
    repository = MongoJobRepository(mongo=db)
    with pytest.raises(BackendUnavailableError, match="connect"):
        await repository.query_jobs()


# -- the change-stream channel against a scripted stream ----------------------------------------


def token(number: int) -> dict[str, str]:
    return {"_data": f"{number:08d}"}


class FakeServer:
    """The change-stream side of a server: an event log, resumable by token, with faults.

    ``open_failures`` are raised by ``watch()`` (the aggregate); ``fail_stream`` makes the
    live stream raise on its next read. Tokens before ``history_starts`` are gone (code 286).
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
        self.open_failures: list[BaseException] = []
        self.streams: list[FakeStream] = []
        self.history_starts = 0
        self.lock = threading.Lock()

    def __call__(
        self, collection: Any, pipeline: list[dict[str, Any]], options: dict[str, Any]
    ) -> FakeStream:
        with self.lock:
            self.calls.append((pipeline, dict(options)))
            if self.open_failures:
                raise self.open_failures.pop(0)
            start = len(self.events)
            if "resume_after" in options:
                ids = [event["_id"] for event in self.events]
                wanted = options["resume_after"]
                if wanted not in ids or ids.index(wanted) < self.history_starts:
                    raise OperationFailure("Resume of change stream was not possible", 286)
                start = ids.index(wanted) + 1
            stream = FakeStream(self, start)
            self.streams.append(stream)
            return stream

    def emit(self, operation: str, document: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            event = {"_id": token(len(self.events)), "operationType": operation,
                     "fullDocument": document}
            self.events.append(event)
            return event

    def fail_stream(self, error: BaseException) -> None:
        self.streams[-1].error = error


class FakeStream:
    def __init__(self, server: FakeServer, position: int) -> None:
        self.server, self.position = server, position
        self.error: BaseException | None = None
        self.closed = threading.Event()
        self.alive = True
        self.resume_token: Mapping[str, Any] | None = None

    def try_next(self) -> Mapping[str, Any] | None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        with self.server.lock:
            if self.position < len(self.server.events):
                event = self.server.events[self.position]
                self.position += 1
                self.resume_token = event["_id"]
                # As a server does: the cursor is closed after an invalidate event.
                self.alive = event["operationType"] != "invalidate"
                return event
        self.closed.wait(0.005)  # a server waits up to maxAwaitTimeMS
        return None

    def close(self) -> None:
        self.closed.set()
        self.alive = False


def job_document(name: str = "cs-job", **fields: Any) -> dict[str, Any]:
    return {"_id": ObjectId(), "name": name, "priority": 0, "lockedAt": None,
            "nextRunAt": datetime(2026, 1, 5, 12, 0), **fields}


Scripted = tuple[MongoChangeStreamNotificationChannel, FakeServer]


@pytest.fixture
async def channel(db: Any) -> AsyncIterator[Scripted]:
    server = FakeServer()
    made = MongoChangeStreamNotificationChannel(db=db, stream_factory=server, reconnect=FAST)
    yield made, server
    await made.disconnect()


def record(made: MongoChangeStreamNotificationChannel) -> tuple[list[JobNotification], list[str]]:
    received: list[JobNotification] = []
    states: list[str] = []
    made.subscribe(received.append)
    made.on("stateChange", states.append)
    made.on("error", lambda error: None)
    return received, states


async def test_channel_notifies_inserts_and_updates_and_resumes_after_the_last_token(
    channel: Scripted,
) -> None:
    made, server = channel
    received, states = record(made)
    await made.connect()
    pipeline, options = server.calls[0]
    assert pipeline == [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]
    assert options["full_document"] == "updateLookup"
    assert "resume_after" not in options
    inserted = job_document("test-job")
    server.emit("insert", inserted)
    await eventually(lambda: len(received) == 1)
    assert (received[0].job_name, received[0].job_id) == ("test-job", str(inserted["_id"]))
    assert received[0].next_run_at == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    last = server.emit("update", {**inserted, "priority": 10})
    await eventually(lambda: len(received) == 2)
    assert received[1].priority == 10
    assert made.resume_token == last["_id"]

    server.fail_stream(AutoReconnect("connection reset"))
    server.emit("replace", job_document("while-away"))  # happens during the outage
    await eventually(lambda: len(server.calls) == 2 and made.state == "connected")
    assert server.calls[1][1]["resume_after"] == last["_id"]
    await eventually(lambda: len(received) == 3)
    assert [n.job_name for n in received] == ["test-job", "test-job", "while-away"]
    assert states == ["connecting", "connected", "reconnecting", "connecting", "connected"]


async def test_history_lost_drops_the_token_and_restarts_from_now(
    channel: Scripted,
) -> None:
    made, server = channel
    received, states = record(made)
    await made.connect()
    server.emit("insert", job_document())
    await eventually(lambda: len(received) == 1)
    server.history_starts = len(server.events) + 1
    server.fail_stream(OperationFailure("ChangeStreamHistoryLost", 286))
    await eventually(lambda: len(server.calls) == 2 and made.state == "connected")
    assert "resume_after" not in server.calls[1][1]
    assert states[-3:] == ["reconnecting", "connecting", "connected"]  # -> catch-up poll
    server.emit("insert", job_document("after"))
    await eventually(lambda: len(received) == 2)
    assert received[-1].job_name == "after"


async def test_a_stale_configured_token_is_dropped_at_connect(db: Any) -> None:
    server = FakeServer()
    server.emit("insert", job_document())
    server.history_starts = 1
    made = MongoChangeStreamNotificationChannel(
        db=db, stream_factory=server, resume_token=token(0), reconnect=FAST
    )
    assert made.resume_token == token(0)
    await made.connect()
    assert made.state == "connected"
    assert [options.get("resume_after") for _, options in server.calls] == [token(0), None]
    assert made.resume_token is None
    await made.disconnect()


async def test_invalidate_drops_the_token_and_reconnects(
    channel: Scripted,
) -> None:
    made, server = channel
    received, _ = record(made)
    await made.connect()
    server.emit("insert", job_document())
    await eventually(lambda: len(received) == 1)
    server.emit("invalidate", {})
    await eventually(lambda: len(server.calls) == 2 and made.state == "connected")
    assert "resume_after" not in server.calls[1][1]


async def test_closing_the_stream_reconnects(
    channel: Scripted,
) -> None:
    made, server = channel
    _, states = record(made)
    await made.connect()
    server.streams[-1].close()
    await eventually(lambda: len(server.calls) == 2 and made.state == "connected")
    assert "reconnecting" in states


async def test_failed_reopens_back_off_and_recover(
    channel: Scripted,
) -> None:
    made, server = channel
    errors: list[BaseException] = []
    made.on("error", errors.append)
    await made.connect()
    server.open_failures = [AutoReconnect("down")] * 3
    server.fail_stream(AutoReconnect("connection reset"))
    await eventually(lambda: len(server.calls) == 5 and made.state == "connected")
    assert len(errors) == 4


async def test_unclaimable_documents_are_not_notified(
    channel: Scripted,
) -> None:
    made, server = channel
    received, _ = record(made)
    await made.connect()
    server.emit("update", job_document("locked", lockedAt=datetime(2026, 1, 1)))
    server.emit("update", job_document("disabled", disabled=True))
    server.emit("update", job_document("done", nextRunAt=None))
    server.emit("update", None)  # type: ignore[arg-type]  # deleted before the lookup
    server.emit("insert", job_document("due"))
    await eventually(lambda: len(received) == 1)
    assert received[0].job_name == "due"
    assert made.resume_token == server.events[-1]["_id"]


async def test_not_a_replica_set_fails_connect_with_a_clear_error(db: Any) -> None:
    server = FakeServer()
    server.open_failures = [OperationFailure(
        "The $changeStream stage is only supported on replica sets", 40573)]
    made = MongoChangeStreamNotificationChannel(db=db, stream_factory=server, reconnect=FAST)
    made.on("error", lambda error: None)
    with pytest.raises(ReplicaSetRequiredError, match="replica set"):
        await made.connect()
    assert made.state == "error"
    assert made._reconnect_task is None  # no retry loop against a standalone server
    await made.disconnect()


async def test_channel_basics_without_a_database() -> None:
    made = MongoChangeStreamNotificationChannel()
    assert made.state == "disconnected"
    assert made.resume_token is None
    assert made.supports_state_notifications is False
    made.on("error", lambda error: None)
    with pytest.raises(InvalidOptionError, match="requires a MongoDB database instance"):
        await made.connect()
    await made.publish(JobNotification(job_id="x", job_name="n", next_run_at=None,  # type: ignore[arg-type]
                                       priority=0, timestamp=utcnow()))
    await made.disconnect()
    await made.disconnect()
    assert made.state == "disconnected"


async def test_set_db_is_refused_while_connected(
    channel: Scripted, db: Any
) -> None:
    made, _ = channel
    await made.connect()
    with pytest.raises(RuntimeError, match="Cannot set database while channel is connected"):
        made.set_db(db)
    await made.disconnect()
    made.set_db(db)


async def test_connect_while_connected_replaces_the_stream(channel: Scripted) -> None:
    made, server = channel
    received, _ = record(made)
    await made.connect()
    await made.connect()
    assert server.streams[0].closed.is_set()
    server.emit("insert", job_document())
    await eventually(lambda: len(received) == 1)
    assert made.state == "connected"


async def test_server_now(backend: MongoBackend) -> None:
    now = await backend.repository.server_now()
    if MONGODB_URL:  # hello.localTime on a real server
        assert now is not None and now.tzinfo is not None
    else:  # mongomock has no clock of its own: the scheduler then uses the app clock
        assert now is None


# -- the channel under the scheduler -------------------------------------------------------------


async def nothing(job: Any) -> None:
    return None


async def test_a_change_event_makes_the_scheduler_run_a_job_written_elsewhere(
    backend: MongoBackend, raw: Any
) -> None:
    server = FakeServer()
    channel = MongoChangeStreamNotificationChannel(
        db=raw.database, collection=raw.name, stream_factory=server, reconnect=FAST
    )
    agenda = Agenda(backend, notification_channel=channel, process_every="1 hour")
    agenda.define("warm-up", nothing)
    agenda.define("node-job", nothing)
    events = EventRecorder(agenda)
    await agenda.start()
    await agenda.now("warm-up")
    await events.wait_for("complete", job_name="warm-up")  # the start-up poll is over
    document = agenda_document("node-job", utcnow(), _id=ObjectId())
    raw.insert_one(document)  # as a Node Agenda process would
    server.emit("insert", document)  # and the server's change stream reports it
    await events.wait_for("complete", job_name="node-job")
    await agenda.stop()
    assert channel.state == "disconnected"


async def test_history_lost_ends_in_a_catch_up_poll_that_runs_the_missed_job(
    backend: MongoBackend, raw: Any
) -> None:
    """A job written while the stream's history was lost has no event at all: the poll is
    an hour away, so only the catch-up poll after the stream restarts can run it."""
    server = FakeServer()
    channel = MongoChangeStreamNotificationChannel(
        db=raw.database, collection=raw.name, stream_factory=server, reconnect=FAST
    )
    channel.on("error", lambda error: None)
    agenda = Agenda(backend, notification_channel=channel, process_every="1 hour")
    agenda.define("warm-up", nothing)
    agenda.define("missed", nothing)
    events = EventRecorder(agenda)
    await agenda.start()
    try:
        await agenda.now("warm-up")
        await events.wait_for("complete", job_name="warm-up")  # the start-up poll is over
        opened = len(server.calls)
        server.history_starts = len(server.events) + 1  # every token we hold is gone
        raw.insert_one(agenda_document("missed", utcnow()))  # its event fell off the oplog
        server.fail_stream(OperationFailure("ChangeStreamHistoryLost", 286))
        await events.wait_for("complete", job_name="missed")
        assert len(server.calls) > opened
        assert "resume_after" not in server.calls[-1][1]
        assert channel.state == "connected"
    finally:
        await agenda.stop()


async def test_without_a_replica_set_the_scheduler_keeps_polling(
    backend: MongoBackend, raw: Any
) -> None:
    server = FakeServer()
    server.open_failures = [OperationFailure(
        "The $changeStream stage is only supported on replica sets", 40573)]
    channel = MongoChangeStreamNotificationChannel(
        db=raw.database, collection=raw.name, stream_factory=server, reconnect=FAST
    )
    agenda = Agenda(backend, notification_channel=channel, process_every="50 ms")
    agenda.define("node-job", nothing)
    errors: list[BaseException] = []
    agenda.on("error", errors.append)
    events = EventRecorder(agenda)
    await agenda.start()
    assert channel.state == "error"
    assert any(isinstance(error, ReplicaSetRequiredError) for error in errors)
    raw.insert_one(agenda_document("node-job", utcnow()))
    await events.wait_for("complete", job_name="node-job")
    await agenda.stop()


async def test_a_failed_connect_can_be_retried(db: Any) -> None:
    collection = unique_collection()
    # An index of Agenda's name with other keys (as a custom Agenda sort would make).
    db.get_collection(collection).create_index([("name", 1)], name="findAndLockNextJobIndex")
    backend = MongoBackend(mongo=db, collection=collection)
    with pytest.raises(OperationFailure):
        await backend.connect()
    with pytest.raises(BackendUnavailableError, match="connect"):
        await backend.repository.query_jobs()
    db.drop_collection(collection)
    await backend.connect()
    assert (await backend.repository.query_jobs()).total == 0
    await backend.disconnect()
    db.drop_collection(collection)
