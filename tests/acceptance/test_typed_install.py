"""The typed handles as a user gets them: a fresh virtual environment with agenda-decl installed
*editable* (the README's install), an application outside the repository with its own
agenda.yaml, `agenda-decl generate`, then `mypy --strict` on the application.

An editable install that is an import hook (setuptools' default) is invisible to mypy: it then
reports the package as missing and the handles' errors as nonsense. This test keeps the build
backend's editable install a plain path entry.

The fresh environment borrows the already installed third-party packages (attrs, cattrs, mypy,
the build backend ...) through a path entry of its own, so no download is needed; the project
itself is installed into it by pip, and that install alone makes `agenda_decl` visible (the
borrowed site directory's own .pth files are not processed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
version: 1
backend:
  storage: {type: sqlite, path: shop.db}
scheduler: {name: shop}
jobs:
  send-order-mail:
    handler: shop.jobs:send_order_mail
    payload:
      order_id: int
      kind: {type: str, choices: [confirmation, shipped], default: confirmation}
      due: datetime
codegen: {output: shop/agenda_jobs.py}
"""

GOOD = """\
import datetime

from agenda_decl import run_sync
from shop.agenda_jobs import SendOrderMailPayload, send_order_mail

payload = SendOrderMailPayload(
    order_id=7, kind="shipped", due=datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
)


def enqueue() -> str:
    job = run_sync(send_order_mail.now(payload))
    return str(job.attrs.id)
"""

#: Each bad line with the message mypy must give for it (matched as a regex).
BAD = {
    'SendOrderMailPayload(order_id="7", due=DUE)':
        r'Argument "order_id" .* has incompatible type "str"; expected "int"',
    'SendOrderMailPayload(order_id=7, kind="cancelled", due=DUE)':
        r'Argument "kind" .* incompatible type "Literal\[.cancelled.\]"',
    'SendOrderMailPayload(order_id=7, due="2026-12-01T00:00:00Z")':
        r'Argument "due" .* incompatible type "str"; expected "datetime"',
}


def _site_packages(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new environment with agenda-decl installed editable by pip, as the README does."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    borrowed = sysconfig.get_paths()["purelib"]
    Path(_site_packages(python), "zz_borrowed.pth").write_text(borrowed + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "-e", str(REPO)],
        check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return root


@pytest.fixture(scope="module")
def app(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The application: its config, a handler module and the generated handles."""
    root = tmp_path_factory.mktemp("app")
    assert REPO not in root.parents
    (root / "agenda.yaml").write_text(CONFIG)
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "jobs.py").write_text(
        "from typing import Any\n\nfrom agenda_decl import Job\n\n\n"
        "async def send_order_mail(job: Job[dict[str, Any]]) -> None:\n    pass\n"
    )
    subprocess.run(
        [str(venv / "bin" / "agenda-decl"), "generate"], cwd=root, check=True,
        capture_output=True, text=True,
    )
    assert (root / "shop" / "agenda_jobs.py").exists()
    return root


def _mypy(venv: Path, app: Path, source: str) -> subprocess.CompletedProcess[str]:
    (app / "shop" / "use.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MYPYPATH"}}
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "mypy", "--strict", "--no-incremental", "shop"],
        cwd=app, env=env, capture_output=True, text=True,
    )


def test_the_package_is_found_from_outside_the_repository(venv: Path, app: Path) -> None:
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import agenda_decl; print(agenda_decl.__file__)"],
        cwd=app, check=True, capture_output=True, text=True,
    ).stdout
    assert Path(found.strip()).is_relative_to(REPO)


def test_good_application_code_passes_mypy_strict(venv: Path, app: Path) -> None:
    result = _mypy(venv, app, GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_each_bad_payload_is_reported_at_its_line(venv: Path, app: Path) -> None:
    lines = ["import datetime", "", "from shop.agenda_jobs import SendOrderMailPayload", "",
             "DUE = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)", ""]
    expected: dict[int, str] = {}
    for index, (call, message) in enumerate(BAD.items()):
        lines.append(f"bad_{index} = {call}")
        expected[len(lines)] = message
    result = _mypy(venv, app, "\n".join(lines) + "\n")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    matches = (re.match(r"shop/use\.py:(\d+): error: (.*)", error) for error in errors)
    by_line = {int(match[1]): match[2] for match in matches if match}
    assert set(by_line) == set(expected), textwrap.indent(result.stdout, "  ")
    for line, message in expected.items():
        assert re.search(message, by_line[line]), (line, by_line[line])
