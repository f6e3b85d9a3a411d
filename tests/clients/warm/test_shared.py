"""What a launcher shares between runs: keyed by an environment fingerprint that only the run's
own folder does not change, and computed in a helper that takes on the run's environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipstorm.clients.warm.shared import compute_in_helper, fingerprint


def spec(work: str, **env: str) -> dict[str, Any]:
    base = {"HOME": f"{work}/home", "TMPDIR": f"{work}/tmp", "PATH": "/usr/bin"}
    return {"module": "pip", "work": work, "cwd": work, "env": {**base, **env}}


def test_only_the_runs_own_folder_is_left_out_of_the_fingerprint() -> None:
    one = fingerprint(spec("/tmp/pipstorm-r00001-abc"))
    assert one == fingerprint(spec("/tmp/pipstorm-r00002-xyz"))
    assert one != fingerprint(spec("/tmp/pipstorm-r00001-abc", CI="1"))  # pip's CI flag
    assert one != fingerprint(spec("/tmp/pipstorm-r00001-abc", PATH="/opt/bin:/usr/bin"))
    other_module = {**spec("/tmp/pipstorm-r00001-abc"), "module": "twine"}
    assert one != fingerprint(other_module)


def test_the_helper_computes_in_the_runs_environment_and_cwd(tmp_path: Path) -> None:
    run = spec(str(tmp_path), PIP_USER_AGENT_USER_DATA="mine")

    def compute() -> dict[str, str]:
        return {"cwd": os.getcwd(), "data": os.environ["PIP_USER_AGENT_USER_DATA"]}  # noqa: PTH109

    assert compute_in_helper(run, compute, lambda: None) == {"cwd": str(tmp_path), "data": "mine"}
    assert "PIP_USER_AGENT_USER_DATA" not in os.environ  # this process is untouched


def test_a_failing_helper_gives_none_and_the_children_compute_their_own(tmp_path: Path) -> None:
    def broken() -> dict[str, str]:
        raise RuntimeError("no user agent here")

    assert compute_in_helper(spec(str(tmp_path)), broken, lambda: None) is None
