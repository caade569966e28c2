"""Connections to MongoDB (pymongo's synchronous client), as the repository and the
change-stream channel use them: the database from an address or passed in, the thread the
driver runs on, the error that says the server is unreachable (without the password), and the
rule for collection names.

The synchronous client runs off the event loop on one dedicated thread per connector (so
every call of one repository is serialized, and a busy default executor full of plain-``def``
handlers cannot starve the store). The same code therefore runs against mongomock, the fake of
that API the tests use.

Through an outage pymongo does the waiting and retrying itself, and agenda-decl adds no retry
loop of its own: every operation waits up to ``serverSelectionTimeoutMS`` (30 s by default,
set in the connection string) for a server it may use (the primary, for everything here);
a read or a single-document write (``insert_one``, ``find_one_and_update``, ``update_one``)
that fails on a network error or a primary step-down is retried once, on the new primary,
when the deployment supports it (``retryReads``/``retryWrites``, both on by default: replica
sets and sharded clusters; a standalone server retries reads only). An insert is safe to
retry: its ``_id`` is made by the client before it is sent, and a retried write is applied at
most once by the server. Multi-document writes (``update_many``, ``delete_many``: removals,
disable/enable, unlocking several jobs) are not retried by pymongo; they are idempotent, so
calling them again is safe. What remains (no server within the selection timeout, a second
network error) reaches the caller as one ``BackendUnavailableError`` naming the server.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError

from agenda_decl._secrets import mask_text, mask_url
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError

T = TypeVar("T")
Document = dict[str, Any]
MongoDatabase = Database[Document]
MongoCollection = Collection[Document]


def check_collection_name(name: str) -> str:
    if not isinstance(name, str) or not name or "$" in name or "\x00" in name:
        raise InvalidOptionError(f"invalid MongoDB collection name {name!r}")
    if name.startswith("system."):
        raise InvalidOptionError(f"invalid MongoDB collection name {name!r} (system.*)")
    return name


def normalize_address(address: str) -> str:
    """Agenda adds a missing scheme the same way."""
    if address.startswith(("mongodb://", "mongodb+srv://")):
        return address
    return f"mongodb://{address}"


class MongoConnector:
    """One MongoDB database and the one thread the driver is called on.

    From ``address`` the connector owns its client: :meth:`open` connects and pings it,
    :meth:`close` closes it. A database passed in (``mongo``) is borrowed and never closed.
    ``user`` names the object that uses the connector in the error of a call made while it is
    not open.
    """

    def __init__(
        self, *, address: str | None, mongo: MongoDatabase | None, user: str
    ) -> None:
        if (address is None) == (mongo is None):
            raise InvalidOptionError("MongoBackend needs exactly one of address=... or mongo=...")
        self._address = normalize_address(address) if address is not None else None
        self._given_db = mongo
        self._user = user
        self._client: MongoClient[Document] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def where(self) -> str:
        """The address without its password, for messages."""
        if self._address:
            return mask_url(self._address)
        assert self._given_db is not None
        return f"<database {self._given_db.name!r} passed in>"

    async def open(self, prepare: Callable[[MongoDatabase], None]) -> None:
        """Start the thread, open the database on it and call ``prepare`` with it there."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agenda-mongo")
        await self.run(lambda: prepare(self._database()))

    def _database(self) -> MongoDatabase:
        if self._given_db is not None:
            return self._given_db
        assert self._address is not None
        client: MongoClient[Document] = MongoClient(self._address, appname="agenda-decl")
        try:
            client.admin.command("ping")
            # Node's driver falls back to "test" when the URL names no database; so do we.
            db = client.get_default_database("test")
        except PyMongoError as error:
            client.close()
            raise BackendUnavailableError(
                f"MongoDB at {mask_url(self._address)} is not reachable "
                f"({type(error).__name__}: {mask_text(str(error))})"
            ) from None
        self._client = client
        return db

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the connector's thread, after the calls queued before it.
        A server that cannot be reached (once pymongo gave up: see the module docstring) is
        ``BackendUnavailableError`` naming it."""
        if self._executor is None:
            raise BackendUnavailableError(f"{self._user} is not connected: call connect()")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(function, *args))
        except ConnectionFailure as error:
            reason = mask_text(str(error).strip() or type(error).__name__)
            raise BackendUnavailableError(
                f"MongoDB at {self.where} unreachable: {type(error).__name__}: {reason}"
            ) from None

    async def close(self, *, stopped: Callable[[], None] | None = None) -> None:
        """Let the queued calls finish and stop the thread (then call ``stopped``, if given),
        then close an owned client."""
        executor, self._executor = self._executor, None  # new calls fail from here on
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        if stopped is not None:
            stopped()
        client, self._client = self._client, None
        if client is not None:  # only a client we opened; a database passed in stays open
            await asyncio.to_thread(client.close)
