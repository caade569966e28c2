"""Where the real servers are, and the rule for a missing one: the test fails, never skips.

Every machine (developers' and CI's) runs PostgreSQL and Redis on loopback; `.ci/run` starts
them. A test that silently skipped when a server was down would hide a broken backend.
"""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get(
    "AGENDA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AGENDA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: A Redis Cluster (``redis+cluster://``) that `.ci/run` started; without it the tests start
#: one of their own (tests/backends/redis_cluster.py).
REDIS_CLUSTER_URL = os.environ.get("AGENDA_TEST_REDIS_CLUSTER_URL")
#: Set to run the MongoDB tests against a real server instead of mongomock.
MONGODB_URL = os.environ.get("AGENDA_TEST_MONGODB_URL")


def server_missing(what: str, error: BaseException) -> None:
    pytest.fail(
        f"{what} is not reachable ({type(error).__name__}: {error}). The tests need the real "
        "server: run `bash .ci/run`, which starts it, or start it by hand.",
        pytrace=False,
    )
