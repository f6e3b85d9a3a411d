"""The names of the files in a results folder, and the one way to write a whole file.

Streams (``requests.jsonl``, ``clients.jsonl``, ``host.jsonl``) are appended as events happen
(``pipstorm.engine.rundir.jsonl``); documents (``run.json``, the reports, the charts) are replaced
whole, atomically, so a reader sees the old file or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REQUESTS_FILE = "requests.jsonl"
CLIENTS_FILE = "clients.jsonl"
HOST_FILE = "host.jsonl"
#: CloudWatch series of a run against an AWS stack (pipstorm.infra.aws.cloudwatch_log writes it).
CLOUDWATCH_FILE = "cloudwatch.jsonl"
#: The embedded target's cgroup counters, one sample a second (``--sizing``;
#: pipstorm.infra.pypiserver.counters).
TARGET_CGROUP_FILE = "target_cgroup.jsonl"
#: What happened to the run as it happened, one event a line (a target's death:
#: pipstorm.engine.rundir.events), so a SIGKILLed run's folder still says it.
EVENTS_FILE = "events.jsonl"
RUN_FILE = "run.json"
#: The embedded target's own log (pypiserver and gunicorn), kept with the run.
TARGET_LOG = "target.log"
#: Permissions of the files written atomically (run.json, reports, charts): anyone may read them.
REPORT_MODE = 0o644


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new, never half.

    The temp file lives in the same folder (``os.replace`` is atomic only within a file system),
    is synced before the rename (a crash right after leaves the new bytes, not an empty file)
    and is removed if anything fails before the rename.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, REPORT_MODE)  # mkstemp makes the file private (0600); reports are not
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write a JSON document atomically (``run.json``, ``report.json``), indented for people."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def make_run_dir(root: Path, name: str) -> Path:
    """``<root>/<UTC timestamp>-<name>/``, never reusing an existing folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        path = root / (f"{stamp}-{safe}" + (f"-{attempt}" if attempt else ""))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"cannot make a fresh results folder under {root}")
