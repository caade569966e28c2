"""What agenda-decl prints in place of secrets: the one rule every message follows.

* A connection string prints with only its password masked, wherever it came from:
  ``postgresql://app:***@db/billing``, ``host=db user=app password=*** dbname=billing``.
  The string is parsed and the password is replaced where it sits (the password of a URL's
  user info, a ``password=`` field of a query string or of a key=value DSN): the text is
  never searched for the secret, so a password that is also a word, a user name or a job
  name leaves the rest of the message as it was.
* Free text (driver errors, log records, anything printed) is masked the same way: the
  connection strings and ``password=`` fields in it are found and their passwords masked.
* A value the config file took from the environment (``${TOKEN}``), other than a
  connection string, prints as it is written in the file: :class:`EnvText` carries that
  reference, and ``repr()``, messages and outputs show it instead of the value.

Core code: backends, the config layer and the command all use this module; it imports none
of them.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "EnvText", "mask_text", "mask_url", "shown"]

MASK = "***"

#: A URL in free text: a scheme, then everything up to white space, a quote or a bracket.
_URL = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+"
#: ``password=`` (also ``sslpassword=``, ...) in a key=value DSN: the value is a quoted
#: string (libpq's quoting, with backslash escapes) or runs to white space.
_DSN_PASSWORD = r"\b[A-Za-z_]*password\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s'\"]+)"
_FREE_TEXT = re.compile(f"(?P<url>{_URL})|(?P<dsn>{_DSN_PASSWORD})", re.IGNORECASE)
_FIELD_VALUE = re.compile(r"(?P<key>[A-Za-z_]*password\s*=\s*)(?P<value>.*)",
                          re.IGNORECASE | re.DOTALL)
#: ``password=`` in a URL's query string: the value runs to the next ``&`` or ``#``.
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&;][A-Za-z_]*password=)(?P<value>[^&#]*)",
                             re.IGNORECASE)


def mask_url(text: str) -> str:
    """A connection string (URL or key=value DSN) with its password, and nothing else,
    replaced by ``***``; anything else comes back unchanged (as a plain ``str``)."""
    text = str(text)  # an EnvText connection string prints as the string, masked
    if "://" in text:
        return _mask_query(_mask_user_info(text))
    return _FREE_TEXT.sub(_mask_match, text)


def mask_text(text: str) -> str:
    """Free text with the password of every connection string and ``password=`` field in it
    masked (see the module docstring); the rest of the text is left as it was."""
    return _FREE_TEXT.sub(_mask_match, str(text))


def _mask_match(match: re.Match[str]) -> str:
    if match["url"] is not None:
        return mask_url(match["url"])
    field = _FIELD_VALUE.fullmatch(match["dsn"])
    assert field is not None  # the same pattern found it
    return field["key"] + MASK


def _mask_user_info(url: str) -> str:
    """``scheme://user:password@host/...`` with the password masked. The authority ends at
    the first ``/``, ``?`` or ``#`` after ``//``; its user info at the last ``@`` in it (RFC
    3986: neither may appear unencoded in a password)."""
    start = url.index("://") + 3
    end = next((i for i in range(start, len(url)) if url[i] in "/?#"), len(url))
    at = url.rfind("@", start, end)
    colon = url.find(":", start, at)
    if at < 0 or colon < 0 or colon + 1 == at:
        return url  # no password given
    return f"{url[: colon + 1]}{MASK}{url[at:]}"


def _mask_query(url: str) -> str:
    return _QUERY_PASSWORD.sub(lambda m: m["key"] + MASK if m["value"] else m[0], url)


class EnvText(str):
    """A string value the config file took from the environment, remembering how the file
    wrote it (``reference``: ``${TOKEN}``, ``Bearer ${TOKEN}``).

    It is the value everywhere it is used (equality, hashing, JSON, ``str()``, f-strings);
    only ``repr()`` (which every message uses to quote a value) and :func:`shown` give the
    reference, so a value from the environment is never printed back.
    """

    __slots__ = ("reference",)
    reference: str

    def __new__(cls, value: str, reference: str) -> EnvText:
        made = super().__new__(cls, value)
        made.reference = reference
        return made

    def __repr__(self) -> str:
        return repr(self.reference)

    def __reduce__(self) -> tuple[Any, ...]:
        return (EnvText, (str(self), self.reference))


def shown(value: Any) -> Any:
    """``value`` as it may be printed: an :class:`EnvText` as its reference, else as is."""
    return value.reference if isinstance(value, EnvText) else value
