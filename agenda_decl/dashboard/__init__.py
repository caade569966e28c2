"""``agenda-decl dashboard``: a web page over the store, like Agendash for Node Agenda, that
also shows what only a declarative tool can: each schedule of agenda.yaml beside its stored
job and what ``plan`` would change.

Pages (:mod:`.app`): an overview per job name, the job list (filters, sorting, paging; one
indexed store query per page, :mod:`.views`), a job's page (fields, data, history and last
traceback from the job log) and the schedules. Actions (retry, run now, pause, resume,
delete; :mod:`.actions`) are :mod:`agenda_decl.operations`', each behind a confirmation page
and a CSRF-checked POST (:mod:`.security`). Served by uvicorn (:mod:`.server`).

Needs the optional extra ``agenda-decl[dashboard]`` (Starlette, Jinja2, uvicorn); the style
sheet and the script are the package's own files (nothing is loaded from the internet).
"""

from __future__ import annotations

from agenda_decl.dashboard.app import DashboardSettings, create_app
from agenda_decl.dashboard.security import (
    Credentials,
    CredentialsError,
    check_binding,
    credentials_from_env,
)
from agenda_decl.dashboard.server import serve

__all__ = [
    "Credentials",
    "CredentialsError",
    "DashboardSettings",
    "check_binding",
    "create_app",
    "credentials_from_env",
    "serve",
]
