"""The connection to a SQLite file, in a worker thread of its own.

The stdlib ``sqlite3`` module blocks, so each repository owns one worker thread that owns its
connection: calls are serialized there and the event loop never waits on the disk. The
database runs in WAL mode; each call is one transaction (``BEGIN IMMEDIATE`` for writes: a
deferred transaction that upgrades to a writer can fail with ``SQLITE_BUSY_SNAPSHOT``, which
``busy_timeout`` does not cover), run again with a growing, capped backoff while another
connection holds the database locked.

The file must be on a local disk (WAL needs shared memory between the processes on one
host); a path on a network filesystem is refused before it is opened.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import pathname2url

from agenda_decl._job_data import data_contains
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError

T = TypeVar("T")
Row = dict[str, Any]
Work = Callable[[sqlite3.Connection], T]

#: How long a call keeps retrying a locked database before it gives up (seconds).
BUSY_RETRY_WINDOW = 60.0
_FIRST_BACKOFF, _MAX_BACKOFF = 0.005, 1.0
#: SQLITE_BUSY and SQLITE_LOCKED (primary result codes; the extended ones share the low byte).
_BUSY_CODES = (5, 6)
IN_MEMORY = ("", ":memory:")
#: Connections inherited through fork(): never touched, never garbage-collected (closing one
#: in the child could disturb the parent's locks).
_FORK_ORPHANS: list[sqlite3.Connection | None] = []
#: Filesystems on which SQLite's locking and WAL shared memory are unreliable.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs",
        "fuse.glusterfs", "fuse.sshfs", "sshfs", "lustre", "gpfs", "davfs", "fuse.s3fs",
        "fuse.rclone",
    }
)  # fmt: skip


class SQLiteConnector:
    """One connection to the file at ``path`` and the one thread that uses it.

    ``create_schema`` runs once the connection is in WAL mode, in the worker thread. A locked
    database is retried for ``BUSY_RETRY_WINDOW`` seconds.

    With ``read_only`` the file is opened with ``mode=ro``: nothing is created (no file, no
    table, no WAL switch) and writes are refused. A file, or a table (``has_schema``), that
    does not exist yet reads as an empty store: an in-memory database with the schema.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: float,
        create_schema: Callable[[sqlite3.Connection], None],
        has_schema: Callable[[sqlite3.Connection], bool],
        read_only: bool = False,
    ) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._retry_window = BUSY_RETRY_WINDOW
        self._create_schema = create_schema
        self._has_schema = has_schema
        self._read_only = read_only
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._closing = False
        self._pid = os.getpid()
        #: How many times a call found the database locked and retried (for tests and metrics).
        self.busy_retries = 0
        #: This connection's quiet commits, for a change watcher of this process.
        self.own_commits = OwnCommits()

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Start the thread and open the file in it. Idempotent."""
        if self._pid != os.getpid():
            self._forget_parent_connection()
        if self._executor is not None:
            return
        async with self._connect_lock:
            if self._executor is None:
                self._executor = await self._start_thread()

    def _forget_parent_connection(self) -> None:
        """In a forked child: the worker thread did not survive the fork, and the parent's
        connection must not be used or even closed here (SQLite forbids it), so keep it
        referenced and open a connection of our own."""
        _FORK_ORPHANS.append(self._connection)
        self._executor, self._connection = None, None
        self.own_commits.close()  # the parent's commits are another connection's now
        self._connect_lock = asyncio.Lock()
        self._pid = os.getpid()

    async def _start_thread(self) -> ThreadPoolExecutor:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agenda-sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._open)
        except BaseException:
            executor.submit(self._close_connection)
            executor.shutdown(wait=False)
            raise
        return executor

    async def close(self) -> None:
        """Close the connection and stop the worker thread (queued calls finish first)."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        self._closing = True
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_connection)
        finally:
            executor.shutdown(wait=False)
            self._closing = False

    # -- calls ---------------------------------------------------------------------------

    async def write(self, work: Work[T], *, quiet: bool = False) -> T:
        """Run ``work`` in a write transaction (the caller refuses writes when read-only).
        ``quiet``: the write makes no work this process does not know of already (a claim, a
        state write), so this process's change watcher need not look (see
        :class:`OwnCommits`)."""
        return await self._submit(work, "BEGIN IMMEDIATE", quiet=quiet)

    async def read(self, work: Work[T]) -> T:
        return await self._submit(work, "BEGIN")

    async def _submit(self, work: Work[T], begin: str, *, quiet: bool = False) -> T:
        await self.connect()
        executor = self._executor
        if executor is None:  # closed while we waited
            raise BackendUnavailableError(f"SQLite database {self._path} is closed")
        call = functools.partial(self._transaction, work, begin, quiet)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    # -- the worker thread ---------------------------------------------------------------

    def _transaction(self, work: Work[T], begin: str, quiet: bool = False) -> T:
        connection = self._connection
        if connection is None:
            raise BackendUnavailableError(f"SQLite database {self._path} is closed")
        if quiet and self.own_commits.is_open:
            return self._retrying(lambda: self.own_commits.commit(connection, work))
        return self._retrying(lambda: in_transaction(connection, work, begin))

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``; while the database is locked by another connection, back off and
        run it again (the transaction was rolled back, so nothing happened twice)."""
        deadline = time.monotonic() + self._retry_window
        delay = _FIRST_BACKOFF
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    message = f"SQLite database {self._path}: {error}"
                    raise BackendUnavailableError(message) from error
                if self._closing or time.monotonic() + delay > deadline:
                    raise BackendUnavailableError(
                        f"SQLite database {self._path} stayed locked by another connection "
                        f"for {self._retry_window:g} s"
                    ) from error
            self.busy_retries += 1
            time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, _MAX_BACKOFF)

    def _open(self) -> None:
        _require_local_disk(self._path)
        if self._read_only:
            self._connection = self._open_read_only()
            return
        self._connection = self._connect(self._path)
        self._retrying(functools.partial(self._prepare, self._connection))
        if self._path not in IN_MEMORY:
            self.own_commits.open(self._path)

    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                target, timeout=self._busy_timeout_ms / 1000, isolation_level=None, uri=uri
            )
        except sqlite3.Error as error:
            raise BackendUnavailableError(
                f"cannot open SQLite database {self._path}: {error}"
            ) from error
        _register_functions(connection)
        return connection

    def _open_read_only(self) -> sqlite3.Connection:
        """The file as it is, or an empty in-memory store when it (or its table) does not
        exist yet. SQLite's own -wal/-shm files may appear beside a WAL database, as for any
        reader; the database file is never written."""
        if self._path not in IN_MEMORY and os.path.exists(self._path):
            target = f"file:{pathname2url(os.path.abspath(self._path))}?mode=ro"
            connection = self._connect(target, uri=True)
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            if self._retrying(lambda: self._has_schema(connection)):
                return connection
            connection.close()
        empty = self._connect(":memory:")
        self._create_schema(empty)
        return empty

    def _prepare(self, c: sqlite3.Connection) -> None:
        c.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()["journal_mode"]
        if mode != "wal" and self._path not in IN_MEMORY:
            raise BackendUnavailableError(
                f"SQLite database {self._path} cannot use WAL mode (journal mode {mode})"
            )
        c.execute("PRAGMA synchronous = NORMAL")
        self._create_schema(c)

    def _close_connection(self) -> None:
        self.own_commits.close()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


# -- connection helpers (worker thread) ----------------------------------------------------------


def open_watcher(path: str, busy_timeout_ms: float) -> sqlite3.Connection:
    """A connection of its own for a thread that only reads (the change watcher): rows as
    dicts, the same functions as the repository's connection, never a write."""
    try:
        connection = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
    except sqlite3.Error as error:
        raise BackendUnavailableError(f"cannot open SQLite database {path}: {error}") from error
    _register_functions(connection)
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return connection


