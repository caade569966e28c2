"""The CLI in-process: secret masking, the confirmation prompt on a terminal, argument errors.
(The installed command is exercised end to end in tests/acceptance/test_cli.py.)"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agenda_decl import cli
from agenda_decl._model import JobsResult, JobWithState
from agenda_decl.cli.commands import COMMANDS
from agenda_decl.cli.commands.jobs import _print_jobs
from agenda_decl.cli.output import Output, logging_to
from agenda_decl.cli.parser import parse_duration

CONFIG = """\
version: 1
backend:
  storage: {type: sqlite, path: jobs.db}
  notifications: {type: redis, connection_string: "redis://:${REDIS_PW}@127.0.0.1:6379/0"}
scheduler: {name: unit}
jobs:
  tick: {payload: {token: str}}
schedules:
  - {job: tick, every: 1 hour, data: {token: "${TOKEN}"}}
"""


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "agenda.yaml"
    path.write_text(CONFIG.replace("  notifications:", "  # notifications:"))
    monkeypatch.setenv("TOKEN", "token-from-env-1234")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_printed_text_masks_passwords_where_they_sit() -> None:
    output = Output(io.StringIO(), io.StringIO())
    text = ("failed: redis://:redis-pw-5678@127.0.0.1:6379/0 for job postgres; "
            "dsn host=db password=xyz1 dbname=postgres")
    assert output.mask(text) == (
        "failed: redis://:***@127.0.0.1:6379/0 for job postgres; "
        "dsn host=db password=*** dbname=postgres"
    )


def test_log_records_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    output = Output()
    with logging_to(output, logging.WARNING):
        logging.getLogger("agenda_decl").warning("lost %s at %s", "the listener",
                                                 "postgresql://u:hunter2-pw@h/db")
    err = capsys.readouterr().err
    assert "hunter2-pw" not in err
    assert "lost the listener at postgresql://u:***@h/db" in err


# -- the one masking rule, in what the commands print ------------------------------------------


def test_a_dev_url_prints_with_only_its_password_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text("version: 1\nbackend:\n  storage: {type: postgres, connection_string: "
                    "'postgresql://postgres:postgres@127.0.0.1/db'}\n"
                    "jobs:\n  postgres: {}\n")
    code, out, _err = run(capsys, "-c", str(path), "validate")
    assert code == 0
    assert "  storage:       postgres (postgresql://postgres:***@127.0.0.1/db)\n" in out
    assert "  jobs:          1 (postgres)\n" in out


def test_a_password_equal_to_a_job_name_leaves_the_plan_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text(CONFIG.replace("${REDIS_PW}", "tick").replace("${TOKEN}", "abc"))
    code, out, err = run(capsys, "-c", str(path), "plan")
    assert code == 0, err
    assert "+ create    tick (job tick)" in out
    assert "***" not in out


def test_values_from_the_environment_print_by_one_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text(CONFIG.replace("{name: unit}", "{name: '${APP}'}"))
    monkeypatch.setenv("APP", "billing-app")
    monkeypatch.setenv("REDIS_PW", "redis-pw-5678")
    monkeypatch.setenv("TOKEN", "token-from-env-1234")
    code, out, _err = run(capsys, "-c", str(path), "validate")
    assert code == 0
    assert "  owner:         ${APP}\n" in out
    code, out, _err = run(capsys, "-c", str(path), "validate", "--json")
    shown = json.loads(out)["config"]
    assert shown["backend"]["notifications"]["connection_string"] == (
        "redis://:***@127.0.0.1:6379/0")
    assert shown["scheduler"]["name"] == "${APP}"
    assert shown["schedules"][0]["data"] == {"token": "${TOKEN}"}
    code, out, _err = run(capsys, "-c", str(path), "plan")
    assert 'Owner "${APP}"' in out
    assert 'data: {"token": "${TOKEN}"}' in out
    assert run(capsys, "-c", str(path), "apply", "--yes")[0] == 0
    code, out, _err = run(capsys, "-c", str(path), "jobs", "--json")
    (job,) = json.loads(out)["jobs"]
    assert job["data"]["token"] == "${TOKEN}"
    monkeypatch.setenv("TOKEN", "another-token-5678")
    code, out, _err = run(capsys, "-c", str(path), "plan", "--json")
    (change,) = json.loads(out)["changes"]
    assert change["diffs"] == [{"field": "data", "old": {"token": "${TOKEN}"},
                                "new": {"token": "${TOKEN}"}}]
    code, out, _err = run(capsys, "-c", str(path), "plan")
    assert '    data.token: "${TOKEN}" (value changed)\n' in out
    code, out, _err = run(capsys, "-c", str(path), "jobs", "--json")
    (job,) = json.loads(out)["jobs"]
    assert (job["data"]["token"], job["repeat_interval"]) == ("${TOKEN}", "1 hour")
    for value in ("billing-app", "redis-pw-5678", "token-from-env-1234", "another-token"):
        assert value not in out


def test_schedule_options_from_the_environment_print_as_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text(CONFIG.replace("every: 1 hour", "every: '${EVERY}', timezone: '${ZONE}'"))
    for name, value in (("REDIS_PW", "pw-5678"), ("TOKEN", "tok-1234"), ("EVERY", "2 hours"),
                        ("ZONE", "Asia/Kolkata")):
        monkeypatch.setenv(name, value)
    code, out, _err = run(capsys, "-c", str(path), "plan")
    assert code == 0
    assert '    repeat_interval: "${EVERY}"\n    repeat_timezone: "${ZONE}"\n' in out
    assert "IST, ${ZONE})" in out
    assert run(capsys, "-c", str(path), "apply", "--yes")[0] == 0
    monkeypatch.setenv("EVERY", "3 hours")
    code, out, _err = run(capsys, "-c", str(path), "plan")
    assert '    repeat_interval: "${EVERY}" (value changed)\n' in out
    assert "hours" not in out and "Kolkata" not in out
    code, out, _err = run(capsys, "-c", str(path), "jobs", "--json")
    (job,) = json.loads(out)["jobs"]
    assert (job["repeat_interval"], job["repeat_timezone"]) == ("${EVERY}", "${ZONE}")


def test_a_url_from_the_environment_shows_host_user_and_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text("version: 1\nbackend:\n  storage: {type: postgres, connection_string: "
                    "'${DATABASE_URL}'}\n")
    for url, printed in (("postgresql://app@db.internal/billing",
                          "postgresql://app@db.internal/billing"),
                         ("postgresql://app:pw-4711@db.internal/billing",
                          "postgresql://app:***@db.internal/billing")):
        monkeypatch.setenv("DATABASE_URL", url)
        code, out, _err = run(capsys, "-c", str(path), "validate")
        assert code == 0
        assert f"  storage:       postgres ({printed})\n" in out


def test_apply_asks_on_a_terminal(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", FakeTTY("no\n"))
    code, out, err = run(capsys, "-c", str(config_file), "apply")
    assert code == 1
    assert "Apply these changes? Type 'yes' to confirm:" in out
    assert "apply cancelled; nothing was written" in err
    assert "token-from-env-1234" not in out + err
    monkeypatch.setattr("sys.stdin", FakeTTY("yes\n"))
    code, out, err = run(capsys, "plan", "-c", str(config_file), "--detailed-exitcode")
    assert code == 2
    code, out, err = run(capsys, "-c", str(config_file), "apply")
    assert code == 0, err
    assert "Applied: 1 created" in out
    code, out, err = run(capsys, "-c", str(config_file), "plan", "--detailed-exitcode")
    assert (code, "No changes" in out) == (0, True)


def test_apply_writes_what_storage_needs_after_the_prompt(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command plans and writes in one go once confirmed, as before (two applies of one
    file at once both succeed): a job paused while the prompt waited is enabled again, with
    the new interval."""
    assert run(capsys, "-c", str(config_file), "apply", "--yes")[0] == 0
    config_file.write_text(config_file.read_text().replace("every: 1 hour", "every: 2 hours"))

    class PausedWhileAsking(FakeTTY):
        def readline(self, size: int | None = -1) -> str:
            with sqlite3.connect(config_file.parent / "jobs.db") as db:
                db.execute("UPDATE agenda_jobs SET disabled = 1")
            return "yes\n"

    monkeypatch.setattr("sys.stdin", PausedWhileAsking())
    code, out, err = run(capsys, "-c", str(config_file), "apply")
    assert code == 0, err
    assert "Applied: 0 created, 1 updated" in out
    with sqlite3.connect(config_file.parent / "jobs.db") as db:
        assert db.execute("SELECT repeat_interval, disabled FROM agenda_jobs").fetchall() == [
            ("2 hours", 0)]


