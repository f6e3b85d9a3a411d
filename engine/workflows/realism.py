"""``pipstorm realism``: the same schedule played by the synthetic client and by real clients.

The seed measured an index with a simulated client (three HTTP requests per "pip install").
This plays one profile's schedule twice against one embedded target: first every run as the
synthetic client (``--client http``), then as the real clients (the profile's mix, or
``--client``/``--mix``), and sets the two side by side: requests per client run by operation,
bytes, latency per operation, error rates, CPU per run on the generator. The differences are
what a synthetic test misses (``findings``): requests real clients make that it never does,
requests it makes that real clients do not, and what a run really costs the generator.

Both runs are ordinary pipstorm runs with their own results folders (inside the realism
folder), so each can also be reported on, traced or compared on its own.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from clients.synthetic import KIND as SYNTHETIC_KIND
from clients.twine import KIND as UPLOAD_KIND
from engine.analysis.stats import Distribution
from engine.report.model import Report
from engine.run.client_mix import choose_clients
from engine.run.execute import (
    EXIT_INTERRUPTED,
    UPLOADS_DIR,
    RunOptions,
    RunResult,
    execute_run,
)
from engine.run.profiles import ProfileError, load_profile
from engine.run.schedule import timeline
from engine.run.target import open_target
from engine.rundir.files import make_run_dir
from packages.spec import CorpusSpec

SCHEMA = 1
REALISM_JSON = "realism.json"
REALISM_MD = "realism.md"


@dataclass(frozen=True)
class RealismOptions:
    """What ``pipstorm realism`` can be told; the real side's clients as in ``pipstorm run``."""

    profile: str
    duration_s: float | None = None
    time_scale: float | None = None
    results_root: Path = Path("results")
    seed: int = 1
    workers: int | None = None
    run_timeout_s: float = 120.0
    client: str | None = None
    mix: dict[str, float] | None = None
    client_versions: dict[str, str | None] = field(default_factory=dict)
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    quiet: bool = False


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
    def exit_code(self) -> int:
        """0, or 130 when either run was interrupted (the comparison is then partial)."""
        interrupted = self.synthetic.interrupted or self.real.interrupted
        return EXIT_INTERRUPTED if interrupted else 0

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


def run_realism(options: RealismOptions, say: Callable[[str], None] | None = None) -> Realism:
    """Play the schedule with the synthetic client, then with the real ones; compare, write
    ``realism.json`` and ``realism.md``. Bad input raises the run's one-line errors first."""
    emit = say or _to_stderr
    profile = load_profile(options.profile)
    real_choice = choose_clients(
        profile, client=options.client, mix=options.mix, versions=options.client_versions
    )
    if real_choice.kinds == [SYNTHETIC_KIND]:
        raise ProfileError(
            "realism compares the synthetic client with real ones: name real clients "
            "(--client pip, --mix pip=0.6,poetry=0.4) or a profile that has them"
        )
    timeline(profile, duration_s=options.duration_s, time_scale=options.time_scale)  # checked
    base = RunOptions(
        profile=options.profile,
        duration_s=options.duration_s,
        time_scale=options.time_scale,
        seed=options.seed,
        workers=options.workers,
        run_timeout_s=options.run_timeout_s,
        corpus=options.corpus,
        quiet=options.quiet,
    )
    root = make_run_dir(options.results_root, f"realism-{profile.name}")
    try:
        with ExitStack() as stack:
            uploads = root / UPLOADS_DIR
            if UPLOAD_KIND in real_choice.kinds:
                uploads.mkdir()
            target = stack.enter_context(
                open_target(
                    None,
                    corpus=options.corpus,
                    allow_remote=False,
                    log_path=root / "target.log",
                    upload_dir=uploads if uploads.is_dir() else None,
                )
            )
            emit(f"pipstorm realism: 1/2 the synthetic client ({SYNTHETIC_KIND}), {profile.name}")
            synthetic = execute_run(
                replace(base, client=SYNTHETIC_KIND, results_root=root / "synthetic"),
                emit,
                target=target,
            )
            emit(f"pipstorm realism: 2/2 the real clients ({', '.join(real_choice.kinds)})")
            real = execute_run(
                replace(
                    base,
                    client=options.client,
                    mix=options.mix,
                    client_versions=dict(options.client_versions),
                    results_root=root / "real",
                ),
                emit,
                target=target,
            )
    except BaseException:
        if not any(root.glob("*/*/run.json")):
            shutil.rmtree(root, ignore_errors=True)  # nothing was run: leave no empty folder
        raise
    realism = compare_runs(profile.name, options.seed, root, synthetic, real)
    from engine.report.realism import write_realism

    write_realism(realism)
    return realism


def compare_runs(
    profile: str, seed: int, root: Path, synthetic: RunResult, real: RunResult
) -> Realism:
    """The two runs side by side, with what the synthetic one misses."""
    left = side("synthetic", synthetic.report, interrupted=synthetic.interrupted)
    right = side("real", real.report, interrupted=real.interrupted)
    return Realism(
        profile=profile,
        seed=seed,
        dir=root,
        synthetic=left,
        real=right,
        findings=tuple(findings(left, right)),
    )


def side(label: str, report: Report, *, interrupted: bool = False) -> Side:
    """Reduce one run's report (and its requests' Range headers) to a comparison side."""
    stats = report.stats
    runs = stats.clients.all.count
    per = max(runs, 1)
    requests = report.data.requests
    mix = report.run.clients.get("mix", {})
    agents: dict[str, int] = {}
    for usage in report.client_kinds:
        for agent, count in usage.user_agents.items():
            agents[agent] = agents.get(agent, 0) + count
    return Side(
        label=label,
        run_dir=str(report.run_dir),
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


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
