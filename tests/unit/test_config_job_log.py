"""`logging` of the storage in agenda.yaml: read, checked where it is written, and built into
the backend's job logger."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenda_decl import JobLogRetention
from agenda_decl.config import ConfigError, build_agenda, build_backend, load_config
from agenda_decl.config.model import JobLogConfig

PG = "postgresql://app@db/jobs"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def load(storage: str) -> object:
    Path("agenda.yaml").write_text(f"version: 1\nbackend:\n  storage: {storage}\n")
    return load_config("agenda.yaml", environ={})


def errors(storage: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(storage)
    return [str(issue) for issue in info.value.issues]


def test_logging_is_off_unless_asked() -> None:
    config = load("{type: sqlite}")
    backend = build_backend(config, base_dir=Path.cwd())  # type: ignore[arg-type]
    assert backend.logging is False
    assert build_agenda(config, base_dir=Path.cwd()).job_log.logger is None  # type: ignore[arg-type]


@pytest.mark.parametrize("storage", [
    "{type: sqlite, logging: true, log_table_name: my_logs}",
    f"{{type: postgres, connection_string: '{PG}', logging: true, log_table_name: my_logs}}",
    "{type: redis, connection_string: 'redis://cache', logging: true}",
    "{type: mongo, address: 'mongodb://db/app', logging: true, log_collection: my_logs}",
])
def test_logging_true_turns_the_backends_logger_on(storage: str) -> None:
    config = load(storage)
    agenda = build_agenda(config, base_dir=Path.cwd())  # type: ignore[arg-type]
    assert agenda.backend.logging is True
    assert agenda.job_log.logger is agenda.backend.logger
    assert agenda.backend.logger is not None and agenda.backend.logger.retention is None
    name = getattr(agenda.backend.logger, "table_name", None) or getattr(
        agenda.backend.logger, "collection_name", "my_logs")
    assert name == "my_logs"


def test_a_retention_is_given_to_the_logger() -> None:
    config = load("{type: sqlite, logging: {max_age: 30 days, max_entries: 1000}}")
    assert config.backend.storage.logging == JobLogConfig(  # type: ignore[attr-defined]
        max_age="30 days", max_entries=1000)
    backend = build_backend(config, base_dir=Path.cwd())  # type: ignore[arg-type]
    assert backend.logging is True
    assert backend.logger is not None
    assert backend.logger.retention == JobLogRetention(max_age=30 * 86_400_000,
                                                       max_entries=1000)
    empty = build_backend(load("{type: sqlite, logging: {}}"),  # type: ignore[arg-type]
                          base_dir=Path.cwd())
    assert (empty.logging, empty.logger.retention) == (True, None)  # type: ignore[union-attr]


def test_a_read_only_backend_keeps_its_logger_read_only() -> None:
    config = load("{type: sqlite, logging: true}")
    backend = build_backend(config, base_dir=Path.cwd(), read_only=True)  # type: ignore[arg-type]
    assert backend.logger is not None
    assert backend.logger._read_only is True  # type: ignore[attr-defined]


def test_wrong_values_are_reported_where_they_are_written() -> None:
    assert errors("{type: sqlite, logging: {max_age: soon, max_entries: 0}}") == [
        "agenda.yaml:3:46: backend.storage.logging.max_age: expected a duration "
        "(milliseconds, or text like '5 minutes' or '1 hour and 30 minutes'), got 'soon' "
        "(a string)",
        "agenda.yaml:3:65: backend.storage.logging.max_entries: expected an integer >= 1, "
        "got 0",
    ]
    assert errors("{type: sqlite, logging: yes please}")[0].startswith(
        "agenda.yaml:3:36: backend.storage.logging: expected true or false or a mapping")
    long = "x" * 50
    assert errors(f"{{type: postgres, connection_string: '{PG}', log_table_name: {long}}}")[
        0].endswith(f"at most 49 characters, got '{long}' (a string)")
    assert "log_collection" in errors(
        "{type: mongo, address: 'mongodb://db/app', log_collection: 'a$b'}")[0]
