"""The declarative layer: ``agenda.yaml`` -> typed config -> backend graph -> Agenda.

    loaded = agenda_decl.load("agenda.yaml", import_handlers=True)
    await loaded.agenda.start()

See :mod:`agenda_decl.config.load` for the file rules and :mod:`agenda_decl.config.build` for
how the objects are put together.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from agenda_decl.agenda import Agenda
from agenda_decl.config.build import (
    build_agenda,
    build_backend,
    build_channel,
    config_dir,
    job_options,
)
from agenda_decl.config.errors import (
    ConfigError,
    ConfigIssue,
    ImportRefError,
    PayloadError,
    StalePlanError,
)
from agenda_decl.config.load import (
    SECRET_FIELDS,
    ConfigSource,
    issue_for,
    load_config,
    redacted,
    source_of,
)
from agenda_decl.config.model import (
    AgendaConfig,
    BackendConfig,
    BackoffConfig,
    CodegenConfig,
    JobConfig,
    PayloadField,
    RetentionConfig,
    ScheduleConfig,
    SchedulerConfig,
)
from agenda_decl.config.payload import (
    MANAGED_BY_KEY,
    RESERVED_DATA_KEYS,
    SCHEDULE_KEY_KEY,
    check_payload,
)

__all__ = [
    "MANAGED_BY_KEY",
    "RESERVED_DATA_KEYS",
    "SCHEDULE_KEY_KEY",
    "SECRET_FIELDS",
    "AgendaConfig",
    "BackendConfig",
    "BackoffConfig",
    "CodegenConfig",
    "ConfigError",
    "ConfigIssue",
    "ConfigSource",
    "ImportRefError",
    "JobConfig",
    "LoadedConfig",
    "PayloadError",
    "PayloadField",
    "RetentionConfig",
    "ScheduleConfig",
    "SchedulerConfig",
    "StalePlanError",
    "build_agenda",
    "build_backend",
    "build_channel",
    "check_payload",
    "config_dir",
    "issue_for",
    "job_options",
    "load",
    "load_config",
    "redacted",
    "source_of",
]


@attrs.define(frozen=True, eq=False)
class LoadedConfig:
    """What :func:`load` returns: the typed config and the Agenda built from it."""

    config: AgendaConfig
    agenda: Agenda
    #: The file, resolved.
    path: Path


def load(
    path: str | os.PathLike[str] = "agenda.yaml",
    *,
    import_handlers: bool = False,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Load ``path`` and build its Agenda (not connected: ``await agenda.start()``).

    With ``import_handlers`` the jobs' handlers are imported and defined (a worker);
    without, the jobs are only declared (a process that enqueues). Raises
    :class:`ConfigError` with every problem of the file.
    """
    config = load_config(path, environ=environ)
    agenda = build_agenda(config, import_handlers=import_handlers)
    return LoadedConfig(config=config, agenda=agenda, path=Path(path).resolve())
