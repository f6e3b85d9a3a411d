"""``python -m pipstorm`` runs the CLI, like the ``pipstorm`` console script.

Installed as ``pipstorm/__main__.py`` (hatch_build.py); ``python -m pipstorm.engine`` works too.
"""

from __future__ import annotations

import sys

from pipstorm.engine.cli import main

sys.exit(main())
