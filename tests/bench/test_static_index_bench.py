"""What the bench's static index waits for the CPU by itself: its serving pool's own queueing.

510 connections at once, each a listing then its first wheel (pip's two requests), from one
asyncio client in this process (0.3 CPU-s for all of them), against ``static_index`` with a
pool of 32 threads, one thread, and none (the accepting thread serves), alternated. Prints, per
run, the index's CPU and its threads' run-queue wait summed (``/proc/PID/task/*/schedstat``, as
pipstorm's sampler reads it) and the wall time to the last answer. The generator rule counts a
local index's wait as far as other processes' CPU explains it
(``pipstorm.engine.analysis.generator.cpu_wait``), so what a pool waits for its own cores while
clients are busy is counted as the generator's: this is how much that is. Asserts only that
every request was answered.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pipstorm.engine.run.runqueue import RunQueueWatch
from pipstorm.engine.run.target.local import local_target_pid, url_port
from tests.bench import static_index

pytestmark = pytest.mark.bench

CLIENTS = 510
ROUNDS = 3


async def _get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def _client(port: int, project: str) -> int:
    """A listing, then the first file it links: what a pip run asks for."""
    page = await _get(port, f"/simple/{project}/")
    href = page.split(b'href="', 1)[1].split(b"#", 1)[0].decode()
    wheel = await _get(port, f"/simple/{project}/{href}")
    return int(page.startswith(b"HTTP/1.0 200")) + int(wheel.startswith(b"HTTP/1.0 200"))


def burst(url: str, projects: list[str]) -> tuple[float, float, float, int]:
    """(index CPU s, its threads' summed wait s, wall s, answers 200) for one burst."""
    port, pid = url_port(url), local_target_pid(url)
    assert port is not None and pid is not None
    watch = RunQueueWatch()
    watch.read([pid])
    started = time.monotonic()

    async def everyone() -> list[int]:
        clients = (_client(port, projects[i % len(projects)]) for i in range(CLIENTS))
        return await asyncio.gather(*clients)

    answered = sum(asyncio.run(everyone()))
    wall = time.monotonic() - started
    time.sleep(0.3)  # a thread's last wait is on record once it has run
    reading = watch.read([pid])
    assert reading is not None
    return reading.run_s, reading.wait_s, wall, answered


def test_a_serving_pool_queues_for_the_cores_by_itself(tmp_path: Path) -> None:
    root = static_index.build(tmp_path / "index")
    projects = sorted(p.name for p in (root / "simple").iterdir() if p.is_dir())
    for round_ in range(ROUNDS):
        for threads in (32, 1, 0):
            with static_index.serving(root, threads=threads) as url:
                run, wait, wall, answered = burst(url, projects)
            print(
                f"round {round_ + 1}, {threads:2d} threads: index ran {run:.3f} s, its threads"
                f" waited {wait:.3f} s (summed), last answer after {wall:.2f} s"
            )
            assert answered == 2 * CLIENTS
