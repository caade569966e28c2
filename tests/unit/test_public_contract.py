"""The public contract of /work/shared/DESIGN.md ("Public API contract" and the call forms that
tests and users rely on), checked name by name and run on SQLite.

When a check here fails, the library is wrong, not the test: DESIGN.md is the contract.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from agenda_decl import (
    Agenda,
    DrainResult,
    InMemoryNotificationChannel,
    Job,
    JobNotification,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
    UnknownJobError,
    backoff,
    compute_job_state,
    run_sync,
    to_job_id,
)
from agenda_decl._clock import utcnow
from agenda_decl.backends.sqlite import SQLiteBackend
from agenda_decl.backoff import BackoffContext
from agenda_decl.testing import EventRecorder, FakeClock

# -- names and where they import from ---------------------------------------------------------

TOP_LEVEL = [
    "JobId", "to_job_id", "JobParameters", "JobState", "compute_job_state", "JobsQueryOptions",
    "JobsResult", "JobsOverview", "RemoveJobsOptions", "JobNotification",
    "NotificationChannelState", "BaseNotificationChannel", "InMemoryNotificationChannel",
    "Agenda", "Job", "backoff", "run_sync",
]  # fmt: skip
MODULE_NAMES = {
    "agenda_decl.interfaces": ["AgendaBackend", "JobRepository", "NotificationChannel"],
    "agenda_decl.backends.sqlite": ["SQLiteBackend"],
    "agenda_decl.backends.postgres": ["PostgresBackend", "PostgresNotificationChannel"],
    "agenda_decl.backends.redis": ["RedisBackend", "RedisNotificationChannel"],
    "agenda_decl.backends.mongo": ["MongoBackend", "MongoChangeStreamNotificationChannel"],
    "agenda_decl.backoff": ["exponential"],
}


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_names_import(name: str) -> None:
    module = importlib.import_module("agenda_decl")
    assert hasattr(module, name), f"agenda_decl.{name} is missing"
    assert name in module.__all__


@pytest.mark.parametrize(
    ("module_name", "name"),
    [(module, name) for module, names in MODULE_NAMES.items() for name in names],
)
def test_module_names_import(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    assert hasattr(module, name), f"{module_name}.{name} is missing"


def test_interfaces_are_the_ones_reexported() -> None:
    import agenda_decl
    from agenda_decl import interfaces

    for name in ("AgendaBackend", "JobRepository", "NotificationChannel"):
        assert getattr(agenda_decl, name) is getattr(interfaces, name)


def test_job_id_is_a_newtype_over_str() -> None:
    from agenda_decl import JobId

    assert JobId.__supertype__ is str
    assert to_job_id("abc") == "abc"
    assert isinstance(to_job_id("abc"), str)


def test_literals() -> None:
    from agenda_decl import JobState, NotificationChannelState

    assert typing.get_args(JobState) == (
        "running", "scheduled", "queued", "completed", "failed", "repeating",
    )
    assert typing.get_args(NotificationChannelState) == (
        "disconnected", "connecting", "connected", "reconnecting", "error",
    )


# -- attrs values --------------------------------------------------------------------------------

JOB_PARAMETERS_FIELDS = [
    "id", "name", "priority", "next_run_at", "type", "locked_at", "last_finished_at",
    "failed_at", "fail_count", "fail_reason", "repeat_timezone", "last_run_at",
    "repeat_interval", "data", "repeat_at", "disabled", "progress", "unique", "unique_opts",
    "debounce_started_at", "last_modified_by", "fork", "start_date", "end_date", "skip_days",
]  # fmt: skip


def field_names(cls: type) -> list[str]:
    return [field.name for field in attrs.fields(cls)]


def defaults(cls: type) -> dict[str, Any]:
    return {
        field.name: field.default
        for field in attrs.fields(cls)
        if field.default is not attrs.NOTHING
    }


def test_job_parameters_has_exactly_the_listed_fields() -> None:
    assert attrs.has(JobParameters)
    assert field_names(JobParameters) == JOB_PARAMETERS_FIELDS
    params = JobParameters(name="x")
    assert params.type == "normal"
    assert params.id is None


def test_compute_job_state() -> None:
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    later = now + timedelta(minutes=1)
    assert compute_job_state(JobParameters(name="x", next_run_at=later), now) == "scheduled"
    assert compute_job_state(JobParameters(name="x", next_run_at=now), later) == "queued"
    assert compute_job_state(JobParameters(name="x", locked_at=now), now) == "running"
    assert compute_job_state(JobParameters(name="x", failed_at=now), now) == "failed"
    assert compute_job_state(JobParameters(name="x", repeat_interval="1 hour"), now) == "repeating"
    assert compute_job_state(JobParameters(name="x"), now) == "completed"
    assert compute_job_state(JobParameters(name="x")) == "completed"  # now defaults


def test_jobs_query_options_fields_and_defaults() -> None:
    assert field_names(JobsQueryOptions) == [
        "name", "names", "state", "id", "ids", "search", "data", "include_disabled", "sort",
        "skip", "limit",
    ]  # fmt: skip
    found = defaults(JobsQueryOptions)
    assert found["include_disabled"] is True
    for name in ("name", "names", "state", "id", "ids", "search", "data", "sort"):
        assert found[name] is None, name
    JobsQueryOptions()  # every field is optional


def test_jobs_result_fields() -> None:
    # DESIGN.md's two fields first; total_exact (default True) is ours: a store that counts
    # only up to a bound (Redis with a state or data filter) says so
    assert field_names(JobsResult) == ["jobs", "total", "total_exact"]
    assert JobsResult(jobs=[], total=0).total_exact is True


def test_jobs_overview_fields() -> None:
    listed = ["name", "total", "running", "scheduled", "queued", "completed", "failed",
              "repeating"]  # fmt: skip
    names = field_names(JobsOverview)
    assert names[: len(listed)] == listed
    overview = JobsOverview(name="x")
    assert [getattr(overview, n) for n in listed[1:]] == [0] * (len(listed) - 1)


def test_remove_jobs_options_fields_and_defaults() -> None:
    assert field_names(RemoveJobsOptions) == ["id", "ids", "name", "names", "not_names", "data"]
    assert defaults(RemoveJobsOptions) == dict.fromkeys(field_names(RemoveJobsOptions))


def test_job_notification_fields_and_defaults() -> None:
    assert field_names(JobNotification) == [
        "job_id", "job_name", "next_run_at", "priority", "timestamp", "source",
    ]  # fmt: skip
    assert defaults(JobNotification) == {"source": None}
    now = utcnow()
    notification = JobNotification(
        job_id=to_job_id("1"), job_name="x", next_run_at=None, priority=0, timestamp=now
    )
    assert notification.source is None


def test_drain_result_fields() -> None:
    assert field_names(DrainResult) == ["completed", "running", "timed_out", "aborted"]


# -- interfaces ------------------------------------------------------------------------------------

REPOSITORY_METHODS = [
    "connect", "query_jobs", "get_jobs_overview", "get_distinct_job_names", "get_job_by_id",
    "get_queue_size", "remove_jobs", "save_job", "save_job_state", "lock_job", "unlock_job",
    "unlock_jobs", "get_next_job_to_run",
]  # fmt: skip


@pytest.mark.parametrize("method", REPOSITORY_METHODS)
def test_job_repository_methods_are_async(method: str) -> None:
    from agenda_decl.interfaces import JobRepository

    assert inspect.iscoroutinefunction(getattr(JobRepository, method)), method


def test_get_next_job_to_run_signature() -> None:
    from agenda_decl.interfaces import JobRepository

    parameters = inspect.signature(JobRepository.get_next_job_to_run).parameters
    assert list(parameters)[:5] == ["self", "job_name", "next_scan_at", "lock_deadline", "now"]
    assert parameters["now"].default is None


def test_notification_channel_contract() -> None:
    from agenda_decl.interfaces import NotificationChannel

    assert isinstance(inspect.getattr_static(NotificationChannel, "state"), property)
    for method in ("connect", "disconnect", "publish"):
        assert inspect.iscoroutinefunction(getattr(NotificationChannel, method)), method
    for method in ("subscribe", "on", "off"):
        assert callable(getattr(NotificationChannel, method)), method


def test_agenda_backend_contract() -> None:
    from agenda_decl.interfaces import AgendaBackend

    for prop in ("repository", "notification_channel"):
        assert isinstance(inspect.getattr_static(AgendaBackend, prop), property), prop
    for method in ("connect", "disconnect"):
        assert inspect.iscoroutinefunction(getattr(AgendaBackend, method)), method


async def test_in_memory_channel_state_machine_and_fan_out() -> None:
    from agenda_decl import BaseNotificationChannel

    channel = InMemoryNotificationChannel()
    assert isinstance(channel, BaseNotificationChannel)
    assert callable(channel.set_state)
    states: list[str] = []
    channel.on("stateChange", states.append)
    assert channel.state == "disconnected"
    await channel.connect()
    assert channel.state == "connected"
    first: list[JobNotification] = []
    second: list[JobNotification] = []
    unsubscribe = channel.subscribe(first.append)
    channel.subscribe(second.append)
    notification = JobNotification(
        job_id=to_job_id("1"), job_name="x", next_run_at=None, priority=0, timestamp=utcnow()
    )
    await channel.publish(notification)
    await _until(lambda: first and second)
    assert first == second == [notification]
    unsubscribe()
    await channel.publish(notification)
    await _until(lambda: len(second) == 2)
    assert len(first) == 1
    channel.off("stateChange", states.append)
    await channel.disconnect()
    assert channel.state == "disconnected"
    assert states[-1] == "connected"
    assert "disconnected" not in states  # the listener was removed before disconnecting


# -- backend constructors (keywords as documented; nothing connects here) ------------------------


def test_backend_constructors_take_the_documented_keywords(tmp_path: Path) -> None:
    from agenda_decl.backends.mongo import MongoBackend, MongoChangeStreamNotificationChannel
    from agenda_decl.backends.postgres import PostgresBackend, PostgresNotificationChannel
    from agenda_decl.backends.redis import RedisBackend, RedisNotificationChannel

    SQLiteBackend(path=str(tmp_path / "x.db"))
    postgres = PostgresBackend(connection_string="postgresql://postgres@127.0.0.1:5432/test")
    assert isinstance(postgres.notification_channel, PostgresNotificationChannel)
    redis = RedisBackend(connection_string="redis://127.0.0.1:6379")
    assert isinstance(redis.notification_channel, RedisNotificationChannel)
    MongoBackend(address="mongodb://127.0.0.1:27017/agenda")

    postgres_keywords = inspect.signature(PostgresBackend).parameters
    assert {"connection_string", "pool", "table_name"} <= set(postgres_keywords)
    assert postgres_keywords["table_name"].default == "agenda_jobs"
    assert {"connection_string", "client"} <= set(inspect.signature(RedisBackend).parameters)
    mongo_keywords = inspect.signature(MongoBackend).parameters
    assert {"address", "mongo", "collection"} <= set(mongo_keywords)
    assert mongo_keywords["collection"].default == "agendaJobs"
    assert "db" in inspect.signature(MongoChangeStreamNotificationChannel).parameters


def test_mongo_backend_and_change_stream_channel_on_a_db_object() -> None:
    import mongomock  # a dev dependency: always installed where the tests run

    from agenda_decl.backends.mongo import MongoBackend, MongoChangeStreamNotificationChannel

    db = mongomock.MongoClient().get_database("agenda")
    MongoBackend(mongo=db, collection="agendaJobs")
    channel = MongoChangeStreamNotificationChannel(db=db)
    assert channel.state == "disconnected"


def test_agenda_constructor_defaults() -> None:
    parameters = inspect.signature(Agenda).parameters
    expected = {
        "notification_channel": None,
        "name": None,
        "process_every": "5 seconds",
        "max_concurrency": 20,
        "default_concurrency": 5,
        "lock_limit": 0,
        "default_lock_limit": 0,
        "default_lock_lifetime": 600_000,
    }
    for name, default in expected.items():
        assert parameters[name].default == default, name
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert next(iter(parameters)) == "backend"


AGENDA_METHODS = [
    "define", "every", "schedule", "now", "create", "query_jobs", "get_jobs_overview", "cancel",
    "disable", "enable", "purge", "start", "stop", "drain", "get_running_stats", "on",
    "now_many",
]  # fmt: skip
JOB_METHODS = [
    "repeat_every", "repeat_at", "schedule", "priority", "unique", "fail", "touch", "save",
    "remove", "disable", "enable", "run", "is_running", "is_expired",
]  # fmt: skip


@pytest.mark.parametrize("method", AGENDA_METHODS)
def test_agenda_methods(method: str) -> None:
    assert callable(getattr(Agenda, method, None)), method


@pytest.mark.parametrize("method", JOB_METHODS)
def test_job_methods(method: str) -> None:
    assert callable(getattr(Job, method, None)), method


# -- the call forms, verbatim (only the file path adapted) ------------------------------------


async def test_call_forms_verbatim_on_sqlite(tmp_path: Path) -> None:
    sent: list[Any] = []
    completed_sync: list[Any] = []
    completed_async: list[Any] = []
    all_done = asyncio.Event()

    async def handler(job: Job[Any]) -> None:
        sent.append(job.attrs.data)

    def listener(job: Job[Any]) -> None:
        completed_sync.append((job.attrs.name, job.attrs.data))

    async def async_listener(job: Job[Any]) -> None:
        await asyncio.sleep(0)
        completed_async.append((job.attrs.name, job.attrs.data))
        all_done.set()

    path = str(tmp_path / "jobs.db")
    agenda = Agenda(backend=SQLiteBackend(path=path), process_every="1 second")
    agenda.define("send-email", handler, concurrency=5, lock_lifetime="2 minutes", priority="high")

    @agenda.define("resize")               # decorator form, same options as keywords
    async def resize(job: Job[dict[str, int]]) -> None: ...

    agenda.define("report", lambda job: None)
    assert agenda.definitions["resize"].handler is resize
    definition = agenda.definitions["send-email"]
    assert (definition.concurrency, definition.lock_lifetime, definition.priority) == (
        5, 120_000, 10,
    )

    before = utcnow()
    job = await agenda.schedule("in 5 minutes", "send-email", {"to": "a@b.c"})   # str | datetime
    assert isinstance(job, Job)
    assert job.attrs.id is not None
    assert job.attrs.next_run_at is not None
    assert before + timedelta(minutes=5) <= job.attrs.next_run_at
    assert job.attrs.next_run_at <= utcnow() + timedelta(minutes=5)
    later_id = job.attrs.id
    at = utcnow() + timedelta(hours=2)
    job = await agenda.schedule(at, "send-email", {"to": "d@e.f"})
    assert job.attrs.next_run_at == at.replace(microsecond=at.microsecond // 1000 * 1000)
    job = await agenda.every("5 minutes", "report", {"k": 1}, timezone="Europe/Berlin")
    assert (job.attrs.repeat_interval, job.attrs.repeat_timezone) == ("5 minutes", "Europe/Berlin")
    assert job.attrs.type == "single"
    report_id = job.attrs.id

    agenda.on("complete:send-email", listener)   # listener(job); async or plain
    agenda.on("complete:send-email", async_listener)
    await agenda.start()
    job = await agenda.now("send-email", {"to": "a@b.c"})        # -> Job, job.attrs.id is set
    assert isinstance(job, Job)
    now_id = job.attrs.id
    assert now_id is not None
    await asyncio.wait_for(all_done.wait(), 30)
    result = await agenda.drain(timeout="30 seconds")
    # drain returns an attrs value with completed, running, timed_out, aborted
    assert attrs.has(type(result))
    assert (result.running, result.timed_out, result.aborted) == (0, False, False)
    await agenda.stop()

    assert sent == [{"to": "a@b.c"}]
    assert completed_sync == completed_async == [("send-email", {"to": "a@b.c"})]
    result = await agenda.query_jobs(JobsQueryOptions(name="send-email", state="completed"))
    assert [(j.id, j.data, j.state) for j in result.jobs] == [
        (now_id, {"to": "a@b.c"}, "completed")
    ]
    assert result.total == 1
    scheduled = await agenda.query_jobs(JobsQueryOptions(name="send-email", state="scheduled"))
    assert later_id in {j.id for j in scheduled.jobs}
    assert scheduled.total == 2
    repeating = await agenda.query_jobs(JobsQueryOptions(name="report", state="repeating"))
    assert [j.id for j in repeating.jobs] == [report_id]

    removed = await agenda.cancel(RemoveJobsOptions(name="send-email"))           # -> int
    assert type(removed) is int
    assert removed == 3
    assert (await agenda.query_jobs(JobsQueryOptions(name="send-email"))).total == 0
    assert (await agenda.query_jobs(JobsQueryOptions(name="report"))).total == 1
    await agenda.stop()


# -- the same forms with a fake clock, one behaviour per test -------------------------------------


def fake_clock() -> FakeClock:
    return FakeClock(utcnow())


def make_agenda(tmp_path: Path, clock: FakeClock, **options: Any) -> Agenda:
    options.setdefault("process_every", "1 second")
    return Agenda(backend=SQLiteBackend(path=str(tmp_path / "jobs.db")), clock=clock, **options)


async def test_schedule_every_and_now_with_a_fake_clock(tmp_path: Path) -> None:
    clock = fake_clock()
    agenda = make_agenda(tmp_path, clock)
    ran: list[tuple[str, Any]] = []
    agenda.define("send-email", lambda job: ran.append((job.attrs.name, job.attrs.data)))
    agenda.define("report", lambda job: ran.append((job.attrs.name, job.attrs.data)))
    recorder = EventRecorder(agenda)
    start = clock.now()

    later = await agenda.schedule("in 5 minutes", "send-email", {"to": "later"})
    assert later.attrs.next_run_at == start + timedelta(minutes=5)
    at = start + timedelta(minutes=10)
    exact = await agenda.schedule(at, "send-email", {"to": "exact"})
    assert exact.attrs.next_run_at == at
    report = await agenda.every("5 minutes", "report", {"k": 1}, timezone="Europe/Berlin")
    assert report.attrs.next_run_at == start
    again = await agenda.every("5 minutes", "report", {"k": 1}, timezone="Europe/Berlin")
    assert again.attrs.id == report.attrs.id  # one repeating job per name

    await agenda.start()
    await recorder.wait_for("complete", 1, job_name="report")
    assert ran == [("report", {"k": 1})]
    clock.advance(timedelta(minutes=5))
    await recorder.wait_for("complete", 1, job_name="send-email")
    await recorder.wait_for("complete", 2, job_name="report")
    clock.advance(timedelta(minutes=5))
    await recorder.wait_for("complete", 2, job_name="send-email")
    await agenda.drain(timeout="30 seconds")

    emails = [data for name, data in ran if name == "send-email"]
    assert emails == [{"to": "later"}, {"to": "exact"}]
    stored = await agenda.repository.get_job_by_id(str(report.attrs.id))
    assert stored is not None
    assert stored.last_run_at is not None
    assert stored.next_run_at is not None
    assert stored.next_run_at > stored.last_run_at
    await agenda.stop()


async def test_plain_def_handler_and_fail_listener(tmp_path: Path) -> None:
    clock = fake_clock()
    agenda = make_agenda(tmp_path, clock)
    failures: list[tuple[BaseException, str, Any]] = []
    failed = asyncio.Event()
    handled_in: list[str] = []

    def boom(job: Job[Any]) -> None:  # plain def: runs in a worker thread
        handled_in.append(threading.current_thread().name)
        raise ValueError(f"kaput {job.attrs.data['n']}")

    def on_fail(error: BaseException, job: Job[Any]) -> None:
        failures.append((error, job.attrs.name, job.attrs.data))
        failed.set()

    agenda.define("boom", boom)
    agenda.on("fail", on_fail)
    job = await agenda.now("boom", {"n": 1})
    await agenda.start()
    await asyncio.wait_for(failed.wait(), 30)
    await agenda.drain(timeout="30 seconds")

    assert len(failures) == 1
    error, name, data = failures[0]
    assert isinstance(error, ValueError)
    assert (str(error), name, data) == ("kaput 1", "boom", {"n": 1})
    assert handled_in
    assert handled_in[0] != threading.main_thread().name
    result = await agenda.query_jobs(JobsQueryOptions(name="boom", state="failed"))
    assert [(j.id, j.fail_reason, j.fail_count) for j in result.jobs] == [
        (job.attrs.id, "kaput 1", 1)
    ]
    await agenda.stop()


async def test_drain_waits_for_the_running_job(tmp_path: Path) -> None:
    clock = fake_clock()
    agenda = make_agenda(tmp_path, clock)
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[Any] = []

    @agenda.define("slow", concurrency=1)
    async def slow(job: Job[Any]) -> None:
        started.set()
        await release.wait()
        finished.append(job.attrs.data)

    await agenda.now("slow", {"n": 1})
    await agenda.start()
    await asyncio.wait_for(started.wait(), 30)
    draining = asyncio.ensure_future(agenda.drain(timeout="30 seconds"))
    await asyncio.sleep(0)
    assert not draining.done()
    release.set()
    result = await asyncio.wait_for(draining, 30)
    assert isinstance(result, DrainResult)
    assert (result.completed, result.running, result.timed_out, result.aborted) == (
        1, 0, False, False,
    )
    assert finished == [{"n": 1}]
    await agenda.stop()


def test_exponential_backoff_strategy_values() -> None:
    strategy = backoff.exponential(delay=1000, max_retries=5, jitter=0.1)
    for attempt, base_delay in enumerate([1000, 2000, 4000, 8000, 16000], start=1):
        delay = strategy(
            BackoffContext(attempt=attempt, error=ValueError(), job_name="flaky", job_data=None)
        )
        assert delay is not None
        assert base_delay * 0.9 <= delay <= base_delay * 1.1, (attempt, delay)
    exhausted = BackoffContext(attempt=6, error=ValueError(), job_name="flaky", job_data=None)
    assert strategy(exhausted) is None


async def test_backoff_retries_until_success(tmp_path: Path) -> None:
    clock = fake_clock()
    agenda = make_agenda(tmp_path, clock, process_every=200)
    attempts: list[Any] = []

    async def handler(job: Job[Any]) -> None:
        attempts.append(job.attrs.data)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)}")

    agenda.define(
        "flaky", handler, backoff=backoff.exponential(delay=1000, max_retries=5, jitter=0.1)
    )
    recorder = EventRecorder(agenda)
    retries: list[tuple[int, int]] = []
    agenda.on("retry", lambda job, details: retries.append((details.attempt, details.delay)))
    job = await agenda.now("flaky", {"doc": 1})
    await agenda.start()
    for count in (1, 2):
        await recorder.wait_for("retry", count)
        clock.advance(timedelta(minutes=1))
    await recorder.wait_for("success", 1)
    await agenda.drain(timeout="30 seconds")

    assert attempts == [{"doc": 1}] * 3
    assert [attempt for attempt, _ in retries] == [1, 2]
    assert 900 <= retries[0][1] <= 1100
    assert 1800 <= retries[1][1] <= 2200
    assert [e.error for e in recorder.of("fail")] == ["attempt 1", "attempt 2"]
    stored = (await agenda.query_jobs(JobsQueryOptions(id=str(job.attrs.id)))).jobs
    assert [(j.state, j.fail_count) for j in stored] == [("completed", 2)]
    await agenda.stop()


async def test_remove_on_complete(tmp_path: Path) -> None:
    clock = fake_clock()
    agenda = make_agenda(tmp_path, clock)
    ran: list[Any] = []
    agenda.define("cleanup", lambda job: ran.append(job.attrs.data), remove_on_complete=True)
    agenda.define("keep", lambda job: ran.append(job.attrs.data))
    recorder = EventRecorder(agenda)
    cleanup = await agenda.now("cleanup", {"n": 1})
    keep = await agenda.now("keep", {"n": 2})
    await agenda.start()
    await recorder.wait_for("complete", 2)
    await agenda.drain(timeout="30 seconds")

    assert sorted(ran, key=lambda d: d["n"]) == [{"n": 1}, {"n": 2}]
    assert await agenda.repository.get_job_by_id(str(cleanup.attrs.id)) is None
    assert (await agenda.query_jobs(JobsQueryOptions(name="cleanup"))).total == 0
    kept = (await agenda.query_jobs(JobsQueryOptions(name="keep"))).jobs
    assert [(j.id, j.state) for j in kept] == [(keep.attrs.id, "completed")]
    await agenda.stop()


async def test_unique_debounce_then_save(tmp_path: Path) -> None:
    clock = fake_clock()
    agenda = make_agenda(tmp_path, clock)
    ran: list[Any] = []
    agenda.define("reindex", lambda job: ran.append(job.attrs.data))
    recorder = EventRecorder(agenda)
    start = clock.now()

    job = agenda.create("reindex", {"doc": 7})
    job.unique({"data.doc": 7}).debounce(2000, max_wait=10_000, strategy="trailing")
    await job.save()
    first_id = job.attrs.id
    assert first_id is not None
    assert job.attrs.next_run_at == start + timedelta(seconds=2)

    clock.advance(1500)  # another save within the delay pushes the run back
    job = agenda.create("reindex", {"doc": 7})
    job.unique({"data.doc": 7}).debounce(2000, max_wait=10_000, strategy="trailing")
    await job.save()
    assert job.attrs.id == first_id
    assert job.attrs.next_run_at == clock.now() + timedelta(seconds=2)
    other = agenda.create("reindex", {"doc": 8})
    other.unique({"data.doc": 8}).debounce(2000, max_wait=10_000, strategy="trailing")
    await other.save()
    assert other.attrs.id != first_id

    for _ in range(6):  # saves every 1.5 s: max_wait (10 s) caps the postponement
        clock.advance(1500)
        job = agenda.create("reindex", {"doc": 7})
        job.unique({"data.doc": 7}).debounce(2000, max_wait=10_000, strategy="trailing")
        await job.save()
        assert job.attrs.id == first_id
    assert clock.now() - start == timedelta(milliseconds=10_500)
    assert job.attrs.next_run_at == clock.now()  # max_wait reached: due now

    result = await agenda.query_jobs(JobsQueryOptions(name="reindex"))
    assert result.total == 2
    await agenda.start()
    await recorder.wait_for("complete", 2)
    await agenda.drain(timeout="30 seconds")
    assert sorted(ran, key=lambda d: d["doc"]) == [{"doc": 7}, {"doc": 8}]
    await agenda.stop()


async def test_management_calls_durations_and_events(tmp_path: Path) -> None:
    clock = fake_clock()
    agenda = make_agenda(tmp_path, clock)
    events: list[tuple[Any, ...]] = []
    for event in ("ready", "start", "progress", "success", "complete"):
        agenda.on(event, lambda *args, event=event: events.append((event, *args)))

    @agenda.define("work", lock_lifetime="1 hour and 30 minutes", priority=3)
    async def work(job: Job[Any]) -> None:
        await job.touch(progress=50)

    assert agenda.definitions["work"].lock_lifetime == 5_400_000
    assert agenda.define("long", work, lock_lifetime=timedelta(days=2)).lock_lifetime == (
        2 * 24 * 3600 * 1000
    )
    iso = (clock.now() + timedelta(days=1)).isoformat()
    tomorrow = await agenda.schedule(iso, "work", {"n": 0})
    assert tomorrow.attrs.next_run_at == clock.now() + timedelta(days=1)
    assert tomorrow.attrs.priority == 3

    assert await agenda.disable(RemoveJobsOptions(name="work")) == 1
    assert (await agenda.query_jobs(JobsQueryOptions(include_disabled=False))).total == 0
    assert await agenda.enable(RemoveJobsOptions(name="work")) == 1
    assert await agenda.cancel(RemoveJobsOptions()) == 0  # empty criteria remove nothing
    assert await agenda.cancel(RemoveJobsOptions(name="work", data={})) == 0

    stray_agenda = make_agenda(tmp_path, clock)
    stray_agenda.declare("stray")
    await stray_agenda.now("stray")
    await stray_agenda.stop()
    assert await agenda.purge() == 1

    job = await agenda.now("work", {"n": 1})
    overview = await agenda.get_jobs_overview()
    assert [(o.name, o.total, o.scheduled, o.queued) for o in overview] == [("work", 2, 1, 1)]
    await agenda.start()
    stats = await agenda.get_running_stats()
    assert stats.backend["name"] == "SQLite"
    await _until(lambda: any(e[0] == "complete" for e in events))
    result = await agenda.drain(timeout=30_000)
    assert (result.running, result.timed_out) == (0, False)

    assert [e[0] for e in events] == ["ready", "start", "progress", "success", "complete"]
    assert all(e[1].attrs.id == job.attrs.id for e in events[1:])
    assert events[2][2] == 50
    stored = await agenda.repository.get_job_by_id(str(job.attrs.id))
    assert stored is not None
    assert stored.progress == 50
    assert await agenda.repository.get_job_by_id(str(tomorrow.attrs.id)) is not None
    assert await job.remove() == 1
    await agenda.stop()


# -- the one synchronous entry point ------------------------------------------------------------


def test_run_sync_from_plain_code_on_sqlite(tmp_path: Path) -> None:
    agenda = Agenda(backend=SQLiteBackend(path=str(tmp_path / "jobs.db")), process_every=100)
    handled = threading.Event()
    seen: list[Any] = []

    def send_email(job: Job[Any]) -> None:
        seen.append(job.attrs.data)
        handled.set()

    agenda.define("send-email", send_email)
    job = run_sync(agenda.now("send-email", {"to": "a@b.c"}))
    assert isinstance(job, Job)
    assert job.attrs.id is not None
    queued = run_sync(agenda.query_jobs(JobsQueryOptions(name="send-email")))
    assert [(j.id, j.data) for j in queued.jobs] == [(job.attrs.id, {"to": "a@b.c"})]

    with pytest.raises(UnknownJobError):
        run_sync(agenda.now("no-such-job"))

    run_sync(agenda.start())
    assert handled.wait(30)
    result = run_sync(agenda.drain(timeout="30 seconds"))
    assert (result.running, result.timed_out) == (0, False)
    assert seen == [{"to": "a@b.c"}]
    done = run_sync(agenda.query_jobs(JobsQueryOptions(name="send-email", state="completed")))
    assert [j.id for j in done.jobs] == [job.attrs.id]
    run_sync(agenda.stop())


async def test_run_sync_refuses_inside_an_event_loop(tmp_path: Path) -> None:
    agenda = Agenda(backend=SQLiteBackend(path=str(tmp_path / "jobs.db")))
    agenda.declare("x")
    with pytest.raises(RuntimeError, match="await the coroutine instead"):
        run_sync(agenda.now("x"))


# -- helpers -----------------------------------------------------------------------------------


async def _until(condition: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
