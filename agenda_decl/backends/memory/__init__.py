"""The in-memory store (one process, nothing persisted): what tests run on.
``agenda_decl.testing`` re-exports it."""

from agenda_decl.backends.memory.backend import InMemoryBackend
from agenda_decl.backends.memory.job_log import InMemoryJobLogger
from agenda_decl.backends.memory.repository import InMemoryJobRepository

__all__ = ["InMemoryBackend", "InMemoryJobLogger", "InMemoryJobRepository"]
