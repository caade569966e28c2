from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agenda_decl.interfaces import AgendaBackend, JobRepository
from tests.backends import BACKENDS, load


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AgendaBackend]:
    """A fresh, connected, empty backend of each kind in turn."""
    async with load(request.param).make_backend(tmp_path) as made:
        yield made


@pytest.fixture
def repository(backend: AgendaBackend) -> JobRepository:
    return backend.repository
