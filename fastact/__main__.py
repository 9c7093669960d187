"""``python -m fastact``: the command-line tools (see :mod:`fastact._cli`)."""

from fastact._cli import main

raise SystemExit(main())
