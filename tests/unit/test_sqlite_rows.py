"""The SQLite store's generated row decoder (``backends.sqlite.rows``) builds the job the
shared converter ``_convert.job_from_row`` builds from the same row, whatever is NULL, with
the columns in any order and with columns that are not fields."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agenda_decl._convert import job_from_row as converted
from agenda_decl._model import JobParameters
from agenda_decl.backends.base import INSTANT_FIELDS
from agenda_decl.backends.sqlite import queries, rows

MS = st.integers(0, 4_102_444_800_000)
COLUMNS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.text(min_size=1, max_size=8),
    "name": st.text(min_size=1, max_size=8),
    "priority": st.integers(-20, 20),
    "type": st.sampled_from(["normal", "single"]),
    "fail_count": st.none() | st.integers(0, 9),
    "fail_reason": st.none() | st.text(max_size=8),
    "repeat_timezone": st.none() | st.sampled_from(["UTC", "Europe/Paris"]),
    "repeat_interval": st.none() | st.integers(1, 10**6) | st.sampled_from(["5 minutes"]),
    "data": st.sampled_from(['{"i": 1}', "null", "[1, 2]", '"text"', "7"]),
    "repeat_at": st.none() | st.sampled_from(["3:30pm"]),
    "disabled": st.sampled_from([0, 1]),
    "progress": st.none() | st.floats(0, 1),
    "fork": st.sampled_from([0, 1]),
    "last_modified_by": st.none() | st.text(max_size=8),
    "skip_days": st.none() | st.sampled_from(["[0, 6]", "[]"]),
    # Not fields: the repository's extra columns.
    "created_at": MS,
    "row_order": st.integers(1, 10**6),
    "state": st.sampled_from(["queued", "running"]),
    **{column: st.none() | MS for column in INSTANT_FIELDS},
}


def _reference(row: dict[str, Any]) -> JobParameters[Any]:
    """What the repository built before the decoder: the shared converter after reading
    instants, JSON and flags column by column."""
    values = dict(row)
    for column in INSTANT_FIELDS:
        if column in values:
            values[column] = queries.from_ms(values[column])
    values["data"] = json.loads(values["data"])
    if values.get("skip_days") is not None:
        values["skip_days"] = json.loads(values["skip_days"])
    values["disabled"], values["fork"] = bool(values["disabled"]), bool(values["fork"])
    return converted(values)


@given(st.fixed_dictionaries(COLUMNS), st.randoms(use_true_random=False))
def test_the_decoder_builds_what_the_converter_builds(row: dict[str, Any], order: Any) -> None:
    columns = list(row)
    order.shuffle(columns)
    shuffled = {column: row[column] for column in columns}
    decoded = rows.job_from_row(shuffled)
    assert decoded == _reference(shuffled)
    assert [type(getattr(decoded, f)) for f in ("disabled", "fork")] == [bool, bool]


def test_a_field_without_a_column_keeps_its_default() -> None:
    decoded = rows.job_from_row({"id": "x", "name": "n", "data": "{}", "disabled": 0, "fork": 0})
    assert decoded == JobParameters(id="x", name="n", data={})
