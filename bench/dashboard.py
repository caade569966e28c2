"""How long the dashboard's pages take over a large store: N jobs (default 100,000) of five
names with data ``{"customer": {"id": i % 1000}, "n": i}``, due over the next days, then each
page fetched through the app (Starlette's TestClient: the store's query and the rendering),
the median of ``--repeat`` fetches.

    python bench/dashboard.py --backend sqlite --jobs 100000
    python bench/dashboard.py --backend postgres --jobs 100000

Tests never assert timings; the results are in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.settings import POSTGRES_URL, REDIS_URL
from bench.stores import Store, remove

NAMES = ["send-mail", "report", "sync", "cleanup", "invoice"]
PAGES = {
    "overview": "/",
    "jobs, page 1": "/jobs",
    "jobs, page 1000": "/jobs?page=1000",
    "jobs of a name": "/jobs?name=report",
    "jobs of a name, by name": "/jobs?name=report&sort=name&order=asc",
    "state queued": "/jobs?state=queued",
    "data customer.id=7": "/jobs?data=customer.id%3D7",
    "text in name": "/jobs?search=voic",
    "a job": "/jobs/{id}",
}


def config_text(store: Store) -> str:
    name = f"bench_{store.suffix}"
    storage = {
        "sqlite": f"{{type: sqlite, path: {store.directory}/bench.db}}",
        "postgres": f"{{type: postgres, connection_string: '{POSTGRES_URL}', table_name: {name}}}",
        "redis": f"{{type: redis, connection_string: '{REDIS_URL}', key_prefix: '{name}:'}}",
    }[store.kind]
    jobs = "".join(f"  {job}: {{}}\n" for job in NAMES)
    return textwrap.dedent(f"""\
        version: 1
        backend:
          storage: {storage}
        scheduler: {{name: bench}}
        jobs:
        """) + jobs


async def seed(path: Path, count: int) -> str:
    from agenda_decl.config import build_agenda, load_config

    agenda = build_agenda(load_config(path), base_dir=path.parent)
    start = datetime.now(UTC) + timedelta(minutes=5)
    first = ""
    try:
        for batch in range(0, count, 500):
            jobs = []
            for i in range(batch, min(batch + 500, count)):
                job = agenda.create(NAMES[i % len(NAMES)], {"customer": {"id": i % 1000}, "n": i})
                jobs.append(job.schedule(start + timedelta(seconds=i)).save())
            saved = await asyncio.gather(*jobs)
            first = first or str(saved[0].attrs.id)
    finally:
        await agenda.stop()
    return first


def measure(path: Path, job_id: str, repeat: int) -> dict[str, float]:
    from starlette.testclient import TestClient

    from agenda_decl.config import build_agenda, load_config
    from agenda_decl.dashboard import create_app

    config = load_config(path)
    app = create_app(build_agenda(config, base_dir=path.parent, read_only=True), config)
    results = {}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for label, url in PAGES.items():
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                try:
                    response = client.get(url.format(id=job_id))
                except Exception as error:  # the store gave up: say so, measure the rest
                    print(f"  {label:<26}failed: {type(error).__name__}: {error}", flush=True)
                    break
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            else:
                results[label] = statistics.median(times)
                print(f"  {label:<26}{results[label]:>9.1f} ms", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "redis"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = Store(args.backend, False, directory=directory)
        path = Path(directory) / "agenda.yaml"
        path.write_text(config_text(store))
        try:
            began = time.perf_counter()
            job_id = asyncio.run(seed(path, args.jobs))
            print(f"{args.backend}: {args.jobs} jobs stored in {time.perf_counter() - began:.0f} s",
                  flush=True)
            measure(path, job_id, args.repeat)
        finally:
            asyncio.run(remove(store))


if __name__ == "__main__":
    main()
