"""The scheduler's link to its notification channel, and to the store's clock.

Outbound: a saved job is announced (``JobNotification``: one per job name and batch, in the
insert's own round trip when the store publishes on this very channel), a job event is sent
to the other workers (``JobStateNotification``). Inbound: a notification wakes the processor
for its job name, a reconnect wakes it for every name (what was published while away is
lost), another worker's state notification becomes a local event of the same shape. A
channel that gave up reconnecting is tried again from the poll. The skew between this
machine's clock and the store's is measured on connect and refreshed from the poll.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, cast, runtime_checkable

from agenda_decl._clock import StoreAlignedClock
from agenda_decl._group_commit import OnFailure
from agenda_decl._model import (
    Announcement,
    JobNotification,
    JobParameters,
    JobStateNotification,
)
from agenda_decl._tasks import BackgroundTasks
from agenda_decl.errors import InvalidOptionError, NotConnectedError
from agenda_decl.interfaces import NotificationChannel, Unsubscribe
from agenda_decl.runtime.events import Events, JobEvent
from agenda_decl.runtime.scheduler import Scheduler

log = logging.getLogger("agenda_decl")

#: How often the scheduler re-measures the skew between its clock and the store's.
SKEW_REFRESH = timedelta(minutes=1)
SKEW_WARNING = timedelta(seconds=60)
#: Seconds between tries of a channel that gave up reconnecting (polling goes on meanwhile).
CHANNEL_RETRY_SECONDS = 60.0


class Wakeable(Protocol):
    """What notifications wake (the processor)."""

    def handle_notification(self, notification: JobNotification) -> None: ...

    def wake_all(self) -> None: ...


class _ReconnectSwitch(Protocol):
    @property
    def enabled(self) -> bool: ...


@runtime_checkable
class _SelfReconnecting(Protocol):
    """A channel that reconnects by itself, within limits, and reports a failed ``connect()``
    as an ``error`` event (``BaseNotificationChannel`` and its subclasses)."""

    @property
    def reconnect_options(self) -> _ReconnectSwitch: ...


@runtime_checkable
class _QueuesStates(Protocol):
    """A channel that can queue a state notification without a task of the caller's
    (``BaseNotificationChannel``: ``None`` when it has no queue of its own)."""

    def publish_state_soon(
        self, notification: JobStateNotification, on_failure: OnFailure
    ) -> bool: ...


class ChannelLink:
    def __init__(
        self,
        scheduler: Scheduler,
        channel: NotificationChannel | None,
        events: Events,
        *,
        store_name: str,
        store_channel: bool = False,
    ) -> None:
        self._scheduler = scheduler
        self.channel = channel
        #: ``channel`` is the store's own (``backend.notification_channel``): a store that
        #: ``announces_inserts`` publishes on it in the insert's round trip.
        self._store_channel = store_channel and channel is not None
        self._events = events
        self._store_name = store_name
        self._processor: Wakeable | None = None
        self._attached = False
        self._unsubscribe_jobs: Unsubscribe | None = None
        self._unsubscribe_state: Unsubscribe | None = None
        self._failed_at = 0.0
        self._skew_checked_at: datetime | None = None
        self._sending = BackgroundTasks(what="state notification")
        #: Whether ``channel`` has ``publish_state_soon`` (asked once: a runtime protocol
        #: check costs microseconds, and a busy worker publishes three states per job).
        self._queues_states = isinstance(channel, _QueuesStates)

    @property
    def processor(self) -> Wakeable | None:
        """Woken by notifications while the scheduler processes jobs."""
        return self._processor

    @processor.setter
    def processor(self, processor: Wakeable | None) -> None:
        self._processor = processor
        self._sync_job_subscription()

    # -- the channel's lifecycle ---------------------------------------------------------

    async def attach(self) -> None:
        """Listen to the channel and connect it. A channel that cannot connect is reported as
        an ``error`` event; the scheduler goes on polling. A channel that refuses its
        configuration (``InvalidOptionError``: a LISTEN through a connection pooler) raises:
        no retry would mend it."""
        channel = self.channel
        if channel is None:
            return
        channel.on("stateChange", self._on_channel_state)
        channel.on("error", self._on_channel_error)
        self._attached = True
        self._sync_job_subscription()
        self.sync_state_subscription()
        if channel.state != "connected":
            try:
                await channel.connect()
            except InvalidOptionError:
                await self.detach()
                raise
            except Exception as error:
                if not isinstance(channel, _SelfReconnecting):  # those report it
                    await self._events.emit_error(error)

    async def detach(self) -> None:
        """Stop listening and disconnect the channel."""
        self._attached = False
        self._sync_job_subscription()
        self.sync_state_subscription()
        if self.channel is not None:
            self.channel.off("stateChange", self._on_channel_state)
            self.channel.off("error", self._on_channel_error)
            await self.channel.disconnect()

    def _sync_job_subscription(self) -> None:
        """Take job notifications from the channel only while a processor here claims: an
        agenda that only enqueues would decode one per enqueue (its own among them) for
        nothing, in the moments a worker's wake-up needs the machine."""
        wanted = self._attached and self._processor is not None
        self._unsubscribe_jobs = _follow(
            self._unsubscribe_jobs, self.channel if wanted else None,
            lambda channel: channel.subscribe(self._on_notification))

    def sync_state_subscription(self) -> None:
        """Take other workers' state notifications from the channel only while something here
        listens to a state event: nobody else reads them, and a busy worker would otherwise
        decode three per job for nothing (its own among them)."""
        channel = self.channel
        wanted = (self._attached and channel is not None
                  and channel.supports_state_notifications
                  and self._events.listens_to_state_events())
        self._unsubscribe_state = _follow(
            self._unsubscribe_state, channel if wanted else None,
            lambda channel: channel.subscribe_state(self._on_state_notification))

    async def tend(self) -> None:
        """What the poll does besides claiming: refresh the clock skew when it is old, and
        try a channel that gave up once more."""
        await self.refresh_skew()
        await self.revive()

    async def revive(self) -> None:
        """Try a channel that gave up reconnecting once more, every
        :data:`CHANNEL_RETRY_SECONDS`: a worker that outlives an outage of its notification
        server gets its instant wake-ups back."""
        channel = self.channel
        if channel is None or channel.state != "error":
            return
        if isinstance(channel, _SelfReconnecting) and not channel.reconnect_options.enabled:
            return  # reconnecting was switched off for this channel
        if time.monotonic() - self._failed_at < CHANNEL_RETRY_SECONDS:
            return
        self._failed_at = time.monotonic()
        with contextlib.suppress(Exception):  # connect() reported it as an error event
            await channel.connect()

    def _on_channel_state(self, state: str) -> None:
        """After a reconnect, claim at once: what was published while away is lost."""
        if state == "error":
            self._failed_at = time.monotonic()
        if state == "connected" and self._processor is not None:
            self._processor.wake_all()

    def _on_channel_error(self, error: BaseException) -> None:
        """Channel errors become Agenda ``error`` events at once (in the channel's call)."""
        if not self._events.emit_error_now(error):
            log.warning("notification channel: %s", error)

    # -- outbound ------------------------------------------------------------------------

    async def insert(self, jobs: Sequence[JobParameters[Any]]) -> list[JobParameters[Any]]:
        """Store new jobs (``JobRepository.insert_jobs``) and tell listening workers: in the
        insert's own round trip when the store publishes on this very channel, else on the
        channel once they are stored."""
        repository = self._scheduler.repository
        announce = self._announcement()
        inline = self._store_channel and repository.announces_inserts
        stored = await repository.insert_jobs(jobs, last_modified_by=self._scheduler.name,
                                              announce=announce if inline else None)
        if not inline:
            await self.publish_saved(stored, announce)
        return stored

    async def publish_saved(
        self, jobs: Sequence[JobParameters[Any]], announce: Announcement | None = None
    ) -> None:
        """Tell listening workers jobs were saved, one notification per job name (skipped
        when the channel is down)."""
        channel = self.channel
        if channel is None or channel.state != "connected":
            return
        stored = [job for job in jobs if job.id is not None]
        for notification in (announce or self._announcement()).notifications(stored):
            try:
                await channel.publish(notification)
            except Exception as error:  # the save succeeded; polling will find the job
                await self._events.emit_error(error)
                return

    def _announcement(self) -> Announcement:
        return Announcement(source=self._scheduler.name, timestamp=self._scheduler.clock.now())

    @property
    def publishes_states(self) -> bool:
        """Whether :meth:`publish_state` may send anything (the channel carries states)."""
        channel = self.channel
        return channel is not None and channel.supports_state_notifications

    def publish_state(self, event: JobEvent) -> None:
        """Send a job event of this worker to the others, without waiting (best effort)."""
        kind = event.name
        if kind == "retry exhausted":
            return  # not sent to other workers, as in Agenda
        channel = self.channel
        if (channel is None or channel.state != "connected"
                or not channel.supports_state_notifications):
            return
        params, error = event.job.attrs, event.error
        assert params.id is not None
        notification = JobStateNotification(
            type=kind, job_id=params.id, job_name=params.name,
            timestamp=self._scheduler.clock.now(), source=self._scheduler.name,
            progress=event.progress, error=params.fail_reason if error else None,
            fail_count=params.fail_count if error else None,
            last_run_at=params.last_run_at, last_finished_at=params.last_finished_at,
            retry_at=params.next_run_at if kind == "retry" else None,
            retry_attempt=(params.fail_count or 1) if kind == "retry" else None,
            duration=_duration_ms(params) if kind in ("success", "complete") else None,
        )
        if self._queues_states:
            # Three per job: straight into the channel's outbox, without a task each.
            try:  # a cast, not an isinstance: that check was the one made in __init__
                queued = cast(_QueuesStates, channel).publish_state_soon(
                    notification, self._state_failed)
            except NotConnectedError:
                return  # best effort, as below
            except Exception as error:
                self._events.emit_error_soon(error)
                return
            if queued:
                return
        self._sending.spawn(self._send_state(channel, notification))

    def _state_failed(self, error: Exception) -> None:
        """What :meth:`_send_state` does with the failure of queued notifications."""
        if not isinstance(error, NotConnectedError):
            self._events.emit_error_soon(error)

    async def _send_state(
        self, channel: NotificationChannel, notification: JobStateNotification
    ) -> None:
        try:
            await channel.publish_state(notification)
        except NotConnectedError:
            pass  # the channel went down since the check: state events are best effort
        except Exception as error:
            await self._events.emit_error(error)

    # -- inbound -------------------------------------------------------------------------

    def _on_notification(self, notification: JobNotification) -> None:
        if self._processor is not None:
            self._processor.handle_notification(notification)

    async def _on_state_notification(self, notification: JobStateNotification) -> None:
        if notification.source == self._scheduler.name:
            return  # our own event, already emitted locally
        now = self._scheduler.clock.now()
        await self._events.emit_job(JobEvent.relayed(notification, now))

    # -- the store's clock ---------------------------------------------------------------

    async def measure_skew(self) -> None:
        """Align a :class:`StoreAlignedClock` with the store's clock (other clocks are left
        alone): lock stamps and deadlines of every worker then agree with one another."""
        clock = self._scheduler.clock
        if not isinstance(clock, StoreAlignedClock):
            return
        store_now = await self._scheduler.repository.server_now()
        self._skew_checked_at = clock.now()
        if store_now is None:
            return
        clock.offset = timedelta(0)
        skew = store_now - clock.now()
        clock.offset = skew
        if abs(skew) > SKEW_WARNING:
            log.warning("this machine's clock is %s off the %s clock", skew, self._store_name)

    async def refresh_skew(self) -> None:
        """Re-measure the store clock skew when the last measurement is old."""
        checked = self._skew_checked_at
        if checked is None or self._scheduler.clock.now() - checked > SKEW_REFRESH:
            await self.measure_skew()


def _duration_ms(params: JobParameters[Any]) -> int | None:
    started, ended = params.last_run_at, params.last_finished_at
    if started is None or ended is None or ended < started:
        return None
    return int((ended - started).total_seconds() * 1000)


def _follow(current: Unsubscribe | None, channel: NotificationChannel | None,
            subscribe: Callable[[NotificationChannel], Unsubscribe]) -> Unsubscribe | None:
    """A subscription brought in line: made on ``channel`` when given and not made yet,
    ended when ``channel`` is None (not wanted), else kept."""
    if channel is not None:
        return current if current is not None else subscribe(channel)
    if current is not None:
        current()
    return None
