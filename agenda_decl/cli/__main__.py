"""``python -m agenda_decl.cli``: the same as the ``agenda-decl`` command."""

import sys

from agenda_decl.cli import main

sys.exit(main())
