"""The embedded target's sizing over a run, and why a sizing failed: the lab's diagnosis.

``run.json``'s ``target`` records, for a run with ``--sizing``: the sizing (``sizing``), the
cgroup it ran in (``cgroup``: version and the limits the kernel held), the cgroup's counters
over the run (``counters``: CPU used and throttled, memory peak, OOM kills, whether the server
survived), why it ran unconfined if it did, and, in the sizing lab, what one listing costs the
server with and without its auth hash and its file hashing (``listing_cost``).

The diagnosis names what held a failing sizing back, most decisive first. The rule: a failing
sizing whose server hit a limit is never "unexplained"; each limit is named with its figures, so
the reader can weigh a small one:

- ``generator-bound``: the load generator was the bottleneck; the verdict says nothing about the
  index, so it is inconclusive (``pipstorm.engine.analysis.verdict``; listed even when the
  thresholds passed, and when ``--allow-generator-bound`` kept the PASS/FAIL);
- ``OOM-killed`` / ``died``: the kernel's OOM counter moved, or the server was gone before the
  end: every failure after that is the memory's, not the CPU's;
- ``memory-bound``: the memory limit was hit and pages the kernel evicted were needed again
  (refaults: the working set did not fit), or tasks stalled on memory (``memory.pressure`` where
  the kernel keeps it per cgroup): the incident's bottleneck, the host's memory. Refaults without
  a limit hit are someone else's eviction (the host's reclaim, another run dropping the shared
  corpus from the cache), not this sizing's;
- ``auth-hash-bound``: most of a listing's server CPU is the password check (bcrypt checks it
  on every request); the fix is the hash, not the instance;
- ``hash-bound``: most of a listing's CPU is hashing the project's files (``simple-dir`` re-hashes
  them on every listing; ``--hash-algo off`` or ``cached-dir`` avoid it);
- ``CPU-throttled``: the kernel held the server back at its CPU quota in some CFS periods (any:
  the share and the seconds held back say how much);
- ``worker-saturated``: more requests were in flight at the index than the workers can hold
  (sync: one each; gthread: its threads; gevent: gunicorn's ``worker_connections``, 1000).

"Most" is more than half: the cause is the larger part of the cost, not a tuned factor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipstorm.engine.rundir.host import number
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import RequestRecord

#: A listing whose auth check or file hashing is more than this share of its CPU is bound by it.
MOST = 0.5
#: Said of a sizing that passed with the working set spilling: a risk, not a failure here.
PASSED_WITH_REFAULTS = (
    "; passed here, where each refault is read back from this machine's page cache or disk in "
    "microseconds: from EFS each is a network round trip (docs/sizing-lab.md, Memory)"
)
#: Requests one gunicorn worker holds at once, by worker class: sync serves one, gthread its
#: threads (pipstorm starts it with 4), gevent up to ``worker_connections`` (gunicorn's default).
REQUESTS_PER_WORKER = {"sync": 1, "gthread": 4, "gevent": 1000}


@dataclass(frozen=True)
class Diagnosis:
    """One cause: a short name the lab's table shows, and the figures behind it."""

    cause: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """The JSON form."""
        return {"cause": self.cause, "detail": self.detail}


