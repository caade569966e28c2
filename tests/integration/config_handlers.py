"""Handlers for tests/integration/test_config_build.py, imported by the config builder."""

from __future__ import annotations

from typing import Any

from agenda_decl import Job

#: The data of every run, in order.
RUNS: list[dict[str, Any]] = []


async def record(job: Job[dict[str, Any]]) -> None:
    RUNS.append(dict(job.attrs.data))
