"""The Lua scripts of the Redis store: the named blocks of the ``.lua`` files beside this
module (``prelude.lua``, ``claim.lua``, ``save.lua``, ``query.lua``), put together.

Every write runs as one script, so it is atomic (Redis runs one script at a time) and costs
one round trip; listings run one short script per slice of jobs (``listing``), because a
script holds the whole server while it runs. Each script is the ``prelude`` block (shared
helpers) plus its body; ``ARGV[1]`` is always the key prefix, and ``KEYS[1]`` is the prefix's
``jobs:all`` (the repository's ``_route``). The scripts build the other keys (job hashes by
id, the per-name sets) from the prefix; on a Redis Cluster the prefix starts with a hash tag,
so all of them are in the slot of ``KEYS[1]``, on the node the script was sent to.

The layout is the one @agendajs/redis-backend 3.0.7 (Node Agenda 6.2.6) creates, writes and
reads: ``job:{id}`` hashes whose values are all strings (``'null'`` for absent), with the
fields of its ``jobToHash`` (``startDate``, ``endDate`` and ``skipDays`` included, which Node
reads back too); ``jobs:all``; ``jobs:by_name:{name}``; the global ``jobs:by_next_run_at``
sorted set; ``jobs:single:{name}``. A Node process keeps maintaining exactly those, so they
remain the source of truth. Our own additions are hints that Node-written jobs can do
without, and that Node ignores:

* ``decl:due:{name}`` (sorted set, score = nextRunAt in ms, member = priority, insertion
  order and id, so that the set's order is the claim order; see the prelude): the due index
  of a name, so that a claim reads only its own name's first due jobs, in O(log N +
  claimed), whatever the backlog of this name or of others. A job is in it exactly while it
  has a nextRunAt and is neither disabled nor locked (the prelude's ``reindex``, which every
  script of ours that changes one of those runs in the same atomic step; ``insert_many``
  writes a new job's entry itself, from what it just stored). Node keeps only
  the global set, so a job it wrote or changed is brought in by the sweep below, by a claim
  that meets its entry out of date, or by the heal at connect; a claim re-checks every entry
  against the hash.
* ``decl:known:{name}`` (counter): the members of ``jobs:by_name:{name}`` our writes added
  (minus those they removed). A claim that finds the set's size different (Node enqueued or
  removed jobs of the name) sweeps ten slices per call, ungated, with a cursor of its own
  (``decl:catch_up:{name}``), until a whole pass goes by with that difference unchanged,
  then sets the counter to the size. A writer that does not keep the count costs a pass,
  never a job.
* ``decl:locked:{name}`` (sorted set, score = lock time in ms): the jobs of a name locked by
  us, so stale locks are found in O(log N + stale) instead of scanning the name. Entries are
  checked against the hash before use (Node may have unlocked or touched the job since: such
  a job goes back into the due index).
* ``decl:sweep:{name}``, ``decl:sweep_gate:{name}`` (expires after 1 s) and
  ``decl:sweep_gate_busy:{name}`` (after 5 s): the cursor of an incremental SSCAN of
  ``jobs:by_name:{name}``, at most one slice a second per name (one in five seconds while
  the name has due jobs: the claims an enqueue waits for do not pay for it), that
  brings the jobs Node Agenda wrote into the due index and its locks into
  ``decl:locked:{name}`` (a crashed Node worker's lock on a job that is not due, a one-off
  whose nextRunAt was cleared when its run started, is found this way).
* ``decl:insert_order`` (counter) and the hash field ``insertOrder``: insertion order as the
  final tie-break (Node-written jobs fall back to ``createdAt``, then the id).
* the hash field ``noData`` (``'true'``) on a job saved without data: Node's form of no data
  is ``data = '{}'`` (its unique scan parses every job's data as an object), which we write
  too; ``noData`` says that this ``'{}'`` reads back as ``None``, as a job without data does
  in every other store. A Node-written ``'{}'`` (no ``noData``) reads as ``{}``, as Node reads
  it.
* ``decl:layout``: set once connect has healed every job of the prefix and put it into its
  name's due index (``HEAL``).

Lock field: ``lockedAtMs`` (epoch milliseconds as a decimal string, ``'null'`` when unlocked)
is the only one, read and written alone, as in 3.0.7. agenda-decl 0.1 also wrote an ISO
``lockedAt`` and judged locks by it, which hid Node's locks from it (double runs); connect
deletes that field from every hash (``HEAL``), and every lock write deletes it too. A hash
without any ``lockedAtMs`` field is judged by its ``lockedAt`` until it is healed.
"""

from __future__ import annotations

from agenda_decl._named_blocks import load_named_blocks

#: The hash fields a job is read from, in the order the scripts return them (HMGET); the
#: prelude's ``JOB_FIELDS`` is the same list.
JOB_FIELDS: tuple[str, ...] = (
    "id", "name", "priority", "nextRunAt", "type", "lockedAt", "lockedAtMs", "lastFinishedAt",
    "failedAt", "failCount", "failReason", "repeatTimezone", "lastRunAt", "repeatInterval",
    "data", "repeatAt", "disabled", "progress", "fork", "lastModifiedBy", "debounceStartedAt",
    "startDate", "endDate", "skipDays", "noData",
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
INSERT_MANY = _script(PRELUDE, _SAVE["new_job"], _SAVE["insert_many"])
INSERT = _script(PRELUDE, _SAVE["new_job"], _SAVE["save"], _SAVE["insert"])
SAVE_BY_ID = _script(PRELUDE, _SAVE["new_job"], _SAVE["save"], _SAVE["save_by_id"])
SAVE_SINGLE = _script(PRELUDE, _SAVE["new_job"], _SAVE["save"], _SAVE["save_single"])
SAVE_UNIQUE = _script(PRELUDE, _SAVE["new_job"], _SAVE["save"], _SAVE["save_unique"])
HEAL = _script(PRELUDE, _SAVE["heal"])

# -- matching many jobs -------------------------------------------------------------------------

MODIFY = _script(PRELUDE, _QUERY["candidates"], _QUERY["modify"])
ROWS = _script(PRELUDE, _QUERY["candidates"], _QUERY["rows"])
READ = _script(PRELUDE, _QUERY["read"])
OVERVIEW = _script(PRELUDE, _QUERY["overview"])
QUEUE_SIZE = _script(PRELUDE, _QUERY["queue_size"])

#: Every script, in the order the repository registers them.
ALL = (CLAIM, LOCK_JOB, UNLOCK, SAVE_STATES, INSERT_MANY, INSERT, SAVE_BY_ID, SAVE_SINGLE,
       SAVE_UNIQUE, HEAL, MODIFY, ROWS, READ, OVERVIEW, QUEUE_SIZE)
#: The scripts that only read; a read-only repository runs no other.
READ_ONLY = frozenset({ROWS, READ, OVERVIEW, QUEUE_SIZE})
