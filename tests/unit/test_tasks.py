"""Background tasks: kept until they end, failures reported, all cancelled and awaited on close;
a cancellation a task swallowed is repeated."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agenda_decl._tasks import BackgroundTasks, cancel_and_wait


async def test_a_task_is_kept_until_it_ends() -> None:
    tasks = BackgroundTasks()
    gate = asyncio.Event()
    task = tasks.spawn(gate.wait())
    assert len(tasks) == 1 and list(tasks) == [task]
    gate.set()
    await task
    await asyncio.sleep(0)
    assert len(tasks) == 0


async def test_a_failure_goes_to_on_error_and_a_cancellation_does_not() -> None:
    errors: list[BaseException] = []
    tasks = BackgroundTasks(errors.append)

    async def fail() -> None:
        raise ValueError("boom")

    failing, waiting = tasks.spawn(fail()), tasks.spawn(asyncio.Event().wait())
    await asyncio.wait({failing})
    waiting.cancel()
    await asyncio.wait({waiting})
    await asyncio.sleep(0)
    assert [str(error) for error in errors] == ["boom"]
    assert len(tasks) == 0


async def test_without_on_error_a_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks(what="state publish")

    async def fail() -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="agenda_decl"):
        await asyncio.wait({tasks.spawn(fail())})
        await asyncio.sleep(0)
    assert "state publish failed: boom" in caplog.text


async def test_close_cancels_and_waits_for_every_task() -> None:
    tasks = BackgroundTasks()
    ended: list[str] = []

    async def run(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    for name in ("a", "b"):
        tasks.spawn(run(name))
    await asyncio.sleep(0)
    await tasks.close()
    assert sorted(ended) == ["a", "b"]
    assert len(tasks) == 0


async def test_a_swallowed_cancellation_is_repeated() -> None:
    cancellations = 0

    async def stubborn() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations > 1:
                    raise

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.done() and cancellations == 2
