"""A "remote" index: ``pipstorm serve --port N`` with the user's credentials, loaded by
``pipstorm run --index-url`` with ``PYPI_USERNAME``/``PYPI_PASSWORD``, and the password looked for
everywhere it must not be: the results folder, both commands' output, and the argv and
environment of every process the run started, sampled while it ran.

``http://0.0.0.0:N/`` is the "remote" address: not a loopback address to pipstorm's check (so
``--allow-remote-target`` is needed), yet Linux delivers a connection to 0.0.0.0 to the host
itself, so the load never leaves loopback.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import LATENCY_OFF, left_running, pipstorm
from tests.e2e.test_bad_input import free_port, one_error_line

pytestmark = pytest.mark.e2e

USERNAME = "loadtester"
#: Client settings a build machine might inject into the run's environment: a pip that obeyed
#: them would ask a dead index and fail the run, so the run passing shows they were scrubbed.
MACHINE_CLIENT_SETTINGS = {
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple/",
    "PIP_NO_INDEX": "1",
    "PIP_CONFIG_FILE": "/nonexistent/pip.conf",
    "POETRY_CACHE_DIR": "/nonexistent/poetry",
    "UV_INDEX_URL": "http://127.0.0.1:9/simple/",
}


@contextlib.contextmanager
def serving(env: dict[str, str], password: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``pipstorm serve --port N`` of the default corpus, with a password of the test's own."""
    port = free_port()
    corpus = cached_corpus(CorpusSpec(), Path(env["PIPSTORM_CACHE_DIR"]))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pipstorm", "serve", "--corpus", str(corpus.directory)),
            *("--port", str(port)),
        ],
        env={**env, "PYPI_USERNAME": USERNAME, "PYPI_PASSWORD": password},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server is ready (or exits)
        assert f"at http://127.0.0.1:{port}/simple/" in line, line  # --port is honoured
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=30)


