"""What the proxy adds to latency when clients saturate every core, with and without the
priority protection (clients nice +10, proxy SCHED_FIFO or nice -5:
``pipstorm.engine.run.priority``).

Busy loops stand in for the clients (two per core). The same listing GETs go to pypiserver
directly and through the proxy, one after the other, so both see the same load; the figure is
the distribution of the paired differences (via proxy - direct). Prints; asserts nothing about
time. The busy loops are explicitly ordinary (SCHED_OTHER) and end by themselves after 60 s.

Each row says what was asked for and what ``protect_proxy`` applied: without root or
CAP_SYS_NICE a "nice -5" or "auto" row measures an unprotected proxy, and says so.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from pipstorm.engine.run.priority import protect_proxy
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from tests.infra.conftest import write_wheel

REQUESTS = 400
WARMUP = 20
BUSY_CODE = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@contextmanager
def _busy_clients(nice: int | None) -> Iterator[None]:
    """Two busy loops per core at ``nice`` (None: none at all)."""
    count = 0 if nice is None else 2 * (os.cpu_count() or 2)
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_CODE]) for _ in range(count)]
    try:
        for proc in procs:
            os.sched_setscheduler(proc.pid, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, proc.pid, nice or 0)
        time.sleep(0.5)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return (time.perf_counter() - start) * 1000.0


@pytest.mark.bench
def test_proxy_added_latency_under_saturation(tmp_path: Path) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        write_wheel(tmp_path, "bench_package", version)
    conditions = (
        ("idle machine (baseline)", None, "none"),
        ("clients nice 0, proxy asked none", 0, "none"),
        ("clients nice +10, proxy asked none", 10, "none"),
        ("clients nice +10, proxy asked nice", 10, "nice"),
        ("clients nice +10, proxy asked auto", 10, "auto"),
    )
    lines = [
        f"proxy added latency, {REQUESTS} paired listing GETs per condition (ms); "
        "[what was applied to the proxy]"
    ]
    with LocalPypiserver(tmp_path) as server:
        auth = {"Authorization": server.credentials.basic_auth_header()}
        for label, nice, mode in conditions:
            log = tmp_path / f"{mode}-{nice}.jsonl"
            with (
                RecordingProxy(server.index_url, log, credentials=server.credentials) as proxy,
                closing(http.client.HTTPConnection("127.0.0.1", server.port)) as direct,
                closing(http.client.HTTPConnection("127.0.0.1", proxy.port)) as proxied,
            ):
                applied = protect_proxy(proxy.pid, mode=mode)
                for _ in range(WARMUP):
                    _get(direct, "/simple/bench-package/", auth)
                    _get(proxied, "/r/bench/simple/bench-package/", {})
                diffs: list[float] = []
                with _busy_clients(nice):
                    for _ in range(REQUESTS):
                        d = _get(direct, "/simple/bench-package/", auth)
                        diffs.append(_get(proxied, "/r/bench/simple/bench-package/", {}) - d)
            shown = applied["policy"] + (
                f" {applied['nice']:+d}"
                if applied["policy"] == "nice" and "nice" in applied
                else ""
            )
            if mode != "none" and applied["policy"] == "none":
                shown += " (not permitted)"
            lines.append(
                f"  {label:36s} [{shown:22s}] added p50 {_pct(diffs, 50):+6.2f}, "
                f"p95 {_pct(diffs, 95):+6.2f}, p99 {_pct(diffs, 99):+6.2f}"
            )
    print("\n".join(lines))
