from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agenda_decl import Agenda
from agenda_decl.interfaces import AgendaBackend

MakeAgenda = Callable[..., Agenda]


@pytest.fixture
async def make_agenda(backend: AgendaBackend) -> AsyncIterator[MakeAgenda]:
    """Build Agendas on the test's backend; every one is stopped at teardown."""
    made: list[Agenda] = []

    def make(**options: Any) -> Agenda:
        options.setdefault("process_every", "100 ms")
        agenda = Agenda(backend, **options)
        made.append(agenda)
        return agenda

    yield make
    for agenda in made:
        await agenda.stop(close_connection=False)
