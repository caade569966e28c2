"""What every store's queries share: the id and name criteria of a query or a removal, folded
into one predicate each, a query's result with the state the store computed, and the job
fields a store keeps as instants."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from agenda_decl._model import (
    JobParameters,
    JobsQueryOptions,
    JobState,
    JobWithState,
    RemoveJobsOptions,
)
from agenda_decl.errors import InvalidOptionError

#: The fields of ``JobParameters`` that hold instants (aware datetimes or ``None``): what a
#: store encodes as its own kind of date.
INSTANT_FIELDS: tuple[str, ...] = (
    "next_run_at",
    "locked_at",
    "last_finished_at",
    "failed_at",
    "last_run_at",
    "debounce_started_at",
    "start_date",
    "end_date",
)


@attrs.define(kw_only=True, frozen=True)
class IdNameCriteria:
    """The id and name criteria of a query or a removal, folded so that each is one predicate.

    Every given criterion applies (AND): ``ids`` is the intersection of ``{id}`` and ``ids``,
    ``names`` the intersection of ``{name}`` and ``names`` minus ``not_names``. Backends translate
    exactly these fields and nothing else of the options' id/name criteria.
    """

    #: The only ids a match may have (sorted, no duplicates); ``None``: any id.
    ids: tuple[str, ...] | None = None
    #: The only names a match may have (sorted, no duplicates); ``None``: any name.
    names: tuple[str, ...] | None = None
    #: Names a match may not have; only set when ``names`` is ``None`` (otherwise they are
    #: already taken out of ``names``). An empty tuple excludes nothing.
    not_names: tuple[str, ...] | None = None

    def matches_nothing(self) -> bool:
        """True when no job can match (an empty id or name set): no store call is needed."""
        return self.ids == () or self.names == ()


def _plain_id(value: Any) -> str:
    return str(value)


def id_name_criteria(
    options: JobsQueryOptions | RemoveJobsOptions,
    *,
    id_key: Callable[[Any], str | None] = _plain_id,
) -> IdNameCriteria:
    """Fold ``id``/``ids``/``name``/``names``/``not_names`` into :class:`IdNameCriteria`.

    ``id_key`` maps a given id to the store's canonical text of it, or to ``None`` for an id the
    store could never have issued (such an id matches nothing). Names must be strings.
    """
    ids: set[str] | None = None
    if options.id is not None:
        ids = _id_keys([options.id], id_key)
    if options.ids is not None:
        given = _id_keys(options.ids, id_key)
        ids = given if ids is None else ids & given
    names: set[str] | None = None
    if options.name is not None:
        names = _name_set([options.name])
    if options.names is not None:
        given_names = _name_set(options.names)
        names = given_names if names is None else names & given_names
    raw_not_names = options.not_names if isinstance(options, RemoveJobsOptions) else None
    not_names = None if raw_not_names is None else _name_set(raw_not_names)
    if names is not None and not_names is not None:
        names, not_names = names - not_names, None
    return IdNameCriteria(
        ids=None if ids is None else tuple(sorted(ids)),
        names=None if names is None else tuple(sorted(names)),
        not_names=None if not_names is None else tuple(sorted(not_names)),
    )


def _id_keys(values: Iterable[Any], id_key: Callable[[Any], str | None]) -> set[str]:
    return {key for key in map(id_key, values) if key is not None}


def _name_set(values: Iterable[Any]) -> set[str]:
    names = set()
    for value in values:
        if not isinstance(value, str):
            raise InvalidOptionError(f"a job name must be a string, got {value!r}")
        names.add(value)
    return names


def with_state(job: JobParameters[Any], state: JobState) -> JobWithState[Any]:
    """``job`` as a query returns it: with the state the store computed."""
    return JobWithState(**attrs.asdict(job, recurse=False), state=state)
