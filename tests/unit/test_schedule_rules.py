"""One rule set for schedules: `validate` (loading a file) and `plan` (a config built in code,
on storage) accept and refuse the same schedules, with the same paths and messages, rule by
rule."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from agenda_decl import Agenda
from agenda_decl.config import ConfigError, load_config, reconcile
from agenda_decl.config.model import (
    AgendaConfig,
    BackendConfig,
    JobConfig,
    PayloadField,
    ScheduleConfig,
    SchedulerConfig,
    SQLiteStorage,
)
from agenda_decl.testing import FakeClock, InMemoryBackend

JOBS = {
    "report": JobConfig(payload={"format": PayloadField(type="str", choices=["pdf", "csv"])}),
    "cleanup": JobConfig(),
}
REPORT_DATA = {"format": "pdf"}

#: (rule, schedules, whether they are valid). Each rule appears with a case it refuses and one
#: it accepts.
CASES: list[tuple[str, list[ScheduleConfig], bool]] = [
    ("end date after the start date", [ScheduleConfig(
        job="cleanup", every="1 hour", start_date="2026-02-01", end_date="2026-02-02")], True),
    ("end date equal to the start date", [ScheduleConfig(
        job="cleanup", every="1 hour", start_date="2026-02-01", end_date="2026-02-01")], False),
    ("end date equal to the start date in another notation", [ScheduleConfig(
        job="cleanup", every="1 hour", timezone="Europe/Berlin", start_date="2026-02-01",
        end_date="2026-01-31T23:00:00Z")], False),
    ("end date before the start date", [ScheduleConfig(
        job="cleanup", every="1 hour", start_date="2026-02-02", end_date="2026-02-01")], False),
    ("a relative date", [ScheduleConfig(job="cleanup", every="1 hour",
                                        end_date="in 5 minutes")], False),
    ("every and cron", [ScheduleConfig(job="cleanup", every="1 hour", cron="0 3 * * *")],
     False),
    ("cron and at", [ScheduleConfig(job="cleanup", cron="0 3 * * *", at="3pm")], False),
    ("none of every, cron, at", [ScheduleConfig(job="cleanup")], False),
    ("only at", [ScheduleConfig(job="cleanup", at="3:30pm", timezone="America/New_York")],
     True),
    ("duplicate default keys", [ScheduleConfig(job="cleanup", every="1 hour"),
                                ScheduleConfig(job="cleanup", every="2 hours")], False),
    ("duplicate explicit keys", [ScheduleConfig(job="cleanup", key="k", every="1 hour"),
                                 ScheduleConfig(job="cleanup", key="k", cron="0 3 * * *")],
     False),
    ("one key for two jobs", [ScheduleConfig(job="cleanup", key="k", every="1 hour"),
                              ScheduleConfig(job="report", key="k", every="1 hour",
                                             data=REPORT_DATA)], True),
    ("skip_immediate with cron", [ScheduleConfig(job="cleanup", cron="0 3 * * *",
                                                 skip_immediate=True)], False),
    ("skip_immediate with at", [ScheduleConfig(job="cleanup", at="noon",
                                               skip_immediate=True)], False),
    ("skip_immediate with every", [ScheduleConfig(job="cleanup", every="1 hour",
                                                  skip_immediate=True)], True),
    ("every given a cron expression", [ScheduleConfig(job="cleanup", every="0 3 * * *")],
     False),
    ("every of zero", [ScheduleConfig(job="cleanup", every=0)], False),
    ("a bad cron expression", [ScheduleConfig(job="cleanup", cron="61 * * * *")], False),
    ("a bad time of day", [ScheduleConfig(job="cleanup", at="25:00")], False),
    ("an unknown time zone", [ScheduleConfig(job="cleanup", every="1 hour",
                                             timezone="Mars/Olympus")], False),
    ("a bad priority", [ScheduleConfig(job="cleanup", every="1 hour", priority="urgent")],
     False),
    ("bad skip days", [ScheduleConfig(job="cleanup", every="1 day",
                                      skip_days=["sat", 7, "funday"])], False),
    ("every weekday skipped", [ScheduleConfig(job="cleanup", every="1 day",
                                              skip_days=[0, 1, 2, 3, 4, 5, 6])], False),
    ("an unknown job", [ScheduleConfig(job="reprot", every="1 hour")], False),
    ("data that does not fit", [ScheduleConfig(job="report", every="1 hour",
                                               data={"format": "docx", "pages": 3})], False),
]


def in_code(schedules: list[ScheduleConfig]) -> AgendaConfig:
    return AgendaConfig(version=1, backend=BackendConfig(storage=SQLiteStorage(type="sqlite")),
                        scheduler=SchedulerConfig(name="rules"), jobs=JOBS,
                        schedules=schedules)


def as_file(schedules: list[ScheduleConfig], directory: Path) -> Path:
    def given(schedule: ScheduleConfig) -> dict[str, Any]:
        values = {field.name: getattr(schedule, field.name)
                  for field in attrs.fields(ScheduleConfig)}
        return {name: value for name, value in values.items()
                if value is not None and value is not False and value != {}}

    document = {
        "version": 1,
        "backend": {"storage": {"type": "sqlite"}},
        "scheduler": {"name": "rules"},
        "jobs": {"report": {"payload": {"format": {"type": "str", "choices": ["pdf", "csv"]}}},
                 "cleanup": {}},
        "schedules": [given(schedule) for schedule in schedules],
    }
    path = directory / "agenda.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def problems(error: ConfigError | None) -> set[tuple[str, str]]:
    return set() if error is None else {(issue.path, issue.message) for issue in error.issues}


def validate_problems(schedules: list[ScheduleConfig], directory: Path) -> set[tuple[str, str]]:
    try:
        load_config(as_file(schedules, directory), environ={}, import_payload_classes=True)
    except ConfigError as error:
        return problems(error)
    return set()


async def plan_problems(schedules: list[ScheduleConfig]) -> set[tuple[str, str]]:
    agenda = Agenda(InMemoryBackend(), clock=FakeClock(datetime(2026, 1, 5, tzinfo=UTC)))
    for name in JOBS:
        agenda.declare(name)
    try:
        await reconcile.plan(agenda, in_code(schedules))
    except ConfigError as error:
        return problems(error)
    return set()


@pytest.mark.parametrize(("schedules", "valid"), [(s, v) for _, s, v in CASES],
                         ids=[rule for rule, _, _ in CASES])
async def test_validate_and_plan_agree(
    schedules: list[ScheduleConfig], valid: bool, tmp_path: Path
) -> None:
    by_validate = validate_problems(schedules, tmp_path)
    by_plan = await plan_problems(schedules)
    assert by_validate == by_plan
    assert (not by_plan) == valid, by_plan
    assert checked_offline(schedules) == by_plan


def checked_offline(schedules: list[ScheduleConfig]) -> set[tuple[str, str]]:
    """What check_schedules finds without storage or an Agenda."""
    try:
        reconcile.check_schedules(in_code(schedules))
    except ConfigError as error:
        return problems(error)
    return set()


def test_an_end_date_must_be_after_the_start_date(tmp_path: Path) -> None:
    same = [ScheduleConfig(job="cleanup", every="1 hour", start_date="2026-02-01",
                           end_date="2026-02-01")]
    assert validate_problems(same, tmp_path) == {
        ("schedules[0].end_date",
         "end_date '2026-02-01' is not after start_date '2026-02-01'")}
