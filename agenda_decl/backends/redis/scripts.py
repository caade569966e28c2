"""The Lua scripts of the Redis store: the named blocks of the ``.lua`` files beside this
module (``prelude.lua``, ``claim.lua``, ``save.lua``, ``query.lua``), put together.

Every write and every multi-key read runs as one script, so it is atomic (Redis runs one
script at a time) and costs one round trip. Each script is the ``prelude`` block (shared
helpers) plus its body; ``ARGV[1]`` is always the key prefix. Job hashes are addressed by id
inside the scripts, so the keys are not all declared in ``KEYS``: Redis Cluster is not
supported.

The layout is Agenda v6's (``job:{id}`` hashes whose values are all strings, ``'null'`` for
absent; ``jobs:all``; ``jobs:by_name:{name}``; the global ``jobs:by_next_run_at`` sorted set;
``jobs:single:{name}``). A Node Agenda v6 process keeps maintaining exactly those, so they
remain the source of truth. Our own additions are hints that Agenda-written jobs can do
without:

* ``decl:locked:{name}`` (sorted set, score = lock time in ms): the jobs of a name locked by
  us, so stale locks are found in O(log N + stale) instead of scanning the name. Entries are
  checked against the hash before use (Node may have unlocked or touched the job since).
* ``decl:sweep:{name}`` and ``decl:sweep_gate:{name}`` (expires after 1 s): the cursor of an
  incremental SSCAN of ``jobs:by_name:{name}``, at most one slice a second per name, that adds
  locks written by Node Agenda to ``decl:locked:{name}``. A Node lock on a due job is judged in
  the due scan directly; the sweep is what finds a crashed Node worker's lock on a job that is
  not due (a one-off whose nextRunAt was cleared when its run started).
* ``decl:insert_order`` (counter) and the hash field ``insertOrder``: insertion order as the
  final tie-break (Agenda-written jobs fall back to ``createdAt``, then the id).
* hash fields ``startDate``, ``endDate``, ``skipDays`` (JSON): stored and read back.

Lock fields: Agenda v6 marks a lock with ``lockedAt`` (ISO) and its claim script adds
``lockedAtMs``; we always write both, and judge staleness on the later of the two, so a
``touch()`` from either side (which rewrites ``lockedAt``, and in our case ``lockedAtMs`` too)
keeps a job from being taken over. A hash without a ``lockedAt`` field at all (written by a
later Agenda release that keeps only ``lockedAtMs``) is read and written in that form.
"""

from __future__ import annotations

from agenda_decl._named_blocks import load_named_blocks

#: The hash fields a job is read from, in the order the scripts return them (HMGET); the
#: prelude's ``JOB_FIELDS`` is the same list.
JOB_FIELDS: tuple[str, ...] = (
    "id", "name", "priority", "nextRunAt", "type", "lockedAt", "lockedAtMs", "lastFinishedAt",
    "failedAt", "failCount", "failReason", "repeatTimezone", "lastRunAt", "repeatInterval",
    "data", "repeatAt", "disabled", "progress", "fork", "lastModifiedBy", "debounceStartedAt",
    "startDate", "endDate", "skipDays",
)


def _blocks(resource: str) -> dict[str, str]:
    return dict(load_named_blocks("agenda_decl.backends.redis", resource))


def _script(*blocks: str) -> str:
    return "\n".join(blocks) + "\n"


PRELUDE = _blocks("prelude.lua")["prelude"]
_CLAIM, _SAVE, _QUERY = _blocks("claim.lua"), _blocks("save.lua"), _blocks("query.lua")

# -- claiming -----------------------------------------------------------------------------------

CLAIM = _script(PRELUDE, _CLAIM["claim"])
LOCK_JOB = _script(PRELUDE, _CLAIM["lock_job"])
UNLOCK = _script(PRELUDE, _CLAIM["unlock"])

# -- writing ------------------------------------------------------------------------------------

SAVE_STATES = _script(PRELUDE, _SAVE["save_states"])
INSERT = _script(PRELUDE, _SAVE["save"], _SAVE["insert"])
SAVE_BY_ID = _script(PRELUDE, _SAVE["save"], _SAVE["save_by_id"])
SAVE_SINGLE = _script(PRELUDE, _SAVE["save"], _SAVE["save_single"])
SAVE_UNIQUE = _script(PRELUDE, _SAVE["save"], _SAVE["save_unique"])

# -- matching many jobs -------------------------------------------------------------------------

MODIFY = _script(PRELUDE, _QUERY["candidates"], _QUERY["modify"])
QUERY = _script(PRELUDE, _QUERY["candidates"], _QUERY["query"])
OVERVIEW = _script(PRELUDE, _QUERY["overview"])
QUEUE_SIZE = _script(PRELUDE, _QUERY["queue_size"])

#: Every script, in the order the repository registers them.
ALL = (CLAIM, LOCK_JOB, UNLOCK, SAVE_STATES, INSERT, SAVE_BY_ID, SAVE_SINGLE, SAVE_UNIQUE,
       MODIFY, QUERY, OVERVIEW, QUEUE_SIZE)
#: The scripts that only read; a read-only repository runs no other.
READ_ONLY = frozenset({QUERY, OVERVIEW, QUEUE_SIZE})
