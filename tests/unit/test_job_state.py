from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agenda_decl import JobParameters, JobsQueryOptions, compute_job_state, to_job_id

NOW = datetime(2026, 2, 8, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"locked_at": NOW, "failed_at": NOW}, "running"),
        ({"failed_at": NOW, "last_finished_at": NOW}, "failed"),
        ({"failed_at": NOW}, "failed"),
        ({"failed_at": NOW - HOUR, "last_finished_at": NOW}, "completed"),
        ({"last_finished_at": NOW}, "completed"),
        ({"repeat_interval": "5 minutes"}, "repeating"),
        ({"repeat_at": "3:30pm", "next_run_at": NOW + HOUR}, "repeating"),
        ({"repeat_at": "3:30pm", "next_run_at": NOW - HOUR, "disabled": True}, "repeating"),
        ({"repeat_at": "", "next_run_at": NOW + HOUR}, "scheduled"),
        ({"repeat_interval": "5 minutes", "failed_at": NOW}, "failed"),
        ({"repeat_interval": "5 minutes", "failed_at": NOW - HOUR, "last_finished_at": NOW},
         "repeating"),
        ({"next_run_at": NOW + HOUR}, "scheduled"),
        ({"next_run_at": NOW}, "queued"),
        ({"next_run_at": NOW - HOUR}, "queued"),
        ({"next_run_at": NOW - HOUR, "disabled": True}, "queued"),
        ({}, "completed"),
    ],
)
def test_compute_job_state(fields: dict[str, Any], state: str) -> None:
    assert compute_job_state(JobParameters(name="j", **fields), NOW) == state


def test_query_options_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="'size'"):
        JobsQueryOptions(sort={"size": "asc"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'sideways'"):
        JobsQueryOptions(sort={"name": "sideways"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'sleeping'"):
        JobsQueryOptions(state="sleeping")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        JobsQueryOptions(limit=-1)


def test_job_ids() -> None:
    assert to_job_id("abc") == "abc"
    with pytest.raises(ValueError, match="''"):
        to_job_id("")
