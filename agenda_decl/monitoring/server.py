"""The HTTP endpoint of a worker: ``/metrics`` (Prometheus text format, through
prometheus-client's own WSGI app) and ``/healthz`` (JSON; 200 healthy, 503 not), served by
the standard library's WSGI server on a thread of its own, so a probe is answered even while
the event loop is busy (and a loop that stops polling shows as unhealthy)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from agenda_decl.monitoring.health import WorkerHealth
from agenda_decl.monitoring.metrics import WorkerMetrics

__all__ = ["MonitoringServer"]

_REFRESH_TIMEOUT_S = 5.0
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _ThreadingServer(WSGIServer):
    """One thread per request: a slow scrape does not hold up a probe."""

    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._handle, args=(request, client_address),
                                  daemon=True)
        thread.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would fill the worker's log."""


class MonitoringServer:
    """Serves ``metrics`` and ``health`` on ``host:port`` (port 0: any free one; see
    :attr:`port`) until :meth:`stop`. ``loop`` is the worker's event loop, where the store
    numbers of a scrape are read."""

    def __init__(self, metrics: WorkerMetrics, health: WorkerHealth,
                 loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self._metrics, self._health, self._loop = metrics, health, loop
        from prometheus_client import make_wsgi_app

        self._metrics_app = make_wsgi_app(metrics.registry)
        self._server = make_server(host, port, self._app, server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="agenda-decl-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            status, body = self._health.report()
            text = json.dumps(body).encode()
            start_response("200 OK" if status == 200 else "503 Service Unavailable",
                           [("Content-Type", "application/json"),
                            ("Content-Length", str(len(text)))])
            return [text]
        if path == "/metrics":
            self._refresh()
            result: Iterable[bytes] = self._metrics_app(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics and /healthz are served here\n"]

    def _refresh(self) -> None:
        if self._loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self._metrics.refresh(), self._loop)
        try:
            future.result(_REFRESH_TIMEOUT_S)
        except Exception:  # a busy or stopping loop: serve the numbers as they are
            future.cancel()
