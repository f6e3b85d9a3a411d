"""A profile becomes a list of planned client runs, each with its intended start.

The model is open: the schedule is fixed before the run starts and never waits for a run to
finish, so a slow index shows up as longer runs and more runs in flight, not as fewer runs
(locust's closed-loop users hide exactly that: coordinated omission).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pipstorm.engine.run.plan.profiles import Profile, ProfileError


@dataclass(frozen=True)
class PlannedRun:
    """One client run the schedule asks for, ``offset_s`` after the start of the run."""

    run_id: str
    offset_s: float
    tick: int
    burst: bool
    client: str
    project: str
    version: str
    #: Further pinned releases a resolving client (poetry, uv) locks with the first one.
    requirements: tuple[tuple[str, str], ...] = ()
    #: This run's client version, over the kind's (``pipstorm replay``: the logged user agent's).
    client_version: str | None = None


@dataclass(frozen=True)
class Timeline:
    """How a profile is played: its tick and burst cadence and how long, after scaling."""

    duration_s: float
    tick_s: float
    burst_every_s: float | None
    time_scale: float

    @property
    def burst_ticks(self) -> list[float]:
        """Offsets of the ticks that carry a burst, for marking charts and tests."""
        if self.burst_every_s is None:
            return []
        every = round(self.burst_every_s / self.tick_s)
        return [i * self.tick_s for i in range(self.ticks) if i % every == 0]

    @property
    def ticks(self) -> int:
        # A tick at offset t belongs to the run when t < duration (300 s / 10 s = 30 ticks).
        return max(1, math.ceil(self.duration_s / self.tick_s - 1e-9))


def timeline(
    profile: Profile, *, duration_s: float | None = None, time_scale: float | None = None
) -> Timeline:
    """``duration_s``: the first S seconds at the profile's real rates and cadence;
    ``time_scale``: the whole profile compressed F times (ticks and bursts F times as often)."""
    if duration_s is not None and time_scale is not None:
        raise ProfileError("give --duration or --time-scale, not both")
    if duration_s is not None:
        if not duration_s > 0:
            raise ProfileError(f"--duration must be > 0, got {duration_s}")
        return Timeline(
            duration_s=min(duration_s, profile.duration_s),
            tick_s=profile.tick_s,
            burst_every_s=profile.burst_every_s if profile.has_bursts else None,
            time_scale=1.0,
        )
    scale = 1.0 if time_scale is None else time_scale
    if not scale > 0 or not math.isfinite(scale):
        raise ProfileError(f"--time-scale must be > 0, got {time_scale}")
    return Timeline(
        duration_s=profile.duration_s / scale,
        tick_s=profile.tick_s / scale,
        burst_every_s=(
            profile.burst_every_s / scale
            if profile.has_bursts and profile.burst_every_s is not None
            else None
        ),
        time_scale=scale,
    )


def build_schedule(
    profile: Profile,
    releases: list[tuple[str, str]],
    *,
    seed: int,
    duration_s: float | None = None,
    time_scale: float | None = None,
    mix: dict[str, float] | None = None,
    pins: dict[str, int] | None = None,
) -> tuple[Timeline, list[PlannedRun]]:
    """Every run of the profile, in start order; the packages are picked at random under ``seed``
    so that two runs with the same seed ask for the same releases in the same order.

    ``mix`` (default: the profile's) gives each run its client kind, drawn under ``seed`` too;
    ``pins`` says how many releases a run of a kind asks for (default 1: pip's one download).
    The kind and the extra pins come from their own random streams, so a single-client
    schedule picks exactly the releases it picked before mixes existed.
    """
    if not releases:
        raise ProfileError("the corpus has no releases to ask for")
    line = timeline(profile, duration_s=duration_s, time_scale=time_scale)
    rng = random.Random(seed)
    shares = mix if mix is not None else profile.client_mix
    kinds = [kind for kind, share in shares.items() if share > 0]
    weights = [shares[kind] for kind in kinds]
    kind_rng = random.Random(f"client-mix:{seed}")
    by_project: dict[str, list[str]] = {}
    for project, version in releases:
        by_project.setdefault(project, []).append(version)
    burst_ticks = set(line.burst_ticks)
    runs: list[PlannedRun] = []
    for tick in range(line.ticks):
        offset = tick * line.tick_s
        burst = offset in burst_ticks
        count = profile.clients * (profile.burst_multiplier if burst else 1)
        for _ in range(count):
            project, version = rng.choice(releases)
            run_id = f"r{len(runs):05d}"
            client = kinds[0] if len(kinds) == 1 else kind_rng.choices(kinds, weights)[0]
            wanted = (pins or {}).get(client, 1)
            runs.append(
                PlannedRun(
                    run_id=run_id,
                    offset_s=offset,
                    tick=tick,
                    burst=burst,
                    client=client,
                    project=project,
                    version=version,
                    requirements=_more_pins(by_project, project, wanted - 1, f"{seed}:{run_id}"),
                )
            )
    return line, runs


def _more_pins(
    by_project: dict[str, list[str]], first: str, count: int, seed: str
) -> tuple[tuple[str, str], ...]:
    """``count`` releases of other projects than ``first`` (one per project: a lock cannot pin
    two versions of one project), or as many as the corpus has."""
    if count <= 0:
        return ()
    rng = random.Random(f"pins:{seed}")
    others = sorted(p for p in by_project if p != first)
    return tuple(
        (p, rng.choice(by_project[p])) for p in rng.sample(others, min(count, len(others)))
    )
