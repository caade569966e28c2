"""The SQL and Lua of the stores, read from named blocks in package files."""

from __future__ import annotations

import re

import pytest

from agenda_decl._named_blocks import load_named_blocks, parse_named_blocks
from agenda_decl.backends.redis import scripts


def test_blocks_are_split_on_their_name_lines_without_their_description() -> None:
    text = (
        "-- what the file holds\n\n"
        "-- first --\n-- describes the first block\n--\nSELECT 1\n\n"
        "-- second --\nSELECT 2 -- a trailing comment stays\n-- so does a later line\n"
    )
    assert parse_named_blocks(text, where="t.sql") == {
        "first": "SELECT 1",
        "second": "SELECT 2 -- a trailing comment stays\n-- so does a later line",
    }


def test_a_name_given_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"t\.sql: the block 'one' is named twice"):
        parse_named_blocks("-- one --\nA\n-- one --\nB\n", where="t.sql")


@pytest.mark.parametrize(
    ("package", "resource"),
    [
        ("agenda_decl.backends.sqlite", "queries.sql"),
        ("agenda_decl.backends.postgres", "queries.sql"),
        ("agenda_decl.backends.redis", "prelude.lua"),
        ("agenda_decl.backends.redis", "claim.lua"),
        ("agenda_decl.backends.redis", "save.lua"),
        ("agenda_decl.backends.redis", "query.lua"),
        ("agenda_decl.notifications", "postgres.sql"),
        ("agenda_decl.notifications", "redis.lua"),
    ],
)
def test_every_file_of_the_package_has_blocks_and_no_empty_one(package: str, resource: str) -> None:
    blocks = load_named_blocks(package, resource)
    assert blocks
    assert all(text.strip() for text in blocks.values())


def test_the_lua_job_fields_are_the_python_ones() -> None:
    """The scripts return a job's hash fields in the prelude's order; Python reads them in
    ``scripts.JOB_FIELDS`` order."""
    prelude = load_named_blocks("agenda_decl.backends.redis", "prelude.lua")["prelude"]
    found = re.search(r"local JOB_FIELDS = \{(.*?)\}", prelude, re.DOTALL)
    assert found is not None
    assert tuple(re.findall(r"'([A-Za-z]+)'", found[1])) == scripts.JOB_FIELDS
