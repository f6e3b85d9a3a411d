"""What a synthetic load test misses: one run of the seed's synthetic client against one run of
real clients on the same schedule, each reduced to a :class:`Side`, and the differences as plain
sentences (:func:`findings`). ``pipstorm.engine.workflows.realism`` runs the two; this only
compares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipstorm.engine.analysis.client_usage import ClientKindUsage
from pipstorm.engine.analysis.stats import Distribution, RunStats
from pipstorm.engine.rundir.data import RunData

SCHEMA = 1


@dataclass(frozen=True)
class OperationSide:
    """One operation on one side: how many per client run, bytes, latency, errors."""

    count: int
    per_run: float
    bytes: int
    total_ms: Distribution | None
    error_rate: float | None


@dataclass(frozen=True)
class Side:
    """One of the two runs, reduced to what the comparison needs."""

    label: str  # "synthetic" or "real"
    run_dir: str
    clients: Mapping[str, float]  # kind -> share
    runs: int
    outcomes: Mapping[str, int]
    run_error_rate: float | None  # percent of client runs that failed
    requests: int
    requests_per_run: float
    bytes_per_run: float
    request_error_rate: float | None
    range_requests_per_run: float
    cpu_s: Distribution | None  # CPU per client run on the generator
    client_s: Distribution | None  # wall time of a client run
    operations: Mapping[str, OperationSide]
    user_agents: Mapping[str, int]
    interrupted: bool


@dataclass(frozen=True)
class Realism:
    """The two sides, the findings, and where it was all written."""

    profile: str
    seed: int
    dir: Path
    synthetic: Side
    real: Side
    findings: tuple[str, ...]

    @property
    def interrupted(self) -> bool:
        """Either run was interrupted: the comparison is then partial."""
        return self.synthetic.interrupted or self.real.interrupted

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "schema": SCHEMA,
            "profile": self.profile,
            "seed": self.seed,
            "synthetic": asdict(self.synthetic),
            "real": asdict(self.real),
            "findings": list(self.findings),
        }


def side(
    label: str,
    data: RunData,
    stats: RunStats,
    usage_by_kind: Sequence[ClientKindUsage],
    *,
    interrupted: bool = False,
) -> Side:
    """Reduce one run (its statistics, client usage and requests' Range headers) to a side."""
    runs = stats.clients.all.count
    per = max(runs, 1)
    requests = data.requests
    mix = data.meta.clients.get("mix", {})
    agents: dict[str, int] = {}
    for usage in usage_by_kind:
        for agent, count in usage.user_agents.items():
            agents[agent] = agents.get(agent, 0) + count
    return Side(
        label=label,
        run_dir=str(data.run_dir),
        clients={str(k): float(v) for k, v in mix.items() if v},
        runs=runs,
        outcomes=dict(stats.clients.all.by_outcome),
        run_error_rate=stats.clients.all.error_rate,
        requests=stats.requests.count,
        requests_per_run=round(stats.requests.count / per, 3),
        bytes_per_run=round(stats.requests.bytes / per, 1),
        request_error_rate=stats.requests.error_rate,
        range_requests_per_run=round(sum(1 for r in requests if r.range) / per, 3),
        cpu_s=stats.clients.all.cpu_s,
        client_s=stats.clients.all.client_s,
        operations={
            op: OperationSide(
                count=o.count,
                per_run=round(o.count / per, 3),
                bytes=o.bytes,
                total_ms=o.total_ms,
                error_rate=o.error_rate,
            )
            for op, o in stats.operations.items()
        },
        user_agents=dict(sorted(agents.items(), key=lambda kv: -kv[1])),
        interrupted=interrupted,
    )


def findings(synthetic: Side, real: Side) -> list[str]:
    """Plain sentences: where the synthetic run's load differs from the real clients'."""
    out: list[str] = []
    for op in sorted(set(synthetic.operations) | set(real.operations)):
        s_op, r_op = synthetic.operations.get(op), real.operations.get(op)
        s_n = s_op.per_run if s_op else 0.0
        r_n = r_op.per_run if r_op else 0.0
        if r_n and not s_n:
            out.append(
                f"real clients make {r_n:g} {op} request(s) per run that the synthetic client "
                "never makes"
            )
        elif s_n and not r_n:
            out.append(
                f"the synthetic client makes {s_n:g} {op} request(s) per run that real clients "
                "do not make"
            )
        elif s_n and r_n and abs(r_n - s_n) / max(r_n, s_n) >= 0.1:
            out.append(f"{op}: {r_n:g} request(s) per real run, {s_n:g} per synthetic run")
    if real.range_requests_per_run and not synthetic.range_requests_per_run:
        out.append(
            f"real clients send {real.range_requests_per_run:g} Range request(s) per run "
            "(partial reads of wheels); the synthetic client sends none"
        )
    out.append(
        f"requests per run: {real.requests_per_run:g} real, {synthetic.requests_per_run:g} "
        f"synthetic; bytes per run: {real.bytes_per_run:,.0f} real, "
        f"{synthetic.bytes_per_run:,.0f} synthetic"
    )
    if real.cpu_s is not None and synthetic.cpu_s is not None:
        ratio = real.cpu_s.mean / synthetic.cpu_s.mean if synthetic.cpu_s.mean > 0 else None
        times = f" ({ratio:,.0f}x)" if ratio is not None else ""
        out.append(
            f"a real client run costs the generator {real.cpu_s.mean:.3f} CPU-s, a synthetic "
            f"one {synthetic.cpu_s.mean:.4f}{times}: the synthetic rate is no measure of what "
            "this machine can drive with real clients"
        )
    if (real.run_error_rate or 0) != (synthetic.run_error_rate or 0):
        out.append(
            f"client runs failed: {real.run_error_rate or 0:.1f} % real, "
            f"{synthetic.run_error_rate or 0:.1f} % synthetic"
        )
    return out
