"""A config using every payload field type (and a class payload, a job without payload, names
that need renaming), written to a temporary directory for the codegen and handle tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import agenda_decl.config as config_api
from agenda_decl.config.codegen import generate
from agenda_decl.config.model import AgendaConfig

CONFIG_YAML = """\
version: 1
backend:
  storage: {type: sqlite, path: jobs.db}
codegen: {output: app/agenda_jobs.py}
jobs:
  send-invoice:
    description: Bill a customer. "Quoted", with a back\\\\slash, and long enough to be wrapped
      over two lines of the docstring.
    payload:
      customer_id: {type: int, description: Who pays.}
      amount: float
      paid: {type: bool, default: false}
      due: datetime
      reminder_at: {type: datetime, default: "2026-12-01T09:00:00+02:00"}
      day: {type: date, default: "2026-01-31"}
      currency: {type: str, choices: [EUR, USD], default: EUR}
      copies: {type: int, choices: [1, 2, 3], default: 1}
      tags: {type: "list[str]", default: [vip, b2b]}
      lines: "list[int]"
      note: str | None
      channel: {type: "str | None", choices: [mail, sms]}
      holidays: "list[date] | None"
      fee: {type: float, default: 1}
      level:
        type: str
        choices: [aaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb, cccccccccccccccccccc, ddddddddddd]
        default: aaaaaaaaaaaaaaaaaa
  monthly-report:
    payload: codegen_case_models:Report
  yearly-report:
    payload: codegen_case_models:Report
  raw-data: {}
  class:
    payload: {}
"""

MODELS = '''\
import datetime

import attrs


@attrs.frozen
class Report:
    month: int
    since: datetime.date | None = None
'''


def write_case(directory: Path) -> Path:
    """The config (and its payload class module) in ``directory``; returns the config path."""
    (directory / "codegen_case_models.py").write_text(MODELS, encoding="utf-8")
    path = directory / "agenda.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return path


def load_case(directory: Path) -> tuple[AgendaConfig, Path]:
    path = write_case(directory)
    return config_api.load_config(path), path


def import_generated(directory: Path) -> ModuleType:
    """Generate the handles module of the case in ``directory`` and import it."""
    config, path = load_case(directory)
    result = generate(config, path)
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))  # codegen_case_models
    spec = importlib.util.spec_from_file_location(f"agenda_jobs_{directory.name}", result.path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