def data_version(c: sqlite3.Connection) -> int:
    """SQLite's change counter of this connection: it moves when another connection (of
    this process or another) commits, never for this connection's own writes. In WAL mode
    it reads the shared-memory index: no disk I/O."""
    return int(c.execute("PRAGMA data_version").fetchone()["data_version"])


#: The two copies of the WAL-index header at the start of the ``-shm`` file (SQLite's file
#: format, "walformat": every commit rewrites them, with a new frame count and checksum).
_WAL_INDEX_HEADERS = 96


class ChangeCounter:
    """Whether another connection committed to the file since the last look, as cheaply as
    an idle process can ask: the WAL-index headers at the start of the ``-shm`` file are
    read (one ``pread``) and compared, and only when they moved is :func:`data_version`
    asked (which also tells another connection's commit from this one's). Where the
    ``-shm`` file cannot be opened every look asks :func:`data_version`. With ``own``,
    headers that moved only by the quiet commits of this process's own connection (one
    chain of them from the last look to this one) are no change either.

    The headers are read, not mapped: SQLite truncates the ``-shm`` file when a connection
    opens it with no other connection on it, and a mapped page past the end of a truncated
    file kills the process with SIGBUS, where a read only comes back short. Our own
    connection keeps the file in use while the counter lives, so it is not replaced."""

    def __init__(
        self, connection: sqlite3.Connection, path: str, own: OwnCommits | None = None
    ) -> None:
        self._connection = connection
        self._version = data_version(connection)  # also opens the -shm file for this connection
        self._headers: bytes | None = None
        self._shm = _open_wal_index(path)
        self._own = own

    def changed(self) -> bool:
        headers = _read_wal_index(self._shm)
        if headers is not None:
            if headers == self._headers:
                return False
            previous, self._headers = self._headers, headers
            if previous is not None and self._own is not None \
                    and self._own.explains(previous, headers):
                return False
        version = data_version(self._connection)
        if version == self._version:
            return False
        self._version = version
        return True

    def close(self) -> None:
        if self._shm is not None:
            shm, self._shm = self._shm, None
            os.close(shm)


