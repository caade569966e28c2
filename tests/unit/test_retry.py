"""The outage policy (``connectors.retry``) and which driver errors it repeats."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import PoolClosed, PoolTimeout
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from agenda_decl.connectors import postgres, redis
from agenda_decl.connectors.retry import Attempt, Retrying
from agenda_decl.errors import BackendUnavailableError, InvalidIntervalError


def policy(retry_for: object = "30 seconds") -> Retrying:
    return Retrying(store="PostgreSQL", where="postgresql://app:Secret-Pw@db/jobs",
                    transient=lambda error: isinstance(error, ConnectionError),
                    retry_for=retry_for)  # type: ignore[arg-type]


async def test_a_transient_failure_is_repeated_until_it_succeeds() -> None:
    attempts: list[Attempt] = []
    elapsed: list[timedelta] = []

    async def operation(attempt: Attempt) -> str:
        attempts.append(attempt)
        elapsed.append(attempt.elapsed)
        if len(attempts) < 3:
            raise ConnectionError("connection refused")
        return "done"

    retrying = policy()
    assert await retrying.run(operation) == "done"
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.repeated for a in attempts] == [False, True, True]
    assert elapsed[2] > elapsed[1] > elapsed[0] >= timedelta(0)
    assert retrying.retries == 2


async def test_any_other_error_is_raised_at_once() -> None:
    calls = 0

    async def operation(_: Attempt) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bad statement")

    with pytest.raises(ValueError, match="a bad statement"):
        await policy().run(operation)
    assert calls == 1


async def test_past_the_bound_one_error_names_the_store_without_its_password() -> None:
    async def operation(_: Attempt) -> None:
        raise ConnectionError("connection to postgresql://app:Secret-Pw@db/jobs refused")

    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as raised:
        await policy("300 ms").run(operation)
    assert 0.3 <= time.monotonic() - started < 2
    assert str(raised.value) == (
        "PostgreSQL at postgresql://app:***@db/jobs unreachable for 0.3 s: ConnectionError: "
        "connection to postgresql://app:***@db/jobs refused"
    )


async def test_retry_for_zero_tries_once() -> None:
    calls = 0

    async def operation(_: Attempt) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with pytest.raises(BackendUnavailableError,
                       match=r"^PostgreSQL at postgresql://app:\*\*\*@db/jobs unreachable: "):
        await policy(0).run(operation)
    assert calls == 1


async def test_an_outage_is_logged_once_not_per_attempt(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agenda_decl.connectors")
    retrying = policy()
    for _ in range(3):
        failures = 0

        async def operation(_: Attempt) -> None:
            nonlocal failures
            failures += 1
            if failures < 4:
                raise ConnectionError("down")

        await retrying.run(operation)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("PostgreSQL at postgresql://app:***@db/jobs not answering")
    assert "answers again" in messages[1]
    assert "Secret-Pw" not in " ".join(messages)


def test_retry_for_takes_any_duration() -> None:
    assert policy("2 minutes").retry_for == 120
    assert policy(1500).retry_for == 1.5
    assert policy(timedelta(seconds=3)).retry_for == 3
    with pytest.raises(InvalidIntervalError, match="retry_for"):
        policy(-1)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.errors.TooManyConnections("too many clients"), True),
        (psycopg.errors.ReadOnlySqlTransaction("read-only transaction"), True),
        (PoolTimeout("couldn't get a connection"), True),
        (PoolClosed("the pool is closed"), False),
        (psycopg.errors.QueryCanceled("statement timeout"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (psycopg.errors.InvalidPassword("password authentication failed"), False),
        (ValueError("not a driver error"), False),
    ],
)
def test_which_postgres_errors_mean_unreachable(error: BaseException, expected: bool) -> None:
    assert postgres.transient(error) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RedisConnectionError("Connection closed by server."), True),
        (BusyLoadingError("Redis is loading the dataset in memory"), True),
        (ReadOnlyError("You can't write against a read only replica."), True),
        (OSError("connection reset"), True),
        (AuthenticationError("invalid password"), False),
        (ResponseError("ERR Error running script"), False),
    ],
)
def test_which_redis_errors_mean_unreachable(error: BaseException, expected: bool) -> None:
    assert redis.transient(error) is expected
