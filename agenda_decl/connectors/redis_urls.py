"""Redis connection strings and key prefixes, without the driver (the configuration checks
read them too): which strings name a Redis Cluster (``redis+cluster://``,
``rediss+cluster://``), the plain string of the node one names, and the hash-tag rule for a
key prefix on a cluster."""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qs, urlsplit

from agenda_decl.errors import InvalidOptionError

#: The connection string schemes of a Redis Cluster, and the plain scheme of each.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: A hash tag at the start of a prefix: ``{...}`` with something in it, before any other
#: ``{``. Redis hashes only the tag of a key that has one.
_HASH_TAG = re.compile(r"^[^{]*\{[^}]+\}")


def socket_timeout_problem(url: str) -> str | None:
    """What is wrong with the ``socket_timeout`` query parameter of ``url`` (the reply
    deadline of every command, ``connectors.redis.SOCKET_TIMEOUT``), or None. redis-py
    would take 0 or a negative number and fail every command, and its own error for a
    value that is not a number does not say which."""
    values = parse_qs(urlsplit(str(url)).query).get("socket_timeout")
    if not values:
        return None
    try:
        seconds = float(values[0])
    except ValueError:
        seconds = math.nan
    if seconds > 0 and math.isfinite(seconds):
        return None
    return f"socket_timeout must be a number of seconds above 0, got {values[0]!r}"


def is_cluster_url(url: str) -> bool:
    return str(url).split("://", 1)[0].lower() in CLUSTER_SCHEMES


def node_url(url: str) -> str:
    """The plain connection string of the node that a cluster connection string names (the
    same string for a single server)."""
    scheme, sep, rest = str(url).partition("://")
    return f"{CLUSTER_SCHEMES.get(scheme.lower(), scheme)}{sep}{rest}"


#: Why a prefix on a cluster needs a hash tag (the end of both errors that say so).
CLUSTER_PREFIX_RULE = ("on a Redis Cluster every key of the store must share one slot, so the "
                       "prefix needs a hash tag, for example '{agenda}:'")


def has_hash_tag(prefix: str) -> bool:
    """Whether every key made by appending to ``prefix`` hashes to the slot of its tag."""
    return _HASH_TAG.match(prefix) is not None


def check_cluster_prefix(prefix: str) -> str:
    """A key prefix for a cluster, or ``InvalidOptionError``: it must start with a hash tag,
    so that every key of the store is in one slot and one script may touch them all."""
    if not has_hash_tag(prefix):
        raise InvalidOptionError(
            f"invalid key_prefix: {prefix!r} has no hash tag; {CLUSTER_PREFIX_RULE}")
    return prefix
