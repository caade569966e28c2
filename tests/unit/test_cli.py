"""The CLI in-process: secret masking, the confirmation prompt on a terminal, argument errors.
(The installed command is exercised end to end in tests/acceptance/test_cli.py.)"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agenda_decl import cli
from agenda_decl.config.load import load_config

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


def test_secrets_of_a_loaded_config(tmp_path: Path) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text(CONFIG)
    config = load_config(path, environ={"REDIS_PW": "redis-pw-5678", "TOKEN": "tok-abcdef"})
    secrets = cli.secrets_of(config)
    assert secrets["redis-pw-5678"] == "***"
    assert secrets["tok-abcdef"] == "***"
    output = cli.Output(io.StringIO(), io.StringIO())
    output.add_secrets(secrets)
    text = "failed: redis://:redis-pw-5678@127.0.0.1:6379/0 with tok-abcdef; dsn password=xyz1"
    assert output.mask(text) == (
        "failed: redis://:***@127.0.0.1:6379/0 with ***; dsn password=***"
    )


def test_short_values_are_not_masked_in_free_text() -> None:
    output = cli.Output(io.StringIO(), io.StringIO())
    output.add_secrets({"ab": "***", "abcd": "***"})
    assert output.mask("ab abcd") == "ab ***"


def test_log_records_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    output = cli.Output()
    output.add_secrets({"hunter2-pw": "***"})
    with cli._logging_to(output, logging.WARNING):
        logging.getLogger("agenda_decl").warning("lost %s at %s", "hunter2-pw",
                                                 "postgresql://u:hunter2-pw@h/db")
    err = capsys.readouterr().err
    assert "hunter2-pw" not in err
    assert "lost *** at postgresql://u:***@h/db" in err


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
    assert cli._duration("500 ms") == 500
    assert cli._duration("2 minutes") == 120_000


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

    monkeypatch.setitem(cli.COMMANDS, "jobs", broken)
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
