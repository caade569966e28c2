"""Rows of a jobs table as :class:`JobParameters`, by a conversion generated once per column
list, the way attrs generates its own methods.

A worker reads every job it runs from a claim's rows, so the conversion is the hot part of a
claim's own cost: each field is set straight from its column by one expression of the
store's (an instant from its stored form, data from JSON, ...), with no keyword handling and
no dict per row. It builds what ``_convert.job_from_row`` builds from the same values: an
absent or NULL column leaves the field's default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from agenda_decl._model import JobParameters

Decode = Callable[[Sequence[Any]], JobParameters[Any]]

#: Fields a row never sets (``_convert.job_from_row`` drops them too): save options only.
_NOT_STORED = frozenset({"unique", "unique_opts"})


def job_decoder(
    columns: Sequence[str], reads: Mapping[str, str], namespace: Mapping[str, Any], store: str
) -> Decode:
    """The conversion of a row whose columns are ``columns`` (in order) to a job. ``reads``:
    per column, the expression that reads ``value``, its non-NULL value (the others are
    taken as they come), using the names of ``namespace``. Extra columns are ignored, a field
    without a column keeps its default."""
    lines = ["def decode(row):", "    job = new(cls)"]
    scope: dict[str, Any] = {**namespace, "new": object.__new__, "cls": JobParameters}
    position = {column: index for index, column in enumerate(columns)}
    for field in attrs.fields(JobParameters):
        name, default = field.name, field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            raise TypeError(f"JobParameters.{name} has a factory default: decode it by hand")
        scope[f"default_{name}"] = default
        index = None if name in _NOT_STORED else position.get(name)
        if index is None:
            lines.append(f"    job.{name} = default_{name}")
            continue
        lines.append(f"    value = row[{index}]")
        lines.append(
            f"    job.{name} = default_{name} if value is None else {reads.get(name, 'value')}")
    lines.append("    return job")
    exec(compile("\n".join(lines), f"<{store} job row decoder>", "exec"), scope)
    decode: Decode = scope["decode"]
    return decode