def test_expected_errors_are_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text("version: 2\nbackend: {storage: {type: sqlite}}\n")
    code, _out, err = run(capsys, "-c", str(path), "validate")
    assert code == 1
    assert err.startswith("agenda-decl: ")
    assert f"{path}:1:10: version: unsupported version" in err
    assert "Traceback" not in err


def test_usage_errors_exit_1_not_the_changes_pending_2(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 is what `plan --detailed-exitcode` answers for "changes pending": a typo in a CI
    script must not read as that."""
    code, out, err = run(capsys, "-c", str(config_file), "plan", "--detailed-exitcode",
                         "--prnue")
    assert (code, out) == (1, "")
    assert "usage: agenda-decl" in err
    assert "agenda-decl: unrecognized arguments: --prnue" in err
    code, _out, err = run(capsys, "run", "--exit-after", "soon")
    assert code == 1
    assert "agenda-decl: --exit-after: invalid duration 'soon'" in err
    code, _out, err = run(capsys)
    assert code == 1
    assert "the following arguments are required: COMMAND" in err
    assert run(capsys, "--version")[0] == 0


def test_command_line_durations_need_a_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare number would be milliseconds (the Python API's rule): `--exit-after 5` meant
    5 ms. On the command line it is refused, naming the option and a likely meaning."""
    missing = str(tmp_path / "missing.yaml")  # had the number been taken, nothing runs
    for option in ("--exit-after", "--drain-timeout"):
        code, _out, err = run(capsys, "-c", missing, "run", option, "5")
        assert code == 1
        assert f"agenda-decl: {option}: '5' needs a unit; did you mean '5 seconds'?" in err
    code, _out, err = run(capsys, "-c", missing, "run", "--drain-timeout", " 1.5 ")
    assert "'1.5' needs a unit; did you mean '1.5 seconds'?" in err
    assert parse_duration("500 ms") == 500
    assert parse_duration("2 minutes") == 120_000


def json_error(out: str) -> dict[str, Any]:
    """The error object of a --json run: stdout holds that one JSON object and nothing else."""
    error: dict[str, Any] = json.loads(out)["error"]
    assert set(error) == {"kind", "message", "problems"}
    return error


def test_with_json_a_config_error_is_json_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text("version: 1\nbackend: {storage: {type: sqlite}}\n"
                    "jobs:\n  tick: {concurrency: -2}\n")
    for command in ("plan", "jobs", "apply"):
        code, out, err = run(capsys, "-c", str(path), command, "--json")
        assert code == 1
        error = json_error(out)
        assert error["kind"] == "config"
        (problem,) = error["problems"]
        assert {key: problem[key] for key in ("file", "line", "column", "path")} == {
            "file": str(path), "line": 4, "column": 23, "path": "jobs.tick.concurrency"}
        assert problem["message"].startswith("expected an integer >= 1")
        assert error["message"] == f"{path}:4:23: jobs.tick.concurrency: {problem['message']}"
        assert err == f"agenda-decl: {error['message']}\n"  # the human line stays on stderr
    code, out, _err = run(capsys, "-c", str(path), "validate", "--json")
    result = json.loads(out)
    assert (code, result["valid"], result["error"]["kind"]) == (1, False, "config")
    assert result["issues"] == result["error"]["problems"]
    code, out, err = run(capsys, "-c", str(tmp_path / "missing.yaml"), "jobs", "--json")
    error = json_error(out)
    assert (code, error["kind"]) == (1, "config")
    assert error["problems"] == [{"file": str(tmp_path / "missing.yaml"), "line": None,
                                  "column": None, "path": "", "message": "file not found"}]


def test_with_json_usage_backend_refusal_and_unexpected_errors_are_json(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run(capsys, "plan", "--json", "--prnue")
    assert code == 1
    assert json_error(out) == {"kind": "usage", "message": "unrecognized arguments: --prnue",
                               "problems": []}
    assert "usage: agenda-decl" in err

    down = tmp_path / "down.yaml"
    down.write_text("version: 1\nbackend:\n  storage: {type: postgres, connection_string: "
                    '"postgresql://postgres:pw-1234567@127.0.0.1:1/test"}\njobs: {tick: {}}\n')
    code, out, err = run(capsys, "-c", str(down), "jobs", "--json")
    error = json_error(out)
    assert (code, error["kind"]) == (1, "backend")
    assert error["message"].startswith("cannot connect to the PostgreSQL backend: ")
    assert "pw-1234567" not in out + err and "postgres:***@127.0.0.1" in out

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    code, out, _err = run(capsys, "-c", str(config_file), "apply", "--json")
    error = json_error(out)
    assert (code, error["kind"]) == (1, "not_confirmed")
    assert "Pass --yes" in error["message"]

    def broken(context: Any) -> int:
        raise RuntimeError("kaboom")

    monkeypatch.setitem(COMMANDS, "jobs", broken)
    code, out, _err = run(capsys, "-c", str(config_file), "jobs", "--json")
    assert (code, json_error(out)) == (1, {"kind": "unexpected",
                                           "message": "RuntimeError: kaboom", "problems": []})


def test_generate_output_must_be_a_python_file(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = config_file.parent / "handles.txt"
    code, _out, err = run(capsys, "-c", str(config_file), "generate", "--output", str(target))
    assert code == 1
    assert "--output: expected a path to a .py file, got" in err
    assert not target.exists()


# -- plan: storage that does not match the file ------------------------------------------------

TWO_SCHEDULES = """\
version: 1
backend: {storage: {type: sqlite, path: jobs.db}}
scheduler: {name: drift}
jobs:
  tick: {}
schedules:
  - {job: tick, key: kept, every: 1 hour}
  - {job: tick, key: removed, every: 1 hour}
"""


def test_an_orphaned_job_is_drift_for_detailed_exitcode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text(TWO_SCHEDULES)
    assert run(capsys, "-c", str(path), "apply", "--yes")[0] == 0
    path.write_text(TWO_SCHEDULES.replace("  - {job: tick, key: removed, every: 1 hour}\n", ""))
    code, out, _err = run(capsys, "-c", str(path), "plan", "--detailed-exitcode")
    assert code == 2
    assert "No changes" not in out
    assert "! orphaned  removed (job tick" in out
    assert "1 orphaned job kept (use --prune to delete)" in out
    code, out, _err = run(capsys, "-c", str(path), "plan", "--json", "--detailed-exitcode")
    assert (code, json.loads(out)["in_sync"]) == (2, False)
    assert run(capsys, "-c", str(path), "apply", "--yes", "--prune")[0] == 0
    code, out, _err = run(capsys, "-c", str(path), "plan", "--detailed-exitcode")
    assert (code, "No changes" in out) == (0, True)


# -- validate: every check that needs no database --------------------------------------------


def class_payload_config(tmp_path: Path, ref: str, data: str = "{format: pdf}") -> Path:
    path = tmp_path / "agenda.yaml"
    path.write_text(
        "version: 1\nbackend: {storage: {type: sqlite, path: jobs.db}}\njobs:\n"
        f"  nightly-report:\n    handler: billing_{tmp_path.name}.jobs:nightly\n"
        f"    payload: {ref}\n"
        f"schedules:\n  - {{job: nightly-report, cron: '0 3 * * *', data: {data}}}\n"
    )
    return path


def test_validate_imports_payload_classes_as_plan_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = class_payload_config(tmp_path, "billing.models:ReportRequest")
    code, _out, err = run(capsys, "-c", str(path), "validate")
    assert code == 1
    assert err.splitlines() == [
        f"agenda-decl: {path}:6:14: jobs.nightly-report.payload: cannot import payload class "
        "'billing.models:ReportRequest': ModuleNotFoundError: No module named 'billing'"
    ]
    assert run(capsys, "-c", str(path), "plan")[0] == 1


def test_validate_checks_schedule_data_against_an_imported_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = f"validate_models_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{module}.py").write_text(
        "import attrs\n\n@attrs.define\nclass Report:\n    format: str\n    copies: int = 1\n\n"
        "class Plain:\n    pass\n")
    path = class_payload_config(tmp_path, f"{module}:Report", "{format: pdf, copies: many}")
    code, _out, err = run(capsys, "-c", str(path), "validate")
    assert code == 1
    assert "schedules[0].data.copies: invalid value" in err
    path = class_payload_config(tmp_path, f"{module}:Plain")
    code, _out, err = run(capsys, "-c", str(path), "validate")
    assert code == 1
    assert f"6:14: jobs.nightly-report.payload: payload '{module}:Plain' of job " \
        "'nightly-report' is not an attrs class" in err
    path = class_payload_config(tmp_path, f"{module}:Report")
    code, out, err = run(capsys, "-c", str(path), "validate")
    assert (code, err) == (0, "")
    assert "valid." in out


# -- jobs: one state vocabulary ------------------------------------------------------------------

STATES = """\
version: 1
backend: {storage: {type: sqlite, path: jobs.db}}
scheduler: {name: states}
jobs:
  tick: {}
schedules:
  - {job: tick, key: at, at: "3:30pm"}
  - {job: tick, key: every, every: 1 hour, disabled: true}
"""


def jobs_listed(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> list[Any]:
    code, out, err = run(capsys, "-c", str(path), "jobs", "--json", *args)
    assert code == 0, err
    return [(job["schedule_key"], job["state"], job["disabled"])
            for job in json.loads(out)["jobs"]]


def test_jobs_states_and_disabled_read_and_filter_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text(STATES)
    assert run(capsys, "-c", str(path), "apply", "--yes")[0] == 0
    both = [("at", "repeating", False), ("every", "repeating", True)]
    assert sorted(jobs_listed(capsys, path, "--state", "repeating")) == both
    assert jobs_listed(capsys, path, "--disabled") == [("every", "repeating", True)]
    assert jobs_listed(capsys, path, "--state", "repeating", "--enabled") == [
        ("at", "repeating", False)]
    assert jobs_listed(capsys, path, "--state", "repeating", "--disabled") == [
        ("every", "repeating", True)]
    assert jobs_listed(capsys, path, "--state", "scheduled", "--disabled") == []
    code, out, _err = run(capsys, "-c", str(path), "jobs", "--state", "repeating")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "DISABLED", "NEXT", "RUN", "(UTC)",
                              "LAST", "RUN", "(UTC)", "FAILS", "LAST", "FAILURE"]
    assert sorted(row.split()[2:4] for row in rows) == [["repeating", "no"],
                                                        ["repeating", "yes"]]
    code, _out, err = run(capsys, "-c", str(path), "jobs", "--state", "paused")  # not a state
    assert code == 1
    assert "--state: invalid choice: 'paused'" in err


def test_a_lower_bound_total_is_printed_as_one() -> None:
    # Redis stops counting a filtered listing past a bound: the table says "at least".
    job: JobWithState[Any] = JobWithState(
        name="report", id="j1", next_run_at=datetime.now(UTC), state="queued")
    out = io.StringIO()
    _print_jobs(Output(out), JobsResult(jobs=[job], total=2001, total_exact=False), 0)
    assert out.getvalue().splitlines()[-1] == (
        "(1-1 of at least 2001 shown; --skip 1 for the next page, --limit 0 for all)")
    out = io.StringIO()
    _print_jobs(Output(out), JobsResult(jobs=[], total=2001, total_exact=False), 3000)
    assert out.getvalue() == "No jobs on this page (at least 2001 in all).\n"