class OwnCommits:
    """The quiet commits of one connection (:meth:`SQLiteConnector.write`), as the
    WAL-index headers before and after each, so that a change watcher of the same process
    can tell "only our own claims and state writes moved the file" (nothing to probe for)
    from "another connection committed" (probe).

    Sound: the "before" headers are read inside ``BEGIN IMMEDIATE``, which holds the
    database's only write lock, so they are the last commit's; the "after" headers are read
    after ``COMMIT`` and kept only when the connection's ``data_version`` has not moved since
    inside the transaction: no other connection committed in between, so they are this
    commit's (a checkpoint may have rewritten them meanwhile, which changes no row). A
    commit of another connection between two of ours breaks the chain: the watcher looks."""

    #: Commits remembered (a watcher looks every few milliseconds; far fewer happen between).
    LIMIT = 1024

    def __init__(self) -> None:
        self._shm: int | None = None
        self._next: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._shm is not None

    def open(self, path: str) -> None:
        """Read the headers of the database at ``path`` (its connection is in WAL mode)."""
        self.close()
        self._shm = _open_wal_index(path)

    def close(self) -> None:
        shm, self._shm = self._shm, None
        if shm is not None:
            os.close(shm)
        with self._lock:
            self._next.clear()

    def commit(self, c: sqlite3.Connection, work: Work[T]) -> T:
        """:func:`in_transaction` with ``BEGIN IMMEDIATE``, recording the commit."""
        before: list[tuple[int, bytes | None]] = []

        def recorded(conn: sqlite3.Connection) -> T:
            before.append((data_version(conn), _read_wal_index(self._shm)))
            return work(conn)

        result = in_transaction(c, recorded, "BEGIN IMMEDIATE")
        after = _read_wal_index(self._shm)
        ((version, headers),) = before
        if headers is not None and after not in (None, headers) and data_version(c) == version:
            assert after is not None
            self._record(headers, after)
        return result

    def _record(self, before: bytes, after: bytes) -> None:
        with self._lock:
            self._next[before] = after
            if len(self._next) > self.LIMIT:
                del self._next[next(iter(self._next))]

    def explains(self, start: bytes, end: bytes) -> bool:
        """Whether our recorded commits lead from the headers ``start`` to ``end``."""
        with self._lock:
            seen = start
            for _ in range(len(self._next)):
                following = self._next.get(seen)
                if following is None:
                    return False
                if following == end:
                    return True
                seen = following
        return False


