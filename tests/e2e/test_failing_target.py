"""A target that fails in the middle of a run of real pip: killed, killed and restarted on the
same port, frozen (SIGSTOP for 10 s, then SIGCONT), and the embedded target killed.

Each run completes with the verdict FAIL (exit 1, not 2, no hang); every failed request is in
requests.jsonl with its cause, every failed client run in clients.jsonl with its own; and the
verdict names what the target did (``pipstorm.engine.analysis.target.failure``), in the terminal
summary, report.md and report.json, not only "error_rate 35 % > 1 %".

The separate target is a real pypiserver the test owns (``LocalPypiserver`` on a fixed port),
loaded through ``--index-url`` like any index. One pip run a second for 24 s keeps each run
under ~40 s on a busy 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipstorm.engine.analysis.target.failure import STALL_S
from pipstorm.engine.analysis.thresholds import DEFAULTS
from pipstorm.infra.credentials import Credentials
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import left_running, leftovers, processes_of
from tests.e2e.test_bad_input import free_port

pytestmark = pytest.mark.e2e

PROFILE = 'name = "failing_target"\nclients = 1\nduration_s = 24\ntick_s = 1\n'
#: Requests recorded before the target is made to fail: the run is well under way.
REQUESTS_BEFORE = 6
TRANSPORT_CAUSES = {"upstream_refused", "upstream_reset", "upstream_timeout"}
FREEZE_S = 10.0


@dataclass
class FailedRun:
    """What one run against a failing target left: its exit, output and results."""

    returncode: int
    stderr: str
    run_dir: Path
    tmpdir: Path
    acted_at: float  # wall time the target was made to fail
    recovered_at: float | None  # wall time it served again (restart, SIGCONT)

    def report(self) -> dict[str, Any]:
        return dict(json.loads((self.run_dir / "report.json").read_text()))

    def requests(self) -> list[dict[str, Any]]:
        lines = (self.run_dir / "requests.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def clients(self) -> list[dict[str, Any]]:
        lines = (self.run_dir / "clients.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def causes(self) -> dict[str, dict[str, Any]]:
        return {c["kind"]: c for c in self.report()["target_failure"]}

    def failed_thresholds(self) -> set[str]:
        return {t["key"] for t in self.report()["thresholds"] if not t["passed"]}


def _request_lines(results: Path) -> int:
    found = sorted(results.glob("*/requests.jsonl")) if results.exists() else []
    return found[0].read_text().count("\n") if found else 0


def _run_while(
    env: dict[str, str],
    root: Path,
    act: Callable[[subprocess.Popen[str]], float | None],
    *,
    index_url: str | None = None,
    extra: tuple[str, ...] = (),
) -> FailedRun:
    """Run the profile; once it is under way, ``act`` makes the target fail (and returns when
    it served again, if it does); then wait for the run to finish by itself."""
    results, tmpdir = root / "results", root / "tmp"
    tmpdir.mkdir(parents=True)
    profile = root / "failing_target.toml"
    profile.write_text(PROFILE)
    argv = [sys.executable, "-m", "pipstorm", "run", "--profile", str(profile)]
    # The subject is what the target did, not this machine's capacity (docs/verdicts.md).
    argv += ["--results", str(results), "--quiet", "--allow-generator-bound"]
    argv += ["--index-url", index_url] if index_url is not None else []
    argv += extra
    proc = subprocess.Popen(
        argv,
        env={**env, "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _request_lines(results) < REQUESTS_BEFORE:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run sent no load within 120 s"
            time.sleep(0.1)
        acted_at = time.time()
        recovered_at = act(proc)
        # The run ends by itself: the profile's 24 s plus the last runs (pip gives up on a
        # dead index after its ~7.5 s of retries); a hang is a failure, not a wait.
        _, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    run_dir = next(results.iterdir())
    return FailedRun(proc.returncode, err, run_dir, tmpdir, acted_at, recovered_at)


@pytest.fixture
def separate_target(e2e_env: dict[str, str]) -> Iterator[tuple[LocalPypiserver, dict[str, str]]]:
    """A real pypiserver on a fixed port, owned by the test, and the run's environment for it."""
    corpus = cached_corpus(CorpusSpec(), Path(e2e_env["PIPSTORM_CACHE_DIR"]))
    credentials = Credentials.generate()
    server = LocalPypiserver(corpus.directory, port=free_port(), credentials=credentials)
    server.start()
    env = {**e2e_env, "PYPI_USERNAME": credentials.username, "PYPI_PASSWORD": credentials.password}
    try:
        yield server, env
    finally:
        server.stop()


