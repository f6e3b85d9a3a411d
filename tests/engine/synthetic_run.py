"""A run directory written record by record with the engine's own writers, for report tests.

The shape comes from :mod:`pipstorm.engine.rundir.records` (requests, clients) and from what
``pipstorm.engine.run.sampler`` writes (host.jsonl), so the reports read exactly what a real run
leaves; the numbers are synthetic (seeded) so a 24-minute production_incident with thousands of
requests can be reported on in a unit test without running it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pipstorm.engine.rundir.files import CLIENTS_FILE, REQUESTS_FILE, RUN_FILE, write_json_atomic
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord

T0 = 1_790_000_000.0


def host_line(ts: float, cpu: float, *, cores: int = 2) -> dict[str, Any]:
    """One host.jsonl line as pipstorm.engine.run.sampler writes it."""
    return {
        "ts": ts,
        "interval_s": 1.0,
        "host_cpu_percent": cpu,
        "host_cpu_per_core": [cpu] * cores,
        "host_mem_percent": 41.5,
        "host_mem_used_mb": 3300.0,
        "host_mem_available_mb": 4700.0,
        "load1": 1.2,
        "engine": {"cpu_percent": 3.0, "rss_mb": 60.0, "processes": 1},
        "proxy": {"cpu_percent": cpu / 4, "rss_mb": 45.0, "processes": 1},
        "target": {"cpu_percent": cpu / 2, "rss_mb": 120.0, "processes": 3},
        "clients": {"cpu_percent": cpu, "rss_mb": 300.0 + cpu, "processes": 8},
        "sample_ms": 2.1,
    }


def write_run(
    run_dir: Path,
    *,
    duration_s: float = 1440.0,
    burst_every_s: float = 60.0,
    base: int = 3,
    multiplier: int = 25,
    host: bool = True,
    ended: bool = True,
    seed: int = 7,
    slow_ms: float = 0.0,
    busy_cpu: float = 85.0,
) -> Path:
    """Write a production_incident-like run: ``base`` pip runs per 10 s tick, x``multiplier``
    on burst ticks, each run a listing then a download; ``slow_ms`` is added to every latency
    (a slower deployment, for comparisons); ``busy_cpu`` is the generator's CPU over the first
    8 s of each burst (above 90: a generator-bound run)."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ticks = [float(t) for t in range(0, int(duration_s), 10)]
    bursts = [t for t in ticks if t % burst_every_s == 0]
    planned = sum(base * (multiplier if t in bursts else 1) for t in ticks)
    write_json_atomic(
        run_dir / RUN_FILE,
        {
            "schema": 1,
            "profile": {"name": "production_incident", "clients": base, "tick_s": 10.0},
            "planned_duration_s": duration_s,
            "time_scale": 1.0,
            "tick_s": 10.0,
            "burst_ticks_s": bursts,
            "started": T0,
            "ended": T0 + duration_s + 5 if ended else None,
            "interrupted": False,
            "seed": seed,
            "runs_planned": planned,
            "thresholds": {"error_rate": 1.0, "p95_listing_ms": 2000.0},
            "target": {"kind": "embedded", "index_url": "http://127.0.0.1:1/simple/"},
        },
    )
    n = 0
    with (
        JsonlWriter(run_dir / REQUESTS_FILE) as requests,
        JsonlWriter(run_dir / CLIENTS_FILE) as clients,
    ):
        for tick in ticks:
            burst = tick in bursts
            for _ in range(base * (multiplier if burst else 1)):
                n += 1
                run_id = f"r{n:05d}"
                lag = rng.uniform(0.0, 0.4 if burst else 0.02)
                launched = T0 + tick + lag
                t = launched + 0.3  # a healthy run reaches the index well within 1 s
                status = 200 if rng.random() > 0.004 else 502
                for op in ("listing", "download"):
                    total = rng.lognormvariate(3.2 if op == "download" else 3.6, 0.6) + slow_ms
                    if burst:
                        total *= rng.uniform(2, 8)
                    requests.write(
                        RequestRecord(
                            ts=t,
                            op=op,
                            method="GET",
                            path=f"/simple/p{n % 90}/" if op == "listing" else f"/p/{n}.whl",
                            status=status,
                            total_ms=total,
                            run_id=run_id,
                            bytes=900 if op == "listing" else 1200,
                            ttfb_ms=total * 0.9,
                        )
                    )
                    t += total / 1000 + 0.05
                outcome = "ok" if status == 200 else "failed"
                clients.write(
                    ClientRecord(
                        run_id=run_id,
                        client="pip",
                        project=f"p{n % 90}",
                        version="1.0.0",
                        tick=int(tick // 10),
                        burst=burst,
                        intended=T0 + tick,
                        started=T0 + tick - 5,
                        launched=launched,
                        ended=t + 0.3,
                        lag_s=lag,
                        exit_code=0 if outcome == "ok" else 1,
                        outcome=outcome,
                        cpu_s=0.4,
                        max_rss_kb=49000,
                    )
                )
    if host:
        with JsonlWriter(run_dir / "host.jsonl") as out:
            for s in range(1, int(duration_s)):
                busy = busy_cpu if s % burst_every_s < 8 else 20.0
                out.write(host_line(T0 + s, min(100.0, busy + rng.uniform(-5, 5))))
    return run_dir
