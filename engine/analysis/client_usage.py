"""What each client kind did to the index: versions, user agents, requests per run by operation.

The per-kind run outcomes and times are in ``pipstorm.engine.analysis.stats``; this joins the two
streams on the run id to answer what those cannot: which client versions really ran (the
``User-Agent`` the index saw, not only what was asked for), and how many requests of each operation
one run of a kind costs the index (a poetry lock is several listings and range reads, a pip download
two requests). ``pipstorm realism`` sets these side by side for two runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipstorm.engine.rundir.records import ClientRecord, RequestRecord, op_order


@dataclass(frozen=True)
class ClientKindUsage:
    """One client kind over a run."""

    client: str
    runs: int
    versions: Mapping[str, int]  # client version -> runs
    user_agents: Mapping[str, int]  # product token of the User-Agent ("pip/25.3") -> requests
    requests: int
    requests_per_run: Mapping[str, float]  # operation -> mean requests per run
    bytes_per_run: float
    cpu_s_per_run: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def user_agent_product(user_agent: str | None) -> str:
    """The first token of a User-Agent (``pip/25.3``, ``poetry/2.1.3``), or ``-`` if none."""
    if not user_agent or not user_agent.strip():
        return "-"
    return user_agent.split()[0]


def client_kind_usage(
    requests: Sequence[RequestRecord], clients: Sequence[ClientRecord]
) -> tuple[ClientKindUsage, ...]:
    """Per client kind (sorted by name): versions, user agents and request costs per run."""
    kind_of = {c.run_id: c.client for c in clients}
    by_kind: dict[str, list[RequestRecord]] = {}
    for rec in requests:
        kind = kind_of.get(rec.run_id or "")
        if kind is not None:
            by_kind.setdefault(kind, []).append(rec)
    usage = []
    for kind in sorted({c.client for c in clients}):
        runs = [c for c in clients if c.client == kind]
        recs = by_kind.get(kind, [])
        ops = Counter(r.op for r in recs)
        cpu = [c.cpu_s for c in runs if c.cpu_s is not None]
        usage.append(
            ClientKindUsage(
                client=kind,
                runs=len(runs),
                versions=dict(Counter(c.client_version or "-" for c in runs).most_common()),
                user_agents=dict(
                    Counter(user_agent_product(r.user_agent) for r in recs).most_common()
                ),
                requests=len(recs),
                requests_per_run={
                    op: round(ops[op] / len(runs), 3) for op in sorted(ops, key=op_order)
                },
                bytes_per_run=round(sum(r.bytes for r in recs) / len(runs), 1),
                cpu_s_per_run=round(sum(cpu) / len(cpu), 4) if cpu else None,
            )
        )
    return tuple(usage)
