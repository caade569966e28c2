"""Connections to PostgreSQL (psycopg 3), as the repository and the LISTEN/NOTIFY channel
both make them: one direct autocommit connection, or a pool, from a connection string; the
target of a pool someone else opened; and the error that says the server is unreachable,
with every password masked.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from agenda_decl._secrets import mask_text, mask_url
from agenda_decl.errors import BackendUnavailableError

Pool = AsyncConnectionPool[Any]
#: Run on each new connection of a pool (``AsyncConnectionPool``'s ``configure``).
Configure = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


def unavailable(conninfo: str, error: BaseException) -> BackendUnavailableError:
    """The driver's reason, with the password of any connection string or ``password=``
    field in it masked where it sits (libpq quotes parts of a bad conninfo)."""
    reason = mask_text(str(error).strip() or type(error).__name__)
    return BackendUnavailableError(
        f"cannot reach PostgreSQL at {mask_url(conninfo)}: {reason}"
    )


async def connect(conninfo: str, timeout: float, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection, or BackendUnavailableError with a redacted URL."""
    try:
        return await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=max(1, round(timeout)), **kwargs
        )
    except (psycopg.Error, OSError) as error:
        raise unavailable(conninfo, error) from None


async def open_pool(
    conninfo: str,
    *,
    max_size: int,
    name: str,
    configure: Configure | None = None,
    wait_timeout: float | None = None,
) -> Pool:
    """An open pool of autocommit connections (at least one). With ``wait_timeout``, wait
    that long for the first connection (psycopg_pool's error when it does not come);
    without, return at once and let the pool connect in the background."""
    pool: Pool = AsyncConnectionPool(
        conninfo, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True},
        name=name, configure=configure,
    )
    if wait_timeout is None:
        await pool.open()
    else:
        await pool.open(wait=True, timeout=wait_timeout)
    return pool


async def pool_target(pool: Pool) -> tuple[str, dict[str, Any]]:
    """The conninfo and keyword arguments a pool connects with (for a LISTEN connection)."""
    conninfo, kwargs = await _resolve(pool.conninfo), await _resolve(pool.kwargs)
    extra = {k: v for k, v in dict(kwargs or {}).items() if k not in ("autocommit", "row_factory")}
    return str(conninfo or ""), extra


async def _resolve(value: Any) -> Any:
    """A pool's conninfo/kwargs may be a value, a function, or an async function."""
    value = value() if callable(value) else value
    return await value if inspect.isawaitable(value) else value
