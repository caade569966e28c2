"""Reconcile the schedules of ``agenda.yaml`` with the jobs in storage: :func:`plan`, then
:func:`apply` (what ``agenda-decl plan`` and ``agenda-decl apply`` run).

Each declared schedule is one repeating job of type ``normal`` whose ``data`` carries, next to
its payload, two reserved keys: ``__managed_by__`` (the owner, ``config.owner``: the
scheduler name) and ``__schedule_key__`` (``schedule.schedule_key``). Workers never write
``data``, so the marker survives runs. Jobs without the marker, or with another owner's, are
never read as ours and never touched.

``plan`` checks every schedule (so a bad one stops the whole apply before any write), reads
the owner's jobs and compares, field by field, what is stored with what the file declares; it
writes nothing and returns the plan as data. ``apply`` creates, updates and deletes, writing
only what differs: a second ``apply`` writes nothing; given a plan, it refuses one made on
other stored jobs than the ones storage holds now. A schedule is identified by (job name,
schedule key): moving a key to another job is a new schedule, and the old job is an orphan
(kept unless pruned).

The work is split by role: :mod:`~agenda_decl.config.rules` (the rule set, shared with
``validate``), :mod:`~agenda_decl.config.stored` (the owner's jobs and their fingerprint),
:mod:`~agenda_decl.config.plan` (the plan and the next-run rules) and
:mod:`~agenda_decl.config.apply` (the writes). This module gathers their public names.
"""

from __future__ import annotations

from agenda_decl.config.apply import ApplyResult, OnChange, apply
from agenda_decl.config.errors import StalePlanError
from agenda_decl.config.payload import MANAGED_BY_KEY, RESERVED_DATA_KEYS, SCHEDULE_KEY_KEY
from agenda_decl.config.plan import (
    ACTIONS,
    Action,
    Change,
    FieldDiff,
    FireTime,
    JobWrite,
    Orphan,
    Plan,
    check_schedules,
    plan,
)
from agenda_decl.config.stored import COMPARED_FIELDS

__all__ = [
    "ACTIONS",
    "COMPARED_FIELDS",
    "MANAGED_BY_KEY",
    "RESERVED_DATA_KEYS",
    "SCHEDULE_KEY_KEY",
    "Action",
    "ApplyResult",
    "Change",
    "FieldDiff",
    "FireTime",
    "JobWrite",
    "OnChange",
    "Orphan",
    "Plan",
    "StalePlanError",
    "apply",
    "check_schedules",
    "plan",
]
