"""Playing a deployment bigger than this machine at 1/K, and the figures its owners published.

``--scale K`` divides the profile's clients by K (``scale_profile``) and the sizing's capacity by
K (``Sizing.scaled``): vCPUs, workers and memory. What one request costs the server (its bcrypt
check, its listing) is unchanged, so under a CPU-bound burst each request meets the same queue
it would meet at full size: N requests on C vCPUs wait as long as N/K on C/K. docs/sizing-lab.md
says what this does not keep.

``PUBLISHED`` holds the figures the seed module published for a profile and deployment, so the
lab can print its prediction beside them and say whether it lands within x2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from pipstorm.engine.analysis.stats import RequestStats
from pipstorm.engine.run.plan.profiles import Profile

#: A prediction "lands" when its p95 is within this factor of the published one (issue 21's
#: acceptance: "within x2 of the published p95"), with the error rate under the module's 1 %.
WITHIN_FACTOR: Final = 2.0
ERROR_RATE_GATE: Final = 1.0  # percent: the module's test_stress.py gate, docs/SIZING.md 249


@dataclass(frozen=True)
class Published:
    """What the module's documents say one deployment did under one profile."""

    source: str
    requests: int
    error_rate: float  # percent
    p95_ms: float
    p99_ms: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form for sizing-lab.json."""
        return asdict(self)


#: (profile, preset) -> the published figures. infrahouse/terraform-aws-pypiserver d646c9c.
PUBLISHED: Final = {
    ("incident_x170", "validated"): Published(
        source=(
            "infrahouse/terraform-aws-pypiserver docs/SIZING.md 127-131 (2 x c6a.xlarge, "
            "stress_test.py production_incident x170): 3 failures / 6,273 requests, P95 14 s, "
            "P99 20 s"
        ),
        requests=6273,
        error_rate=0.05,
        p95_ms=14000.0,
        p99_ms=20000.0,
    ),
}


def fitting_scale(cpus: float | None, cores: int) -> int:
    """The smallest K at which ``cpus`` / K leaves one of ``cores`` to the load generator (1 when
    the sizing has no CPU limit or the machine has one core: nothing to leave)."""
    room = cores - 1
    if cpus is None or room < 1 or cpus <= room:
        return 1
    return math.ceil(cpus / room - 1e-9)


def scale_profile(profile: Profile, k: int) -> Profile:
    """The profile with 1/k of its clients: the steady clients per tick and the burst's peak
    each divided by k and rounded (at least one client; the peak a whole multiple of them)."""
    if k == 1:
        return profile
    clients = max(1, round(profile.clients / k))
    multiplier = profile.burst_multiplier
    if profile.has_bursts:
        peak = max(clients, round(profile.peak_clients / k))
        multiplier = max(1, round(peak / clients))
    return replace(
        profile,
        clients=clients,
        burst_multiplier=multiplier,
        description=f"{profile.description} Played at 1/{k} scale: {clients} clients, "
        f"bursts of {clients * multiplier} (full size {profile.clients}, {profile.peak_clients}).",
    )


@dataclass(frozen=True)
class Prediction:
    """The lab's figures for one sizing beside the published ones."""

    published: Published
    scale: int
    requests: int
    error_rate: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def p95_ratio(self) -> float | None:
        """Predicted over published p95 (1.0: the same)."""
        return None if self.p95_ms is None else self.p95_ms / self.published.p95_ms

    @property
    def lands(self) -> bool:
        """Within x2 of the published p95, and under the 1 % error gate."""
        ratio = self.p95_ratio
        return (
            ratio is not None
            and 1 / WITHIN_FACTOR <= ratio <= WITHIN_FACTOR
            and self.error_rate is not None
            and self.error_rate < ERROR_RATE_GATE
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form for sizing-lab.json."""
        return {
            "scale": self.scale,
            "requests": self.requests,
            "requests_times_scale": self.requests * self.scale,
            "error_rate": self.error_rate,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "p95_ratio": None if self.p95_ratio is None else round(self.p95_ratio, 3),
            "within_x2": self.lands,
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """(figure, predicted, published) rows for the lab's Markdown and terminal."""
        published = self.published
        return [
            (
                f"requests (x{self.scale})" if self.scale > 1 else "requests",
                f"{self.requests * self.scale:,}",
                f"{published.requests:,}",
            ),
            ("error rate", _percent(self.error_rate), _percent(published.error_rate)),
            ("p95, all requests", _seconds(self.p95_ms), _seconds(published.p95_ms)),
            ("p99, all requests", _seconds(self.p99_ms), _seconds(published.p99_ms)),
        ]


def predict(profile: str, preset: str, scale: int, stats: RequestStats) -> Prediction | None:
    """The prediction for a sizing of a named preset, when its figures were published."""
    published = PUBLISHED.get((profile, preset))
    if published is None:
        return None
    return Prediction(
        published=published,
        scale=scale,
        requests=stats.count,
        error_rate=stats.error_rate,
        p95_ms=stats.latency_p95,
        p99_ms=stats.latency_p99,
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


def _seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s"
