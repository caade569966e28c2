"""Node Agenda 6.2.6 with @agendajs/postgres-backend and @agendajs/redis-backend: installed
with ``npm ci`` from bench/node's pinned package.json and package-lock.json into the cache
folder (once per lock), and driven through bench/node/bench.mjs, one process per workload."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .common import call_figures, latency_figures
from .settings import CACHE, POSTGRES_URL, REDIS_URL, Sizes
from .stores import Store, fresh_store

SOURCE = Path(__file__).with_name("node")
FILES = ("package.json", "package-lock.json", "bench.mjs")
PACKAGES = ("agenda", "@agendajs/postgres-backend", "@agendajs/redis-backend")


def install() -> Path:
    """The folder with the packages and the runner; ``npm ci`` runs when the lock changed."""
    folder = Path(CACHE) / "node"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(SOURCE / name, folder / name)
    lock = hashlib.sha256((SOURCE / "package-lock.json").read_bytes()).hexdigest()
    stamp = folder / "node_modules" / ".bench-lock"
    if not stamp.exists() or stamp.read_text() != lock:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=folder, check=True)
        stamp.write_text(lock)
    return folder


def versions(folder: Path) -> dict[str, str]:
    """Node's version and each installed package's."""
    found = {"Node": subprocess.run(["node", "--version"], capture_output=True, text=True,
                                    check=True).stdout.strip()}
    for package in PACKAGES:
        manifest = folder / "node_modules" / package / "package.json"
        found[package] = json.loads(manifest.read_text())["version"]
    return found


def _spec(store: Store, mode: str, **extra: Any) -> str:
    where = ({"url": POSTGRES_URL, "table": store.name} if store.kind == "postgres"
             else {"url": REDIS_URL, "prefix": f"{store.name}:"})
    return json.dumps({"mode": mode, "store": store.kind, "channel": store.name,
                       **where, **extra})


async def _start(folder: Path, spec: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "node", str(folder / "bench.mjs"), spec, cwd=folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _result(process: asyncio.subprocess.Process, timeout: float = 600) -> Any:
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    if process.returncode != 0:
        raise RuntimeError(f"node bench.mjs failed ({process.returncode}): "
                           f"{stderr.decode(errors='replace')[-2000:]}")
    return json.loads(stdout.decode().strip().splitlines()[-1])


async def drain(folder: Path, kind: str, sizes: Sizes) -> dict[str, float]:
    async with fresh_store(kind) as store:
        result = await _result(await _start(folder, _spec(
            store, "drain", jobs=sizes.drain_jobs, concurrency=sizes.concurrency)))
    return {"enqueue_concurrent_jobs_s": result["enqueue"], "drain_jobs_s": result["drain"]}


async def enqueue(folder: Path, kind: str, sizes: Sizes) -> dict[str, float]:
    async with fresh_store(kind) as store:
        result = await _result(await _start(folder, _spec(store, "enqueue", jobs=sizes.calls)))
    return call_figures(result["calls"], result["total"])


async def latency(folder: Path, kind: str, sizes: Sizes) -> dict[str, float]:
    """A Node worker process and a Node producer process, as ours.latency does in Python."""
    async with fresh_store(kind) as store:
        worker = await _start(folder, _spec(store, "worker", jobs=sizes.samples))
        assert worker.stdout is not None
        ready = await asyncio.wait_for(worker.stdout.readline(), 60)
        if not ready:
            await _result(worker)  # raises with the worker's stderr
        producer = await _start(folder, _spec(store, "producer", jobs=sizes.samples,
                                              gap=sizes.gap_ms))
        sent = (await _result(producer))["sent"]
        started = (await _result(worker, timeout=60))["started"]
    return latency_figures([(started[str(i)] - sent[i]) * 1000 for i in range(sizes.samples)])