def test_serve_on_a_port_in_use_is_one_error_line(e2e_env: dict[str, str]) -> None:
    with serving(e2e_env, "pw-" + secrets.token_hex(12)) as (port, _):
        second = subprocess.run(
            [sys.executable, "-m", "pipstorm", "serve", "--port", str(port)],
            env=e2e_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert second.returncode == 2
    assert "Address already in use" in one_error_line(second.stderr)


@dataclass
class RemoteRun:
    """What a remote-index run showed: its outputs, results and every process it started."""

    forms: set[str]  # the password, and the Basic auth header value that carries it
    tmpdir: Path
    run_dir: Path
    output: str  # the run's stdout + stderr, then the server's
    #: pid -> (argv, environment) of each process the run started, sampled while it ran
    seen: dict[int, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def holding(self, value: str) -> list[str]:
        """``argv | VARIABLE`` of each seen process whose argv or environment holds ``value``."""
        return [
            f"{argv} | {[k for k, v in env.items() if value in v]}"
            for argv, env in self.seen.values()
            if value in argv or any(value in v for v in env.values())
        ]


@pytest.fixture(scope="module")
def remote_run(e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> RemoteRun:
    root = tmp_path_factory.mktemp("remote")
    password = "pw-" + secrets.token_hex(12)
    env = {
        **e2e_env,
        **MACHINE_CLIENT_SETTINGS,
        "PYPI_USERNAME": USERNAME,
        "PYPI_PASSWORD": password,
    }
    results, tmpdir = root / "results", root / "tmp"
    tmpdir.mkdir()
    forms = {password, base64.b64encode(f"{USERNAME}:{password}".encode()).decode()}
    with serving(e2e_env, password) as (port, server):
        url = f"http://0.0.0.0:{port}/simple/"
        args = [
            *("run", "--profile", "light_load", "--duration", "10", "--index-url", url),
            *("--results", str(results), "--quiet", *LATENCY_OFF),
        ]
        refused = pipstorm(args, env, tmpdir=tmpdir)
        assert refused.returncode == 2
        assert "not a loopback address" in one_error_line(refused.stderr)
        assert not results.exists() or not list(results.iterdir())

        proc = subprocess.Popen(
            [sys.executable, "-m", "pipstorm", *args, "--allow-remote-target"],
            env={**env, "TMPDIR": str(tmpdir)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: dict[int, tuple[str, dict[str, str]]] = {}
        try:
            deadline = time.monotonic() + 240
            while proc.poll() is None and time.monotonic() < deadline:
                # Every process the run started (the owner itself was handed the password).
                for child in psutil.Process(proc.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        seen[child.pid] = (" ".join(child.cmdline()), child.environ())
                time.sleep(0.1)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        server.terminate()
        server_out, server_err = server.communicate(timeout=30)
    assert "Traceback" not in server_err, server_err
    (run_dir,) = results.iterdir()
    return RemoteRun(forms, tmpdir, run_dir, out + err + server_out + server_err, seen)


def test_a_remote_index_run_loads_it_with_the_users_credentials(remote_run: RemoteRun) -> None:
    report = json.loads((remote_run.run_dir / "report.json").read_text())
    assert report["verdict"] == "pass"
    assert json.loads((remote_run.run_dir / "run.json").read_text())["target"]["kind"] == "remote"
    lines = (remote_run.run_dir / "requests.jsonl").read_text().splitlines()
    # the proxy added the credentials: every request of the 3 pip runs was let in
    assert [json.loads(x)["status"] for x in lines] == [200] * 6
    assert left_running(remote_run.tmpdir) == []


def test_the_password_is_in_no_result_output_or_client(remote_run: RemoteRun) -> None:
    files = [p for p in remote_run.run_dir.rglob("*") if p.is_file()]
    assert {"requests.jsonl", "clients.jsonl", "run.json", "report.json"} <= {p.name for p in files}
    for path in files:
        data = path.read_bytes()
        assert not any(f.encode() in data for f in remote_run.forms), path
    assert not any(f in remote_run.output for f in remote_run.forms)
    clients = {
        pid: (argv, env)
        for pid, (argv, env) in remote_run.seen.items()
        if env.get("PIP_CONFIG_FILE") == os.devnull  # a client's scrubbed environment
    }
    assert len(clients) >= 3, [argv for argv, _ in remote_run.seen.values()]
    for argv, env in clients.values():
        assert not any(f in argv or f in json.dumps(env) for f in remote_run.forms), argv


def test_generator_processes_get_the_password_only_where_they_need_it(
    remote_run: RemoteRun,
) -> None:
    assert len(remote_run.seen) >= 5  # proxy, pool workers, clients
    for form in remote_run.forms:
        holders = remote_run.holding(form)
        allowed = [h for h in holders if h.startswith(sys.executable + " -m pipstorm.infra.proxy ")]
        assert all("'PIPSTORM_UPSTREAM_PASSWORD']" in h for h in allowed), allowed
        assert sorted(holders) == sorted(allowed), holders


def test_clients_of_a_real_run_get_a_scrubbed_environment(remote_run: RemoteRun) -> None:
    # A warm launcher's children show the launcher's argv and initial environment block in
    # /proc (a fork keeps them; the run's own environment is the child's os.environ, checked in
    # tests/clients/warm/test_launcher_basics.py): that block is a client's scrubbed one as well.
    pips = [
        (argv, env)
        for argv, env in remote_run.seen.values()
        if "-m pip download" in argv or "agent.py pip " in argv
    ]
    assert len(pips) >= 3, [argv for argv, _ in remote_run.seen.values()]
    for argv, env in pips:
        assert env["PIP_CONFIG_FILE"] == os.devnull, argv
        injected = {k for k in env if k.startswith(("PIP_", "POETRY_", "UV_", "PYPI_"))}
        assert injected == {"PIP_CONFIG_FILE"}, (argv, injected)
        assert env["HOME"].startswith(f"{remote_run.tmpdir}/"), env["HOME"]  # a private HOME
