"""MongoDB storage in Agenda v6's layout, and its change-stream notification channel.

Documents keep Agenda v6's camelCase fields, ObjectId ``_id``, BSON dates and its
``findAndLockNextJobIndex``, so a Node.js Agenda v6 process and an agenda-decl worker can share
one collection. The change-stream channel is ``notifications.changestream``; the client and
its thread are ``connectors.mongo``. A client or database passed in is never closed. The job
log (``MongoJobLogger``) is Agenda 6.2's ``agenda_logs`` collection.

    backend = MongoBackend(address="mongodb://localhost/app")             # owns its client
    backend = MongoBackend(mongo=MongoClient(url).get_database("app"))    # borrows one
"""

from agenda_decl.backends.mongo.backend import MongoBackend
from agenda_decl.backends.mongo.job_log import MongoJobLogger
from agenda_decl.backends.mongo.repository import MongoJobRepository
from agenda_decl.notifications.changestream import (
    ChangeStreamLike,
    MongoChangeStreamNotificationChannel,
    ReplicaSetRequiredError,
    StreamFactory,
    watch_collection,
)

__all__ = [
    "ChangeStreamLike",
    "MongoBackend",
    "MongoChangeStreamNotificationChannel",
    "MongoJobLogger",
    "MongoJobRepository",
    "ReplicaSetRequiredError",
    "StreamFactory",
    "watch_collection",
]
