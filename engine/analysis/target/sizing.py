"""The embedded target's sizing over a run, and why a sizing failed: the lab's diagnosis.

``run.json``'s ``target`` records, for a run with ``--sizing``: the sizing (``sizing``), the
cgroup it ran in (``cgroup``: version and the limits the kernel held), the cgroup's counters
over the run (``counters``: CPU used and throttled, memory peak, OOM kills, whether the server
survived), why it ran unconfined if it did, and, in the sizing lab, what one listing costs the
server with and without its auth hash and its file hashing (``listing_cost``).

The diagnosis names what held a failing sizing back, most decisive first:

- ``generator-bound``: the load generator was the bottleneck; the verdict says nothing about the
  index, so it is inconclusive (``pipstorm.engine.analysis.verdict``; listed even when the
  thresholds passed, and when ``--allow-generator-bound`` kept the PASS/FAIL);
- ``OOM-killed`` / ``died``: the kernel's OOM counter moved, or the server was gone before the
  end: every failure after that is the memory's, not the CPU's;
- ``auth-hash-bound``: a listing costs the server far more CPU than with ``--auth none`` (bcrypt
  checks the password on every request); the fix is the hash, not the instance;
- ``hash-bound``: most of a listing's CPU is hashing the project's files (``simple-dir`` re-hashes
  them on every listing; ``--hash-algo off`` or ``cached-dir`` avoid it);
- ``CPU-throttled``: the server wanted more CPU than its quota in a good share of the periods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipstorm.engine.rundir.host import number
from pipstorm.engine.rundir.meta import RunMeta

#: Share of CFS periods throttled above which a failing sizing is called CPU-throttled.
THROTTLED_SHARE = 0.2
#: A listing costing this many times its ``--auth none`` figure is auth-hash-bound...
AUTH_FACTOR = 10.0
#: ...or, for file hashing, this share of its CPU spent hashing is hash-bound.
HASHING_SHARE = 0.5


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


def diagnose(
    target: TargetSizing, *, failed: bool, generator_saturated: bool
) -> tuple[Diagnosis, ...]:
    """Why a sizing failed; for one that passed, only a generator-bound run or a dead server."""
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
        return tuple(found)
    found += _listing(target)
    throttled = target.figure("throttled_ratio")
    if throttled is not None and throttled >= THROTTLED_SHARE:
        cpus = target.sizing.get("cpus")
        found.append(
            Diagnosis(
                "CPU-throttled",
                f"throttled in {100 * throttled:.0f} % of CFS periods "
                f"({target.figure('throttled_s') or 0:.1f} s held back)"
                + (f" at {cpus:g} vCPU" if isinstance(cpus, int | float) else ""),
            )
        )
    if not [d for d in found if d.cause != "generator-bound"]:
        found.append(Diagnosis("unexplained", "no server-side limit was hit (see the report)"))
    return tuple(found)


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
    if sized is not None and no_auth is not None and sized > AUTH_FACTOR * max(no_auth, 1e-6):
        found.append(
            Diagnosis(
                "auth-hash-bound",
                f"{target.sizing.get('auth')}: {1000 * sized:.1f} ms server CPU per listing vs "
                f"{1000 * no_auth:.1f} ms with --auth none; the fix is the hash, not the instance",
            )
        )
    if sized and no_hash is not None and (sized - no_hash) / sized >= HASHING_SHARE:
        found.append(
            Diagnosis(
                "hash-bound",
                f"hashing the project's files: {1000 * sized:.1f} ms CPU per listing vs "
                f"{1000 * no_hash:.1f} ms with --hash-algo off",
            )
        )
    return found