def _read_wal_index(shm: int | None) -> bytes | None:
    if shm is None:
        return None
    try:
        return os.pread(shm, _WAL_INDEX_HEADERS, 0)
    except OSError:
        return None


def _open_wal_index(path: str) -> int | None:
    try:
        return os.open(f"{path}-shm", os.O_RDONLY)
    except OSError:
        return None


def in_transaction(c: sqlite3.Connection, work: Work[T], begin: str) -> T:
    c.execute(begin)
    try:
        result = work(c)
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    return result


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    message = str(error).lower()
    return "database is locked" in message or "database is busy" in message


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _register_functions(c: sqlite3.Connection) -> None:
    c.row_factory = _dict_row
    c.create_function("agenda_lower", 1, _lower, deterministic=True)
    c.create_function("agenda_data_contains", 2, _data_contains, deterministic=True)


def _lower(text: Any) -> Any:
    """Unicode-aware lowercase (SQLite's own ``lower`` folds ASCII only)."""
    return text.lower() if isinstance(text, str) else text


@functools.lru_cache(maxsize=64)
def _needle(text: str) -> Any:
    return json.loads(text)


def _data_contains(stored: Any, needle: Any) -> int:
    """``data_contains`` inside SQLite, so the filter runs where the rows are."""
    if not isinstance(stored, str) or not isinstance(needle, str):
        return 0
    try:
        return int(data_contains(json.loads(stored), _needle(needle)))
    except ValueError:
        return 0


def fetch_all(c: sqlite3.Connection, statement: str, params: Any) -> list[Row]:
    return list(c.execute(statement, params).fetchall())


def fetch_first(c: sqlite3.Connection, statement: str, params: Any) -> Row | None:
    rows = c.execute(statement, params).fetchall()  # fetch all: RETURNING finishes its work
    return rows[0] if rows else None


def fetch_one(c: sqlite3.Connection, statement: str, params: Any) -> Row:
    row = fetch_first(c, statement, params)
    assert row is not None, "statement returned no row"
    return row


# -- filesystem check ----------------------------------------------------------------------------


def _require_local_disk(path: str) -> None:
    fs_type = None if path in IN_MEMORY else network_filesystem(path)
    if fs_type is not None:
        raise InvalidOptionError(
            f"SQLite database {path} is on a network filesystem ({fs_type}); "
            "SQLite's WAL mode needs a local disk: use PostgreSQL to share jobs across hosts"
        )


def network_filesystem(path: str, mountinfo: str | None = None) -> str | None:
    """The network filesystem type ``path`` lives on, or None (local, or unknown).

    Reads Linux's ``/proc/self/mountinfo`` (or the text given); elsewhere it cannot tell.
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    best, fs_type = "", None
    for mount_point, kind in _mounts(mountinfo):
        inside = directory == mount_point or directory.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fs_type = mount_point, kind
    return fs_type if fs_type in NETWORK_FILESYSTEMS else None


def _mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) per line of a mountinfo text."""
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 8 or "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if separator + 1 < len(fields):
            mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
            mounts.append((mount_point, fields[separator + 1]))
    return mounts
