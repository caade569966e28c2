"""The scheduler facade on the in-memory backend: definitions, builders, events, sync use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agenda_decl import (
    Agenda,
    AgendaError,
    InMemoryNotificationChannel,
    InvalidOptionError,
    Job,
    JobId,
    JobStateNotification,
    backoff,
    run_sync,
)
from agenda_decl._group_commit import GroupCommit
from agenda_decl.errors import BackendUnavailableError, StateWriteError
from agenda_decl.notifications.base import ReconnectOptions
from agenda_decl.runtime import channel_link
from agenda_decl.runtime.events import RemoteJob
from agenda_decl.testing import EventRecorder, FakeClock, InMemoryBackend, InMemoryJobRepository

START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def make(**options: Any) -> Agenda:
    options.setdefault("clock", FakeClock(START))
    return Agenda(InMemoryBackend(), **options)


def test_defaults() -> None:
    agenda = make()
    assert (agenda.process_every, agenda.max_concurrency, agenda.default_concurrency) == (
        5000, 20, 5,
    )
    assert (agenda.lock_limit, agenda.default_lock_limit, agenda.default_lock_lifetime) == (
        0, 0, 600_000,
    )
    assert make(process_every="3 minutes").process_every == 180_000
    assert make(process_every=1000).process_every == 1000
    assert make(process_every=timedelta(seconds=2)).process_every == 2000


def test_definitions_take_the_defaults() -> None:
    agenda = make(default_concurrency=1, default_lock_limit=6, default_lock_lifetime=7777)
    definition = agenda.define("job", lambda job: None)
    assert (definition.concurrency, definition.lock_limit, definition.lock_lifetime) == (1, 6, 7777)
    assert definition.priority == 0
    assert agenda.define("p", lambda job: None, priority=5).priority == 5
    assert agenda.define("h", lambda job: None, priority="high").priority == 10
    assert agenda.define("l", lambda job: None, lock_lifetime="2 minutes").lock_lifetime == 120_000


def test_define_as_a_decorator() -> None:
    agenda = make()

    @agenda.define("resize", concurrency=2)
    async def resize(job: Job[Any]) -> None: ...

    assert agenda.definitions["resize"].handler is resize
    assert agenda.definitions["resize"].concurrency == 2


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"max_concurrency": 0}, "max_concurrency: 0"),
        ({"default_concurrency": -1}, "default_concurrency: -1"),
        ({"lock_limit": -5}, "lock_limit: -5"),
        ({"process_every": 0}, "process_every: 0"),
    ],
)
def test_bad_options_name_the_value(options: dict[str, Any], bad: str) -> None:
    with pytest.raises(InvalidOptionError, match=bad):
        make(**options)


def test_job_builders() -> None:
    agenda = make()
    agenda.define("j", lambda job: None)
    job = agenda.create("j", {"k": 1})
    assert job.repeat_at("3:30pm") is job
    assert job.attrs.repeat_at == "3:30pm"
    job.repeat_every("0 6 * * *", timezone="America/New_York")
    assert (job.attrs.repeat_interval, job.attrs.repeat_timezone) == (
        "0 6 * * *", "America/New_York",
    )
    assert job.attrs.next_run_at == datetime(2026, 1, 6, 11, 0, tzinfo=UTC)  # next 06:00 EST
    job.repeat_every("5 minutes")
    assert job.attrs.next_run_at == START
    job.repeat_every("5 minutes", skip_immediate=True)
    assert job.attrs.next_run_at == START + timedelta(minutes=5)
    assert job.schedule("in 5 minutes").attrs.next_run_at == START + timedelta(minutes=5)
    assert job.disable().attrs.disabled is True
    assert job.enable().attrs.disabled is False
    assert job.priority("lowest").attrs.priority == -20


def test_fail_records_the_reason() -> None:
    agenda = make()
    agenda.define("j", lambda job: None)
    job = agenda.create("j").fail(ValueError("Test error"))
    assert (job.attrs.fail_reason, job.attrs.fail_count) == ("Test error", 1)
    assert job.attrs.failed_at == job.attrs.last_finished_at == START
    assert job.fail("String error").attrs.fail_count == 2


def test_skip_days_and_dates_are_checked() -> None:
    agenda = make()
    agenda.define("j", lambda job: None)
    job = agenda.create("j")
    assert job.skip_days([6, 0, 6]).attrs.skip_days == [0, 6]
    with pytest.raises(InvalidOptionError, match="Invalid skip day: 9"):
        job.skip_days([9])
    job.start_date("2026-02-01T00:00:00Z").schedule(START)
    assert job.attrs.next_run_at == datetime(2026, 2, 2, tzinfo=UTC)  # Feb 1 is a Sunday


async def test_touch_after_abandon_run_raises() -> None:
    agenda = make()
    agenda.define("j", lambda job: None)
    job = await agenda.now("j")
    job.abandon_run("lock expired")
    with pytest.raises(AgendaError, match="got canceled already: lock expired"):
        await job.touch()


async def test_running_stats_need_a_started_agenda() -> None:
    agenda = make()
    with pytest.raises(AgendaError, match="agenda not running"):
        await agenda.get_running_stats()


async def test_remote_state_events_are_re_emitted_but_not_our_own() -> None:
    channel = InMemoryNotificationChannel()
    agenda = Agenda(InMemoryBackend(notifications=False), notification_channel=channel,
                    name="test-agenda")
    seen: list[tuple[str, Any, Any]] = []
    agenda.on("success", lambda job: seen.append(("success", job.attrs.name,
                                                  isinstance(job, RemoteJob))))
    agenda.on("success:report", lambda job: seen.append(("success:report", job.attrs.name,
                                                         isinstance(job, RemoteJob))))
    await agenda.ready()
    for source in ("other-agenda", "test-agenda"):
        await channel.publish_state(JobStateNotification(
            type="success", job_id=JobId("1"), job_name="report", timestamp=START, source=source,
        ))
    assert seen == [("success", "report", True), ("success:report", "report", True)]
    await agenda.stop()
    assert channel.state == "disconnected"


class _UnsendableStates(InMemoryNotificationChannel):
    """Queues state notifications like the PostgreSQL and Redis channels, into a store that
    is down."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0
        self.outbox: GroupCommit[JobStateNotification, None] = GroupCommit(self._send)

    async def _send(self, batch: list[JobStateNotification]) -> list[None]:
        self.batches += 1
        raise ConnectionError("notification store down")

    def publish_state_soon(
        self, notification: JobStateNotification, on_failure: Callable[[Exception], None]
    ) -> bool:
        self.outbox.submit_detached(notification, on_failure)
        return True


