"""A warm launcher with plain stdlib modules: what a child becomes, exit codes, output, failures.

The launcher runs in this interpreter; the "client" is a stdlib module or a module written
into the run's dir (``python -m`` puts the cwd first on sys.path, and so does the child).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from pipstorm.clients.environment import scrubbed_env
from pipstorm.clients.process import CLIENT_NICE, Outcome, ProcessRegistry, run_process
from pipstorm.clients.warm.launcher import LauncherError, WarmSpec
from pipstorm.clients.warm.launchers import Launchers, outcome_of

PYTHON = Path(sys.executable)
DUMP = "tests.clients.dumpenv"


def extra_env(work: Path) -> dict[str, str]:
    return {"PIPSTORM_WARM_TEST": str(work / "mine")}


def spec(module: str, *args: str, python: Path = PYTHON) -> WarmSpec:
    return WarmSpec(module, python, args, extra_env)


def run(
    launchers: Launchers,
    tmp_path: Path,
    module: str,
    *args: str,
    python: Path = PYTHON,
    gate_at: str = "connect",
) -> Outcome:
    work = tmp_path / f"run-{module}"
    work.mkdir(exist_ok=True)
    warm = spec(module, *args, python=python)
    child = launchers.for_spec(warm).fork(module, warm, work, gate_at=gate_at)
    assert child.gated.wait(30)
    child.open()
    return outcome_of(
        child, spec(module, *args).argv, work, timeout_s=30, registry=ProcessRegistry()
    )


@pytest.mark.parametrize("gate_at", ["start", "connect"])
def test_a_child_becomes_the_run_process(
    launchers: Launchers, tmp_path: Path, checkout_python: Path, gate_at: str
) -> None:
    outcome = run(launchers, tmp_path, DUMP, python=checkout_python, gate_at=gate_at)
    assert outcome.exit_code == 0, outcome.stderr_tail
    seen = json.loads(outcome.stdout_tail)
    work = tmp_path / f"run-{DUMP}"
    expected = scrubbed_env(work / "home", {"TMPDIR": str(work / "tmp"), **extra_env(work)})
    assert seen["env"] == expected
    assert seen["cwd"] == str(work) and seen["tmp"] == str(work / "tmp")
    assert seen["nice"] == CLIENT_NICE
    assert seen["argv"] == [str(Path(__file__).parent.parent / "dumpenv.py")]
    assert seen["orig_argv"] == [str(checkout_python), "-m", DUMP]
    assert seen["path0"] == str(work)
    # + the listing's own fd; gated at the first connect (this module never connects) also
    # the gate's two pipe ends, closed at that connect, and close-on-exec: nothing the client
    # spawns inherits more than 0-2.
    assert seen["fds"][:3] == [0, 1, 2]
    assert len(seen["fds"]) == (4 if gate_at == "start" else 6)
    assert seen["inheritable"] == [0, 1, 2]
    assert seen["sid"] == seen["pid"]  # its own session: stopped together with what it spawns
    assert seen["stdin"] == ""


@pytest.mark.parametrize(("module", "stream"), [("json.tool", "stderr"), ("this", "stdout")])
def test_exit_code_and_output_are_the_exec_ones(
    launchers: Launchers, tmp_path: Path, module: str, stream: str
) -> None:
    warm = run(launchers, tmp_path, module)
    work = tmp_path / "exec"
    work.mkdir()
    fresh = run_process(
        [str(PYTHON), "-m", module],
        env=scrubbed_env(work),
        cwd=work,
        timeout_s=30,
        registry=ProcessRegistry(),
    )
    assert warm.exit_code == fresh.exit_code
    assert getattr(warm, f"{stream}_tail") == getattr(fresh, f"{stream}_tail") != ""


def test_a_launcher_that_cannot_import_its_client_fails_once(
    launchers: Launchers, tmp_path: Path
) -> None:
    broken = spec("pipstorm_no_such_client")
    with pytest.raises(LauncherError, match="cannot import pipstorm_no_such_client"):
        launchers.for_spec(broken)
    started = time.monotonic()
    with pytest.raises(LauncherError, match="cannot import"):
        launchers.for_spec(broken)
    assert time.monotonic() - started < 1.0  # remembered, not tried again
    assert [p.name for p in (tmp_path / "launchers").iterdir()] == []


def test_a_dead_launcher_is_replaced(launchers: Launchers) -> None:
    first = launchers.for_spec(spec("this"))
    os.kill(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while first.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    second = launchers.for_spec(spec("this"))
    assert second is not first and second.alive and second.pid != first.pid
