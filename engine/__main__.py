"""``python -m engine``: the trading engine's command line (see :mod:`engine.cli`)."""

from engine.cli import main

raise SystemExit(main())