async def test_state_notifications_that_cannot_be_sent_are_one_error_per_batch() -> None:
    channel = _UnsendableStates()
    agenda = Agenda(InMemoryBackend(notifications=False), notification_channel=channel,
                    clock=FakeClock(START), process_every="1 second")
    errors: list[str] = []
    agenda.on("error", lambda error: errors.append(str(error)))
    ran: list[int] = []
    agenda.define("work", lambda job: ran.append(job.attrs.data))
    await agenda.start()
    await agenda.now_many("work", [1, 2, 3])
    async with asyncio.timeout(5):
        while len(ran) < 3 or channel.outbox:
            await asyncio.sleep(0.01)
    await agenda.stop()
    await asyncio.sleep(0)  # errors are emitted soon, not at once
    assert sorted(ran) == [1, 2, 3]  # best effort: the jobs ran regardless
    assert channel.batches >= 1
    assert errors == ["notification store down"] * channel.batches


async def test_state_notifications_are_taken_only_while_a_state_event_is_listened_to() -> None:
    channel = InMemoryNotificationChannel()
    agenda = Agenda(InMemoryBackend(notifications=False), notification_channel=channel)
    seen: list[str] = []

    async def publish(kind: Any) -> None:
        await channel.publish_state(JobStateNotification(
            type=kind, job_id=JobId("1"), job_name="report", timestamp=START, source="other",
        ))

    agenda.on("error", lambda error: None)  # not a state event
    await agenda.ready()
    await publish("start")
    assert channel._state_handlers == []

    def listener(job: RemoteJob) -> None:
        seen.append(job.notification.type)

    agenda.on("complete:report", listener)  # added while connected: taken at once
    await publish("complete")
    agenda.off("complete:report", listener)
    assert channel._state_handlers == []
    await publish("complete")
    assert seen == ["complete"]
    await agenda.stop()


