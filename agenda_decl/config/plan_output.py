"""How a plan and an apply read: the text ``agenda-decl plan``/``apply`` print (Terraform-like
``+``/``~``/``-``/``=`` lines with per-field differences and the next fire times) and the
plain-data form of ``--json``.

Values the file takes from the environment print as the file wrote them (``${TOKEN}``): the
owner and schedule keys through ``shown``, job data and the fields schedule options set by
position (``load.shown_data``, ``load.shown_field``), for the stored value there too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from agenda_decl._secrets import shown
from agenda_decl.config.apply import ApplyResult
from agenda_decl.config.load import shown_data, shown_field
from agenda_decl.config.model import AgendaConfig
from agenda_decl.config.payload import RESERVED_DATA_KEYS
from agenda_decl.config.plan import ACTIONS, Action, Change, FieldDiff, FireTime, Plan
from agenda_decl.config.stored import normalized_field

__all__ = ["change_to_json", "format_apply_result", "format_change", "format_plan",
           "plan_to_json", "resume_command"]

_SYMBOLS: dict[Action, str] = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}


@attrs.frozen
class _Shown:
    """How the values of one change print (see the module docstring); without a config
    (progress lines), as they are."""

    config: AgendaConfig | None
    change: Change

    def data(self, value: Any) -> Any:
        if self.config is None:
            return value
        return shown_data(self.config, self.change.job, self.change.key, value)

    def field(self, name: str, value: Any) -> Any:
        if self.config is None:
            return value
        return shown_field(self.config, self.change.job, self.change.key, name, value)
_REASONS = {
    "pruned": "no longer declared (--prune)",
    "duplicate": "duplicate of a job of the same schedule",
}


def format_plan(plan: Plan, *, show_unchanged: bool = True) -> str:
    """The plan as plain text (what ``agenda-decl plan`` prints)."""
    lines = [
        f'Owner "{shown(plan.owner)}": {len(plan.config.schedules)} schedule(s) declared, '
        f"{plan.stored} managed job(s) in storage.",
        "",
    ]
    for change in plan.changes:
        if change.action == "unchanged" and not show_unchanged and change.paused is None:
            continue
        lines.extend(_change_lines(change, detailed=True, show=_Shown(plan.config, change)))
    created = {change.key: change.job for change in plan.changes if change.action == "create"}
    for orphan in plan.orphaned:
        moved = created.get(orphan.key)
        hint = (f" (key {orphan.key!r} now runs job {moved}; the old job runs on until pruned,"
                " and its history does not carry over)" if moved not in (None, orphan.job)
                else "")
        lines.append(
            f"! orphaned  {orphan.key} (job {orphan.job}, id {orphan.id}): no longer declared"
            f" - kept, use --prune to delete{hint}"
        )
    if len(lines) > 2:
        lines.append("")
    lines.append(_summary(plan))
    return "\n".join(lines) + "\n"


def _summary(plan: Plan) -> str:
    kept = _orphans_kept(len(plan.orphaned)) + _paused_kept(len(plan.paused))
    if plan.in_sync:
        return "No changes: storage matches the declared schedules."
    if not plan.has_changes:
        return f"Storage does not match the declared schedules:{kept}"
    return (
        f"Plan: {plan.count('create')} to create, {plan.count('update')} to update, "
        f"{plan.count('delete')} to delete, {plan.count('unchanged')} unchanged.{kept}"
    )


def _orphans_kept(count: int) -> str:
    if not count:
        return ""
    return f" {count} orphaned job{'s' if count != 1 else ''} kept (use --prune to delete)."


def _paused_kept(count: int) -> str:
    if not count:
        return ""
    return (f" {count} job{'s' if count != 1 else ''} paused by an operator, kept paused "
            "(agenda-decl jobs resume runs it again).")


def resume_command(change: Change) -> str:
    """The command that resumes the job of ``change``."""
    key = "" if change.key == change.job else f" --key {shown(change.key)}"
    return f"agenda-decl jobs resume {change.job}{key}"


def _paused_line(change: Change) -> str:
    assert change.paused is not None
    return (f"{change.paused.describe()}: apply keeps it paused; "
            f"{resume_command(change)} runs it again")


def format_change(change: Change) -> str:
    """One line for a change as it is applied (``agenda-decl apply`` progress)."""
    return _change_lines(change, detailed=False, show=_Shown(None, change))[0]


def _change_lines(change: Change, *, detailed: bool, show: _Shown) -> list[str]:
    where = f"job {change.job}" + (f", id {change.id}" if change.id is not None else "")
    head = f"{_SYMBOLS[change.action]} {change.action:<9} {shown(change.key)} ({where})"
    if change.action == "delete":
        return [f"{head}: {_REASONS.get(change.reason or '', change.reason)}"]
    if change.action == "unchanged" and change.paused is not None:
        return [f"{head}: {_paused_line(change)}"]
    if change.action == "unchanged":
        first = change.next_runs[0] if change.next_runs else None
        when = _when(first, show) if first else (
            "disabled" if change.disabled else "no further runs")
        return [f"{head}: next run {when}" if first else f"{head}: {when}"]
    if not detailed:
        return [head]
    lines = [head]
    for diff in change.diffs:
        lines.extend(f"    {line}" for line in _diff_lines(change.action, diff, show))
    lines.extend(f"    {line}" for line in _next_run_lines(change, show))
    if change.paused is not None:
        lines.append(f"    {_paused_line(change)}")
    return lines


def _diff_lines(action: Action, diff: FieldDiff, show: _Shown) -> list[str]:
    if diff.field != "data":
        old, new = show.field(diff.field, diff.old), show.field(diff.field, diff.new)
        if action == "create":
            return [f"{diff.field}: {_show(new)}"]
        if old == new:  # both are the same reference to the environment
            return [f"{diff.field}: {_show(new)} (value changed)"]
        return [f"{diff.field}: {_show(old)} -> {_show(new)}"]
    shown_new = _payload(show.data(diff.new))
    if action == "create":
        return [f"data: {_json(shown_new)}"]
    return _data_lines(_payload(diff.old), _payload(diff.new), _payload(show.data(diff.old)),
                       shown_new)


def _data_lines(old: dict[str, Any], new: dict[str, Any], shown_old: dict[str, Any],
                shown_new: dict[str, Any]) -> list[str]:
    """One line per changed key: compared on the values, printed as shown (a value from the
    environment that changed prints as its reference, once)."""
    lines = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key not in new:
            lines.append(f"data.{key}: {_json(shown_old[key])} -> (removed)")
        elif key not in old:
            lines.append(f"data.{key}: (absent) -> {_json(shown_new[key])}")
        elif normalized_field("data", old[key]) == normalized_field("data", new[key]):
            continue
        elif shown_old[key] == shown_new[key]:
            lines.append(f"data.{key}: {_json(shown_new[key])} (value changed)")
        else:
            lines.append(f"data.{key}: {_json(shown_old[key])} -> {_json(shown_new[key])}")
    return lines or [f"data: {_json(shown_old)} -> {_json(shown_new)}"]


def _payload(data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        return {"(data)": data}
    return {key: value for key, value in data.items() if key not in RESERVED_DATA_KEYS}


def _next_run_lines(change: Change, show: _Shown) -> list[str]:
    if change.disabled:
        return ["next runs: none (" + ("paused" if change.paused else "disabled") + ")"]
    if not change.next_runs:
        return ["next runs: none (no allowed time left)"]
    label = "next runs: "
    return [
        ("next runs: " if i == 0 else " " * len(label)) + _when(fire, show)
        for i, fire in enumerate(change.next_runs)
    ]


def _when(fire: FireTime, show: _Shown) -> str:
    text = f"{fire.utc.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    if fire.zone != "UTC":
        zone = show.field("repeat_timezone", fire.zone)
        text += f"  ({fire.local.strftime('%Y-%m-%d %H:%M:%S %Z')}, {zone})"
    return text


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, datetime):
        return _iso(value)
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_apply_result(result: ApplyResult) -> str:
    """The closing line of ``agenda-decl apply``."""
    kept = _orphans_kept(len(result.orphaned)) + _paused_kept(len(result.plan.paused))
    if not result.changed:
        if kept:
            return f"Nothing written; storage still does not match the file:{kept}\n"
        return "No changes: storage already matches the declared schedules.\n"
    extra = (f", {result.duplicates_removed} duplicate(s) removed"
             if result.duplicates_removed else "")
    return (
        f"Applied: {result.created} created, {result.updated} updated, {result.deleted} deleted,"
        f" {result.unchanged} unchanged{extra}.{kept}\n"
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    return value


def change_to_json(change: Change, config: AgendaConfig) -> dict[str, Any]:
    """A change as JSON-ready data; ``config`` is the file it was planned from (what it takes
    from the environment prints as the file wrote it)."""
    show = _Shown(config, change)
    return {
        "action": change.action,
        "key": shown(change.key),
        "job": change.job,
        "id": change.id,
        "reason": change.reason,
        "disabled": change.disabled,
        "paused": change.paused.to_data() if change.paused is not None else None,
        "timezone": show.field("repeat_timezone", change.timezone),
        "diffs": [
            {"field": d.field, "old": _json_value(_shown_value(d.field, d.old, show)),
             "new": _json_value(_shown_value(d.field, d.new, show))}
            for d in change.diffs
        ],
        "next_runs": [
            {"utc": _iso(f.utc), "local": f.local.isoformat(timespec="milliseconds"),
             "zone": show.field("repeat_timezone", f.zone)}
            for f in change.next_runs
        ],
    }


def _shown_value(field: str, value: Any, show: _Shown) -> Any:
    if field != "data":
        return show.field(field, value)
    return _payload(show.data(value)) if value is not None else value


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (``agenda-decl plan --json``)."""
    return {
        "owner": shown(plan.owner),
        "now": _iso(plan.now),
        "prune": plan.prune,
        "has_changes": plan.has_changes,
        "in_sync": plan.in_sync,
        "summary": {action: plan.count(action) for action in ACTIONS},
        "changes": [change_to_json(change, plan.config) for change in plan.changes],
        "orphaned": [{"key": o.key, "job": o.job, "id": o.id} for o in plan.orphaned],
        "paused": [{"key": shown(c.key), "job": c.job, "id": c.id,
                    **(c.paused.to_data() if c.paused else {})} for c in plan.paused],
    }
