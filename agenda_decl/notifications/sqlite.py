"""Wake-ups between processes that share one SQLite file, with no server: a thread watches
SQLite's change counter and announces the jobs waiting after another connection committed.

SQLite has no LISTEN/NOTIFY. What it has is ``PRAGMA data_version``, a counter that moves
when any other connection, in this process or another, commits to the file, and the
WAL-index headers in the ``-shm`` file, which every commit rewrites. A thread of the
channel's own compares those headers every ``interval`` and asks the counter only when they
moved (``connectors.sqlite.ChangeCounter``): an idle worker pays a wake-up of that thread
and a 96-byte read and comparison per interval, nothing on its event loop. When it moved, the
``probe`` given by the store (two index seeks per job name) finds each name's unlocked job
due first, and subscribers get it as a :class:`JobNotification`, as if it had been published.
The claims and state writes of the store's own connection in this process (its quiet
commits, ``connectors.sqlite.OwnCommits``) are not looked at: they make no work this
process's processor does not know of, and a busy worker makes hundreds a second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable

from agenda_decl._model import JobNotification, JobStateNotification
from agenda_decl.connectors.sqlite import ChangeCounter, OwnCommits, open_watcher
from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions

#: What the store's probe does on the watcher's connection: the jobs to announce.
Probe = Callable[[sqlite3.Connection], list[JobNotification]]


class SQLiteChangeChannel(BaseNotificationChannel):
    """Cross-process wake-ups on one SQLite file (see the module docstring).

    ``publish`` delivers to this process's subscribers at once (another process sees the
    commit instead); other processes hear of a commit within ``interval`` seconds plus the
    probe. Delivery is a hint, at most once: the scheduler's poll stays the safety net (a
    store with more than a thousand job names is probed for the first thousand). There are
    no state notifications: a job's events stay in the process that ran it.
    """

    def __init__(
        self,
        path: str,
        probe: Probe,
        *,
        interval: float = 0.02,
        busy_timeout_ms: float = 5000,
        channel_name: str = "agenda:jobs",
        reconnect: ReconnectOptions | None = None,
        own_commits: OwnCommits | None = None,
    ) -> None:
        super().__init__(channel_name=channel_name, reconnect=reconnect)
        self.path = path
        self.interval = interval
        self._probe = probe
        #: The quiet commits of the store's connection in this process: not probed for.
        self._own_commits = own_commits
        self._busy_timeout_ms = busy_timeout_ms
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._deliveries: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return (f"SQLiteChangeChannel(path={self.path!r}, interval={self.interval!r}, "
                f"state={self.state!r})")

    @property
    def supports_state_notifications(self) -> bool:
        return False

    # -- watching --------------------------------------------------------------------------------

    async def _open(self) -> None:
        await self._close()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        stop = threading.Event()
        thread = threading.Thread(
            target=self._watch, args=(asyncio.get_running_loop(), stop, ready),
            name="agenda-sqlite-watch", daemon=True,
        )
        thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            stop.set()
            raise
        self._thread, self._stop = thread, stop

    async def _close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            await asyncio.to_thread(thread.join)

    def _watch(self, loop: asyncio.AbstractEventLoop, stop: threading.Event,
               ready: concurrent.futures.Future[None]) -> None:
        """The watcher thread: open, report ready, then compare the counter every interval
        until stopped; a failure after the start is a lost connection (reconnected)."""
        try:
            connection = open_watcher(self.path, self._busy_timeout_ms)
        except Exception as error:
            ready.set_exception(error)
            return
        with contextlib.closing(connection):
            try:
                counter = ChangeCounter(connection, self.path, self._own_commits)
            except Exception as error:
                ready.set_exception(error)
                return
            ready.set_result(None)
            with contextlib.closing(counter):
                self._compare(loop, stop, connection, counter)

    def _compare(self, loop: asyncio.AbstractEventLoop, stop: threading.Event,
                 connection: sqlite3.Connection, counter: ChangeCounter) -> None:
        try:
            while not stop.is_set():
                time.sleep(self.interval)  # cheaper to wake from than Event.wait
                found = self._probe(connection) if counter.changed() else []
                if found and not _tell(loop, self._arrived, found):
                    return
        except Exception as error:
            if not stop.is_set():
                _tell(loop, self.connection_lost, error)

    def _arrived(self, found: list[JobNotification]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(found))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, found: list[JobNotification]) -> None:
        for notification in found:
            await self.notify_handlers(notification)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, notification: JobNotification) -> None:
        self.require_connected("publish")
        await self.notify_handlers(notification)

    async def publish_state(self, notification: JobStateNotification) -> None:
        """Nothing to do: this channel carries no state notifications."""
        self.require_connected("publish state")


def _tell(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> bool:
    """Run ``callback(*args)`` on the event loop; False when the loop has closed meanwhile
    (nobody is left to tell: the watcher stops)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # "Event loop is closed"
        return False
    return True
