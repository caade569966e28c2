"""The in-memory store (one process, nothing persisted): what tests and ``agenda-decl
validate`` run on. ``agenda_decl.testing`` re-exports it."""

from agenda_decl.backends.memory.backend import InMemoryBackend
from agenda_decl.backends.memory.repository import InMemoryJobRepository

__all__ = ["InMemoryBackend", "InMemoryJobRepository"]