@dataclass(frozen=True)
class TargetSizing:
    """What ``run.json`` recorded about a sized embedded target (see the module docstring)."""

    sizing: Mapping[str, Any]
    cgroup: Mapping[str, Any] | None
    counters: Mapping[str, Any] | None
    unconfined_reason: str | None
    listing_cost: Mapping[str, Any] | None

    @property
    def name(self) -> str:
        """The sizing's name (``baseline``, ``baseline+`` when changed by knobs)."""
        return str(self.sizing.get("name", "?"))

    @property
    def survived(self) -> bool | None:
        """Whether the server lived to the end of the run (None: not sampled)."""
        value = (self.counters or {}).get("survived")
        return value if isinstance(value, bool) else None

    def figure(self, key: str) -> float | None:
        """A number from the counters (``throttled_ratio``, ``oom_kills``, ...), or None."""
        return number((self.counters or {}).get(key))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form for report.json."""
        return {
            "sizing": dict(self.sizing),
            "cgroup": None if self.cgroup is None else dict(self.cgroup),
            "counters": None if self.counters is None else dict(self.counters),
            "unconfined_reason": self.unconfined_reason,
            "listing_cost": None if self.listing_cost is None else dict(self.listing_cost),
        }


def target_sizing(meta: RunMeta) -> TargetSizing | None:
    """The sized target of a run, or None for a run without ``--sizing``."""
    target = meta.target
    sizing = target.get("sizing")
    if not isinstance(sizing, Mapping):
        return None

    def mapping(key: str) -> Mapping[str, Any] | None:
        value = target.get(key)
        return value if isinstance(value, Mapping) else None

    reason = target.get("unconfined_reason")
    return TargetSizing(
        sizing=sizing,
        cgroup=mapping("cgroup"),
        counters=mapping("counters"),
        unconfined_reason=reason if isinstance(reason, str) else None,
        listing_cost=mapping("listing_cost"),
    )


def peak_in_flight(requests: Sequence[RequestRecord]) -> int:
    """The most requests open at the index at one instant (an end before a start at a tie)."""
    edges = sorted(
        [(r.ts, 1) for r in requests] + [(r.end, -1) for r in requests],
        key=lambda edge: (edge[0], edge[1]),
    )
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def diagnose(
    target: TargetSizing,
    *,
    failed: bool,
    generator_saturated: bool,
    peak_in_flight: int | None = None,
) -> tuple[Diagnosis, ...]:
    """Why a sizing failed; for one that passed, only a generator-bound run, a dead server, or a
    working set that spilled (the incident's signature, a risk rather than this run's failure).

    ``peak_in_flight``: the most requests the index held at once (from the request records).
    """
    found: list[Diagnosis] = []
    if generator_saturated:
        found.append(
            Diagnosis(
                "generator-bound",
                "the load generator was the bottleneck: this run says nothing about the sizing",
            )
        )
    # A server OOM-killed or dead is named even when the thresholds passed: its next burst
    # would meet no server at all.
    found += _memory(target)
    if not failed:
        # The incident's signature in a sizing that passed here: a refault costs microseconds
        # from this machine's cache or disk, a network round trip from EFS (baseline, apr1,
        # --payload-kb 2500: 45,402 refaults and p95 listing 1.1 s, 2026-12-06).
        return tuple(found) + tuple(
            Diagnosis(d.cause, d.detail + PASSED_WITH_REFAULTS) for d in _reclaim(target)
        )
    found += _reclaim(target)
    found += _listing(target)
    found += _throttled(target)
    found += _workers(target, peak_in_flight)
    if not [d for d in found if d.cause != "generator-bound"]:
        found.append(Diagnosis("unexplained", "no server-side limit was hit (see the report)"))
    return tuple(found)


def _throttled(target: TargetSizing) -> list[Diagnosis]:
    periods = target.figure("throttled_periods")
    if not periods:
        return []
    throttled = target.figure("throttled_ratio") or 0.0
    total = target.figure("periods")
    cpus = target.sizing.get("cpus")
    # Counts and a share with one decimal: "0 % (0.0 s)" for two throttled periods read as a
    # limit that was not hit; 2 of 439 periods and 3 ms say how little it weighed.
    share = f"{periods:.0f} of {total:.0f} CFS periods" if total else f"{periods:.0f} CFS periods"
    return [
        Diagnosis(
            "CPU-throttled",
            f"throttled in {share} ({100 * throttled:.1f} %, "
            f"{target.figure('throttled_s') or 0:.3g} s held back)"
            + (f" at {cpus:g} vCPU" if isinstance(cpus, int | float) else ""),
        )
    ]


def _reclaim(target: TargetSizing) -> list[Diagnosis]:
    refaults = target.figure("refaults") or 0
    stall = target.figure("memory_stall_s")
    limit = target.sizing.get("memory_mb")
    peak = target.figure("memory_peak_mb")
    # The kernel's hit counter, or the peak at the limit (usage never passes it: the kernel
    # reclaims first; this kernel's v1 failcnt stays 0 even then, measured 2026-12-06).
    hit = bool(target.figure("limit_hits")) or (
        isinstance(limit, int) and peak is not None and peak >= limit
    )
    if not (hit and refaults) and not stall:
        return []
    figures = [
        f"{refaults:.0f} refaults (pages evicted at the limit and needed again)",
        f"{target.figure('major_faults') or 0:.0f} major faults",
        f"the limit hit {target.figure('limit_hits') or 0:.0f} times",
    ]
    if stall is not None:
        figures.append(f"tasks stalled on memory {stall:.1f} s")
    where = f" in {limit} MiB" if isinstance(limit, int) else ""
    return [
        Diagnosis(
            "memory-bound",
            f"the working set did not fit{where}: {', '.join(figures)} (peak {peak or 0:.0f} MiB)",
        )
    ]


def _workers(target: TargetSizing, peak_in_flight: int | None) -> list[Diagnosis]:
    workers, kind = target.sizing.get("workers"), str(target.sizing.get("worker_class"))
    if peak_in_flight is None or not isinstance(workers, int) or kind not in REQUESTS_PER_WORKER:
        return []
    capacity = workers * REQUESTS_PER_WORKER[kind]
    if peak_in_flight <= capacity:
        return []
    return [
        Diagnosis(
            "worker-saturated",
            f"{peak_in_flight} requests in flight at once; {workers} {kind} workers hold "
            f"{capacity}: the rest waited in the listen queue",
        )
    ]


def _memory(target: TargetSizing) -> list[Diagnosis]:
    kills = target.figure("oom_kills") or 0
    peak, limit = target.figure("memory_peak_mb"), target.sizing.get("memory_mb")
    of_limit = f" of {limit} MiB" if isinstance(limit, int) else ""
    if kills:
        died = " and the server died" if target.survived is False else ""
        return [
            Diagnosis(
                "OOM-killed",
                f"{kills:.0f} OOM kill(s) in the cgroup{died} (memory peak {peak or 0:.0f} MiB"
                f"{of_limit}, {target.sizing.get('workers')} workers)",
            )
        ]
    if target.survived is False:
        return [Diagnosis("died", "the server was gone before the end of the run")]
    return []


def _listing(target: TargetSizing) -> list[Diagnosis]:
    cost = target.listing_cost or {}
    sized, no_auth = number(cost.get("as_sized")), number(cost.get("without_auth"))
    no_hash = number(cost.get("without_hashing"))
    found: list[Diagnosis] = []
    if sized and no_auth is not None and (sized - no_auth) / sized > MOST:
        found.append(
            Diagnosis(
                "auth-hash-bound",
                f"{target.sizing.get('auth')}: {1000 * sized:.1f} ms server CPU per listing vs "
                f"{1000 * no_auth:.1f} ms with --auth none ({100 * (sized - no_auth) / sized:.0f} "
                "% of it the password check); the fix is the hash, not the instance",
            )
        )
    if sized and no_hash is not None and (sized - no_hash) / sized > MOST:
        found.append(
            Diagnosis(
                "hash-bound",
                f"hashing the project's files: {1000 * sized:.1f} ms CPU per listing vs "
                f"{1000 * no_hash:.1f} ms with --hash-algo off",
            )
        )
    return found
