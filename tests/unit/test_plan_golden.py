"""Golden tests of the text ``agenda-decl plan`` prints: SQLite storage (its ids are
deterministic), a fixed clock, and the output compared exactly with tests/unit/golden/*.txt.

After an intended change of the format, regenerate with ``UPDATE_GOLDEN=1 pytest
tests/unit/test_plan_golden.py`` and review the diff.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest

from agenda_decl import Agenda
from agenda_decl.backends.sqlite import SQLiteBackend
from agenda_decl.backends.sqlite import repository as sqlite_repository
from agenda_decl.config import plan_output, reconcile
from agenda_decl.config.model import (
    AgendaConfig,
    BackendConfig,
    JobConfig,
    PayloadField,
    ScheduleConfig,
    SchedulerConfig,
    SQLiteStorage,
)
from agenda_decl.testing import FakeClock

GOLDEN = Path(__file__).parent / "golden"
START = datetime(2026, 3, 27, 9, 30, tzinfo=UTC)  # a Friday, two days before Europe's DST

JOBS = {
    "send-invoice": JobConfig(payload={
        "customer_id": PayloadField(type="int"),
        "amount_cents": PayloadField(type="int"),
        "currency": PayloadField(type="str", default="EUR"),
        "due": PayloadField(type="datetime | None"),
    }),
    "nightly-report": JobConfig(payload={"format": PayloadField(type="str")}),
    "cleanup": JobConfig(priority="low"),
    "digest": JobConfig(),
}
SCHEDULES = [
    ScheduleConfig(job="nightly-report", cron="0 3 * * *", timezone="Europe/Berlin",
                   data={"format": "pdf"}),
    ScheduleConfig(job="send-invoice", key="invoice-7", every="1 hour",
                   data={"customer_id": 7, "amount_cents": 900, "due": "2026-12-01T00:00:00Z"}),
    ScheduleConfig(job="cleanup", at="3:30pm", timezone="America/New_York",
                   skip_days=["sat", "sun"], start_date="2026-04-01"),
    ScheduleConfig(job="digest", every="1 day", disabled=True),
]


def config(schedules: list[ScheduleConfig]) -> AgendaConfig:
    return AgendaConfig(
        version=1,
        backend=BackendConfig(storage=SQLiteStorage(type="sqlite")),
        scheduler=SchedulerConfig(name="billing-worker"),
        jobs=JOBS,
        schedules=schedules,
    )


def changed_schedules() -> list[ScheduleConfig]:
    report, invoice, _cleanup, digest = SCHEDULES
    return [
        report,
        attrs.evolve(invoice, every="2 hours",
                     data={"customer_id": 7, "amount_cents": 1200, "currency": "USD"}),
        attrs.evolve(digest, disabled=False, priority="high"),
        ScheduleConfig(job="send-invoice", key="invoice-8", cron="*/30 9-17 * * 1-5",
                       timezone="Asia/Kolkata", data={"customer_id": 8, "amount_cents": 50}),
    ]


@pytest.fixture
async def agenda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Agenda]:
    counter = itertools.count(1)  # ids 1, 2, 3, ... instead of random ones
    monkeypatch.setattr(sqlite_repository, "uuid", SimpleNamespace(
        uuid4=lambda: SimpleNamespace(hex=str(next(counter)))))
    agenda = Agenda(SQLiteBackend(path=tmp_path / "golden.db"), clock=FakeClock(START),
                    name="golden")
    for name, job in JOBS.items():
        agenda.declare(name, priority=job.priority)
    yield agenda
    await agenda.stop()


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


async def test_plan_of_new_schedules(agenda: Agenda) -> None:
    result = await reconcile.plan(agenda, config(SCHEDULES))
    check("plan_create.txt", plan_output.format_plan(result))


async def test_plan_without_changes(agenda: Agenda) -> None:
    await reconcile.apply(agenda, config(SCHEDULES))
    assert isinstance(agenda.clock, FakeClock)
    agenda.clock.advance(timedelta(minutes=5))
    result = await reconcile.plan(agenda, config(SCHEDULES))
    check("plan_unchanged.txt", plan_output.format_plan(result))


async def test_plan_of_updates_and_an_orphan(agenda: Agenda) -> None:
    await reconcile.apply(agenda, config(SCHEDULES))
    assert isinstance(agenda.clock, FakeClock)
    agenda.clock.advance(timedelta(minutes=5))
    result = await reconcile.plan(agenda, config(changed_schedules()))
    check("plan_update.txt", plan_output.format_plan(result))


async def test_plan_with_prune(agenda: Agenda) -> None:
    await reconcile.apply(agenda, config(SCHEDULES))
    result = await reconcile.plan(agenda, config(changed_schedules()), prune=True)
    check("plan_prune.txt", plan_output.format_plan(result))
    applied = await reconcile.apply(agenda, result)
    check("apply_prune.txt", "".join(
        f"{plan_output.format_change(change)}\n" for change in applied.done
    ) + plan_output.format_apply_result(applied))


async def test_plan_with_only_an_orphan(agenda: Agenda) -> None:
    await reconcile.apply(agenda, config(SCHEDULES))
    result = await reconcile.plan(agenda, config(SCHEDULES[:3]))
    assert not result.has_changes and not result.in_sync
    check("plan_orphan.txt", plan_output.format_plan(result))
