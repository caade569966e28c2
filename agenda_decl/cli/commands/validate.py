"""``agenda-decl validate``: check the file without a database or the handlers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agenda_decl._secrets import shown
from agenda_decl.cli.context import EXIT_OK, CommandContext, load_checked_config
from agenda_decl.config.errors import ConfigError
from agenda_decl.config.model import AgendaConfig

__all__ = ["cmd_validate"]


def cmd_validate(context: CommandContext) -> int:
    from agenda_decl.config.load import redacted

    config = load_checked_config(context, import_payload_classes=True)
    _check_drivers(config)
    if context.args.json:
        context.output.json({"valid": True, "config": redacted(config)})
        return EXIT_OK
    _print_summary(context, config, redacted(config))
    return EXIT_OK


def _print_summary(
    context: CommandContext, config: AgendaConfig, printable: Mapping[str, Any]
) -> None:
    output = context.output
    storage = printable.get("backend", {}).get("storage", {})
    notifications = (printable.get("backend", {}).get("notifications") or {}).get("type")
    output.print(f"{context.path}: valid.")
    output.print(f"  owner:         {shown(config.owner)}")
    output.print(f"  storage:       {_describe_store(storage)}")
    output.print(f"  notifications: {notifications or 'the storage channel, if it has one'}")
    output.print(f"  jobs:          {len(config.jobs)} ({', '.join(config.jobs) or 'none'})")
    output.print(f"  schedules:     {len(config.schedules)}")


def _describe_store(storage: Mapping[str, Any]) -> str:
    kind = storage.get("type", "?")
    where = storage.get("path") or storage.get("connection_string") or storage.get("address")
    return f"{kind} ({where})" if where else str(kind)


def _check_drivers(config: AgendaConfig) -> None:
    """What validate adds to loading (which checks the schedules by the rule set plan uses,
    with the payload classes imported): the drivers the backend needs are installed.
    Handlers are not imported (they may need the application's environment)."""
    from agenda_decl.config.drivers import missing_drivers

    issues = missing_drivers(config)
    if issues:
        raise ConfigError(sorted(issues, key=lambda issue: (issue.line, issue.column)))
