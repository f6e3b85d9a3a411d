"""A warm pip run's CPU before and after its gate, and the burst's onset, per way of gating.

Three ways, interleaved in the same run against the same local pypiserver behind the recording
proxy (the baseline first in each round):

- ``old``: the gate before ``main``, each child computing pip's user agent itself (it spawns
  ``lsb_release`` and ``rustc --version``): what warm children did before issue 20, but for
  pip's SSL context, now made once in every launcher (``preload.PREWARM``; it was ~30 ms of
  CPU per child before its gate: 95.7 ms before the gate in all for ``old`` on 2026-12-06);
- ``shared``: the gate before ``main``, the user agent computed once per environment by the
  launcher (``pipstorm.clients.warm.shared``);
- ``connect``: shared, and the gate at the child's first connect (``pipstorm.clients.warm.gate``):
  option parsing, configuration, session and finder set-up done ahead.

Per run: CPU before the gate (``gated`` event: the child's own CPU and its children's since the
fork), CPU after it (the exit's rusage minus that), the wall time from the first fork to the
last child gated (preparation); per burst: onset (gate -> the run's first request at the proxy)
p50/p95. Each launcher first plays one run (its start and the one user-agent computation are
not the burst's). Prints figures and ratios against ``old``; asserts only that the runs worked.
``make bench`` runs it; ``-k gate`` picks this file; ``GATE_BENCH_RUNS`` sets the burst size.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import psutil
import pytest

from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.task import ClientResult
from pipstorm.clients.warm.launchers import Launchers
from pipstorm.clients.warm.run import launch_warm, warm_prepared
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.bench.test_warm_bench import PACKAGES, Bench, first_requests, pct, task

pytestmark = pytest.mark.bench

RUNS = int(os.environ.get("GATE_BENCH_RUNS", "75"))
ROUNDS = 2
#: name -> (gate_at, share)
WAYS = {"old": ("start", False), "shared": ("start", True), "connect": ("connect", True)}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    root = tmp_path_factory.mktemp("gate-bench")
    corpus = cached_corpus(CorpusSpec(packages=PACKAGES), root / "cache")
    log = root / "requests.jsonl"
    with (
        LocalPypiserver(corpus.directory) as server,
        RecordingProxy(server.index_url, log, credentials=server.credentials) as proxy,
    ):
        yield Bench(proxy, log, root)


@dataclass
class Figures:
    before: list[float]
    after: list[float]
    startup_s: list[float]
    prepare_s: float
    onset: list[float]
    ok: int


def burst(bench: Bench, way: str, round_: int) -> Figures:
    gate_at, share = WAYS[way]
    prefix = f"gate-{way}-{round_}-"
    registry = ProcessRegistry()
    results: list[ClientResult] = []
    lock = threading.Lock()
    with Launchers(bench.root, gate_at=gate_at, share=share) as launchers, ExitStack() as stack:
        warmup = task(bench, "pip", f"{prefix}warmup", 0)
        with warm_prepared(warmup, launchers=launchers, temp_root=None, due_mono=None) as prep:
            assert prep.child is not None, prep.error
            prep.child.open()
            assert launch_warm(prep, registry=registry).outcome == "ok"
        started = time.monotonic()
        preps = [
            stack.enter_context(
                warm_prepared(
                    task(bench, "pip", f"{prefix}{n}", n),
                    launchers=launchers,
                    temp_root=None,
                    due_mono=None,
                )
            )
            for n in range(RUNS)
        ]
        for prep in preps:
            assert prep.child is not None, prep.error
            assert prep.child.gated.wait(300)
        prepare_s = time.monotonic() - started

        def body(index: int) -> None:
            result = launch_warm(preps[index], registry=registry)
            with lock:
                results.append(result)

        threads = [threading.Thread(target=body, args=(i,)) for i in range(RUNS)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        gate = time.time()
        for prep in preps:
            assert prep.child is not None
            prep.child.open()
        for thread in threads:
            thread.join()
        children = {p.task.run_id: p.child for p in preps if p.child is not None}
    time.sleep(0.5)  # the proxy writes a record once the response is done
    first = first_requests(bench.log, prefix)
    ahead = {run: child.cpu_ahead_s for run, child in children.items()}
    return Figures(
        before=list(ahead.values()),
        after=[r.cpu_s - ahead.get(r.run_id, 0.0) for r in results],
        startup_s=[child.startup_s for child in children.values()],
        prepare_s=prepare_s,
        onset=[first[r.run_id] - gate for r in results if r.run_id in first],
        ok=sum(r.outcome == "ok" for r in results),
    )


def mean_ms(values: list[float]) -> float:
    return 1000 * statistics.fmean(values) if values else 0.0


def test_cpu_before_and_after_the_gate(bench: Bench) -> None:
    figures: dict[str, list[Figures]] = {way: [] for way in WAYS}
    for round_ in range(ROUNDS):
        for way in WAYS:
            figures[way].append(burst(bench, way, round_))
    load = " ".join(f"{x:.2f}" for x in psutil.getloadavg())
    print(f"\n{RUNS}-run warm pip burst x{ROUNDS} rounds, {psutil.cpu_count()} cores, load {load}:")
    base: dict[str, float] = {}
    for way, runs in figures.items():
        before = [v for f in runs for v in f.before]
        after = [v for f in runs for v in f.after]
        onset = [v for f in runs for v in f.onset]
        row = {
            "before": mean_ms(before),
            "after": mean_ms(after),
            "prepare": statistics.fmean(f.prepare_s for f in runs),
            "p95": max(pct(f.onset, 0.95) for f in runs),
        }
        base = base or row
        print(
            f"  {way:<8} CPU/run before gate {row['before']:6.1f} ms"
            f" ({row['before'] / base['before']:.2f}x old)"
            f" after {row['after']:6.1f} ms ({row['after'] / base['after']:.2f}x)"
            f" | start-up before gate {mean_ms([v for f in runs for v in f.startup_s]):5.1f} ms"
            f" | prepare {row['prepare']:5.2f} s ({row['prepare'] / base['prepare']:.2f}x)"
            f" | onset p50 {pct(onset, 0.5):5.2f} s, worst burst p95 {row['p95']:5.2f} s"
            f" ({row['p95'] / max(base['p95'], 1e-3):.2f}x)"
            f" | ok {sum(f.ok for f in runs)}/{RUNS * len(runs)}"
        )
    assert all(f.ok == RUNS for runs in figures.values() for f in runs)