def _kill(server: LocalPypiserver) -> None:
    """SIGKILL the server's whole process group (master and workers), as a crash of its
    container would, and reap it."""
    os.killpg(server.pid, signal.SIGKILL)
    server.stop()


def _assert_completed_with_causes(run: FailedRun) -> None:
    """Exit 1 (a verdict, not an error), nothing left behind, every failure with its cause."""
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert left_running(run.tmpdir) == []
    assert leftovers(run.tmpdir) == []
    report = run.report()
    assert report["verdict"] == "fail"
    for rec in run.requests():
        if rec["status"] is None:  # no upstream answer: the proxy names why
            assert rec["error"] in {*TRANSPORT_CAUSES, "client_disconnected"}, rec
    for client in run.clients():
        if client["outcome"] != "ok":
            assert client["error"], client  # the client's own words, never empty
    # The terminal summary and report.md put the causes right under the verdict.
    summary = run.stderr[run.stderr.index("FAIL: ") :]
    md = (run.run_dir / "report.md").read_text()
    for cause in report["target_failure"]:
        assert f"cause: {cause['text']}" in summary
        assert f"Cause: {cause['text']}" in md
    assert report["target_failure"], summary
    print(  # noqa: T201 - the figures docs/reliability.md quotes (pytest -s)
        f"exit {run.returncode} after {report['duration_s']:.0f} s; "
        + " | ".join(c["text"] for c in report["target_failure"])
    )


def _since_start(run: FailedRun, wall: float) -> float:
    return wall - float(run.report()["started"])


def test_a_target_killed_mid_run_fails_the_verdict_naming_refused_connections(
    separate_target: tuple[LocalPypiserver, dict[str, str]], tmp_path: Path
) -> None:
    server, env = separate_target

    def act(proc: subprocess.Popen[str]) -> None:
        _kill(server)

    run = _run_while(env, tmp_path, act, index_url=server.index_url)
    _assert_completed_with_causes(run)
    refused = run.causes()["refused"]
    failed = [r for r in run.requests() if r["error"] in TRANSPORT_CAUSES]
    # Every transport failure ended after the kill (a slow request in flight at the kill may
    # have started before it, however long before), and the cause says from when.
    assert min(r["ts"] + r["total_ms"] / 1000 for r in failed) >= run.acted_at - 0.1
    assert refused["first_s"] >= _since_start(run, run.acted_at) - 0.5
    assert refused["count"] == sum(1 for r in failed if r["error"] == "upstream_refused")
    assert refused["recovered_s"] is None  # nothing served again
    assert "error_rate" in run.failed_thresholds()
    runs = run.clients()
    after = [c for c in runs if c["launched"] and c["launched"] > run.acted_at + 0.5]
    assert after and all(c["outcome"] == "failed" for c in after)
    # The runs' reasons, from their requests: pip's silent retries of the proxy's 502s.
    assert any("upstream_refused" in why for why in run.report()["failed_run_causes"])


@pytest.mark.serial  # its port, released at the kill, must still be free 3 s later
def test_a_target_restarted_on_its_port_shows_the_outage_and_the_recovery(
    separate_target: tuple[LocalPypiserver, dict[str, str]], tmp_path: Path
) -> None:
    server, env = separate_target
    port = server.port  # known while it runs
    restarted: list[LocalPypiserver] = []

    def act(proc: subprocess.Popen[str]) -> float:
        _kill(server)
        time.sleep(3.0)
        again = LocalPypiserver(server.package_dir, port=port, credentials=server.credentials)
        restarted.append(again)
        again.start()
        return time.time()

    try:
        run = _run_while(env, tmp_path, act, index_url=server.index_url)
    finally:
        for again in restarted:
            again.stop()
    _assert_completed_with_causes(run)
    assert run.recovered_at is not None
    refused = run.causes()["refused"]
    assert refused["recovered_s"] is not None
    assert refused["recovered_s"] > refused["last_s"]
    # Not before the restart: the server was down for at least the 3 s slept.
    assert refused["recovered_s"] >= _since_start(run, run.acted_at) + 3.0
    ok_after = [r for r in run.requests() if r["status"] == 200 and r["ts"] > run.recovered_at]
    assert ok_after  # requests were served again once the target was back
    assert any(c["outcome"] == "ok" and c["launched"] > run.recovered_at for c in run.clients())


