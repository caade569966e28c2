"""agenda-decl's benchmarks beside Node Agenda 6.2.6 and procrastinate: ``python -m bench``
(bench/README.md). Numbers only; nothing here is a test."""
