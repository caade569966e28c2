"""What the runtime needs of the scheduler it works for. The Agenda implements
:class:`Scheduler`; the runtime never imports it."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, Protocol

from agenda_decl._model import JobParameters
from agenda_decl.job import JobOwner
from agenda_decl.runtime.events import ClaimReport, JobEvent, PollReport
from agenda_decl.runtime.job_log import JobLog


class Scheduler(JobOwner, Protocol):
    """A job's owner (:class:`~agenda_decl.job.JobOwner`) plus what running jobs needs: the
    worker's name and settings, the generation (a run that started before the last stop has
    outlived its scheduler), the threads for plain ``def`` handlers, the queued start write,
    the events and the job log."""

    @property
    def name(self) -> str: ...
    @property
    def generation(self) -> int: ...
    @property
    def remove_on_complete(self) -> bool: ...
    @property
    def executor(self) -> Executor: ...
    @property
    def job_log(self) -> JobLog: ...

    def runnable_names(self) -> list[str]:
        """The defined names with a handler here."""
        ...

    def submit_job_state(
        self,
        params: JobParameters[Any],
        *,
        lock_token: datetime | None = None,
        started_in: int | None = None,
    ) -> asyncio.Future[None]:
        """``save_job_state`` without waiting for it: the state is copied at once (or once
        the checks of a run that outlived its scheduler are done)."""
        ...

    def hears_job_events(self) -> bool:
        """Whether :meth:`emit_job_event` would reach anything (else a run skips it)."""
        ...

    async def emit_job_event(self, event: JobEvent) -> None:
        """Emit a job event here and tell the other workers."""
        ...

    async def emit_error(self, error: BaseException) -> None: ...

    async def emit_report(self, report: ClaimReport | PollReport) -> None:
        """Tell the ``claim`` or ``poll`` listeners (metrics, health checks)."""
        ...

    def emit_error_soon(self, error: BaseException) -> None: ...
