"""``python -m fdloop`` is the ``fdloop`` command."""

from .cli import main

raise SystemExit(main())
