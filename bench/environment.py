"""The machine and the versions a run measured, for the report's header."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed
from pathlib import Path

import agenda_decl

from .settings import POSTGRES_URL, REDIS_URL

#: The checkout of the agenda-decl that is measured (the one imported).
ROOT = Path(agenda_decl.__file__).resolve().parent.parent


def machine() -> dict[str, str]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores (nproc)": str(os.cpu_count()),
        "memory": f"{_meminfo_gib():.1f} GiB",
        "CPU": _cpu_model(),
        "load average at start": load(),
        "OS": f"{platform.system()} {platform.release()}",
    }


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def busy() -> bool:
    """Whether other work is using the cores (1-minute load above half of them)."""
    return os.getloadavg()[0] > (os.cpu_count() or 1) / 2


def _meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def commit() -> str:
    """agenda-decl's commit, with ``+ uncommitted changes`` when the tree differs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    # What a bench run writes is not a change of the code measured.
    changed = git("status", "--porcelain", "--", ".", ":!bench/RESULTS.md",
                  ":!bench/results.json", ":!bench/*.png")
    return head + (" + uncommitted changes" if changed else "")


def python_versions() -> dict[str, str]:
    found = {"Python": platform.python_version(), "agenda-decl commit": commit(),
             "SQLite": sqlite3.sqlite_version}
    for package in ("psycopg", "redis", "hiredis", "procrastinate", "matplotlib"):
        try:
            found[package] = installed(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


async def server_versions() -> dict[str, str]:
    import psycopg
    import redis.asyncio as redis

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
        row = await (await conn.execute("SHOW server_version")).fetchone()
    client = redis.Redis.from_url(REDIS_URL)
    info = await client.info("server")
    await client.aclose()
    return {"PostgreSQL": str(row[0]) if row else "?",
            "Redis": str(info.get("redis_version", "?"))}
