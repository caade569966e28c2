"""MongoDB on mongomock (no server can be had on these machines), or on a real server when
``AGENDA_TEST_MONGODB_URL`` is set: the same tests run unchanged on either."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import mongomock
import pymongo
from pymongo.errors import PyMongoError

from agenda_decl.backends.mongo import MongoBackend
from tests.backends.servers import MONGODB_URL, server_missing

DATABASE = "agenda_test"


@contextmanager
def database() -> Iterator[Any]:
    """A database on the real server when configured, else on a fresh mongomock client."""
    if MONGODB_URL:
        client: Any = pymongo.MongoClient(MONGODB_URL, serverSelectionTimeoutMS=5000)
        try:
            client.admin.command("ping")
        except PyMongoError as error:
            client.close()
            server_missing("MongoDB (AGENDA_TEST_MONGODB_URL)", error)
        db = client.get_default_database(DATABASE)
    else:
        client = mongomock.MongoClient()
        db = client.get_database(DATABASE)
    try:
        yield db
    finally:
        client.close()


def unique_collection() -> str:
    return f"agendaJobs_{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def make_backend(tmp_path: Path) -> AsyncIterator[MongoBackend]:
    with database() as db:
        collection = unique_collection()
        backend = MongoBackend(mongo=db, collection=collection)
        await backend.connect()
        try:
            yield backend
        finally:
            await backend.disconnect()
            db.drop_collection(collection)
