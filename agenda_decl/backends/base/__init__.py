"""The rules every store shares, one module per topic:

* ``checks``: the checks before a write (table names, the job itself) and the refusal of
  writes by a store opened read-only;
* ``queries``: the folded id and name criteria of a query or a removal, query results with
  their state, and the job fields a store keeps as instants;
* ``saving``: the save-job rules (single upserts, debounce, insert-only unique keys);
* ``batches``: the single-job methods of stores that claim and write states in batches, and
  the fencing rule of a state write;
* ``inserts``: the checks before a bulk insert, its batch size, and what it stored;
* ``backend``: the backend class every store's backend is (its repository, its channel);
* ``repeats``: what makes a claim and a state write safe to repeat after a lost reply;
* ``rows``: a row of a SQL store as a job, by a conversion generated per column list.

Backends keep only what is specific to their technology; the rules that decide *what* is
written live here once, so every store behaves the same. Rules that are not about storage
(job data, unique keys, the errors of a rejected state write) are core: ``_job_data`` and
``errors``.
"""

from agenda_decl.backends.base.backend import StoreBackend
from agenda_decl.backends.base.batches import (
    ClaimsInBatches,
    WritesStatesInBatches,
    chunks,
    holds_lock,
)
from agenda_decl.backends.base.checks import check_job, refuse_write, validate_identifier
from agenda_decl.backends.base.inserts import (
    INSERT_BATCH,
    check_inserts,
    inserted,
    inserted_all,
    random_ids,
)
from agenda_decl.backends.base.queries import (
    INSTANT_FIELDS,
    IdNameCriteria,
    id_name_criteria,
    with_state,
)
from agenda_decl.backends.base.saving import (
    DebounceOutcome,
    debounce_outcome,
    is_debounced,
    is_insert_only,
    single_next_run_at,
)

__all__ = [
    "INSERT_BATCH",
    "INSTANT_FIELDS",
    "ClaimsInBatches",
    "DebounceOutcome",
    "IdNameCriteria",
    "StoreBackend",
    "WritesStatesInBatches",
    "check_inserts",
    "check_job",
    "chunks",
    "debounce_outcome",
    "holds_lock",
    "id_name_criteria",
    "inserted",
    "inserted_all",
    "is_debounced",
    "is_insert_only",
    "random_ids",
    "refuse_write",
    "single_next_run_at",
    "validate_identifier",
    "with_state",
]
