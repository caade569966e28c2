"""OpenTelemetry spans around job runs, when ``opentelemetry-api`` is installed (it is not a
dependency). A span ``job <name>`` covers each run of this worker, from its ``start`` event to
its ``complete``; a failed run records the exception and an error status. The span is the
current one while the handler runs (plain ``def`` handlers included: they run in a copy of the
context), so spans the handler makes are its children. Without an SDK configured (the
application's business), the API's no-op tracer makes this cost next to nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any

from agenda_decl.agenda import Agenda
from agenda_decl.job import Job

__all__ = ["install_tracing"]


def install_tracing(agenda: Agenda) -> bool:
    """Trace the runs of ``agenda``; False (and nothing done) without opentelemetry-api."""
    try:
        from opentelemetry import context, trace
    except ImportError:
        return False
    tracer = trace.get_tracer("agenda_decl")
    open_spans: dict[str, tuple[Any, Any]] = {}

    def on_start(job: Any) -> None:
        if not isinstance(job, Job):
            return
        span = tracer.start_span(f"job {job.attrs.name}", kind=trace.SpanKind.CONSUMER,
                                 attributes={"agenda.job.name": job.attrs.name,
                                             "agenda.job.id": str(job.attrs.id)})
        token = context.attach(trace.set_span_in_context(span))
        open_spans[str(job.attrs.id)] = (span, token)

    def on_fail(error: BaseException, job: Any) -> None:
        entry = open_spans.get(str(job.attrs.id)) if isinstance(job, Job) else None
        if entry is not None:
            entry[0].record_exception(error)
            entry[0].set_status(trace.Status(trace.StatusCode.ERROR, str(error)))

    def on_complete(job: Any) -> None:
        entry = open_spans.pop(str(job.attrs.id), None) if isinstance(job, Job) else None
        if entry is None:
            return
        span, token = entry
        with contextlib.suppress(Exception):  # ended in another context: the span still ends
            context.detach(token)
        span.end()

    agenda.on("start", on_start)
    agenda.on("fail", on_fail)
    agenda.on("complete", on_complete)
    return True
