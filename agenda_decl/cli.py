"""The ``agenda-decl`` command."""

from __future__ import annotations

import argparse
import sys

from agenda_decl import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agenda-decl", description="A typed job queue and scheduler driven by agenda.yaml."
    )
    parser.add_argument("--version", action="version", version=f"agenda-decl {__version__}")
    parser.parse_args(argv)
    parser.print_help(sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
