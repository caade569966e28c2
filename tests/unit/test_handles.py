"""The runtime of generated handles (``agenda_decl.handles``) on the in-memory backend: what
``now``/``schedule``/``every`` store, ``payload(job)`` reading it back typed, refusals, and the
lazily loaded config."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agenda_decl import Agenda, ConfigAgenda, JobHandle, JobsQueryOptions
from agenda_decl.config import PayloadError, check_payload, load_config
from agenda_decl.errors import BatchItemError
from agenda_decl.testing import InMemoryBackend
from tests.unit.codegen_case import import_generated

DUE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def jobs(tmp_path: Path) -> ModuleType:
    """The generated module of the every-type case, imported."""
    return import_generated(tmp_path)


@pytest.fixture
async def agenda(tmp_path: Path, jobs: ModuleType) -> AsyncIterator[Agenda]:
    """An in-memory Agenda declaring the case's jobs with their payload checks (as
    ``build_agenda`` does), bound to every handle of the module."""
    config = load_config(tmp_path / "agenda.yaml")
    agenda = Agenda(InMemoryBackend())
    for name, job in config.jobs.items():
        agenda.declare(name, validate_data=functools.partial(
            check_payload, name, job, path=f"{name}.data", base_dir=tmp_path))
    jobs.CONFIG.bind(agenda)
    yield agenda
    await agenda.stop()


def invoice(jobs: ModuleType, **changes: Any) -> Any:
    values: dict[str, Any] = {"customer_id": 7, "amount": 12.5, "due": DUE, "lines": [1, 2]}
    return jobs.SendInvoicePayload(**{**values, **changes})


async def stored(agenda: Agenda, name: str) -> list[Any]:
    result = await agenda.query_jobs(JobsQueryOptions(name=name))
    return [job.data for job in result.jobs]


STORED_INVOICE = {
    "customer_id": 7, "amount": 12.5, "paid": False, "due": "2026-12-01T09:30:00.000Z",
    "reminder_at": "2026-12-01T09:00:00.000+02:00", "day": "2026-01-31", "currency": "EUR",
    "copies": 1, "tags": ["vip", "b2b"], "lines": [1, 2], "note": None, "channel": None,
    "holidays": None, "fee": 1.0, "level": "aaaaaaaaaaaaaaaaaa",
}  # fmt: skip


async def test_now_stores_what_a_plain_now_stores(agenda: Agenda, jobs: ModuleType) -> None:
    job = await jobs.send_invoice.now(invoice(jobs))
    plain = await agenda.now("send-invoice", {"customer_id": 7, "amount": 12.5,
                                              "due": "2026-12-01T09:30:00Z", "lines": [1, 2]})
    assert job.attrs.data == plain.attrs.data == STORED_INVOICE
    assert await stored(agenda, "send-invoice") == [STORED_INVOICE, STORED_INVOICE]


async def test_schedule_and_every(agenda: Agenda, jobs: ModuleType) -> None:
    later = await jobs.send_invoice.schedule(DUE, invoice(jobs, currency="USD"))
    assert later.attrs.next_run_at == DUE
    assert later.attrs.data["currency"] == "USD"
    report = jobs.Report(month=3, since=date(2026, 3, 1))
    repeating = await jobs.monthly_report.every("1 day", report, timezone="Europe/Berlin")
    assert repeating.attrs.repeat_interval == "1 day"
    assert repeating.attrs.repeat_timezone == "Europe/Berlin"
    assert await stored(agenda, "monthly-report") == [{"month": 3, "since": "2026-03-01"}]


async def test_payload_round_trips_every_type(agenda: Agenda, jobs: ModuleType) -> None:
    sent = invoice(jobs, note="hi", channel="sms", holidays=[date(2026, 12, 24)],
                   reminder_at=datetime(2026, 11, 30, 8, 0, 0, 123000, tzinfo=UTC))
    job = await jobs.send_invoice.now(sent)
    (found,) = (await agenda.query_jobs(JobsQueryOptions(id=job.attrs.id))).jobs
    assert jobs.send_invoice.payload(job) == sent
    assert jobs.send_invoice.payload(agenda.create("send-invoice", found.data)) == sent


async def test_a_datetime_reads_back_equal_with_its_offset_and_microseconds(
    agenda: Agenda, jobs: ModuleType
) -> None:
    due = datetime(2026, 12, 1, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    job = await jobs.send_invoice.now(invoice(jobs, due=due))
    assert job.attrs.data["due"] == "2026-12-01T10:30:00.123456+02:00"
    (found,) = (await agenda.query_jobs(JobsQueryOptions(id=job.attrs.id))).jobs
    back = jobs.send_invoice.payload(agenda.create("send-invoice", found.data)).due
    assert (back, back.utcoffset(), back.microsecond) == (due, timedelta(hours=2), 123456)
    assert jobs.send_invoice.payload(job) == invoice(jobs, due=due)


async def test_class_payloads_and_plain_dicts(agenda: Agenda, jobs: ModuleType) -> None:
    report = jobs.Report(month=1)
    job = await jobs.yearly_report.now(report)
    assert jobs.yearly_report.payload(job) == report
    raw = await jobs.raw_data.now({"when": DUE, "n": [1]})
    assert raw.attrs.data == {"when": "2026-12-01T09:30:00.000Z", "n": [1]}
    assert jobs.raw_data.payload(raw) == raw.attrs.data
    assert jobs.class_job.payload(await jobs.class_job.now(jobs.ClassPayload())) == \
        jobs.ClassPayload()


async def test_bad_data_is_refused_and_nothing_stored(agenda: Agenda, jobs: ModuleType) -> None:
    with pytest.raises(PayloadError, match=r"send-invoice\.data\.currency: expected one of"):
        await jobs.send_invoice.now(invoice(jobs, currency="GBP"))
    with pytest.raises(PayloadError, match="naive"):
        await jobs.send_invoice.now(invoice(jobs, due=datetime(2026, 1, 1)))
    with pytest.raises(TypeError, match="takes a SendInvoicePayload payload, got Report"):
        await jobs.send_invoice.now(jobs.Report(month=1))
    assert await stored(agenda, "send-invoice") == []


async def test_now_many_stores_what_now_stores(agenda: Agenda, jobs: ModuleType) -> None:
    saved = await jobs.send_invoice.now_many([invoice(jobs), invoice(jobs, currency="USD")])
    assert [job.attrs.data for job in saved] == [
        STORED_INVOICE, {**STORED_INVOICE, "currency": "USD"}]
    assert all(job.attrs.id for job in saved)
    # the store lists by next run, and a batch's jobs may straddle a millisecond: compare as sets
    assert sorted(map(json.dumps, await stored(agenda, "send-invoice"))) == sorted(
        json.dumps(job.attrs.data) for job in saved)
    assert await jobs.send_invoice.now_many([]) == []


async def test_now_many_refuses_a_bad_payload_naming_its_index_and_stores_nothing(
    agenda: Agenda, jobs: ModuleType
) -> None:
    good = invoice(jobs)
    with pytest.raises(BatchItemError, match=r"item \[2\] of the batch: send-invoice\.data\."
                       r"currency: expected one of .*got 'GBP'") as raised:
        await jobs.send_invoice.now_many([good, good, invoice(jobs, currency="GBP"), good])
    assert raised.value.index == 2
    assert isinstance(raised.value.cause, PayloadError)
    with pytest.raises(BatchItemError, match=r"item \[1\] of the batch: .*takes a "
                       r"SendInvoicePayload payload, got Report"):
        await jobs.send_invoice.now_many([good, jobs.Report(month=1)])
    assert await stored(agenda, "send-invoice") == []


async def test_payload_of_another_job_is_refused(agenda: Agenda, jobs: ModuleType) -> None:
    job = await jobs.raw_data.now({})
    with pytest.raises(ValueError, match="job 'raw-data' is not a 'send-invoice' job"):
        jobs.send_invoice.payload(job)


async def test_the_ownership_marker_is_left_out(agenda: Agenda, jobs: ModuleType) -> None:
    job = agenda.create("monthly-report", {"month": 2}, validate=False)
    job.attrs.data["__managed_by__"] = "someone"
    assert jobs.monthly_report.payload(job) == jobs.Report(month=2)


async def test_bind_gives_a_handle_of_another_agenda(agenda: Agenda, jobs: ModuleType) -> None:
    other = Agenda(InMemoryBackend())
    other.declare("raw-data")
    bound = jobs.raw_data.bind(other)
    await bound.now({"x": 1})
    assert await stored(other, "raw-data") == [{"x": 1}]
    assert await stored(agenda, "raw-data") == []
    await other.stop()


async def test_handles_load_their_config_once_on_first_use(
    tmp_path: Path, jobs: ModuleType
) -> None:
    source = ConfigAgenda(tmp_path / "agenda.yaml")
    handle = JobHandle("raw-data", dict[str, Any], config=source)
    assert source._agenda is None  # nothing loaded at import time
    job = await handle.now({"k": "v"})
    assert source.agenda is handle.agenda
    assert job.attrs.data == {"k": "v"}
    await source.agenda.stop()
    assert (tmp_path / "jobs.db").is_file()  # the config's SQLite file, beside it


def test_a_handle_without_agenda_says_so() -> None:
    with pytest.raises(RuntimeError, match="has no Agenda: bind"):
        JobHandle("x", dict[str, Any]).agenda  # noqa: B018
