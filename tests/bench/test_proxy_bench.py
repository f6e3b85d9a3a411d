"""What the recording proxy adds to each request's latency.

The same listing GETs go to pypiserver directly and through the proxy, interleaved one by one
in the same run over keep-alive connections, so both sides see the same machine load. Prints
p50/p99 of both sides (the baseline is the direct side) and the added latency as a percentile of
the paired differences (each proxied GET minus the direct GET next to it), the one way every
proxy bench computes "added"; asserts nothing about time.
"""

from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from pipstorm.engine.rundir.records import load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from tests.infra.conftest import write_wheel

REQUESTS = 2000
WARMUP = 100


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


@pytest.mark.bench
def test_added_latency_of_the_proxy(tmp_path: Path) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        write_wheel(tmp_path, "bench_package", version)
    log = tmp_path / "requests.jsonl"
    with (
        LocalPypiserver(tmp_path) as server,
        RecordingProxy(server.index_url, log, credentials=server.credentials) as proxy,
        closing(http.client.HTTPConnection("127.0.0.1", server.port)) as direct_conn,
        closing(http.client.HTTPConnection("127.0.0.1", proxy.port)) as proxy_conn,
    ):
        direct = _getter(
            direct_conn,
            "/simple/bench-package/",
            {"Authorization": server.credentials.basic_auth_header()},
        )
        proxied = _getter(proxy_conn, "/r/bench/simple/bench-package/", {})
        for _ in range(WARMUP):
            direct()
            proxied()
        direct_ms: list[float] = []
        proxied_ms: list[float] = []
        for index in range(REQUESTS):
            # Alternate which goes first so neither always runs on a warmer cache.
            if index % 2:
                direct_ms.append(direct())
                proxied_ms.append(proxied())
            else:
                proxied_ms.append(proxied())
                direct_ms.append(direct())
    records = [r for r in load_requests(log)[0] if r.run_id == "bench"]
    assert len(records) == WARMUP + REQUESTS
    recorded_ms = [r.total_ms for r in records[WARMUP:]]
    added_ms = [p - d for p, d in zip(proxied_ms, direct_ms, strict=True)]
    lines = [f"proxy bench: {REQUESTS} listing GETs each way, interleaved, keep-alive"]
    for label, q in (("p50", 50.0), ("p99", 99.0)):
        d, p = _percentile(direct_ms, q), _percentile(proxied_ms, q)
        lines.append(
            f"  {label}: direct (baseline) {d:.3f} ms, via proxy {p:.3f} ms (ratio {p / d:.2f}x); "
            f"added, {label} of paired differences {_percentile(added_ms, q):+.3f} ms; "
            f"proxy-recorded total {_percentile(recorded_ms, q):.3f} ms"
        )
    print("\n".join(lines))
