"""Plumbing every workload shares: percentiles, a function run in a fresh process, the
resident memory of this process, and a wait that fails instead of hanging."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
SPAWN = multiprocessing.get_context("spawn")


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 (the median), p95 and p99 of ``values`` (inclusive method: small samples work)."""
    if len(values) < 2:
        only = values[0] if values else float("nan")
        return {"p50": only, "p95": only, "p99": only}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": cuts[94], "p99": cuts[98]}


def latency_figures(delays_ms: list[float], prefix: str = "e2s") -> dict[str, float]:
    """``e2s_p50_ms`` and the like: the percentiles of enqueue -> start delays."""
    return {f"{prefix}_{cut}_ms": value for cut, value in percentiles(delays_ms).items()}


async def concurrent_calls(enqueue: Callable[[int], Awaitable[object]], jobs: int,
                           producers: int) -> float:
    """``enqueue(0)`` ... ``enqueue(jobs - 1)`` made by ``producers`` concurrent producers:
    the calls per second."""
    numbers = iter(range(jobs))

    async def producer() -> None:
        for i in numbers:
            await enqueue(i)

    started = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(producers)))
    return jobs / (time.perf_counter() - started)


async def sequential_calls(enqueue: Callable[[int], Awaitable[object]],
                           count: int) -> dict[str, float]:
    """``count`` calls awaited one after the other: :func:`call_figures`."""
    calls = []
    started = time.perf_counter()
    for i in range(count):
        before = time.perf_counter()
        await enqueue(i)
        calls.append(time.perf_counter() - before)
    return call_figures(calls, time.perf_counter() - started)


def call_figures(calls_s: list[float], total_s: float) -> dict[str, float]:
    """The enqueue call p50 (ms) and rate of sequential enqueue calls."""
    return {"enqueue_call_p50_ms": percentiles(calls_s)["p50"] * 1000,
            "enqueue_seq_jobs_s": len(calls_s) / total_s}


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux: VmRSS of /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def in_other_process(function: Callable[[Any], T], argument: Any) -> T:
    """``function(argument)`` in a freshly spawned Python process (nothing inherited)."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=SPAWN) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, function, argument)


class Countdown:
    """A no-op handler that counts its runs: ``wait()`` returns once ``target`` ran."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.ran = 0
        self._done = asyncio.Event()

    async def handler(self, job: Any) -> None:
        self.ran += 1
        if self.ran == self.target:
            self._done.set()

    async def wait(self, timeout: float = 600) -> None:
        await asyncio.wait_for(self._done.wait(), timeout)


async def until(done: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Wait until ``done()`` holds; a RuntimeError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.005)
