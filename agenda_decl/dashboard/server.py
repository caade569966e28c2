"""Serving the dashboard with uvicorn in the current event loop: the Agenda connects first (an
unreachable store fails here, before anything listens), then the socket is bound (a port in
use fails here), then uvicorn serves until SIGINT or SIGTERM."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn

from agenda_decl.agenda import Agenda
from agenda_decl.config.model import AgendaConfig
from agenda_decl.dashboard.app import DashboardSettings, create_app

__all__ = ["listening_socket", "serve"]


async def serve(agenda: Agenda, config: AgendaConfig, *, host: str, port: int,
                settings: DashboardSettings, on_listening: Callable[[str], None]) -> None:
    """Serve until stopped; ``on_listening`` gets the address once the socket listens (port 0:
    a free one).

    uvicorn's own logging setup is skipped (``log_config=None``): its records go through the
    caller's handlers (the command's masking one), and there is no access log, so neither a
    request line nor a header is written anywhere."""
    await agenda.ready()
    app = create_app(agenda, config, settings)
    sock = listening_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", server_header=False,
        proxy_headers=False))
    address = f"[{host}]" if ":" in host else host
    on_listening(f"http://{address}:{sock.getsockname()[1]}/")
    with sock:
        await server.serve(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening (connections wait in its backlog
    until uvicorn accepts them)."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
