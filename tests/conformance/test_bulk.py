"""Bulk enqueue on every backend (``Agenda.now_many``, ``Agenda.save_many`` and the store's
``insert_jobs``): which jobs are stored, with what data, that they run once each, that a bad
item stores nothing of the batch, and that a batch is announced once per job name."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import pytest

from agenda_decl import (
    Agenda,
    BatchItemError,
    InMemoryNotificationChannel,
    InvalidOptionError,
    Job,
    JobNotification,
    JobParameters,
    JobsQueryOptions,
)
from agenda_decl._clock import utcnow
from agenda_decl.backends import base
from agenda_decl.interfaces import AgendaBackend, JobRepository, NotificationChannel
from tests.conformance.conftest import MakeAgenda

pytestmark = pytest.mark.asyncio


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    """Batches of 3 jobs, so that a few jobs make several batches."""
    monkeypatch.setattr(base, "INSERT_BATCH", 3)
    return 3


def amount_check(data: Any) -> Any:
    """A declared payload in miniature: ``amount`` must be an int; ``currency`` defaults."""
    amount = data.get("amount") if isinstance(data, dict) else None
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidOptionError(f"data.amount: expected an int, got {amount!r}")
    return {"currency": "EUR", **data}


async def stored_data(agenda: Agenda, name: str) -> list[Any]:
    result = await agenda.query_jobs(JobsQueryOptions(name=name, sort={"next_run_at": "asc"}))
    return [job.data for job in result.jobs]


async def stored_ids(agenda: Agenda) -> set[str]:
    return {str(job.id) for job in (await agenda.query_jobs()).jobs}


def with_channel(backend: AgendaBackend, make_agenda: MakeAgenda, **options: Any) -> Agenda:
    """An Agenda with a notification channel: the store's own, else an in-memory one."""
    if backend.notification_channel is None:
        options["notification_channel"] = InMemoryNotificationChannel()
    return make_agenda(**options)


class Heard:
    """The job notifications a channel delivers, and a marker to know they all arrived."""

    def __init__(self, channel: NotificationChannel) -> None:
        self.notes: list[JobNotification] = []
        self._changed = asyncio.Event()
        channel.subscribe(self._on)

    def _on(self, note: JobNotification) -> None:
        self.notes.append(note)
        self._changed.set()

    async def until(self, name: str) -> list[JobNotification]:
        """Everything heard up to the notification of a job called ``name`` (a channel
        delivers in publishing order, so what was published before it has arrived)."""
        async with asyncio.timeout(10):
            while not any(note.job_name == name for note in self.notes):
                self._changed.clear()
                await self._changed.wait()
        return [note for note in self.notes if note.job_name != name]


# -- what is stored ------------------------------------------------------------------------


async def test_now_many_stores_every_item_with_its_data_in_order(
    make_agenda: MakeAgenda, small_batches: int
) -> None:
    agenda = make_agenda()
    agenda.declare("pay", validate_data=amount_check)
    items = [{"amount": n} for n in range(8)]
    jobs = await agenda.now_many("pay", items)
    assert [job.attrs.data for job in jobs] == [{"currency": "EUR", "amount": n}
                                                for n in range(8)]
    assert len({job.attrs.id for job in jobs}) == 8
    assert await stored_ids(agenda) == {str(job.attrs.id) for job in jobs}
    result = await agenda.query_jobs(JobsQueryOptions(name="pay"))
    assert {str(job.id): job.data for job in result.jobs} == {
        str(job.attrs.id): job.attrs.data for job in jobs}
    assert all(job.state == "queued" for job in result.jobs)
    assert await agenda.now_many("pay", []) == []


