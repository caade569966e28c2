"""``agenda-decl generate``: the handles module (compared with a golden file), its names, its
determinism, its staleness check, and that mypy --strict and ruff accept what it writes.

After an intended change of the output, regenerate with ``UPDATE_GOLDEN=1 pytest
tests/unit/test_codegen.py`` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agenda_decl import cli
from agenda_decl.config import ConfigError, load_config
from agenda_decl.config.codegen import (
    class_name,
    generate,
    handle_name,
    output_path,
    render_module,
)
from agenda_decl.config.model import (
    AgendaConfig,
    BackendConfig,
    JobConfig,
    PayloadField,
    SQLiteStorage,
)
from tests.unit.codegen_case import load_case

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
TOOLS = Path(sys.executable).parent


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_the_module_of_every_payload_type(tmp_path: Path) -> None:
    config, path = load_case(tmp_path)
    check("handles_module.py.txt", render_module(config, path))


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    """No timestamps, no absolute paths: two copies of one config give the same bytes."""
    texts = []
    for copy in ("a", "b"):
        (tmp_path / copy).mkdir()
        texts.append(render_module(*load_case(tmp_path / copy)))
    assert texts[0] == texts[1]


@pytest.mark.parametrize(("job", "handle", "payload"), [
    ("send-welcome", "send_welcome", "SendWelcomePayload"),
    ("sendWelcome", "send_welcome", "SendWelcomePayload"),
    ("billing.monthly report", "billing_monthly_report", "BillingMonthlyReportPayload"),
    ("2fa-code", "job_2fa_code", "Job2faCodePayload"),
    ("class", "class_job", "ClassPayload"),
    ("CONFIG", "config", "CONFIGPayload"),
    ("list", "list_job", "ListPayload"),
])  # fmt: skip
def test_names(job: str, handle: str, payload: str) -> None:
    assert (handle_name(job), class_name(job)) == (handle, payload)


def config_of(jobs: dict[str, JobConfig]) -> AgendaConfig:
    return AgendaConfig(version=1, backend=BackendConfig(storage=SQLiteStorage(type="sqlite")),
                        jobs=jobs)


def test_two_jobs_sharing_a_name_are_refused() -> None:
    with pytest.raises(ConfigError) as error:
        render_module(config_of({"send-mail": JobConfig(), "send_mail": JobConfig()}), "a.yaml")
    assert "jobs 'send-mail' and 'send_mail' would both be named 'send_mail'" in str(error.value)


def test_two_payload_classes_of_one_name_are_refused() -> None:
    jobs = {"a": JobConfig(payload="billing.models:Report"),
            "b": JobConfig(payload="shop.models:Report"),
            "c": JobConfig(payload="billing.models:Report")}  # the same class: one import
    with pytest.raises(ConfigError) as error:
        render_module(config_of(jobs), "a.yaml")
    assert [issue.path for issue in error.value.issues] == ["jobs.b"]


def test_a_payload_field_hiding_a_module_name_is_refused() -> None:
    job = JobConfig(payload={"datetime": PayloadField(type="datetime")})
    with pytest.raises(ConfigError, match="field named 'datetime' would hide a name"):
        render_module(config_of({"x": job}), "a.yaml")


def test_the_output_is_relative_to_the_config_file(tmp_path: Path) -> None:
    config = config_of({})
    assert output_path(config, tmp_path / "agenda.yaml") == tmp_path / "agenda_jobs.py"
    text = render_module(config, tmp_path / "agenda.yaml")
    assert 'CONFIG = ConfigAgenda.beside(__file__, "agenda.yaml")' in text
    assert "from agenda_decl.handles import ConfigAgenda, JobHandle\n" in text


def test_generate_writes_then_check_finds_it_current_then_stale(tmp_path: Path) -> None:
    config, path = load_case(tmp_path)
    assert generate(config, path, check=True).previous is None
    written = generate(config, path)
    assert written.stale and written.path == tmp_path / "app" / "agenda_jobs.py"
    assert not generate(config, path, check=True).stale
    written.path.write_text(written.text.replace("EUR", "GBP"), encoding="utf-8")
    stale = generate(config, path, check=True)
    assert stale.stale
    assert any(line.startswith('-    currency: Literal["GBP"') for line in stale.diff())
    assert "GBP" in written.path.read_text(encoding="utf-8")  # --check writes nothing


def test_the_committed_demo_module_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    """`agenda-decl generate --check` on the repository's agenda.yaml: regenerate the module
    (`agenda-decl generate`) whenever agenda.yaml changes its jobs."""
    code = cli.main(["-c", str(ROOT / "agenda.yaml"), "generate", "--check"])
    assert code == 0, capsys.readouterr().err
    assert load_config(ROOT / "agenda.yaml").codegen is not None


@pytest.mark.timeout(300)
def test_mypy_strict_and_ruff_accept_the_generated_modules(tmp_path: Path) -> None:
    """One slow test: the demo's module and the every-type module, and code using them."""
    config, path = load_case(tmp_path)
    generated = generate(config, path).path
    (tmp_path / "app" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "use.py").write_text(USE, encoding="utf-8")
    environ = {**os.environ, "MYPYPATH": str(ROOT)}
    mypy = subprocess.run(
        [str(TOOLS / "mypy"), "--strict", "--follow-imports=silent", "--no-incremental",
         "--cache-dir", os.devnull,
         str(generated), str(tmp_path / "use.py"), str(ROOT / "examples" / "agenda_jobs.py")],
        cwd=tmp_path, env=environ, capture_output=True, text=True, check=False,
    )
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    ruff = subprocess.run(
        [str(TOOLS / "ruff"), "check", "--config", str(ROOT / "pyproject.toml"),
         "--no-cache", str(generated), str(ROOT / "examples" / "agenda_jobs.py")],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


USE = '''\
import datetime
from typing import Any, assert_type

from agenda_decl import Job
from app.agenda_jobs import SendInvoicePayload, class_job, monthly_report, raw_data, send_invoice
from codegen_case_models import Report


async def enqueue(job: Job[Any]) -> None:
    due = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    payload = SendInvoicePayload(customer_id=7, amount=9.5, due=due, lines=[1], currency="USD")
    await send_invoice.now(payload)
    await send_invoice.schedule("in 5 minutes", payload)
    await monthly_report.every("1 day", Report(month=3), timezone="Europe/Berlin")
    await raw_data.now({"anything": [1, 2]})
    await class_job.now(class_job.payload_type())
    assert_type(send_invoice.payload(job).holidays, list[datetime.date] | None)
    assert_type(raw_data.payload(job), dict[str, Any])
    SendInvoicePayload(
        customer_id=7, amount=1, due=due, lines=[],
        currency="GBP",  # type: ignore[arg-type]
    )
    await send_invoice.now(Report(month=1))  # type: ignore[arg-type]
    saved = await send_invoice.now_many([payload, payload])
    assert_type(saved, list[Job[Any]])
    await raw_data.now_many([{"n": 1}, {"n": 2}])
    await send_invoice.now_many([payload, Report(month=1)])  # type: ignore[list-item]
    await send_invoice.now_many((Report(month=n) for n in range(3)))  # type: ignore[misc]
'''
