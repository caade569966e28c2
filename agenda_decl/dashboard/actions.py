"""The dashboard's actions on one job, each done by :mod:`agenda_decl.operations` exactly as
the matching ``agenda-decl jobs`` command does it (what retry keeps, how run now spares a
schedule, how a pause meets ``apply``: see there)."""

from __future__ import annotations

import attrs

from agenda_decl.agenda import Agenda
from agenda_decl.config.model import AgendaConfig
from agenda_decl.operations import (
    OperationRefusedError,
    PauseResult,
    declared_disabled,
    default_operator,
    found_by_ids,
    pause,
    pause_mark,
    remove,
    resume,
    retry,
    run_now,
)

__all__ = ["ACTIONS", "ActionDone", "do_action"]

#: Each action and the question its confirmation page asks.
ACTIONS = {
    "retry": "Run this failed job again now? Its fail count is kept.",
    "run-now": "Run this job once now? A repeating job runs as a one-off copy; its schedule "
               "keeps its next run.",
    "pause": "Pause this job? No worker runs it until it is resumed; apply keeps it paused.",
    "resume": "Resume this job? It runs again from its next due time.",
    "delete": "Delete this job from storage? This cannot be undone.",
}


@attrs.define(kw_only=True, frozen=True)
class ActionDone:
    """What the action did: ``code`` names it for the page shown next; ``job_id`` is the job
    to show (None after a delete), ``of`` the job a run-now copy was made of."""

    code: str
    job_id: str | None
    of: str | None = None


async def do_action(agenda: Agenda, config: AgendaConfig, action: str, job_id: str, *,
                    reason: str = "", user: str | None = None) -> ActionDone:
    """Do ``action`` to the job with ``job_id``. ``JobNotFoundError`` when there is none,
    ``OperationRefusedError`` when the action does not apply to it; nothing is written then.
    A pause records ``user`` (the dashboard's signed-in user, or who runs it)."""
    (job,) = await found_by_ids(agenda, [job_id])
    if action == "retry":
        await retry(agenda, [job])
        return ActionDone(code="retry", job_id=job_id)
    if action == "run-now":
        done = await run_now(agenda, job)
        if done.how == "copy":
            return ActionDone(code="run-now-copy", job_id=done.job.id, of=job_id)
        return ActionDone(code="run-now", job_id=job_id)
    if action == "pause":
        by = f"{user if user not in (None, 'local', 'token') else default_operator()} " \
             "(dashboard)"
        _changed(await pause(agenda, [job], pause_mark(agenda, by, reason.strip()[:200])))
        return ActionDone(code="pause", job_id=job_id)
    if action == "resume":
        _changed(await resume(agenda, [job], declared_disabled=declared_disabled(config)))
        return ActionDone(code="resume", job_id=job_id)
    if action == "delete":
        await remove(agenda, [job])
        return ActionDone(code="delete", job_id=None)
    raise OperationRefusedError(f"unknown action {action!r}")


def _changed(result: PauseResult) -> None:
    """A pause or resume that left the job as it was is refused, with why."""
    if result.left:
        job, why = result.left[0]
        raise OperationRefusedError(f"job {job.id} ({job.name}) was left as it was: {why}")
