"""Typed job handles: the runtime side of the module ``agenda-decl generate`` writes.

The generated module holds one payload class per job with inline payload fields and one
:class:`JobHandle` per job, all sharing one :class:`ConfigAgenda` (the config file the module
was generated from)::

    from myapp.agenda_jobs import SendWelcomePayload, send_welcome

    job = await send_welcome.now(SendWelcomePayload(email="ada@example.com", plan="pro"))
    jobs = await send_welcome.now_many([SendWelcomePayload(email=e) for e in emails])
    run_sync(send_welcome.now(...))        # the same from code that is not async

    async def handler(job: Job[dict[str, Any]]) -> None:   # in a worker
        payload = send_welcome.payload(job)                  # a SendWelcomePayload

By default the handles load their config file on first use (once per process, handlers not
imported) and enqueue through that Agenda; ``CONFIG.bind(agenda)`` (every handle of the
module) or ``handle.bind(agenda)`` (a copy of one handle) use an Agenda you already have (a
worker, a test). The data goes through the job's declared payload check either way, so a
handle stores exactly what ``agenda.now(name, data)`` stores.

``frozen`` and ``field`` are attrs' own, re-exported so that a generated module imports from
agenda-decl only (its import block then sorts the same in every project).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, get_origin

import attrs
from attrs import field as field
from attrs import frozen as frozen

from agenda_decl._convert import payload_converter
from agenda_decl.agenda import Agenda
from agenda_decl.config.payload import RESERVED_DATA_KEYS
from agenda_decl.errors import BatchItemError
from agenda_decl.job import Job
from agenda_decl.timing import Duration

__all__ = ["ConfigAgenda", "JobHandle", "field", "frozen"]

P = TypeVar("P")


class ConfigAgenda:
    """The Agenda of one config file, shared by the handles of a generated module: loaded on
    first use (once per process, without importing handlers) unless :meth:`bind` gave one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._agenda: Agenda | None = None
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, module_file: str, relative_path: str) -> ConfigAgenda:
        """The config at ``relative_path`` from the directory of ``module_file``."""
        return cls(Path(module_file).resolve().parent / relative_path)

    def bind(self, agenda: Agenda) -> None:
        """Use ``agenda`` from now on (instead of loading the file)."""
        with self._lock:
            self._agenda = agenda

    @property
    def agenda(self) -> Agenda:
        """The bound Agenda, or the one of the config file (loaded now if not yet)."""
        with self._lock:
            if self._agenda is None:
                import agenda_decl  # the package imports this module: not at the top

                self._agenda = agenda_decl.load(self.path).agenda
            return self._agenda


class JobHandle(Generic[P]):
    """Enqueue jobs of one name with a typed payload ``P`` and read it back in handlers.

    ``P`` is an attrs class, or ``dict[str, Any]`` for a job declared without payload fields.
    """

    def __init__(
        self,
        name: str,
        payload_type: type[P],
        *,
        config: ConfigAgenda | None = None,
        agenda: Agenda | None = None,
    ) -> None:
        self.name = name
        self.payload_type = payload_type
        self.config = config
        self._agenda = agenda

    def __repr__(self) -> str:
        return f"JobHandle({self.name!r}, {getattr(self.payload_type, '__name__', 'dict')})"

    def bind(self, agenda: Agenda) -> JobHandle[P]:
        """A copy of this handle that enqueues through ``agenda``."""
        return JobHandle(self.name, self.payload_type, config=self.config, agenda=agenda)

    @property
    def agenda(self) -> Agenda:
        """The Agenda this handle enqueues through (see :class:`ConfigAgenda`)."""
        if self._agenda is not None:
            return self._agenda
        if self.config is None:
            raise RuntimeError(f"job handle {self.name!r} has no Agenda: bind() one")
        return self.config.agenda

    async def now(self, payload: P) -> Job[Any]:
        """Store a job that runs as soon as possible."""
        return await self.agenda.now(self.name, self.data(payload))

    async def now_many(self, payloads: Iterable[P]) -> list[Job[Any]]:
        """Store one job per payload, all due now, in one round trip per batch
        (``Agenda.now_many``): a bad payload raises ``BatchItemError`` naming its index, and
        nothing is stored."""
        items = []
        for index, payload in enumerate(payloads):
            try:
                items.append(self.data(payload))
            except TypeError as error:
                raise BatchItemError(index, error) from error
        return await self.agenda.now_many(self.name, items)

    async def schedule(
        self,
        when: datetime | str,
        payload: P,
        *,
        start_date: datetime | str | None = None,
        end_date: datetime | str | None = None,
        skip_days: Iterable[int] | None = None,
    ) -> Job[Any]:
        """Store a job that runs once at ``when`` (an aware datetime, ``"in 5 minutes"``)."""
        options = _given(start_date=start_date, end_date=end_date, skip_days=skip_days)
        return await self.agenda.schedule(when, self.name, self.data(payload), **options)

    async def every(
        self,
        interval: Duration,
        payload: P,
        *,
        timezone: str | None = None,
        skip_immediate: bool = False,
        start_date: datetime | str | None = None,
        end_date: datetime | str | None = None,
        skip_days: Iterable[int] | None = None,
    ) -> Job[Any]:
        """Create or update the one repeating job of this name (``Agenda.every``)."""
        options = _given(timezone=timezone, start_date=start_date, end_date=end_date,
                         skip_days=skip_days)
        return await self.agenda.every(interval, self.name, self.data(payload),
                                       skip_immediate=skip_immediate, **options)

    def data(self, payload: P) -> dict[str, Any]:
        """``payload`` as job data (not yet checked: the Agenda checks it when storing)."""
        if self._is_mapping:
            return dict(cast(Mapping[str, Any], payload))
        if not isinstance(payload, self.payload_type):
            raise TypeError(f"job {self.name!r} takes a {self.payload_type.__name__} payload, "
                            f"got {type(payload).__name__}")
        # Values stay Python objects (a naive datetime is refused by the check, not guessed).
        return attrs.asdict(cast(attrs.AttrsInstance, payload), recurse=True)

    def payload(self, job: Job[Any]) -> P:
        """The typed payload of ``job`` (a job of this name), e.g. in its handler."""
        if job.attrs.name != self.name:
            raise ValueError(f"job {job.attrs.name!r} is not a {self.name!r} job")
        stored = job.attrs.data if isinstance(job.attrs.data, Mapping) else {}
        data = {key: value for key, value in stored.items() if key not in RESERVED_DATA_KEYS}
        if self._is_mapping:
            return cast(P, data)
        attrs.resolve_types(cast(type, self.payload_type))
        return payload_converter.structure(data, self.payload_type)

    @property
    def _is_mapping(self) -> bool:
        return self.payload_type is dict or get_origin(self.payload_type) is dict


def _given(**options: Any) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}