@pytest.mark.serial  # a 10 s freeze must stay 5 s under pip's read timeout (docs/testing.md)
def test_a_frozen_target_is_named_as_a_stall_that_no_timeout_cut_short(
    separate_target: tuple[LocalPypiserver, dict[str, str]], tmp_path: Path
) -> None:
    server, env = separate_target

    def act(proc: subprocess.Popen[str]) -> float:
        os.killpg(server.pid, signal.SIGSTOP)  # master and workers: the kernel still accepts
        try:
            time.sleep(FREEZE_S)
        finally:
            os.killpg(server.pid, signal.SIGCONT)
        return time.time()

    run = _run_while(env, tmp_path, act, index_url=server.index_url)
    _assert_completed_with_causes(run)
    stalled = run.causes()["stalled"]
    assert stalled["count"] >= 1
    # The silence found is the freeze: within it (the thaw's answers may take a moment).
    assert run.recovered_at is not None
    assert stalled["first_s"] >= _since_start(run, run.acted_at) - 0.5
    # It ends with the target's first answer after the thaw, however long the thaw took.
    answers = [
        r["ts"] + r["ttfb_ms"] / 1000
        for r in run.requests()
        if r["status"] is not None and r["ts"] + r["ttfb_ms"] / 1000 >= run.recovered_at
    ]
    assert stalled["last_s"] == pytest.approx(_since_start(run, min(answers)), abs=0.01)
    assert stalled["last_s"] - stalled["first_s"] >= STALL_S
    # pip's read timeout is 15 s and the proxy's 300 s: a 10 s freeze times neither out, so
    # every request is answered, late, and the verdict fails on latency, not on errors.
    assert "neither the clients nor the proxy timed out" in stalled["text"]
    assert not [r for r in run.requests() if r["status"] is None]
    assert "p95_listing_ms" in run.failed_thresholds()
    assert "error_rate" not in run.failed_thresholds()


#: Every default threshold switched off: nothing but the target's failure can fail the run.
NO_THRESHOLDS = tuple(arg for key in DEFAULTS for arg in ("--threshold", f"{key}=off"))


def _kill_embedded_master(proc: subprocess.Popen[str]) -> None:
    # The gunicorn master is pipstorm's own child; its forked workers share its argv.
    masters = [
        p
        for p in psutil.Process(proc.pid).children()
        if "pipstorm.infra.pypiserver.target" in " ".join(p.cmdline())
    ]
    assert len(masters) == 1, masters
    masters[0].kill()  # the master alone, as the OOM killer would: its workers follow


def test_the_embedded_target_dying_mid_run_is_noticed_and_named(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    # With every threshold off: the death alone fails the run (exit 1, named first).
    run = _run_while(e2e_env, tmp_path, _kill_embedded_master, extra=NO_THRESHOLDS)
    _assert_completed_with_causes(run)
    assert run.report()["thresholds"] == []
    assert run.stderr[run.stderr.index("FAIL: ") :].startswith(
        "FAIL: target failed: the embedded target (pypiserver) died"
    )
    assert run.report()["target_failed"]["kind"] == "died"
    assert "WARNING: the embedded target (pypiserver) died" in run.stderr
    died = run.report()["run"]["target"]["died"]
    assert died["exit_code"] == -signal.SIGKILL
    causes = run.causes()
    assert "killed by SIGKILL" in causes["died"]["text"]
    assert causes["died"]["first_s"] >= _since_start(run, run.acted_at) - 0.5
    assert next(iter(causes)) == "died"  # the decisive cause first
    assert "refused" in causes


def test_a_killed_pipstorm_folder_still_names_the_targets_death(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    """The embedded target SIGKILLed, then pipstorm itself 4 s later: the death is on disk
    (events.jsonl, appended when seen), ``pipstorm report DIR`` fails the run naming it, and
    nothing of the server (its htpasswd folder) is left in TMPDIR once the reaper ran."""

    def act(proc: subprocess.Popen[str]) -> None:
        _kill_embedded_master(proc)
        time.sleep(4.0)
        proc.send_signal(signal.SIGKILL)

    run = _run_while(e2e_env, tmp_path, act, extra=NO_THRESHOLDS)
    assert run.returncode == -signal.SIGKILL
    events = [json.loads(line) for line in (run.run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["target_died"]
    assert "died" not in json.loads((run.run_dir / "run.json").read_text())["target"]
    report = subprocess.run(
        [sys.executable, "-m", "pipstorm", "report", str(run.run_dir)],
        env=e2e_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.returncode == 1, report.stderr
    out = report.stdout + report.stderr
    assert "FAIL: target failed: the embedded target (pypiserver) died" in out
    assert "killed by SIGKILL" in out
    assert run.report()["target_failed"]["kind"] == "died"
    # The reaper removes pipstorm's folder (and the server's inside it) once pipstorm is gone;
    # the processes watch their parent and exit. Bounded, not timed: a busy host is slow.
    deadline = time.monotonic() + 90
    while (processes_of(run.tmpdir) or leftovers(run.tmpdir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_of(run.tmpdir) == []
    assert leftovers(run.tmpdir) == []
