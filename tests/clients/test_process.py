"""The one subprocess wrapper: outcomes, CPU accounting, stopping whole trees, redaction."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

import psutil

from pipstorm.clients.environment import scrubbed_env
from pipstorm.clients.process import Outcome, ProcessRegistry, redact, run_process

PY = sys.executable


def run(
    code: str, tmp_path: Path, registry: ProcessRegistry | None = None, timeout: float = 30
) -> Outcome:
    return run_process(
        [PY, "-c", code],
        env=scrubbed_env(tmp_path),
        cwd=tmp_path,
        timeout_s=timeout,
        registry=registry or ProcessRegistry(),
        secrets=("hunter2",),
    )


def test_exit_code_tails_and_cpu_are_recorded(tmp_path: Path) -> None:
    outcome = run(
        "import sys\nx = sum(range(3_000_000))\nprint('out')\n"
        "sys.stderr.write('failed for hunter2 at http://u:hunter2@h/x\\n')\nsys.exit(3)",
        tmp_path,
    )
    assert outcome.exit_code == 3
    assert outcome.stdout_tail.strip() == "out"
    assert "hunter2" not in outcome.stderr_tail
    assert "http://***@h/x" in outcome.stderr_tail
    assert outcome.cpu_s > 0
    assert outcome.ended >= outcome.started
    assert not outcome.timed_out and not outcome.interrupted


def test_timeout_stops_the_process_and_its_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time, signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # ignores the polite first step
        f"p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    # The timeout counts from the spawn, so on a busy machine a niced child may be stopped while
    # still starting Python, before its grandchild exists. Bounded retries with a doubled timeout
    # until one run got as far as the pidfile (its grandchild is then up) when the timeout hit.
    for timeout in (1.0, 2.0, 4.0, 8.0, 16.0):
        outcome = run(code, tmp_path, timeout=timeout)
        assert outcome.timed_out
        assert outcome.exit_code is not None and outcome.exit_code < 0  # killed by a signal
        if pidfile.exists() and pidfile.read_text():
            break
    else:
        raise AssertionError("the child never wrote its grandchild's pid within 16 s")
    grandchild = int(pidfile.read_text())
    # SIGKILL was sent; a niced process on a busy machine may take a moment to be torn down.
    deadline = time.monotonic() + 10
    while psutil.pid_exists(grandchild) and time.monotonic() < deadline:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(grandchild).status() == "zombie":
                break
        time.sleep(0.05)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"


def test_stop_all_interrupts_running_processes(tmp_path: Path) -> None:
    registry = ProcessRegistry()
    results = []
    worker = threading.Thread(
        target=lambda: results.append(run("import time; time.sleep(60)", tmp_path, registry))
    )
    worker.start()
    deadline = time.monotonic() + 10
    while not registry._running and time.monotonic() < deadline:
        time.sleep(0.01)
    registry.stop_all()
    worker.join(10)
    assert results and results[0].interrupted
    assert results[0].exit_code is not None
    # once stopping, nothing new starts
    late = run("print('never')", tmp_path, registry)
    assert late.exit_code is None and "stop requested" in late.stderr_tail


def test_scrubbed_env_drops_machine_pip_settings(tmp_path: Path) -> None:
    env = scrubbed_env(
        tmp_path,
        base={
            "PIP_FIND_LINKS": "/opt/wheels",
            "POETRY_X": "1",
            "UV_INDEX": "u",
            "PATH": "/bin",
            "PYPI_PASSWORD": "s",
            "PYTHONPATH": "/x",
        },
    )
    assert env["PIP_CONFIG_FILE"] == "/dev/null"
    assert env["HOME"] == str(tmp_path)
    assert env["PATH"] == "/bin"
    for gone in ("PIP_FIND_LINKS", "POETRY_X", "UV_INDEX", "PYPI_PASSWORD", "PYTHONPATH"):
        assert gone not in env


def test_redact_masks_userinfo_and_secrets() -> None:
    assert redact("https://me:pw@idx/simple/ and pw", ["pw"]) == "https://***@idx/simple/ and ***"


def test_a_client_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A SIGKILLed owner (a pool worker caught in a group kill) takes its clients with it,
    although each client runs in a session of its own that the group kill does not reach."""
    owner_code = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from pipstorm.clients.environment import scrubbed_env\n"
        "from pipstorm.clients.process import ProcessRegistry, run_process\n"
        "tmp = Path(sys.argv[1])\n"
        "def one():\n"
        "    run_process(['sleep', '120'], env=scrubbed_env(tmp), cwd=tmp, timeout_s=300,\n"
        "                registry=ProcessRegistry())\n"
        "threading.Thread(target=one).start()\n"
    )
    owner = psutil.Popen([PY, "-c", owner_code, str(tmp_path)])
    clients: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            clients = [p for p in owner.children() if p.name() == "sleep"]
            if clients:
                break
            time.sleep(0.05)
        assert clients, "the owner never started its client"
        owner.kill()
        owner.wait(10)
        # They exit by themselves (they watch their owner); the bound only catches a leak.
        _, alive = psutil.wait_procs(clients, timeout=30)
        assert alive == []
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            owner.kill()
        for client in clients:  # only what this test started: never another's sleep
            with contextlib.suppress(psutil.NoSuchProcess):
                client.kill()


def test_a_program_that_does_not_exist_never_starts(tmp_path: Path) -> None:
    outcome = run_process(
        ["no-such-client-pipstorm"],
        env=scrubbed_env(tmp_path),
        cwd=tmp_path,
        timeout_s=10,
        registry=ProcessRegistry(),
    )
    assert outcome.exit_code is None
    assert "cannot start no-such-client-pipstorm" in outcome.stderr_tail