async def test_job_notifications_are_taken_only_while_processing() -> None:
    """An agenda that only enqueues decodes no job notification (its own among them)."""
    channel = InMemoryNotificationChannel()
    agenda = Agenda(InMemoryBackend(notifications=False), notification_channel=channel,
                    process_every="1 minute")
    ran = asyncio.Event()
    agenda.define("report", lambda job: ran.set())
    await agenda.ready()
    await agenda.now("report")
    assert channel._handlers == []
    await agenda.start()  # claims what the first poll finds, then only a notification wakes it
    await asyncio.wait_for(ran.wait(), 5)
    ran.clear()
    await agenda.now("report")
    await asyncio.wait_for(ran.wait(), 5)
    await agenda.stop()
    assert channel._handlers == []


async def test_events_reach_another_agenda_on_the_same_channel() -> None:
    channel = InMemoryNotificationChannel()
    backend = InMemoryBackend(notifications=False)
    worker = Agenda(backend, notification_channel=channel, process_every="50 ms")
    watcher = Agenda(backend, notification_channel=channel)
    worker.define("report", lambda job: None)
    watcher.declare("report")
    remote: list[str] = []
    done = asyncio.Event()
    watcher.on("complete:report", lambda job: (remote.append(job.notification.type), done.set()))
    recorder = EventRecorder(worker)
    await watcher.ready()
    await worker.start()
    await watcher.now("report")
    await asyncio.wait_for(done.wait(), 5)
    await recorder.wait_for("complete")
    assert remote == ["complete"]
    await worker.stop()


