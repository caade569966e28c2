"""``query_jobs`` and ``get_jobs_overview`` on Redis, in slices of bounded work.

A Lua script holds the whole server while it runs, so no call here reads more than one slice
of jobs (``ROWS_SLICE`` ids; the ``rows``, ``read`` and ``overview`` blocks of
``query.lua``): the client walks, filters in the server slice by slice, sorts and pages. A
listing is therefore not one atomic snapshot (a job written meanwhile may show in its old or
its new form, as in any paged listing), but no listing blocks the workers' claims.

Where the rows come from:

* Sorted by next run first (the default and the dashboard's usual order): Node Agenda's own
  ``jobs:by_next_run_at`` sorted set (score = nextRunAt in ms plus a priority fraction below
  one millisecond; 2^53 - 1 for no next run), which Node and every write of ours keep, walked
  in the asked direction by rank (``ZRANGE``, O(log N + slice)) until the page is full and
  the millisecond of its last row is read whole (rows of one millisecond are sorted exactly
  here, by the later sort keys and insertion order). A state filter that depends on the next
  run narrows the walk to its score range (queued: before now; scheduled: after; completed:
  no next run). Without any filter the walk starts at the page (a rank, found in O(log N)).
  A filter the index cannot narrow (name, data, other states) is applied to each slice, so
  a rare match costs a long walk (in short calls); a name whose jobs are few among many is
  read from its set instead (``_walk_pays``).
* Any other order: every job of the names asked (``SSCAN`` of ``jobs:by_name:{name}`` inside
  the script, or ``jobs:all``), or the ids asked, in slices: O(candidates) in total, bounded
  per call. The rows come back as one JSON text per slice, sorted here.
* The overview: every job of ``jobs:all``, counted by name and state in slices. Counters kept
  by our writes could not see Node Agenda's state writes, so the counts are always read.

Totals: without a state or data filter and with disabled jobs included, the sizes of the
name sets (``SCARD``). Otherwise the walk goes on counting past the page up to
``COUNT_BOUND`` more entries of the index; a walk that stops there returns the matches
counted so far (at least the page's end) with ``total_exact=False``, which the dashboard
shows as "at least N found" with a next page. A full read (any other order) is exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from agenda_decl._model import JobsOverview, JobsQueryOptions, JobsResult
from agenda_decl.backends import base
from agenda_decl.backends.redis import codec, scripts
from agenda_decl.connectors.redis import AnyRedis, text

__all__ = ["COUNT_BOUND", "ROWS_SLICE", "Listing"]

#: Job ids one script call reads (each a few field reads and, with a data filter, one JSON
#: decoding): about a millisecond or two of server time per call.
ROWS_SLICE = 500
#: Index entries a filtered walk reads past the page to count matches before it returns a
#: lower bound for the total instead.
COUNT_BOUND = 2_000
#: The score of a job without a next run in ``jobs:by_next_run_at`` (Number.MAX_SAFE_INTEGER).
NO_NEXT_RUN = 9007199254740991
#: The overview's state columns, in the order the ``overview`` block returns them.
OVERVIEW_KEYS = ("total", "running", "scheduled", "queued", "completed", "failed", "repeating",
                 "paused")
#: The fields of a row of the ``rows`` block, in order (a row is a list: many thousands of
#: them are read for a sort on another key than the next run).
ROW_FIELDS = ("id", "state", "next_run_at", "last_run_at", "last_finished_at", "priority",
              "name", "created", "seq", "data")
ID, STATE, CREATED, SEQ = (ROW_FIELDS.index(field) for field in ("id", "state", "created", "seq"))

Run = Callable[..., Awaitable[Any]]
Retried = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
Row = list[Any]


class Listing:
    """The reads of one repository: ``run`` runs a script (repeated through an outage),
    ``retried`` repeats a plain command."""

    def __init__(self, client: AnyRedis, prefix: str, run: Run, retried: Retried):
        self._client = client
        self._prefix = prefix
        self._run = run
        self._retried = retried
        self._zset = f"{prefix}jobs:by_next_run_at"

    async def _call(self, command: str, *args: Any, **options: Any) -> Any:
        method = getattr(self._client, command)
        return await self._retried(lambda: method(*args, **options))

    async def now_ms(self) -> int:
        seconds, micros = await self._call("time")
        return int(seconds) * 1000 + int(micros) // 1000

    # -- the overview ------------------------------------------------------------------------

    async def overview(self) -> list[JobsOverview]:
        now = str(await self.now_ms())
        counts: dict[str, list[int]] = {}
        async for ids in self._scan_sets([f"{self._prefix}jobs:all"]):
            flat = await self._run(scripts.OVERVIEW, now, *ids)
            for i in range(0, len(flat), 9):
                entry = counts.setdefault(flat[i], [0] * len(OVERVIEW_KEYS))
                for k, value in enumerate(flat[i + 1 : i + 9]):
                    entry[k] += int(value)
        return sorted((JobsOverview(name=name, **dict(zip(OVERVIEW_KEYS, values, strict=True)))
                       for name, values in counts.items()), key=lambda entry: entry.name)

    # -- the job list ------------------------------------------------------------------------

    async def query(self, options: JobsQueryOptions, ids: Sequence[str] | None,
                    names: list[str] | None) -> JobsResult:
        sort: list[tuple[str, str]] = list(options.sort.items()) if options.sort else [
            ("next_run_at", "desc"), ("last_run_at", "desc"),
        ]
        spec: dict[str, Any] = {
            "includeDisabled": options.include_disabled, "now": await self.now_ms(),
            "needData": any(key == "data" for key, _ in sort),
        }
        if names is not None:
            spec["names"] = names
        if options.state is not None:
            spec["state"] = options.state
        if options.data is not None:
            spec["data"] = codec.tagged(options.data)
        skipped = 0  # matches before the rows read, all sorted before them
        if ids is None and sort[0][0] == "next_run_at" and await self._walk_pays(options, names):
            rows, skipped, total, exact = await self._walk(options, spec, sort[0][1] == "desc")
        else:
            rows = await self._every_row(spec, ids, names)
            total, exact = len(rows), True
        _sort(rows, sort)
        start = options.skip - skipped
        page = rows[start : start + options.limit] if options.limit else rows[start:]
        jobs = []
        if page:
            read = await self._run(scripts.READ, *(row[ID] for row in page))
            jobs = [base.with_state(codec.job_from_values(values), row[STATE])
                    for row, values in zip(page, read, strict=True) if values[1] is not None]
        return JobsResult(jobs=jobs, total=total, total_exact=exact)

    async def _walk_pays(self, options: JobsQueryOptions, names: list[str] | None) -> bool:
        """Whether walking the next-run index (all names) to fill the page reads fewer jobs
        than the name sets asked hold: a name with few jobs among many is read whole."""
        if names is None:
            return True
        selected = sum([int(await self._call("scard", f"{self._prefix}jobs:by_name:{name}"))
                        for name in names])
        size = int(await self._call("zcard", self._zset))
        needed = options.skip + options.limit if options.limit else size
        # the walk reads about needed * size / selected entries to find the page's rows
        return selected * selected > needed * size

    async def _rows(self, spec: dict[str, Any], ids: Sequence[str]) -> list[Row]:
        """The matches among ``ids``, in their order."""
        return _parse_rows(await self._run(scripts.ROWS, codec.encode_json(spec), "ids", *ids))

    async def _count(self, spec: dict[str, Any], ids: Sequence[str]) -> int:
        return int(await self._run(scripts.ROWS, codec.encode_json({**spec, "countOnly": True}),
                                   "ids", *ids))

    async def _every_row(self, spec: dict[str, Any], ids: Sequence[str] | None,
                         names: list[str] | None) -> list[Row]:
        """Every match among the ids asked, else among the jobs of the names asked (or all)."""
        rows: list[Row] = []
        if ids is not None:
            unique = list(dict.fromkeys(ids))
            for start in range(0, len(unique), ROWS_SLICE):
                rows.extend(await self._rows(spec, unique[start : start + ROWS_SLICE]))
            return rows
        # each slice of a set is scanned in the script (one round trip); SSCAN may return a
        # member twice, so rows are kept by id
        found: dict[str, Row] = {}
        encoded = codec.encode_json(spec)
        for key in ([f"jobs:by_name:{name}" for name in names] if names is not None
                    else ["jobs:all"]):
            cursor = "0"
            while True:
                cursor, answer = await self._run(scripts.ROWS, encoded, "scan", key, cursor,
                                                 str(ROWS_SLICE))
                found.update((row[ID], row) for row in _parse_rows(answer))
                if cursor == "0":
                    break
        return list(found.values())

    async def _scan_sets(self, keys: Sequence[str]) -> AsyncIterator[list[str]]:
        """The members of ``keys``, each once (SSCAN may return one twice), in slices of
        ``ROWS_SLICE`` (SSCAN's count is a hint: its pages are gathered)."""
        seen: set[str] = set()
        pending: list[str] = []
        for key in keys:
            cursor: Any = 0
            while True:
                cursor, members = await self._call("sscan", key, cursor, count=ROWS_SLICE)
                fresh = [m for m in text(members) if m not in seen]
                seen.update(fresh)
                pending.extend(fresh)
                while len(pending) >= ROWS_SLICE:
                    yield pending[:ROWS_SLICE]
                    pending = pending[ROWS_SLICE:]
                if int(cursor) == 0:
                    break
        if pending:
            yield pending

    async def _walk(self, options: JobsQueryOptions, spec: dict[str, Any], descending: bool
                    ) -> tuple[list[Row], int, int, bool]:
        """The matches of the walk of ``jobs:by_next_run_at`` up to the page's end (and its
        last millisecond), how many matches before them it jumped over, the total and whether
        it is exact (see the module)."""
        size = int(await self._call("zcard", self._zset))
        without = int(await self._call("zcount", self._zset, NO_NEXT_RUN, "+inf"))
        timed = size - without  # ranks [0, timed) have a next run, ascending
        first, last = 0, timed  # the ranks of the timed part the state filter can match
        if options.state in ("queued", "scheduled"):
            due = int(await self._call("zcount", self._zset, "-inf", f"({spec['now'] + 1}"))
            first, last = (0, due) if options.state == "queued" else (due, timed)
        timed_ranks = range(last - 1, first - 1, -1) if descending else range(first, last)
        untimed_ranks = range(timed, size) if options.state != "queued" and \
            options.state != "scheduled" else range(0)
        if options.state == "completed":
            timed_ranks = range(0)
        walk = _Concat(timed_ranks, untimed_ranks)
        unfiltered = (options.state is None and options.data is None
                      and options.include_disabled and "names" not in spec)
        counted_by_sets = (options.state is None and options.data is None
                           and options.include_disabled)
        needed = options.skip + options.limit if options.limit else None
        position, skipped = 0, 0
        if unfiltered and options.skip and options.skip < len(walk):
            position = skipped = await self._group_start(walk, options.skip, timed)
        rows: list[Row] = []
        seen: set[str] = set()
        # the millisecond of the page's last row (None: no next run), once the page is full
        boundary: list[int | None] = []
        while position < len(walk):
            # the index can shrink during the walk (ranks past its end read nothing), so the
            # position moves on by what was asked
            entries = await self._entries(walk, position, ROWS_SLICE)
            position += ROWS_SLICE
            if not entries:
                break
            groups = dict(entries)
            # a job rescheduled during the walk can be met again at its new rank: once only
            found = [row for row in await self._rows(spec, [member for member, _ in entries])
                     if row[ID] not in seen]
            seen.update(row[ID] for row in found)
            rows.extend(found)
            if needed is not None and not boundary and skipped + len(rows) >= needed:
                boundary.append(groups[rows[needed - skipped - 1][ID]])
            if boundary and entries[-1][1] != boundary[0]:
                break
        if counted_by_sets:
            return rows, skipped, await self._set_total(spec), True
        total, budget = len(rows), COUNT_BOUND
        while position < len(walk) and budget > 0:
            step = min(ROWS_SLICE, budget)
            entries = await self._entries(walk, position, step)
            position, budget = position + step, budget - step
            if entries:
                total += await self._count(spec, [member for member, _ in entries])
        return rows, 0, total, position >= len(walk)

    async def _set_total(self, spec: dict[str, Any]) -> int:
        keys = ([f"{self._prefix}jobs:by_name:{name}" for name in spec["names"]]
                if "names" in spec else [f"{self._prefix}jobs:all"])
        return sum([int(await self._call("scard", key)) for key in keys])

    async def _entries(self, walk: _Concat, position: int, count: int
                       ) -> list[tuple[str, Any]]:
        """``count`` entries of the walk from ``position``: (id, millisecond or None)."""
        entries: list[tuple[str, Any]] = []
        for start, stop, step in walk.spans(position, count):
            low, high = min(start, stop - step), max(start, stop - step)
            found = await self._call("zrange", self._zset, low, high, withscores=True)
            pairs = [(text(member), _millisecond(score)) for member, score in found]
            entries.extend(reversed(pairs) if step < 0 else pairs)
        return entries

    async def _group_start(self, walk: _Concat, position: int, timed: int) -> int:
        """The walk position of the first entry of the millisecond at ``position``."""
        rank = walk[position]
        if rank >= timed:
            return walk.index(timed) if timed in walk else position
        found = await self._call("zrange", self._zset, rank, rank, withscores=True)
        if not found:  # the index shrank meanwhile: walk from the start instead
            return 0
        millisecond = math.floor(found[0][1])
        before = int(await self._call("zcount", self._zset, "-inf", f"({millisecond}"))
        through = int(await self._call("zcount", self._zset, "-inf", f"({millisecond + 1}"))
        start = through - 1 if walk.descending else before
        return walk.index(start) if start in walk else 0


class _Concat:
    """Two rank ranges walked one after the other (the timed part in its direction, then the
    untimed part), addressed by walk position."""

    def __init__(self, timed: range, untimed: range):
        self.parts = (timed, untimed)
        self.descending = timed.step < 0

    def __len__(self) -> int:
        return len(self.parts[0]) + len(self.parts[1])

    def __getitem__(self, position: int) -> int:
        timed = self.parts[0]
        return timed[position] if position < len(timed) else self.parts[1][position - len(timed)]

    def __contains__(self, rank: int) -> bool:
        return rank in self.parts[0] or rank in self.parts[1]

    def index(self, rank: int) -> int:
        timed = self.parts[0]
        return timed.index(rank) if rank in timed else len(timed) + self.parts[1].index(rank)

    def spans(self, position: int, count: int) -> list[tuple[int, int, int]]:
        """The (start, stop, step) rank spans of ``count`` positions from ``position``."""
        spans = []
        for part in self.parts:
            if count <= 0:
                break
            if position >= len(part):
                position -= len(part)
                continue
            piece = part[position : position + count]
            spans.append((piece.start, piece.stop, piece.step))
            count -= len(piece)
            position = 0
        return spans


def _parse_rows(answer: str) -> list[Row]:
    """The rows of the ``rows`` block's JSON answer (``{}``: none)."""
    rows = json.loads(answer)
    return rows if isinstance(rows, list) else []


def _millisecond(score: float) -> int | None:
    """The next run of an entry of ``jobs:by_next_run_at``, in ms (None: no next run)."""
    return None if score >= NO_NEXT_RUN else math.floor(score)


def _sort(rows: list[Row], sort: list[tuple[str, str]]) -> None:
    """Sort ``rows`` as the other stores do: by the sort keys in order, missing values last
    in either direction, then insertion order (createdAt, insertOrder, id). Stable sorts from
    the last key to the first (Python keeps a reverse sort stable too)."""
    rows.sort(key=lambda row: (row[CREATED], row[SEQ], row[ID]))
    for key, direction in reversed(sort):
        at = ROW_FIELDS.index(key)
        if direction == "desc":
            rows.sort(key=lambda row: (row[at] is not None, row[at]), reverse=True)
        else:
            rows.sort(key=lambda row: (row[at] is None, row[at]))
