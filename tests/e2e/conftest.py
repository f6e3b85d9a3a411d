"""End-to-end runs: the real CLI in a subprocess, real pip, real pypiserver, the real proxy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a pipstorm process: the session's own corpus and tool cache (a test
    passes its own TMPDIR, so it can check that nothing is left behind there).

    Under pytest-xdist the workers of one session share the cache, in the session's base temp
    folder: the corpus and tool venvs (poetry ~13 s to install) are built once, not once per
    worker; both caches publish by an atomic rename, so concurrent builders are safe."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = tmp_path_factory.getbasetemp().parent / "e2e-cache"  # gw0/, gw1/ live beside it
    else:
        cache = tmp_path_factory.mktemp("e2e") / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPI_")}
    env["PIPSTORM_CACHE_DIR"] = str(cache)
    yield env


#: The default latency thresholds (p95 listing, p99 download) switched off, and a busy generator
#: allowed to judge (no INCONCLUSIVE, exit 3: docs/verdicts.md), for a `run` whose subject is
#: neither latency nor this machine's capacity: on a busy 2-core machine both fail for reasons
#: the test is not about.
LATENCY_OFF = (
    *("--threshold", "p95_listing_ms=off", "--threshold", "p99_download_ms=off"),
    "--allow-generator-bound",
)


def pipstorm(
    args: Sequence[str], env: dict[str, str], *, tmpdir: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipstorm ARGS`` to completion with TMPDIR set to ``tmpdir``."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "pipstorm", *args],
        env={**env, "TMPDIR": str(tmpdir)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def leftovers(tmpdir: Path) -> list[str]:
    """Whatever a run left in its TMPDIR."""
    return sorted(p.name for p in tmpdir.iterdir()) if tmpdir.exists() else []


def processes_of(tmpdir: Path) -> list[str]:
    """Live processes (any parent) whose ``TMPDIR`` is ``tmpdir`` or a folder inside it:
    everything a pipstorm started with ``pipstorm(..., tmpdir=...)`` inherits it (a client gets
    a TMPDIR inside it), so this finds what it left running even if it was launched after any
    snapshot of its process tree."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            own = proc.environ().get("TMPDIR", "")
            if own == str(tmpdir) or own.startswith(f"{tmpdir}/"):
                found.append(" ".join(proc.cmdline()))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


#: How long processes a finished pipstorm started may take to exit after it. Not a leak: the
#: multiprocessing resource tracker it spawned exits when it reads EOF on its pipe, which the
#: kernel delivers at pipstorm's exit; on a loaded machine (four test workers on two cores) that
#: took long enough for an immediate ``processes_of`` to see it, once.
EXIT_GRACE_S = 10.0


def left_running(tmpdir: Path, grace_s: float = EXIT_GRACE_S) -> list[str]:
    """``processes_of(tmpdir)`` once they had ``grace_s`` to exit: what a finished pipstorm
    really left behind (empty at once in the usual case: no wait then)."""
    deadline = time.monotonic() + grace_s
    while (found := processes_of(tmpdir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found
