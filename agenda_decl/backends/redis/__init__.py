"""Redis storage and pub/sub notifications, sharing Agenda v6's keys, encodings and channels.

A Node Agenda v6 process and agenda-decl workers can share one Redis: jobs live in Agenda's
``job:{id}`` hashes (every value a string, ``'null'`` for absent) with its ``jobs:all``,
``jobs:by_name:{name}``, ``jobs:by_next_run_at`` and ``jobs:single:{name}`` keys, ids are UUIDs,
and notifications go to Agenda's channels (``agenda:jobs`` and ``agenda:jobs:state``) as
Agenda's JSON. Every write and multi-key read is one Lua script (the ``.lua`` files here), so
it is atomic. On a Redis Cluster (``redis+cluster://``) every key of a store shares the slot
of the hash tag its key prefix starts with (``{agenda}:``), so each script runs on one node. The
channel is ``notifications.redis``; the client plumbing both share is ``connectors.redis``.
The job log (``RedisJobLogger``) keeps Agenda 6.2's ``log:{id}`` hashes and ``logs:*`` sorted
sets under the same prefix.

    backend = RedisBackend(connection_string="redis://localhost:6379/0")
    agenda = Agenda(backend=backend)
"""

from agenda_decl.backends.redis.backend import RedisBackend
from agenda_decl.backends.redis.job_log import RedisJobLogger
from agenda_decl.backends.redis.repository import RedisJobRepository
from agenda_decl.notifications.redis import RedisNotificationChannel

__all__ = ["RedisBackend", "RedisJobLogger", "RedisJobRepository", "RedisNotificationChannel"]
