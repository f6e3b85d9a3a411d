"""``python -m engine`` runs the CLI, like the ``pipstorm`` console script."""

from __future__ import annotations

import sys

from engine.cli import main

sys.exit(main())