async def test_relayed_events_have_the_local_argument_shapes() -> None:
    channel = InMemoryNotificationChannel()
    backend = InMemoryBackend(notifications=False)
    worker = Agenda(backend, notification_channel=channel, process_every="50 ms")
    watcher = Agenda(backend, notification_channel=channel)
    calls = {"n": 0}

    def flaky(job: Job[Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first try fails")

    worker.define("flaky", flaky, backoff=backoff.constant(delay=10, max_retries=2))
    watcher.declare("flaky")
    heard: list[tuple[Any, ...]] = []
    done = asyncio.Event()
    watcher.on("fail:flaky", lambda *args: heard.append(("fail", *args)))
    watcher.on("retry:flaky", lambda *args: heard.append(("retry", *args)))
    watcher.on("success:flaky", lambda *args: (heard.append(("success", *args)), done.set()))
    await watcher.ready()
    await worker.start()
    await watcher.now("flaky")
    await asyncio.wait_for(done.wait(), 5)
    await worker.stop()
    (fail, retry, success) = heard
    # fail(error, job), retry(job, details), success(job), as for a job run here
    assert len(fail) == 3 and str(fail[1]) == "first try fails"
    assert isinstance(fail[1], AgendaError) and isinstance(fail[2], RemoteJob)
    assert (fail[2].attrs.name, fail[2].attrs.fail_count) == ("flaky", 1)
    assert fail[2].notification.type == "fail"
    assert len(retry) == 3 and retry[1].notification.type == "retry"
    assert (retry[2].attempt, str(retry[2].error)) == (1, "first try fails")
    assert len(success) == 2 and success[1].notification.duration is not None


class OutageChannel(InMemoryNotificationChannel):
    """Cannot connect while ``down``; gives up after one reconnect attempt."""

    def __init__(self) -> None:
        super().__init__(reconnect=ReconnectOptions(max_attempts=1, initial_delay=1, jitter=0))
        self.down = True

    async def _open(self) -> None:
        if self.down:
            raise ConnectionError("notification server down")


async def test_a_channel_that_gave_up_is_tried_again_by_the_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channel_link, "CHANNEL_RETRY_SECONDS", 0.05)
    channel = OutageChannel()
    agenda = Agenda(InMemoryBackend(notifications=False), notification_channel=channel,
                    process_every="20 ms")
    errors: list[BaseException] = []
    agenda.on("error", errors.append)
    agenda.define("tick", lambda job: None)
    await agenda.start()
    async with asyncio.timeout(5):
        while "Max reconnection attempts reached" not in map(str, errors):
            await asyncio.sleep(0.01)
    assert channel.state == "error"
    assert "notification server down" in map(str, errors)  # channel errors reach the agenda
    channel.down = False
    async with asyncio.timeout(5):
        while channel.state != "connected":
            await asyncio.sleep(0.01)
    await agenda.stop()


class SlowClaims(InMemoryJobRepository):
    """Claims that take a while, counting how many of one name are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.most_in_flight = 0

    async def get_next_jobs_to_run(self, *args: Any, **kwargs: Any) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.005)
            return await super().get_next_jobs_to_run(*args, **kwargs)
        finally:
            self.in_flight -= 1


async def test_one_claim_per_name_at_a_time_while_polls_and_wakes_overlap() -> None:
    backend = InMemoryBackend()
    backend._repository = repository = SlowClaims()
    agenda = Agenda(backend, process_every="10 ms")
    ran: list[int] = []
    agenda.define("fifo", lambda job: ran.append(job.attrs.data["i"]), concurrency=1)
    producer = Agenda(backend)  # another process, as far as notifications go
    producer.declare("fifo")
    await agenda.start()
    for i in range(60):  # every save wakes the worker while its polls keep coming
        await producer.now("fifo", {"i": i})
        await asyncio.sleep(0.002)
    async with asyncio.timeout(10):
        while len(ran) < 60:
            await asyncio.sleep(0.01)
    await agenda.stop()
    await producer.stop()
    assert repository.most_in_flight == 1
    assert ran == list(range(60))


async def test_a_trickle_of_jobs_costs_one_claim_each() -> None:
    backend = InMemoryBackend()
    backend._repository = repository = CountingClaims()
    worker = Agenda(backend, process_every="1 hour")  # only notifications wake it
    done = asyncio.Event()
    worker.define("trickle", lambda job: None)
    worker.on("complete:trickle", lambda job: done.set())
    producer = Agenda(backend)
    producer.declare("trickle")
    await worker.start()
    claims_at_start = repository.claims
    for _ in range(5):
        done.clear()
        await producer.now("trickle")
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.01)  # room for a claim after the run, if one were made
    await worker.stop()
    await producer.stop()
    assert repository.claims - claims_at_start == 5


async def test_a_repeating_job_due_within_the_poll_window_is_claimed_after_its_run() -> None:
    agenda = Agenda(InMemoryBackend(), process_every="1 hour")
    recorder = EventRecorder(agenda)
    agenda.define("tick", lambda job: None)
    await agenda.every(100, "tick")  # every 100 ms, far inside the hour between polls
    await agenda.start()
    await recorder.wait_for("complete", 3, timeout=5)
    await agenda.stop()


class CountingClaims(InMemoryJobRepository):
    def __init__(self) -> None:
        super().__init__()
        self.claims = 0

    async def get_next_jobs_to_run(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        return await super().get_next_jobs_to_run(*args, **kwargs)


async def test_a_short_run_is_stored_by_one_write_and_its_failure_reported_once() -> None:
    """A run that ends before its start write went out is stored by one write (the end's
    state, fenced like the start write), and when that write fails the run reports one
    ``error`` (the end state not stored) and no ``success``, not a second for the start."""
    agenda = make()
    repository = agenda.repository
    writes: list[list[Any]] = []
    errors: list[BaseException] = []
    agenda.on("error", errors.append)
    saved = repository.save_job_states

    async def failing(jobs: Any, **options: Any) -> Any:
        writes.append([(job.last_run_at, job.last_finished_at) for job in jobs])
        raise BackendUnavailableError("the store is down")

    agenda.define("quick", _no_op)
    job = await agenda.now("quick")
    events = EventRecorder(agenda)
    repository.save_job_states = failing  # type: ignore[method-assign]
    await job.run()
    assert [e.event for e in events.events] == ["start", "complete"]
    ((state,),) = writes  # one write, with the whole run: started and finished
    assert state[0] is not None and state[1] is not None
    (error,) = errors
    assert isinstance(error, StateWriteError) and "end state" in str(error)
    repository.save_job_states = saved  # type: ignore[method-assign]
    await job.run()
    after = await repository.get_job_by_id(job.attrs.id or "")
    assert after is not None and after.last_finished_at is not None


async def _no_op(job: Job[Any]) -> None:
    """An async handler that returns at once (its run ends before any write goes out)."""


def test_run_sync_from_plain_code() -> None:
    agenda = Agenda(InMemoryBackend())
    agenda.declare("send-email")
    job = run_sync(agenda.now("send-email", {"to": "a@b.c"}))
    assert job.attrs.id is not None
    result = run_sync(agenda.query_jobs(name="send-email"))
    assert [j.data for j in result.jobs] == [{"to": "a@b.c"}]


async def test_run_sync_refuses_to_block_a_running_loop() -> None:
    agenda = Agenda(InMemoryBackend())
    with pytest.raises(RuntimeError, match="await the coroutine instead"):
        run_sync(agenda.purge())
