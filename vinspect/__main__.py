"""``python -m vinspect`` is the ``vinspect`` command."""

from vinspect.cli import main

raise SystemExit(main())
