"""A run's injected faults: the rules from the CLI and the profile, and the plan file the proxy
reads (``faults.json`` in the results folder).

The proxy process matches requests against the plan (``pipstorm.infra.faults.plan``); it needs each
run's client kind (``client=``), the burst ticks (``during=bursts``) and time zero (``after=``,
``before=``). Time zero is known only once the pool runs, after the proxy has started, so the
plan is written twice: first without it, then with it (the proxy re-reads a plan that has none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipstorm.infra.faults.plan import FaultPlan
from pipstorm.infra.faults.spec import FaultRule, parse_faults

FAULTS_FILE = "faults.json"


@dataclass(frozen=True)
class RunFaults:
    """The rules of one run and where their plan file goes."""

    rules: tuple[FaultRule, ...]
    seed: int = 1

    @classmethod
    def from_specs(cls, specs: Iterable[str], *, seed: int) -> RunFaults | None:
        """Parse every spec (FaultSpecError names the bad part); None when there are none."""
        rules = parse_faults(specs)
        return cls(rules=rules, seed=seed) if rules else None

    def meta(self) -> list[dict[str, str]]:
        """What ``run.json`` records under ``faults``: each rule's id and spec."""
        return [{"id": r.id, "spec": r.spec} for r in self.rules]

    def write_plan(
        self,
        run_dir: Path,
        clients: Mapping[str, str],
        *,
        tick_s: float = 10.0,
        burst_ticks_s: Sequence[float] = (),
        origin: float | None = None,
    ) -> Path:
        """Write ``faults.json`` (run id -> client kind, bursts, time zero if known)."""
        plan = FaultPlan(
            rules=self.rules,
            seed=self.seed,
            clients=dict(clients),
            origin=origin,
            tick_s=tick_s,
            burst_ticks_s=tuple(burst_ticks_s),
        )
        path = run_dir / FAULTS_FILE
        plan.write(path)
        return path

    @staticmethod
    def set_origin(path: Path, origin: float) -> None:
        """Fill in time zero once it is known; the proxy picks it up on its next request."""
        plan = FaultPlan.load(path)
        replace(plan, origin=origin).write(path)
