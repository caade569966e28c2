"""The SQLite store's data filter in SQL (``queries.data_sql``: SQLite's JSON functions)
decides containment exactly as the shared rule ``data_contains`` does, on generated data and
filters, and falls back to the Python function for what it cannot spell."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agenda_decl._job_data import data_contains, encode_data
from agenda_decl.backends.sqlite import queries
from agenda_decl.connectors.sqlite import _register_functions

KEYS = st.sampled_from(["a", "b", "n", "é", "x y", "back\\slash", "'q'", 'say "hi"', "\t"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([1.0, 2.5, -0.0, 2**62]),
    st.sampled_from(["", "a", "1", "true", "null", "é", '{"a": 1}', "[1]"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)


def _matches(stored: Any, needle: Any) -> bool:
    params: dict[str, Any] = {}
    clause = queries.data_filter(needle, params)
    with closing(sqlite3.connect(":memory:")) as c:
        _register_functions(c)
        row = c.execute(f"SELECT ({clause}) AS hit FROM (SELECT :stored AS data)",
                        {**params, "stored": encode_data(stored, name="t")}).fetchone()
    return bool(row["hit"])


@settings(max_examples=400, deadline=None)
@given(stored=VALUES, needle=VALUES)
def test_the_sql_filter_is_data_contains(stored: Any, needle: Any) -> None:
    assert _matches(stored, needle) == data_contains(stored, needle)


@settings(max_examples=200, deadline=None)
@given(stored=VALUES, data=st.data())
def test_a_part_of_the_data_is_found(stored: Any, data: st.DataObject) -> None:
    """Generated pairs rarely match; a needle cut from the stored value always does."""
    needle = data.draw(_part_of(stored))
    assert _matches(stored, needle) == data_contains(stored, needle) is True


def _part_of(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, dict) and value:
        return st.lists(st.sampled_from(sorted(value)), unique=True).flatmap(
            lambda keys: st.fixed_dictionaries({key: _part_of(value[key]) for key in keys}))
    if isinstance(value, list) and value:
        return st.lists(st.sampled_from(value).flatmap(_part_of), max_size=2)
    return st.just(value)


def test_what_sql_cannot_spell_goes_to_the_python_function() -> None:
    for needle in ({'say "hi"': 1}, {"big": 2**70}, {"": 1}, [{"a": 2**64}]):
        params: dict[str, Any] = {}
        assert queries.data_filter(needle, params) == queries.FILTERS["data"]
        assert _matches({'say "hi"': 1, "big": 2**70, "": 1}, needle) == data_contains(
            {'say "hi"': 1, "big": 2**70, "": 1}, needle)
    assert queries.data_filter({"customer": {"id": 7}}, {}) != queries.FILTERS["data"]
