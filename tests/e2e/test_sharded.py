"""A run spread over Dask workers on loopback: real scheduler and worker processes, real pip.

Seconds of load each: a 2-shard light_load, a worker SIGKILLed mid-shard, Ctrl-C on the
coordinator, and the refusals (more shards than workers, a pipstorm, distributed or Python version
that differs, a clock further off than allowed), each one ``ERROR:`` line and exit 2 before any
load. (A worker that cannot reach the target is refused by
the same check from the worker, ``reach_target``; one machine cannot make its own loopback
unreachable to one process, so that case is a unit test in tests/engine/run/shards/test_worker.py.)
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipstorm.engine.rundir.records import load_clients, load_requests
from tests.e2e.conftest import LATENCY_OFF, leftovers, pipstorm, processes_of
from tests.engine.report.test_report_schema import REPORT_KEYS, RUN_KEYS

pytestmark = pytest.mark.e2e

BIN = [sys.executable, "-m", "pipstorm"]


def _run_dir(results: Path) -> Path:
    (found,) = [p for p in results.iterdir() if p.is_dir()]
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(pid: int) -> set[str]:
    """The addresses a process tree listens on."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    found: set[str] = set()
    for p in procs:
        try:
            found |= {c.laddr.ip for c in p.net_connections() if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            continue
    return found


def test_two_shards_play_every_run_once_and_merge_into_one_report(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    done = pipstorm(
        [
            "run", "--profile", "light_load", "--duration", "20", "--shards", "2",
            "--workers", "1", "--results", str(results), "--quiet", *LATENCY_OFF,
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # judged on errors: one loaded host's latency is not
    run_dir = _run_dir(results)
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert set(report) == REPORT_KEYS  # the same document a one-machine run writes
    assert set(report["run"]) == RUN_KEYS
    clients, skipped = load_clients(run_dir / "clients.jsonl")
    assert skipped == 0
    planned = {r for s in report["run"]["shards"] for r in s["runs"]}
    ids = [c.run_id for c in clients]
    assert sorted(ids) == sorted(planned) and len(planned) == 6  # each run exactly once
    assert all(c.outcome == "ok" for c in clients)
    lines = [json.loads(x) for x in (run_dir / "requests.jsonl").read_text().splitlines()]
    assert {line["shard"] for line in lines} == {0, 1}  # records from both shards
    assert {line["host"] for line in lines} == {socket.gethostname()}
    requests, _ = load_requests(run_dir / "requests.jsonl")
    assert {r.run_id for r in requests} == planned
    shards = report["shards"]
    assert [s["status"] for s in shards] == ["ok", "ok"]
    # One host, one clock: the offset measured is within half the exchange's round trip (the
    # worker read the same clock between the send and the answer), however loaded the host.
    for meta in report["run"]["shards"]:
        assert abs(meta["clock_offset_s"]) <= meta["clock_rtt_s"] / 2 + 1e-6, meta
    assert "### Shards" in (run_dir / "report.md").read_text(encoding="utf-8")
    assert leftovers(tmp_path / "tmp") == []


@pytest.mark.serial  # the loss must be marked within seconds of the kill (docs/testing.md)
def test_a_worker_killed_mid_shard_is_lost_not_replayed_and_leaves_no_clients(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [
            *BIN, "run", "--profile", "light_load", "--duration", "30", "--shards", "2",
            "--workers", "1", "--results", str(results), "--quiet",
        ],
        env={**e2e_env, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        victim, meta = _worker_of_shard(proc.pid, results, shard=1, after_s=10.3)
        doomed = victim.children(recursive=True)  # its pool, proxy and any pip in flight
        victim.kill()
        killed_at = time.time()
        _gone, alive = psutil.wait_procs(doomed, timeout=15)  # clients: SIGINT..SIGKILL
        assert alive == [], [p.cmdline() for p in alive]  # they die with their worker
        _out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The load was not the profile's: never a pass (fail, or inconclusive: docs/verdicts.md).
    assert proc.returncode in (1, 3), err
    assert re.search(r"shard 1 LOST: its worker .* died", err)
    run_dir = _run_dir(results)
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    lost = report["shards"][1]
    assert lost["status"] == "lost"
    clients, _ = load_clients(run_dir / "clients.jsonl")
    ids = {c.run_id for c in clients}
    # What the coordinator pulled before the worker died stays (runs it saw end); none after.
    pulled = ids & set(meta["shards"][1]["runs"])
    assert all(c.ended <= killed_at for c in clients if c.run_id in pulled)
    assert lost["runs_lost"] == len(meta["shards"][1]["runs"]) - len(pulled) > 0
    assert report["run"]["shards"][1]["lost_at"] - killed_at < 5  # marked within seconds
    assert set(meta["shards"][0]["runs"]) <= ids  # shard 0 whole, shard 1 never replayed
    assert len(ids) == len(clients)
    assert any("Shard 1" in n and "not replayed" in n for n in report["notes"])


def test_ctrl_c_on_the_coordinator_stops_every_shard_leaves_nothing_and_still_reports(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results, tmpdir = tmp_path / "results", tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [
            *BIN, "run", "--profile", "light_load", "--duration", "60", "--shards", "2",
            "--workers", "1", "--results", str(results), "--quiet",
        ],
        env={**e2e_env, "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        meta = _started_meta(results, after_s=12.0)  # a few runs played on each shard
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert len(tree) >= 4, tree  # scheduler and nanny/worker processes, their pools, proxies
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
        _out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    # Nothing of the run outlives it: a bound that fails on a leak, not on a busy host.
    _gone, alive = psutil.wait_procs(tree, timeout=30)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
    deadline = time.monotonic() + 30
    while (processes_of(tmpdir) or leftovers(tmpdir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(tmpdir) == []
    assert leftovers(tmpdir) == []
    # The shards' records came back and the part that ran is reported.
    run_dir = _run_dir(results)
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["run"]["interrupted"] is True
    planned = {r for s in meta["shards"] for r in s["runs"]}
    clients, _ = load_clients(run_dir / "clients.jsonl")
    played = {c.run_id for c in clients}
    assert played and played < planned, (played, planned)  # some, not all: stopped mid-run
    requests, _ = load_requests(run_dir / "requests.jsonl")
    assert {r.run_id for r in requests if r.run_id is not None} <= played


def _started_meta(results: Path, *, after_s: float) -> dict[str, Any]:
    """The run's run.json once the run is ``after_s`` past its offset 0."""
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        metas = list(results.glob("*/run.json"))
        if not metas:
            continue
        meta: dict[str, Any] = json.loads(metas[0].read_text(encoding="utf-8"))
        started = meta.get("started")
        if started and time.time() >= started + after_s:
            return meta
    raise AssertionError("the sharded run never started")


def _worker_of_shard(
    coordinator: int, results: Path, *, shard: int, after_s: float
) -> tuple[psutil.Process, dict[str, Any]]:
    """The Dask worker process playing ``shard``, ``after_s`` after the run's offset 0."""
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        metas = list(results.glob("*/run.json"))
        if not metas:
            continue
        meta = json.loads(metas[0].read_text(encoding="utf-8"))
        started = meta.get("started")
        if not started or time.time() < started + after_s:
            continue
        port = int(meta["shards"][shard]["worker"].rsplit(":", 1)[1])
        for p in psutil.Process(coordinator).children(recursive=True):
            try:
                conns = p.net_connections()
            except psutil.Error:
                continue
            if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in conns):
                return p, meta
    raise AssertionError("the shard's worker never showed up")


@pytest.fixture
def scheduler(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``pipstorm scheduler`` on a free loopback port; its address."""
    port = _free_port()
    proc = subprocess.Popen(
        [*BIN, "scheduler", "--port", str(port)],
        env={**e2e_env, "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        assert _listening(proc.pid) == {"127.0.0.1"}  # scheduler and its HTTP endpoints
        yield f"tcp://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _wait_port(port: int) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _worker(address: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``pipstorm worker ADDRESS``, once it says it is registered (its log goes to ``log``)."""
    with log.open("wb") as out:
        proc = subprocess.Popen([*BIN, "worker", address], env=env, stdout=out, stderr=out)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if "pipstorm worker:" in log.read_text(encoding="utf-8", errors="replace"):
            return proc
        time.sleep(0.2)
    _stop(proc)
    raise AssertionError(f"the worker did not start: {log.read_text(errors='replace')[-500:]}")


def _refused(
    address: str, env: dict[str, str], tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    results = tmp_path / "results"
    done = pipstorm(
        [
            "run", "--profile", "light_load", "--duration", "10", "--client", "http",
            "--cluster", address, "--results", str(results), *extra,
        ],
        env,
        tmpdir=tmp_path / "tmp",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not results.exists() or not any(results.iterdir())  # refused before any load
    return done


def test_cluster_refusals_are_one_line_each(
    scheduler: str, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**e2e_env, "TMPDIR": str(tmp_path)}
    workers = [_worker(scheduler, env, tmp_path / "w0.log")]
    try:
        assert _listening(workers[0].pid) == {"127.0.0.1"}  # nanny and worker alike
        done = _refused(scheduler, e2e_env, tmp_path / "a", "--shards", "2")
        assert "--shards 2 needs 2 workers" in done.stderr
        done = _refused(
            scheduler, e2e_env, tmp_path / "b", "--shards", "1", "--max-clock-offset", "0"
        )
        assert "clock is" in done.stderr and "--max-clock-offset" in done.stderr
        # A worker with another pipstorm version (its dist-info first on sys.path).
        fake = tmp_path / "fake"
        (fake / "pipstorm-9.9.9.dist-info").mkdir(parents=True)
        (fake / "pipstorm-9.9.9.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: pipstorm\nVersion: 9.9.9\n", encoding="utf-8"
        )
        workers.append(_worker(scheduler, {**env, "PYTHONPATH": str(fake)}, tmp_path / "w2.log"))
        done = _refused(scheduler, e2e_env, tmp_path / "d", "--shards", "2")
        assert "pipstorm 9.9.9" in done.stderr
    finally:
        for proc in workers:
            _stop(proc)


#: A worker's environment that makes it another distributed (its dist-info first on sys.path,
#: as pipstorm's above) or another Python: this machine has one Python 3.11, so the worker's
#: interpreter reports 3.99.0 through a sitecustomize (what pipstorm compares is what
#: ``platform.python_version()`` says on each side).
OTHER_VERSION = {
    "distributed": (
        "distributed-9.9.9.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: distributed\nVersion: 9.9.9\n",
        "has distributed 9.9.9, this coordinator",
    ),
    "python": (
        "sitecustomize.py",
        "import platform\nplatform.python_version = lambda: '3.99.0'\n",
        "has python 3.99.0, this coordinator",
    ),
}


@pytest.mark.parametrize("what", sorted(OTHER_VERSION))
def test_a_worker_with_another_distributed_or_python_is_refused(
    scheduler: str, e2e_env: dict[str, str], tmp_path: Path, what: str
) -> None:
    path, text, expected = OTHER_VERSION[what]
    fake = tmp_path / "fake"
    (fake / path).parent.mkdir(parents=True, exist_ok=True)
    (fake / path).write_text(text, encoding="utf-8")
    env = {**e2e_env, "TMPDIR": str(tmp_path), "PYTHONPATH": str(fake)}
    worker = _worker(scheduler, env, tmp_path / "w.log")
    try:
        done = _refused(scheduler, e2e_env, tmp_path / "r", "--shards", "1")
        assert expected in done.stderr, done.stderr
    finally:
        _stop(worker)


def test_cluster_without_shards_is_refused(e2e_env: dict[str, str], tmp_path: Path) -> None:
    done = pipstorm(
        ["run", "--profile", "light_load", "--cluster", "tcp://127.0.0.1:9"],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert done.returncode == 2
    assert "ERROR: --cluster needs --shards N" in done.stderr
