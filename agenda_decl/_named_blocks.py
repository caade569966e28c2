"""Text kept in named blocks: the SQL and the Lua of the stores live in ``.sql`` and ``.lua``
files inside the package, read as package resources (``importlib.resources``, so they are
found in a wheel, a zip or a source tree alike).

A file is a header (anything before the first block: what the file holds) and then blocks,
each starting with a line that names it::

    -- claim --
    -- Comment lines right after the name describe the block; they are not part of its text.
    UPDATE ...

A block's text runs to the next name line, without the white space around it. SQL and Lua
both comment with ``--``, so the same files read well in an editor for either language.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import LiteralString, cast

#: A block's name line and the description lines that follow it.
_NAME_LINE = re.compile(r"^-- ([a-z][a-z0-9_]*) --\n(?:--(?: .*)?\n)*", re.MULTILINE)


@functools.cache
def load_named_blocks(package: str, resource: str) -> Mapping[str, LiteralString]:
    """The blocks of the file ``resource`` in ``package``, by name (read once per process).

    The texts are typed as literal strings: they come from the package's own files, never
    from input, exactly like a statement written in the code.
    """
    text = importlib.resources.files(package).joinpath(resource).read_text(encoding="utf-8")
    return MappingProxyType(parse_named_blocks(text, where=f"{package}/{resource}"))


def parse_named_blocks(text: str, *, where: str) -> dict[str, LiteralString]:
    """The blocks of ``text`` by name; a name given twice is an error (``where`` names the
    file in the message)."""
    parts = _NAME_LINE.split(text)
    blocks: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise ValueError(f"{where}: the block {name!r} is named twice")
        blocks[name] = cast(LiteralString, body.strip())
    return blocks
