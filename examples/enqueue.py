"""Application code enqueuing jobs declared in agenda.yaml: a script, a web view, a command.

    python -m examples.enqueue [CONFIG]  # then a worker runs them: agenda-decl run

It uses the typed handles ``agenda-decl generate`` wrote to ``examples/agenda_jobs.py``: one
per job, with a payload class per job. By default the handles load the agenda.yaml they were
generated from (without importing any handler: this process only enqueues); given CONFIG (a
copy of agenda.yaml elsewhere), they are bound to the Agenda of that file instead. The payload
types declared there check the data before anything is stored. It is plain, synchronous code:
every call goes through ``run_sync``, agenda-decl's one synchronous entry point.
"""

from __future__ import annotations

import sys

import agenda_decl
from agenda_decl import run_sync
from agenda_decl.config import PayloadError
from examples.agenda_jobs import CONFIG, SendWelcomePayload, send_welcome


def main() -> None:
    if len(sys.argv) > 1:
        CONFIG.bind(agenda_decl.load(sys.argv[1]).agenda)
    try:
        welcome = SendWelcomePayload(email="ada@example.com", plan="pro")
        job = run_sync(send_welcome.now(welcome))
        print(f"enqueued send-welcome {job.attrs.data} id={job.attrs.id}")
        team = [SendWelcomePayload(email=f"{name}@example.com") for name in ("ken", "lin")]
        jobs = run_sync(send_welcome.now_many(team))  # one round trip for the lot
        print(f"enqueued {len(jobs)} send-welcome jobs at once")
        later = SendWelcomePayload(email="grace@example.com")  # plan: the default, "free"
        job = run_sync(send_welcome.schedule("in 4 seconds", later))
        print(f"scheduled send-welcome {job.attrs.data} at {job.attrs.next_run_at:%H:%M:%S}")
        try:
            # mypy refuses plan="gold" (not a declared choice); at run time the declared
            # payload check refuses it before anything is stored.
            gold = SendWelcomePayload(email="eve@example.com", plan="gold")  # type: ignore[arg-type]
            run_sync(send_welcome.now(gold))
        except PayloadError as error:
            print(f"refused, nothing stored: {error}")
    finally:
        run_sync(CONFIG.agenda.stop())


if __name__ == "__main__":
    main()
