"""Runnable examples of agenda-decl; ``examples.handlers`` holds the demo jobs' handlers."""
