"""The proxy's cost when every upstream request opens a new connection (an HTTP/1.0 index).

``tests/bench/static_index.py`` answers HTTP/1.0, one request per connection, as x170's bench
index does: through the proxy, every request opens a new upstream connection (the pooled
fast path of ``test_proxy_bench.py`` never applies). Two rows, both on the default loop
(uvloop):

- **one by one**: the same listing GETs directly (a new connection each, as HTTP/1.0 needs) and
  through the proxy (the client on one keep-alive connection, the proxy opening a new upstream
  connection each time), interleaved one by one, the order alternating; the added latency as a
  percentile of the paired differences (the proxy's GET minus the direct GET next to it, the
  one way every proxy bench computes "added") and the proxy's CPU (user + system, psutil) over
  the measured GETs divided by their number;
- **burst**: ``BURST`` client connections at once through the proxy, each a listing and a
  wheel over keep-alive (x170's shape, 2 requests each), the proxy's CPU per request: what a
  burst's requests queue behind.

Asserts nothing about time; checks every request was answered and recorded.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import time
from contextlib import ExitStack, closing
from pathlib import Path

import psutil
import pytest

from pipstorm.engine.rundir.records import load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from tests.bench.static_index import build, serving
from tests.bench.test_proxy_bench import _cpu, _percentile

REQUESTS = int(os.environ.get("PIPSTORM_BENCH_REQUESTS", "2000"))
BURST = 500
WARMUP = 100
_PROJECT = "test-package-000"


def _direct_get(port: int, path: str) -> float:
    """One GET on a new connection (the index closes it: HTTP/1.0); its ms."""
    begin = time.perf_counter()
    with closing(http.client.HTTPConnection("127.0.0.1", port)) as conn:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    assert response.status == 200
    return (time.perf_counter() - begin) * 1000.0


def _proxied_get(conn: http.client.HTTPConnection, path: str) -> float:
    """One GET on the client's keep-alive connection to the proxy; its ms."""
    begin = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return (time.perf_counter() - begin) * 1000.0


async def _burst(port: int, connections: int, projects: list[str]) -> None:
    """``connections`` client connections at once, each a listing and a wheel (keep-alive)."""

    async def one(number: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        project = random.choice(projects)
        wheel = project.replace("-", "_") + "-1.0.0-py3-none-any.whl"
        for path in (f"/r/r{number:05d}/simple/{project}/", f"/r/r{number:05d}/packages/{wheel}"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(one(number) for number in range(connections)))


@pytest.mark.bench
def test_proxy_with_a_new_upstream_connection_per_request(tmp_path: Path) -> None:
    root = build(tmp_path / "index")
    projects = sorted(p.name for p in (root / "simple").iterdir() if p.is_dir())
    log = tmp_path / "requests.jsonl"
    with ExitStack() as stack:
        index_url = stack.enter_context(serving(root))
        index_port = int(index_url.split(":")[2].split("/")[0])
        proxy = stack.enter_context(RecordingProxy(index_url, log, loop="uvloop"))
        client = stack.enter_context(closing(http.client.HTTPConnection("127.0.0.1", proxy.port)))
        direct_path, proxied_path = f"/simple/{_PROJECT}/", f"/r/bench/simple/{_PROJECT}/"
        for _ in range(WARMUP):
            _direct_get(index_port, direct_path)
            _proxied_get(client, proxied_path)
        direct: list[float] = []
        proxied: list[float] = []
        cpu_before = _cpu(proxy.pid)
        for index in range(REQUESTS):
            if index % 2:
                direct.append(_direct_get(index_port, direct_path))
                proxied.append(_proxied_get(client, proxied_path))
            else:
                proxied.append(_proxied_get(client, proxied_path))
                direct.append(_direct_get(index_port, direct_path))
        one_by_one_ms = 1000.0 * (_cpu(proxy.pid) - cpu_before) / REQUESTS
        asyncio.run(_burst(proxy.port, 20, projects))  # warm-up
        cpu_before = _cpu(proxy.pid)
        begin = time.perf_counter()
        asyncio.run(_burst(proxy.port, BURST, projects))
        burst_s = time.perf_counter() - begin
        burst_ms = 1000.0 * (_cpu(proxy.pid) - cpu_before) / (2 * BURST)
    records = load_requests(log)[0]
    assert len(records) == WARMUP + REQUESTS + 2 * (20 + BURST)
    measured = records[WARMUP : WARMUP + REQUESTS]
    assert all(r.upstream_new for r in measured)
    print(_report(direct, proxied, one_by_one_ms, burst_s, burst_ms))


def _report(
    direct: list[float], proxied: list[float], one_by_one_ms: float, burst_s: float, burst_ms: float
) -> str:
    """The bench's lines: percentiles of each side and of the paired differences, the CPU."""
    added = [p - d for p, d in zip(proxied, direct, strict=True)]
    pct = {
        (side, q): _percentile(samples, q)
        for side, samples in (("direct", direct), ("proxy", proxied), ("added", added))
        for q in (50.0, 99.0)
    }
    rows = "\n".join(
        f"    p{q:.0f}: direct (new connection each) {pct['direct', q]:.3f} ms, via proxy "
        f"{pct['proxy', q]:.3f} ms (ratio {pct['proxy', q] / pct['direct', q]:.2f}x); added, "
        f"p{q:.0f} of paired differences {pct['added', q]:+.3f} ms"
        for q in (50.0, 99.0)
    )
    loads = psutil.getloadavg()
    return (
        f"proxy bench, a new upstream connection per request (HTTP/1.0 static index, uvloop); "
        f"load {loads[0]:.2f} {loads[1]:.2f} {loads[2]:.2f}\n"
        f"  one by one: {REQUESTS} listing GETs each way, interleaved; proxy CPU per request "
        f"{one_by_one_ms:.3f} ms\n{rows}\n"
        f"  burst: {BURST} client connections at once, a listing and a wheel each, in "
        f"{burst_s:.2f} s; proxy CPU per request {burst_ms:.3f} ms"
    )
