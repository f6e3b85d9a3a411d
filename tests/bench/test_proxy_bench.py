"""What the recording proxy adds to each request's latency, and its CPU per request.

The same listing GETs go to pypiserver directly and through two proxies, one on asyncio's own
event loop (the baseline before issue 20) and one on uvloop (the default), interleaved one by
one in the same run over keep-alive connections, so every side sees the same machine load
(the order rotates so none always runs on a warmer cache). Prints p50/p99 of each side (the
baseline is the direct side) and the added latency as a percentile of the paired differences
(each proxied GET minus the direct GET next to it), the one way every proxy bench computes
"added"; the same for a second direct connection, the floor of that measure (no proxy can
show less added than two identical direct GETs differ by); and each proxy process's CPU
(user + system, psutil) over the measured GETs divided by their number: the CPU a burst's
first requests queue behind. Asserts nothing about time.

pypiserver runs one gunicorn worker (``PIPSTORM_BENCH_WORKERS``, default 1): each keep-alive
connection stays on the worker that accepted it, so with two the direct connection and the
proxy's upstream one may sit on different workers, and the pairing then measures the workers'
difference too: the floor's p50 moved -0.14..+0.25 ms from run to run with two workers
(2026-12-07, slow machine speed), -0.007..+0.012 ms in seven runs with one. The GETs are one
at a time, so one worker never queues them.
"""

from __future__ import annotations

import http.client
import os
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from pathlib import Path

import psutil
import pytest

from pipstorm.engine.rundir.records import load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from tests.infra.conftest import write_wheel

REQUESTS = 2000
WARMUP = 100
WORKERS = int(os.environ.get("PIPSTORM_BENCH_WORKERS", "1"))


def _percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=1000, method="inclusive")[round(q * 10) - 1]


def _getter(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str]
) -> Callable[[], float]:
    def get() -> float:
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - start) * 1000.0
        assert response.status == 200
        return elapsed

    return get


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@pytest.mark.bench
def test_added_latency_of_the_proxy(tmp_path: Path) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        write_wheel(tmp_path, "bench_package", version)
    loops = ("asyncio", "uvloop")
    with ExitStack() as stack:
        server = stack.enter_context(LocalPypiserver(tmp_path, workers=WORKERS))
        direct_conn = stack.enter_context(
            closing(http.client.HTTPConnection("127.0.0.1", server.port))
        )
        again_conn = stack.enter_context(
            closing(http.client.HTTPConnection("127.0.0.1", server.port))
        )
        auth = {"Authorization": server.credentials.basic_auth_header()}
        # A second direct connection: its paired difference with the first is the measure's
        # own floor (the index's spread, which side sits on which gunicorn worker): no proxy
        # can show less "added" than that.
        sides = {
            "direct": _getter(direct_conn, "/simple/bench-package/", auth),
            "direct-again": _getter(again_conn, "/simple/bench-package/", auth),
        }
        proxies = {}
        for loop in loops:
            proxy = stack.enter_context(
                RecordingProxy(
                    server.index_url,
                    tmp_path / f"requests-{loop}.jsonl",
                    credentials=server.credentials,
                    loop=loop,
                )
            )
            conn = stack.enter_context(closing(http.client.HTTPConnection("127.0.0.1", proxy.port)))
            sides[loop] = _getter(conn, "/r/bench/simple/bench-package/", {})
            proxies[loop] = proxy
        order = list(sides)
        for _ in range(WARMUP):
            for side in order:
                sides[side]()
        samples: dict[str, list[float]] = {side: [] for side in order}
        cpu_before = {loop: _cpu(proxies[loop].pid) for loop in loops}
        for index in range(REQUESTS):
            rotated = order[index % len(order) :] + order[: index % len(order)]
            for side in rotated:
                samples[side].append(sides[side]())
        cpu_ms = {
            loop: 1000.0 * (_cpu(proxies[loop].pid) - cpu_before[loop]) / REQUESTS for loop in loops
        }
    direct_ms = samples["direct"]
    load = " ".join(f"{x:.2f}" for x in psutil.getloadavg())
    lines = [
        f"proxy bench: {REQUESTS} listing GETs each way (direct twice, proxy on asyncio, proxy "
        f"on uvloop), interleaved, keep-alive; pypiserver workers {WORKERS}; load {load}"
    ]
    again = [a - d for a, d in zip(samples["direct-again"], direct_ms, strict=True)]
    direct_p99 = _percentile(direct_ms, 99.0)
    lines.append(
        f"  floor of the measure, a second direct connection paired with the first: added p50 "
        f"{_percentile(again, 50.0):+.3f} ms, p99 {_percentile(again, 99.0):+.3f} ms; p99 "
        f"{_percentile(samples['direct-again'], 99.0) - direct_p99:+.3f} ms on direct's p99"
    )
    for loop in loops:
        records = load_requests(tmp_path / f"requests-{loop}.jsonl")[0]
        assert len(records) == WARMUP + REQUESTS
        recorded_ms = [r.total_ms for r in records[WARMUP:]]
        proxied_ms = samples[loop]
        added_ms = [p - d for p, d in zip(proxied_ms, direct_ms, strict=True)]
        lines.append(
            f"  proxy on {loop}: CPU per request {cpu_ms[loop]:.3f} ms; p99 via proxy - direct's "
            f"p99 {_percentile(proxied_ms, 99.0) - direct_p99:+.3f} ms (the p99 target's form)"
        )
        for label, q in (("p50", 50.0), ("p99", 99.0)):
            d, p = _percentile(direct_ms, q), _percentile(proxied_ms, q)
            lines.append(
                f"    {label}: direct (baseline) {d:.3f} ms, via proxy {p:.3f} ms "
                f"(ratio {p / d:.2f}x); added, {label} of paired differences "
                f"{_percentile(added_ms, q):+.3f} ms; proxy-recorded total "
                f"{_percentile(recorded_ms, q):.3f} ms"
            )
    lines.append(f"  uvloop/asyncio CPU per request {cpu_ms['uvloop'] / cpu_ms['asyncio']:.2f}x")
    print("\n".join(lines))
