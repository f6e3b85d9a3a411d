"""The warm launcher's life: gates, captured paths, stop, timeout, and nothing left behind.

Real pip and poetry children of real launchers, against the real pypiserver and proxy.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipstorm.clients.drivers.registry import driver_for
from pipstorm.clients.drivers.venv import throwaway_dir
from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.task import ClientTask
from pipstorm.clients.warm.launcher import ROOT_PREFIX
from pipstorm.clients.warm.launchers import Launchers, outcome_of
from pipstorm.clients.warm.run import launch_warm, warm_capable, warm_prepared
from tests.clients.conftest import Index

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]


def pip_task(index: Index, run_id: str) -> ClientTask:
    url = index.proxy.index_url_for(run_id)
    return ClientTask(run_id, "pip", "test-package-002", "1.0.0", url)


def test_uv_keeps_exec_and_the_python_clients_can_be_warm() -> None:
    assert warm_capable("pip") and warm_capable("poetry") and warm_capable("twine")
    assert not warm_capable("uv") and not warm_capable("http") and not warm_capable("npm")


def test_a_child_is_released_at_its_instant_not_before(index: Index, launchers: Launchers) -> None:
    due = time.monotonic() + 2.0
    with warm_prepared(
        pip_task(index, "due1"), launchers=launchers, temp_root=None, due_mono=due
    ) as prep:
        assert prep.child is not None, prep.error
        assert prep.child.gated.wait(60)
        result = launch_warm(prep, registry=ProcessRegistry())
    assert result.outcome == "ok", result.stderr_tail
    # Never before its instant (gated after it, on a very busy host, it goes at once).
    assert prep.child.released_mono is not None and prep.child.released_mono >= due
    assert prep.child.gated_mono is not None
    assert prep.child.released_mono >= prep.child.gated_mono
    assert result.launched is not None and result.launched >= result.started
    assert result.cpu_s > 0 and result.max_rss_kb > 0
    # The record says when its preparation ended (before its release, on the same clock) and
    # what it cost, a part of the run's CPU.
    assert result.gated is not None and result.gated <= result.launched
    assert result.cpu_gate_s is not None and 0 < result.cpu_gate_s < result.cpu_s
    assert not prep.work.exists()


@pytest.mark.parametrize(
    ("kind", "captured"),
    [
        ("pip", "pip._internal.locations.base.USER_CACHE_DIR"),
        ("poetry", "poetry.locations.CONFIG_DIR"),
    ],
)
def test_paths_captured_at_import_are_the_runs_own_in_the_child(
    kind: str, captured: str, index: Index, launchers: Launchers, tmp_path: Path
) -> None:
    task = ClientTask(
        "paths1", kind, "test-package-002", "1.0.0", index.proxy.index_url_for("paths1")
    )
    with throwaway_dir(tmp_path, "run-") as work:
        spec = driver_for(kind).warm(task, work)  # type: ignore[attr-defined]
        launcher = launchers.for_spec(spec)
        assert captured in launcher.facts["captured_at"]
        child = launcher.fork("paths1", spec, work, verify=True)
        assert child.gated.wait(60)
        assert child.left == []
        child.open()
        outcome = outcome_of(child, spec.argv, work, timeout_s=120, registry=ProcessRegistry())
    assert outcome.exit_code == 0, outcome.stderr_tail


def test_a_stop_ends_gated_children_as_interrupted(index: Index, launchers: Launchers) -> None:
    registry = ProcessRegistry()
    results = []
    with warm_prepared(
        pip_task(index, "stop1"),
        launchers=launchers,
        temp_root=None,
        due_mono=time.monotonic() + 3600,
    ) as prep:
        assert prep.child is not None and prep.child.gated.wait(60)
        waiter = threading.Thread(
            target=lambda: results.append(launch_warm(prep, registry=registry))
        )
        waiter.start()
        time.sleep(0.2)
        registry.stop_all()
        waiter.join(15)
    assert [r.outcome for r in results] == ["interrupted"]
    assert results[0].exit_code is None and results[0].launched is None
    assert prep.child.pid is not None and not psutil.pid_exists(prep.child.pid)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for sock in held:
        sock.close()
    server.close()


def test_a_run_past_its_timeout_is_stopped(silent_server: int, launchers: Launchers) -> None:
    url = f"http://127.0.0.1:{silent_server}/r/slow1/simple/"
    task = ClientTask("slow1", "pip", "test-package-002", "1.0.0", url, timeout_s=1.5)
    with warm_prepared(task, launchers=launchers, temp_root=None, due_mono=None) as prep:
        assert prep.child is not None and prep.child.gated.wait(60)
        prep.child.open()
        result = launch_warm(prep, registry=ProcessRegistry())
    assert result.outcome == "timeout"
    assert result.ended - (result.launched or 0) < 10


def test_children_die_with_their_launcher(index: Index, launchers: Launchers) -> None:
    with warm_prepared(
        pip_task(index, "orphan1"),
        launchers=launchers,
        temp_root=None,
        due_mono=time.monotonic() + 3600,
    ) as prep:
        assert prep.child is not None and prep.child.gated.wait(60)
        os.kill(prep.child.launcher.pid, signal.SIGKILL)
        result = launch_warm(prep, registry=ProcessRegistry())
    assert result.outcome == "error" and "launcher" in (result.error or "")
    assert prep.child.pid is not None
    assert _gone([prep.child.pid], GONE_WITHIN_S) == []


@pytest.mark.serial  # 75 pip children at once, gone within a bound (docs/testing.md)
def test_sigkill_of_the_owner_leaves_no_launcher_child_or_dir(index: Index, tmp_path: Path) -> None:
    """75 gated pip children, then the process that owns them is SIGKILLed."""
    root = tmp_path / "owner"
    root.mkdir()
    owner = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.clients.warm.gated_owner", "75", str(root)),
            index.proxy.index_url_for("kill1"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        facts = json.loads(owner.stdout.readline())
        pids = [facts["launcher"], *facts["children"]]
        assert len(facts["children"]) == 75 and all(psutil.pid_exists(p) for p in pids)
        assert any(p.name.startswith(ROOT_PREFIX) for p in root.iterdir())
        owner.kill()
        owner.wait()
        assert _gone(pids, GONE_WITHIN_S) == []
        deadline = time.monotonic() + GONE_WITHIN_S
        while list(root.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(root.iterdir()) == []
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


#: The bound on "they exit by themselves" (a watch of the parent, then the kernel's exit): what
#: is asserted is that they go, not how fast; tests/e2e/test_kill.py's kill mid-burst needed
#: 8.2 s at load 25 for the same mechanism, so a bound that fails only on a leak.
GONE_WITHIN_S = 30.0


def _gone(pids: list[int], within_s: float) -> list[int]:
    """The pids still alive (not zombies) after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
