"""``python -m pos3``: the same command line as the ``pos3`` console script."""

from pos3.cli import main

raise SystemExit(main())
