"""``pipstorm run --dashboard``: a real run watched in a real headless Chromium while it plays.

The URL is the first line the run prints; the page, loaded twice during the run, shows figures
that grew in between (requests, runs), draws its charts and counts no JavaScript error; after
the run nothing is left running or in TMPDIR.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import LATENCY_OFF, left_running, leftovers
from tests.engine.chromium_shot import needs_chromium
from tests.engine.run.live.test_dashboard import dump_dom

pytestmark = [pytest.mark.e2e, needs_chromium]

PROFILE = """
clients = 2
duration_s = 30
tick_s = 2
burst_every_s = 10
burst_multiplier = 3
mix = {http = 1.0}
"""


def _state(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url + "state.json", timeout=10) as response:  # noqa: S310 - loopback
        data = json.load(response)
    assert isinstance(data, dict)
    return data


def _requests(state: dict[str, object]) -> int:
    runs = state.get("runs")
    return int(runs["requests"]) if isinstance(runs, dict) else 0


def _wait_for(url: str, more_than: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        seen = _requests(_state(url))
        if seen > more_than:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"the run's requests never went past {more_than}")


def _shown(dom: str, element: str) -> int:
    match = re.search(rf'id="{element}">(\d+)<', dom)
    assert match is not None, element
    return int(match.group(1))


def test_the_page_follows_a_real_run_without_errors(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    profile = tmp_path / "steady.toml"
    profile.write_text(PROFILE)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pipstorm", "run", "--profile", str(profile)),
                *("--results", str(tmp_path / "results"), "--quiet", *LATENCY_OFF),
                "--dashboard",
            ],
            env={**e2e_env, "TMPDIR": str(tmpdir)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while not log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        first = log.read_text().splitlines()[0]
        match = re.fullmatch(r"pipstorm: dashboard at (http://127\.0\.0\.1:\d+/)", first)
        assert match is not None, first  # the URL comes first, on loopback
        url = match.group(1)
        _wait_for(url, 0, deadline)
        early = dump_dom(url, tmp_path / "chromium-1")
        _wait_for(url, _shown(early, "requests") + 10, deadline)
        later = dump_dom(url, tmp_path / "chromium-2")
        assert proc.wait(timeout=180) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for dom in (early, later):
        assert 'id="js-errors">0<' in dom
        assert dom.count("<canvas") >= 7
        assert 'id="line">running' in dom
    assert _shown(later, "requests") > _shown(early, "requests") > 0
    assert _shown(later, "runs-finished") >= _shown(early, "runs-finished")
    assert left_running(tmpdir) == []
    assert leftovers(tmpdir) == []
