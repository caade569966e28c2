"""The dashboard through Starlette's TestClient on SQLite, the real PostgreSQL and the real
Redis: every page, every action (behind its confirmation and the CSRF token), read-only,
credentials, and job data that tries to inject a script. Jobs are made by a real Agenda built
from the same agenda.yaml, whose worker runs them (a failure, with its traceback in the job
log)."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agenda_decl._model import JobsQueryOptions
from agenda_decl.agenda import Agenda
from agenda_decl.backends.redis import listing
from agenda_decl.config import build_agenda, load_config
from agenda_decl.config.apply import apply
from agenda_decl.config.model import AgendaConfig
from agenda_decl.dashboard import Credentials, DashboardSettings, create_app
from agenda_decl.dashboard.security import CSRF_FIELD
from agenda_decl.operations import last_error_entry
from tests.acceptance.test_cli import Env, drop_postgres_table, make_env
from tests.backends.servers import POSTGRES_URL

pytestmark = pytest.mark.timeout(120)

SCHEDULES = "- {job: tick, every: 1 hour, data: {n: 1}}\n"
XSS = "<script>alert('x')</script>"


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """A store with its job log on (the job page shows a failure's traceback from it)."""
    monkeypatch.setenv("DATABASE_URL", POSTGRES_URL)
    for made in make_env(request.param, tmp_path):
        log_table = f"{made.storage.split('table_name: ')[1].rstrip('}')}_logs" if (
            request.param == "postgres") else None
        made.storage = made.storage[:-1] + ", logging: true" + (
            f", log_table_name: {log_table}}}" if log_table else "}")
        made.write(SCHEDULES)
        yield made
        if log_table:
            drop_postgres_table(log_table)


def config_of(env: Env) -> AgendaConfig:
    return load_config(env.dir / "agenda.yaml", import_payload_classes=True)


def agenda_of(env: Env, *, read_only: bool = False) -> Agenda:
    return build_agenda(config_of(env), base_dir=env.dir, read_only=read_only)


async def _seed(env: Env, extra: int = 0) -> dict[str, str]:
    """apply the schedule, run a worker until ``boom`` failed (its traceback logged), add
    ``extra`` queued ``slow`` jobs for paging; the ids of the jobs made."""
    config = config_of(env)
    agenda = build_agenda(config, import_handlers=True, base_dir=env.dir)
    try:
        await apply(agenda, config)
        failed = asyncio.Event()
        agenda.on("fail", lambda *_: failed.set())
        boom = await agenda.now("boom", {"note": XSS, "customer": {"id": 7}})
        await agenda.start()
        await asyncio.wait_for(failed.wait(), 30)
        assert boom.attrs.id is not None
        for _ in range(100):
            if await last_error_entry(agenda, boom.attrs.id) is not None:
                break
            await asyncio.sleep(0.1)
        await agenda.stop()
        await agenda.ready()  # connected again, not processing: the extra jobs stay queued
        for index in range(extra):
            await agenda.schedule("in 1 hour", "slow", {"seconds": float(index)})
        tick = (await agenda.query_jobs(JobsQueryOptions(name="tick"))).jobs[0]
        return {"boom": boom.attrs.id, "tick": str(tick.id)}
    finally:
        await agenda.stop()


def seed(env: Env, extra: int = 0) -> dict[str, str]:
    return asyncio.run(_seed(env, extra))


def client_of(env: Env, **settings: Any) -> TestClient:
    read_only = bool(settings.get("read_only"))
    return TestClient(create_app(agenda_of(env, read_only=read_only), config_of(env),
                                 DashboardSettings(**settings)), base_url="http://127.0.0.1")


def csrf_of(html: str) -> str:
    match = re.search(rf'name="{CSRF_FIELD}" value="([0-9a-f]+)"', html)
    assert match, "no CSRF token in the form"
    return match[1]


def confirm_and_post(client: TestClient, job_id: str, action: str,
                     **form: str) -> Any:
    page = client.get(f"/jobs/{job_id}/{action}")
    assert page.status_code == 200, page.text
    assert 'id="confirm-form"' in page.text
    return client.post(f"/jobs/{job_id}/{action}",
                       data={CSRF_FIELD: csrf_of(page.text), **form}, follow_redirects=False)


def jobs_of(env: Env, name: str) -> list[Any]:
    async def query() -> list[Any]:
        agenda = agenda_of(env, read_only=True)
        try:
            return (await agenda.query_jobs(JobsQueryOptions(name=name))).jobs
        finally:
            await agenda.stop()
    return asyncio.run(query())


@pytest.mark.parametrize("env", ["redis"], indirect=True)
def test_a_total_counted_up_to_a_bound_shows_as_a_lower_bound(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis counts a filter's matches past the page only up to a bound (reading every job
    would hold the server): the list says "at least" and still offers the next page."""
    monkeypatch.setattr(listing, "ROWS_SLICE", 3)
    monkeypatch.setattr(listing, "COUNT_BOUND", 1)
    seed(env, extra=55)
    with client_of(env) as client:
        first = client.get("/jobs", params={"state": "scheduled", "sort": "next_run_at"})
        assert first.text.count('<tr data-id="') == 50
        assert re.search(r"at least (\d+) found", first.text)
        assert 'rel="next"' in first.text
        second = client.get("/jobs", params={"state": "scheduled", "page": "2"})
        assert second.text.count('<tr data-id="') == 5  # the last page: exact again
        assert "55 found" in second.text and 'rel="next"' not in second.text


def test_pages_show_the_store(env: Env) -> None:
    ids = seed(env, extra=55)
    with client_of(env) as client:
        overview = client.get("/")
        assert overview.status_code == 200
        row = _row(overview.text, "boom")
        assert 'state=failed">1</a>' in row and "boom from the handler" in row
        assert 'state=scheduled">55</a>' in _row(overview.text, "slow")
        assert re.search(r'<span class="num">1</span><span>failed', overview.text)
        assert "content-security-policy" in overview.headers

        listed = client.get("/jobs", params={"name": "slow"})
        assert "57 found" not in listed.text and "55 found" in listed.text
        assert listed.text.count('<tr data-id="') == 50  # one page
        second = client.get("/jobs", params={"name": "slow", "page": "2"})
        assert second.text.count('<tr data-id="') == 5
        failed = client.get("/jobs", params={"state": "failed"})
        assert "1 found" in failed.text and f'data-id="{ids["boom"]}"' in failed.text
        by_data = client.get("/jobs", params={"data": "customer.id=7"})
        assert "1 found" in by_data.text and f'data-id="{ids["boom"]}"' in by_data.text
        assert "0 found" in client.get("/jobs", params={"data": "customer.id=8"}).text
        assert "1 found" in client.get("/jobs", params={"search": "TIC"}).text
        by_name = [_names(client.get("/jobs", params={"sort": "name", "order": order}).text)
                   for order in ("asc", "desc")]
        assert by_name[0][0] == "boom" and by_name[1][0] == "tick"
        assert by_name[0] == sorted(by_name[0]) and by_name[1] == sorted(by_name[1], reverse=True)
        soonest, rest = (_names(client.get("/jobs", params={
            "sort": "next_run_at", "order": "asc", "page": page}).text) for page in ("1", "2"))
        assert soonest[0] == "tick"  # ran at the start: due again first, before the slow ones
        assert len(soonest) + len(rest) == 57
        assert rest[-1] == "boom"  # a one-off that failed: no next run, listed last
        bad = client.get("/jobs", params={"state": "lost"})
        assert bad.status_code == 400 and "state must be one of" in bad.text
        assert "&#39;lost&#39;" in bad.text
        assert client.get("/jobs", params={"data": "{nope"}).status_code == 400

        job = client.get(f"/jobs/{ids['boom']}")
        assert job.status_code == 200
        assert 'id="traceback">Traceback (most recent call last):' in job.text
        assert "RuntimeError: boom from the handler" in job.text
        assert re.search(r"<td>fail</td><td>error</td>", job.text)  # the log's history
        for action in ("retry", "run-now", "pause", "delete"):
            assert f'id="action-{action}"' in job.text
        assert 'id="action-resume"' not in job.text
        assert client.get("/jobs/no-such-job").status_code == 404

        schedules = client.get("/schedules")
        assert "storage matches agenda.yaml" in schedules.text
        assert f'href="/jobs/{ids["tick"]}"' in schedules.text
        env.write(SCHEDULES.replace("1 hour", "2 hours"))
    with client_of(env) as client:
        changed = client.get("/schedules").text
        assert '<span class="action update">update</span>' in changed
        assert "apply would change 1" in changed
        assert "repeat_interval" in changed


def _names(html: str) -> list[str]:
    """The job names of a job list, in the order shown."""
    return re.findall(r'<tr data-id="[^"]+">\s*<td><a href="[^"]+">([^<]+)</a>', html)


def _row(html: str, name: str) -> str:
    match = re.search(rf'<tr data-name="{name}">(.*?)</tr>', html, re.S)
    assert match, f"no overview row of {name}"
    return match[1]


def test_actions_behind_confirmation_and_csrf(env: Env) -> None:
    ids = seed(env)
    with client_of(env) as client:
        client.get("/")  # the CSRF cookie
        refused = client.post(f"/jobs/{ids['boom']}/retry", data={}, follow_redirects=False)
        assert refused.status_code == 403 and "CSRF" in refused.text
        forged = client.post(f"/jobs/{ids['boom']}/retry", data={CSRF_FIELD: "0" * 64})
        assert forged.status_code == 403
        (boom,) = jobs_of(env, "boom")
        assert boom.state == "failed" and boom.next_run_at is None  # nothing written

        done = confirm_and_post(client, ids["boom"], "retry")
        assert done.status_code == 303 and done.headers["location"].endswith("done=retry")
        (boom,) = jobs_of(env, "boom")
        assert boom.next_run_at is not None and boom.fail_count == 1
        assert "Retried" in client.get(done.headers["location"]).text
        again = confirm_and_post(client, ids["tick"], "retry")
        assert again.status_code == 409 and "only failed jobs are retried" in again.text

        copy = confirm_and_post(client, ids["tick"], "run-now")
        assert copy.status_code == 303 and "done=run-now-copy" in copy.headers["location"]
        ticks = jobs_of(env, "tick")
        assert len(ticks) == 2  # the schedule's job and a one-off copy due now

        paused = confirm_and_post(client, ids["tick"], "pause", reason="incident 42")
        assert paused.status_code == 303
        page = client.get(f"/jobs/{ids['tick']}").text
        assert "Paused by" in page and "(dashboard)" in page and "incident 42" in page
        assert 'id="action-resume"' in page
        assert "paused by" in client.get("/schedules").text
        assert confirm_and_post(client, ids["tick"], "resume").status_code == 303
        assert not next(job for job in jobs_of(env, "tick") if job.id == ids["tick"]).disabled

        deleted = confirm_and_post(client, ids["boom"], "delete")
        assert deleted.status_code == 303 and deleted.headers["location"] == "/jobs?done=delete"
        assert jobs_of(env, "boom") == []
        assert client.get(f"/jobs/{ids['boom']}/delete").status_code == 404


def test_job_data_is_escaped(env: Env) -> None:
    ids = seed(env)
    with client_of(env) as client:
        for url in (f"/jobs/{ids['boom']}", "/jobs?name=boom"):
            html = client.get(url).text
            assert "<script>alert" not in html
            assert "&lt;script&gt;alert(" in html
        reflected = client.get("/jobs", params={"search": "<b>x</b>"}).text
        assert "<b>x</b>" not in reflected and "&lt;b&gt;x&lt;/b&gt;" in reflected


def test_read_only_offers_no_actions_and_refuses_posts(env: Env) -> None:
    ids = seed(env)
    with client_of(env, read_only=True) as client:
        page = client.get(f"/jobs/{ids['boom']}")
        assert page.status_code == 200 and "read-only" in page.text
        assert 'id="action-' not in page.text
        assert client.get(f"/jobs/{ids['boom']}/retry").status_code == 404
        post = client.post(f"/jobs/{ids['boom']}/retry", data={CSRF_FIELD: "x"})
        assert post.status_code == 403 and "read-only" in post.text
    (boom,) = jobs_of(env, "boom")
    assert boom.next_run_at is None


@pytest.mark.parametrize("env", ["sqlite"], indirect=True)
def test_credentials(env: Env) -> None:
    token, password = "t0k-e7c1", "pw-91aa"
    with client_of(env, credentials=Credentials(token=token)) as client:
        refused = client.get("/")
        assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
        assert client.get("/static/dashboard.css").status_code == 401
        assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/", headers=_basic("anyone", token)).status_code == 200
    with client_of(env, credentials=Credentials(user="ops", password=password)) as client:
        assert client.get("/", headers=_basic("ops", password)).status_code == 200
        assert client.get("/", headers=_basic("ops", "nope")).status_code == 401
        assert client.get("/", headers=_basic("eve", password)).status_code == 401
        assert client.get("/", headers={"Authorization": f"Bearer {password}"}).status_code == 401


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("env", ["sqlite"], indirect=True)
def test_other_host_names_and_other_origins_are_refused(env: Env) -> None:
    ids = seed(env)
    with client_of(env) as client:
        assert client.get("/", headers={"Host": "localhost:8080"}).status_code == 200
        rebound = client.get("/", headers={"Host": "attacker.example:8080"})
        assert rebound.status_code == 400 and "loopback" in rebound.text
        page = client.get(f"/jobs/{ids['boom']}/retry")
        token = csrf_of(page.text)
        cross = client.post(f"/jobs/{ids['boom']}/retry", data={CSRF_FIELD: token},
                            headers={"Origin": "http://attacker.example"})
        assert cross.status_code == 403 and "another site" in cross.text
        same = client.post(f"/jobs/{ids['boom']}/retry", data={CSRF_FIELD: token},
                           headers={"Origin": "http://127.0.0.1"}, follow_redirects=False)
        assert same.status_code == 303
    with client_of(env, credentials=Credentials(token="t0k")) as client:
        named = client.get("/", headers={"Host": "jobs.example.com",
                                         "Authorization": "Bearer t0k"})
        assert named.status_code == 200  # behind a proxy, by its name
