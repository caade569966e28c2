"""schemas/agenda.schema.json: generated from the attrs model, committed, and every config file
of the repository validates against it (and loads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import jsonschema  # type: ignore[import-untyped]
import pytest

from agenda_decl.config import load_config, model
from agenda_decl.config.load import read_yaml
from agenda_decl.config.schema import build_schema, schema_text

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "agenda.schema.json"
CONFIGS = sorted([ROOT / "agenda.yaml", *(ROOT / "examples").rglob("*.yaml")])


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "schemas/agenda.schema.json is stale: run "
        "`python -m agenda_decl.config.schema > schemas/agenda.schema.json`"
    )


def test_every_model_class_and_field_is_in_the_schema() -> None:
    defs = build_schema()["$defs"]
    classes = [value for value in vars(model).values()
               if isinstance(value, type) and attrs.has(value) and value is not model.AgendaConfig]
    for cls in classes:
        schema = defs[cls.__name__]
        assert schema["additionalProperties"] is False
        assert list(schema["properties"]) == [field.name for field in attrs.fields(cls)]
        for name, field_schema in schema["properties"].items():
            assert field_schema.get("description"), f"{cls.__name__}.{name} has no description"


def test_there_are_configs_to_check() -> None:
    names = {path.name for path in CONFIGS}
    assert {"agenda.yaml", "sqlite.yaml", "postgres.yaml", "redis.yaml", "mongo.yaml",
            "mongo-changestream.yaml", "mongo-redis.yaml", "mongo-postgres.yaml",
            "postgres-redis.yaml", "redis-cluster.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_config_files_validate_and_load(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    data = read_yaml(path, environ={})
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in validator.iter_errors(data)]
    assert errors == []
    load_config(path, environ={})
    assert path.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=")


BAD: list[tuple[str, dict[str, Any]]] = [
    ("unknown key", {"version": 1, "backend": {"storage": {"type": "sqlite"}}, "jobz": {}}),
    ("unknown storage key", {"version": 1, "backend": {"storage": {"type": "sqlite", "x": 1}}}),
    ("unknown storage type", {"version": 1, "backend": {"storage": {"type": "mysql"}}}),
    ("wrong version", {"version": 2, "backend": {"storage": {"type": "sqlite"}}}),
    ("every and cron", {"version": 1, "backend": {"storage": {"type": "sqlite"}},
                        "schedules": [{"job": "a", "every": "1 hour", "cron": "* * * * *"}]}),
    ("concurrency 0", {"version": 1, "backend": {"storage": {"type": "sqlite"}},
                       "jobs": {"a": {"concurrency": 0}}}),
    ("payload field key", {"version": 1, "backend": {"storage": {"type": "sqlite"}},
                           "jobs": {"a": {"payload": {"n": {"type": "int", "dflt": 1}}}}}),
]


@pytest.mark.parametrize(("document"), [doc for _, doc in BAD], ids=[name for name, _ in BAD])
def test_schema_refuses(document: dict[str, Any], validator: jsonschema.Draft202012Validator
                        ) -> None:
    assert list(validator.iter_errors(document))
