"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver, against ``agenda-decl dashboard`` in a subprocess over a SQLite store
that an ``agenda-decl run`` worker processes. Open the overview, filter the jobs, open the
failed one, retry it, see the worker run it (the page refreshes itself), and a POST without
the CSRF token is refused.

``.ci/run`` installs chromium and chromium-driver when they are missing. With
``AGENDA_TEST_SCREENSHOTS=DIR`` the test saves the overview and the job page there as PNG
(``docs/dashboard-overview.png`` and ``docs/dashboard-job.png`` come from
``AGENDA_TEST_SCREENSHOTS=docs``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenda_decl.config import build_agenda, load_config
from tests.acceptance.test_cli import Env, make_env
from tests.acceptance.test_dashboard_cli import start_dashboard, stop

pytestmark = pytest.mark.timeout(240)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCHEDULES = "- {job: tick, every: 1 hour, data: {n: 1}}\n- {job: boom, every: 1 hour}\n"
WAIT_S = 60  # a worker starting on a busy 2-core machine, then a refresh


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for made in make_env("sqlite", tmp_path):
        made.storage = made.storage[:-1] + ", logging: true}"
        made.write(SCHEDULES)
        yield made


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), (
            f"{path} is missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must not look for drivers online
    profile = tempfile.mkdtemp(prefix="agenda-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1440,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def more_jobs(env: Env) -> None:
    """A few one-off jobs beside the schedules, so the pages show what a store holds: two
    due now (the worker runs them: one quick, one for a while), three later."""
    async def add() -> None:
        config = load_config(env.dir / "agenda.yaml")
        agenda = build_agenda(config, base_dir=env.dir)
        try:
            await agenda.now("slow", {"seconds": 0.2})
            await agenda.now("slow", {"seconds": 6.0})
            for seconds in (0.5, 1.5):
                await agenda.schedule("in 10 minutes", "slow", {"seconds": seconds})
            await agenda.schedule("in 2 hours", "tick", {"n": 7})
        finally:
            await agenda.stop()
    asyncio.run(add())


def test_the_dashboard_in_chromium(env: Env, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    wait = WebDriverWait(driver, WAIT_S)
    assert env.run("apply", "--yes").returncode == 0
    first = env.run("run", "--exit-after", "3 seconds", timeout=60)
    assert "fail    boom" in first.stdout, first.stdout
    more_jobs(env)
    server, base = start_dashboard(env)
    worker = None
    shots = os.environ.get("AGENDA_TEST_SCREENSHOTS")
    try:
        driver.get(base + "/")
        row = driver.find_element(By.CSS_SELECTOR, 'tr[data-name="boom"]')
        assert "boom from the handler" in row.text

        driver.find_element(By.LINK_TEXT, "Jobs").click()
        Select(driver.find_element(By.NAME, "state")).select_by_value("failed")
        driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        wait.until(lambda d: "state=failed" in d.current_url)
        rows = driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr[data-id]")
        assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["boom"]
        rows[0].find_element(By.LINK_TEXT, "boom").click()

        traceback = wait.until(lambda d: d.find_element(By.ID, "traceback"))
        assert "RuntimeError: boom from the handler" in traceback.text
        job_url = driver.current_url
        driver.find_element(By.ID, "action-retry").click()
        driver.find_element(By.ID, "confirm").click()
        wait.until(lambda d: "Retried" in d.find_element(By.ID, "done").text)

        worker = env.start("run")  # runs the retried job; the page shows it by itself
        wait.until(lambda d: _fail_count(d) == "2")
        assert driver.current_url.startswith(job_url)
        history = driver.find_element(By.ID, "history").text
        assert history.count("fail error") == 2, history
        if shots:
            screenshots(driver, base, job_url, Path(shots))

        status = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {method: 'POST', body: 'reason=x', headers: "
            "{'Content-Type': 'application/x-www-form-urlencoded'}})"
            ".then(r => done(r.status), e => done(String(e)));",
            job_url.split("?")[0] + "/retry")
        assert status == 403
    finally:
        if worker is not None:
            stop(worker)
        errors = stop(server)
    assert "Traceback" not in errors, errors


def screenshots(driver: object, base: str, job_url: str, directory: Path) -> None:
    """The job page (tall enough for its history) and the overview, while the worker runs."""
    driver.set_window_size(1440, 1480)  # type: ignore[attr-defined]
    driver.get(job_url)  # type: ignore[attr-defined]
    driver.save_screenshot(str(directory / "dashboard-job.png"))  # type: ignore[attr-defined]
    driver.set_window_size(1440, 560)  # type: ignore[attr-defined]
    driver.get(base + "/")  # type: ignore[attr-defined]
    driver.save_screenshot(str(directory / "dashboard-overview.png"))  # type: ignore[attr-defined]


def _fail_count(driver: object) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        fields = driver.find_element(By.CSS_SELECTOR, "dl.fields")  # type: ignore[attr-defined]
        names = [e.text for e in fields.find_elements(By.TAG_NAME, "dt")]
        values = [e.text for e in fields.find_elements(By.TAG_NAME, "dd")]
    except (NoSuchElementException, StaleElementReferenceException):
        time.sleep(0.2)
        return None
    shown = dict(zip(names, values, strict=True))
    return shown.get("fail_count")