async def test_save_many_keeps_what_each_job_was_given(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.declare("a")
    agenda.declare("b")
    later = agenda.create("b", {"k": 2}).schedule("in 5 minutes").priority("high")
    plain = agenda.create("a", None)
    saved = await agenda.save_many([plain, later])
    assert saved == [plain, later]
    stored = {str(job.id): job for job in (await agenda.query_jobs()).jobs}
    assert stored[str(later.attrs.id)].priority == later.attrs.priority == 10
    assert stored[str(later.attrs.id)].next_run_at == later.attrs.next_run_at
    assert stored[str(later.attrs.id)].state == "scheduled"
    assert stored[str(plain.attrs.id)].data is None
    assert stored[str(plain.attrs.id)].name == "a"


async def test_the_jobs_run_once_each_with_their_data(
    make_agenda: MakeAgenda, small_batches: int
) -> None:
    runs: list[Any] = []
    done = asyncio.Event()

    async def handler(job: Job[Any]) -> None:
        runs.append(job.attrs.data["n"])
        if len(runs) >= 20:
            done.set()

    agenda = make_agenda(default_concurrency=4)
    agenda.define("work", handler)
    await agenda.now_many("work", [{"n": n} for n in range(20)])
    await agenda.start()
    async with asyncio.timeout(20):
        await done.wait()
    await asyncio.sleep(0.3)  # a second run would show up by now
    assert sorted(runs) == list(range(20))


async def test_a_bulk_enqueue_wakes_a_worker_at_once(
    backend: AgendaBackend, make_agenda: MakeAgenda, small_batches: int
) -> None:
    """The worker polls once a minute: only the batch's notifications can start the jobs."""
    runs: list[int] = []
    polled, done = asyncio.Event(), asyncio.Event()

    async def handler(job: Job[Any]) -> None:
        runs.append(job.attrs.data["n"])
        if len(runs) == 10:
            done.set()

    agenda = with_channel(backend, make_agenda, process_every="1 minute", default_concurrency=2)
    agenda.define("work", handler)
    agenda.on("poll", lambda report: polled.set())
    await agenda.start()
    async with asyncio.timeout(10):
        await polled.wait()
        await agenda.now_many("work", [{"n": n} for n in range(10)])
        await done.wait()
    assert sorted(runs) == list(range(10))


# -- all or nothing ------------------------------------------------------------------------


async def test_a_bad_item_names_its_index_and_stores_nothing(
    make_agenda: MakeAgenda, small_batches: int
) -> None:
    agenda = make_agenda()
    agenda.declare("pay", validate_data=amount_check)
    agenda.declare("other")
    items: list[Any] = [{"amount": n} for n in range(7)]
    items[5] = {"amount": "12"}
    with pytest.raises(BatchItemError, match=r"item \[5\] of the batch: data\.amount: "
                       r"expected an int, got '12' \(nothing of the batch was stored\)") as raised:
        await agenda.now_many("pay", items)
    assert raised.value.index == 5
    assert isinstance(raised.value.cause, InvalidOptionError)
    # Data that is not JSON is refused by the store's check, before any batch is written.
    with pytest.raises(BatchItemError, match=r"item \[4\] of the batch: data of job 'other' "
                       "is not JSON-serializable"):
        await agenda.now_many("other", [{"n": n} for n in range(4)] + [{"n": {1, 2}}])
    assert await stored_ids(agenda) == set()


async def test_single_unique_and_saved_jobs_are_refused_from_a_batch(
    make_agenda: MakeAgenda,
) -> None:
    agenda = make_agenda()
    agenda.declare("a")
    saved = await agenda.now("a", {"n": 0})
    unique = agenda.create("a", {"n": 1}).unique({"data.n": 1})
    single = agenda.create("a", {"n": 2})
    single.attrs.type = "single"
    for index, job, reason in [(1, unique, "has a unique key"), (2, single, "is a single job"),
                               (1, saved, "is saved already")]:
        batch = [agenda.create("a", {"n": 9}), agenda.create("a", {"n": 8})]
        batch.insert(index, job)
        with pytest.raises(BatchItemError, match=rf"item \[{index}\] of the batch: job 'a' "
                           f"{reason}.*save\\(\\) it alone"):
            await agenda.save_many(batch)
    assert await stored_ids(agenda) == {str(saved.attrs.id)}
    assert (await unique.save()).attrs.id is not None  # alone, it saves


async def test_a_lone_save_keeps_its_own_error(make_agenda: MakeAgenda) -> None:
    agenda = make_agenda()
    agenda.declare("a")
    with pytest.raises(InvalidOptionError, match="not JSON-serializable") as raised:
        await agenda.now("a", {"n": {1}})
    assert not isinstance(raised.value, BatchItemError)
    assert await stored_ids(agenda) == set()


# -- announcing ------------------------------------------------------------------------------


async def test_a_batch_is_announced_once_per_job_name(
    backend: AgendaBackend, make_agenda: MakeAgenda, small_batches: int
) -> None:
    agenda = with_channel(backend, make_agenda)
    for name in ("a", "b", "marker"):
        agenda.declare(name)
    await agenda.ready()
    assert agenda.channel is not None
    heard = Heard(agenda.channel)
    jobs = await agenda.now_many("a", [{"n": n} for n in range(7)])
    mixed = await agenda.save_many([agenda.create("b"), agenda.create("a"), agenda.create("b")])
    await agenda.now("marker")
    notes = await heard.until("marker")
    by_name: dict[str, list[JobNotification]] = {}
    for note in notes:
        by_name.setdefault(note.job_name, []).append(note)
    # At least one per name and call, at most one per name and batch (never one per job).
    assert 2 <= len(by_name["a"]) <= math.ceil(7 / small_batches) + 1
    assert 1 <= len(by_name["b"]) <= 1
    ids = {str(job.attrs.id) for job in [*jobs, *mixed]}
    assert {note.job_id for note in notes} <= ids
    assert str(jobs[0].attrs.id) in {note.job_id for note in by_name["a"]}
    assert all(note.source == agenda.name for note in notes)


# -- the store's insert_jobs -----------------------------------------------------------------


async def test_insert_jobs_returns_what_a_read_gives_back(
    repository: JobRepository, small_batches: int
) -> None:
    """The records ``insert_jobs`` returns (built without reading back where the store can)
    are the stored ones, field for field."""
    now = utcnow().replace(microsecond=123456)
    jobs = [
        JobParameters(name="a", data={"n": 1, "nested": {"b": [1, 2]}}, next_run_at=now),
        JobParameters(name="a", data=None, next_run_at=None, priority=-5, disabled=True),
        JobParameters(name="b", data=[1, "x"], next_run_at=now, repeat_interval=5000,
                      repeat_timezone="Europe/Berlin", skip_days=[0, 6],
                      start_date=now - timedelta(days=1), end_date=now + timedelta(days=9)),
        JobParameters(name="b", data="text", next_run_at=now, repeat_interval="5 minutes",
                      repeat_at="3:30pm", fork=True),
    ]
    stored = await repository.insert_jobs(jobs, last_modified_by="bulk")
    assert [job.name for job in stored] == ["a", "a", "b", "b"]
    for job in stored:
        assert job.id is not None
        assert job == await repository.get_job_by_id(job.id)
    assert stored[0].data == {"n": 1, "nested": {"b": [1, 2]}}
    assert stored[2].skip_days == [0, 6] and stored[3].last_modified_by == "bulk"
    assert await repository.insert_jobs([]) == []
