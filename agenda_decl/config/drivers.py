"""The database drivers a config needs, checked before anything is built.

Drivers are optional extras (``pip install 'agenda-decl[postgres]'``). Without this check a
missing one surfaced as ``ModuleNotFoundError: No module named 'psycopg'`` from inside a
backend, after ``validate`` had called the file valid. Here it is a problem of the file, at
the ``type:`` that needs the driver, naming the extra to install::

    agenda.yaml:3:20: backend.storage.type: postgres needs the psycopg driver: pip install
    'agenda-decl[postgres]'
"""

from __future__ import annotations

import importlib

from agenda_decl.config.errors import ConfigIssue
from agenda_decl.config.load import issue_for
from agenda_decl.config.model import AgendaConfig

__all__ = ["missing_drivers"]

#: Storage or notification ``type`` -> (the extra that installs its driver, the modules the
#: backend imports).
_DRIVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "postgres": ("postgres", ("psycopg", "psycopg_pool")),
    "redis": ("redis", ("redis",)),
    "mongo": ("mongo", ("pymongo",)),
    "mongo-changestream": ("mongo", ("pymongo",)),
}


def missing_drivers(config: AgendaConfig) -> list[ConfigIssue]:
    """An issue for each driver that cannot be imported, at the first storage or
    notifications ``type`` that needs it."""
    used: list[tuple[str, str]] = [("backend.storage.type", config.backend.storage.type)]
    if config.backend.notifications is not None:
        used.append(("backend.notifications.type", config.backend.notifications.type))
    issues: dict[str, ConfigIssue] = {}
    for path, kind in used:
        missing = _missing_driver(kind)
        if missing is not None and missing[0] not in issues:
            issues[missing[0]] = issue_for(config, path, missing[1])
    return list(issues.values())


def _missing_driver(kind: str) -> tuple[str, str] | None:
    """The first driver module of ``kind`` that cannot be imported, and what to say."""
    extra, modules = _DRIVERS.get(kind, ("", ()))
    for module in modules:
        # Imported, not only looked up: an installed driver can still fail to import (psycopg
        # without a libpq), and the extra installs what it lacks.
        try:
            importlib.import_module(module)
        except ImportError as error:
            fix = f"{kind} needs the {module} driver: pip install 'agenda-decl[{extra}]'"
            if isinstance(error, ModuleNotFoundError) and error.name == module:
                return module, fix
            return module, f"{fix} (import {module} failed: {_first_line(error)})"
    return None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
