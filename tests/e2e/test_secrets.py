"""Secrets of a run against the embedded target: its generated password is in no argv, in no
environment but the proxy's (which adds it upstream), in no result file or log; its htpasswd is
the owner's only (0600) and goes with the run, also when the run is stopped by SIGTERM."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from pipstorm.infra.credentials import UPSTREAM_PASSWORD_ENV, UPSTREAM_USERNAME_ENV
from tests.e2e.conftest import left_running, leftovers

pytestmark = pytest.mark.e2e


def test_the_embedded_targets_password_stays_where_it_belongs(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    tmpdir, results = tmp_path / "t", tmp_path / "r"
    tmpdir.mkdir()
    argv = [sys.executable, "-m", "pipstorm", "run", "--profile", "light_load", "--duration", "60"]
    # What CI reads, and the live page, must not hold it either.
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    ci = ["--junit", str(junit), "--dashboard"]
    owner = subprocess.Popen(
        # Real pip processes (warm-launched): the clients are the processes to scan.
        [*argv, "--client", "pip", "--quiet", "--results", str(results), *ci],
        env={**e2e_env, "TMPDIR": str(tmpdir), "GITHUB_STEP_SUMMARY": str(summary)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stderr is not None
        url = owner.stderr.readline().strip().removeprefix("pipstorm: dashboard at ")  # first
        assert url.startswith("http://127.0.0.1:"), url
        deadline = time.monotonic() + 180
        while True:  # the run is under way once its first request is recorded
            requests = list(results.glob("*/requests.jsonl"))
            if requests and requests[0].stat().st_size > 0:
                break
            assert owner.poll() is None, owner.communicate()
            assert time.monotonic() < deadline, "no request recorded in 180 s"
            time.sleep(0.2)
        # Under the run's reaped folder (gone even if pipstorm and the server are SIGKILLed).
        (htpasswd,) = tmpdir.glob("pipstorm-run-*/pipstorm-pypiserver-*/htpasswd")
        assert htpasswd.stat().st_mode & 0o777 == 0o600
        assert htpasswd.parent.stat().st_mode & 0o077 == 0  # the private dir too
        (proxy,) = [
            p
            for p in psutil.Process(owner.pid).children(recursive=True)
            if "pipstorm.infra.proxy" in p.cmdline()
        ]
        username = proxy.environ()[UPSTREAM_USERNAME_ENV]
        password = proxy.environ()[UPSTREAM_PASSWORD_ENV]
        assert len(password) >= 20
        forms = {password, base64.b64encode(f"{username}:{password}".encode()).decode()}
        found: list[str] = []
        seen = 0
        clients: set[int] = set()  # pip processes (launchers and their forked runs) scanned
        scans = 0
        # The processes of a run come and go: look until real pip processes were among them.
        while scans < 10 or len(clients) < 3:
            assert time.monotonic() < deadline + 60, f"{len(clients)} pip processes seen"
            for child in psutil.Process(owner.pid).children(recursive=True):
                try:
                    argv_of, env = child.cmdline(), child.environ()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                cmdline = " ".join(argv_of)
                seen += 1
                if "pip" in argv_of:  # a warm launcher's module argument, or python -m pip
                    clients.add(child.pid)
                found += [f"argv of {cmdline[:80]}" for f in forms if f in cmdline]
                if child.pid != proxy.pid:
                    found += [f"{k} of {cmdline[:80]}" for k, v in env.items() if password in v]
            scans += 1
            time.sleep(0.3)
        assert seen > 10 and found == []
        page = _dashboard_pages(url)
        assert not [f for f in forms if f in page]
        owner.send_signal(signal.SIGTERM)
        out, err = owner.communicate(timeout=60)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert owner.returncode == 143, err
    assert "Traceback" not in err
    assert not htpasswd.exists() and not htpasswd.parent.exists()
    assert leftovers(tmpdir) == [] and left_running(tmpdir) == []
    (run_dir,) = results.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["interrupted"] is True
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"requests.jsonl", "target.log", "run.json", "report.json"} <= {p.name for p in files}
    assert (run_dir / "target.log").stat().st_size > 0  # pypiserver's own log, in the results
    files += [junit, summary]
    leaks = [p.name for p in files for f in forms if f.encode() in p.read_bytes()]
    assert leaks == []
    print(f"secrets: {seen} process samples, {len(files)} result files, 0 with the password")  # noqa: T201 - the README figure
    assert not any(f in out + err for f in forms)


def _dashboard_pages(url: str) -> str:
    """What the live page serves during the run: the page, its script and its data."""
    out = []
    for path in ("", "dashboard.js", "state.json"):
        with urllib.request.urlopen(url + path, timeout=30) as response:  # noqa: S310 - loopback
            out.append(response.read().decode())
    assert '"state":"running"' in out[2]
    return "\n".join(out)
