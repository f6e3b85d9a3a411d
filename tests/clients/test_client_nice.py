"""Clients run niced, so the recording proxy wins the CPU when clients saturate the cores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipstorm.clients.environment import scrubbed_env
from pipstorm.clients.process import CLIENT_NICE, ProcessRegistry, run_process


def test_a_client_runs_at_the_client_nice_value(tmp_path: Path) -> None:
    outcome = run_process(
        [sys.executable, "-c", "import os; print(os.nice(0))"],
        env=scrubbed_env(tmp_path),
        cwd=tmp_path,
        timeout_s=30,
        registry=ProcessRegistry(),
    )
    assert outcome.exit_code == 0
    # Absolute, not relative to ours; an unprivileged runner already niced further keeps its own.
    assert int(outcome.stdout_tail) == max(CLIENT_NICE, os.nice(0))
