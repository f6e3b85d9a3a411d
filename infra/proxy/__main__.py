"""``python -m pipstorm.infra.proxy``: the recording proxy's process (``server.main``).

Started by ``pipstorm.infra.proxy.control.RecordingProxy``; not a command for people.
"""

from __future__ import annotations

import sys

from pipstorm.infra.proxy.server import main

sys.exit(main())
