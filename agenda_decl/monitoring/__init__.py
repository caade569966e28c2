"""What a worker tells about itself: Prometheus metrics fed by its Agenda's events
(:mod:`.metrics`), its health for container probes (:mod:`.health`), both served over HTTP
(:mod:`.server`), and OpenTelemetry spans around job runs (:mod:`.tracing`). prometheus-client
is the optional extra ``agenda-decl[metrics]``; opentelemetry-api is used when installed."""

from __future__ import annotations

from agenda_decl.monitoring.health import WorkerHealth
from agenda_decl.monitoring.metrics import MISSING_EXTRA, WorkerMetrics
from agenda_decl.monitoring.tracing import install_tracing

__all__ = ["MISSING_EXTRA", "WorkerHealth", "WorkerMetrics", "install_tracing"]
