"""Application code enqueuing jobs declared in agenda.yaml: a script, a web view, a command.

    python examples/enqueue.py [CONFIG]  # then a worker runs them: agenda-decl run

CONFIG defaults to the repository's agenda.yaml.

It loads agenda.yaml without importing any handler (this process only enqueues), so the
payload types declared there check the data before anything is stored. It is plain,
synchronous code: every call goes through ``run_sync``, agenda-decl's one synchronous entry
point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import agenda_decl
from agenda_decl import run_sync
from agenda_decl.config import PayloadError

CONFIG = Path(__file__).resolve().parent.parent / "agenda.yaml"


def main() -> None:
    agenda = agenda_decl.load(sys.argv[1] if len(sys.argv) > 1 else CONFIG).agenda
    try:
        job = run_sync(agenda.now("send-welcome", {"email": "ada@example.com", "plan": "pro"}))
        print(f"enqueued send-welcome {job.attrs.data} id={job.attrs.id}")
        job = run_sync(agenda.schedule("in 4 seconds", "send-welcome",
                                       {"email": "grace@example.com"}))
        print(f"scheduled send-welcome {job.attrs.data} at {job.attrs.next_run_at:%H:%M:%S}")
        try:
            run_sync(agenda.now("send-welcome", {"email": "eve@example.com", "plan": "gold"}))
        except PayloadError as error:
            print(f"refused, nothing stored: {error}")
    finally:
        run_sync(agenda.stop())


if __name__ == "__main__":
    main()
