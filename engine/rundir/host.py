"""``host.jsonl``: one sample a second of the generator host and its parts
(``pipstorm.engine.run.sampler``).

The one parser of that stream: a line counts when it is a JSON object with a finite numeric
``ts`` and ``host_cpu_percent`` (what every sampler version writes); anything else is skipped and
counted, as a crash cuts the last line short. The rest of a row is kept as written (nested groups
such as ``proxy``, ``clients``), so an older or newer sampler never stops a report; the analyses
pick what they chart or judge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipstorm.engine.rundir.jsonl import read_jsonl

HostRow = Mapping[str, Any]


def number(value: object) -> float | None:
    """A finite JSON number as float, else None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def load_host(path: Path) -> tuple[list[HostRow], int]:
    """``host.jsonl`` as rows in time order, plus the number of skipped lines."""
    rows, skipped = read_jsonl(path)
    kept: list[HostRow] = [r for r in rows if number(r.get("ts")) is not None]
    kept = [r for r in kept if number(r.get("host_cpu_percent")) is not None]
    kept.sort(key=lambda r: float(r["ts"]))
    return kept, skipped + len(rows) - len(kept)
