"""Load profiles: the seed's built-ins, the seed module's x170 incident, and custom ones (TOML).

A profile says how many client runs start on each tick and when bursts come; the schedule
(``pipstorm.engine.run.plan.schedule``) turns it into runs with intended start times. Numbers are
the seed's: a tick every 10 s, every base client starts one run per tick, and on burst ticks (the
first tick, then every burst interval) base x multiplier clients start at once.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipstorm.engine.errors import UsageError
from pipstorm.infra.faults.spec import FaultSpecError, parse_faults, spec_from_table

#: Longer than any load test; a larger number is a typo (or an attempt to exhaust memory).
MAX_DURATION_S = 7 * 24 * 3600.0
#: How client processes start: ``warm`` forks a run from a launcher that has imported the
#: client (``pipstorm.clients.warm``), ``exec`` starts a fresh process per run
#: (``pipstorm.engine.run.pool``). Checked in one place, ``check_launch``.
LAUNCH_MODES = ("warm", "exec")


class ProfileError(UsageError):
    """A profile cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Profile:
    """A load shape. ``thresholds`` overrides the default thresholds (keys of
    pipstorm.engine.analysis.thresholds)."""

    name: str
    description: str
    clients: int
    duration_s: float
    tick_s: float = 10.0
    burst_every_s: float | None = None
    burst_multiplier: int = 1
    client: str = "pip"
    #: Limits by key; None switches a default threshold off (an upload-only profile makes no
    #: listings, so a listing latency threshold could only fail with "no samples").
    thresholds: dict[str, float | None] = field(default_factory=dict)
    #: Client kinds and their shares of the runs (``mix = {pip = 0.6, poetry = 0.4}`` in
    #: TOML; ``clients`` is the run count per tick). Empty: every run is ``client``.
    mix: dict[str, float] = field(default_factory=dict)
    #: Injected fault rules, as SPEC strings (``pipstorm.infra.faults.spec``; ``[[faults]]`` tables
    #: in TOML).
    faults: tuple[str, ...] = ()
    #: How client processes start (``LAUNCH_MODES``); None: warm where a
    #: kind has it. ``--launch`` overrides it.
    launch: str | None = None
    #: Accept a generator-bound run's PASS/FAIL instead of calling it inconclusive
    #: (``pipstorm.engine.analysis.verdict``); ``--allow-generator-bound`` does the same.
    allow_generator_bound: bool = False

    def __post_init__(self) -> None:
        def bad(what: str) -> ProfileError:
            return ProfileError(f"profile {self.name!r}: {what}")

        if not self.name:
            raise ProfileError("profile: name must not be empty")
        if self.clients < 1:
            raise bad(f"clients must be >= 1, got {self.clients}")
        if not self.duration_s > 0 or not math.isfinite(self.duration_s):
            raise bad(f"duration_s must be > 0, got {self.duration_s}")
        if self.duration_s > MAX_DURATION_S:
            raise bad(
                f"duration_s must be at most {MAX_DURATION_S:g} (a week), got {self.duration_s:g}"
            )
        if not self.tick_s > 0:
            raise bad(f"tick_s must be > 0, got {self.tick_s}")
        if self.burst_multiplier < 1:
            raise bad(f"burst_multiplier must be >= 1, got {self.burst_multiplier}")
        if self.burst_every_s is not None and not self.burst_every_s > 0:
            raise bad(f"burst_every_s must be > 0 or absent, got {self.burst_every_s}")
        for kind, share in self.mix.items():
            if isinstance(share, bool) or not isinstance(share, int | float) or not share >= 0:
                raise bad(f"mix: share of {kind!r} must be a number >= 0, got {share!r}")
        if self.mix and not sum(self.mix.values()) > 0:
            raise bad("mix: the shares must not all be 0")
        if self.launch is not None:
            check_launch(self.launch, what=f"profile {self.name!r}: launch")
        if self.burst_every_s is not None and not _is_multiple(self.burst_every_s, self.tick_s):
            raise bad(
                f"burst_every_s ({self.burst_every_s}) must be a multiple of tick_s ({self.tick_s})"
            )

    @property
    def client_mix(self) -> dict[str, float]:
        """The kinds and shares runs are drawn from (``{client: 1.0}`` without a mix)."""
        return dict(self.mix) if self.mix else {self.client: 1.0}

    @property
    def has_bursts(self) -> bool:
        return self.burst_every_s is not None and self.burst_multiplier > 1

    @property
    def peak_clients(self) -> int:
        return self.clients * (self.burst_multiplier if self.has_bursts else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_multiple(value: float, unit: float) -> bool:
    ratio = value / unit
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1


BUILTIN_PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            name="light_load",
            description="Smoke test: 3 clients, steady, no bursts, 5 minutes.",
            clients=3,
            duration_s=300,
        ),
        Profile(
            name="production_incident",
            description=(
                "The 2025-12-27 incident: 3 clients baseline, bursts of x25 (75 clients) "
                "every 60 s, 24 minutes."
            ),
            clients=3,
            duration_s=1440,
            burst_every_s=60,
            burst_multiplier=25,
        ),
        Profile(
            name="heavy_load",
            description="Extreme load: 20 clients, bursts of x5 (100) every 30 s, 10 minutes.",
            clients=20,
            duration_s=600,
            burst_every_s=30,
            burst_multiplier=5,
        ),
        # The seed lineage's upload profiles: the incident's shape with 30 % of the runs
        # publishing (twine upload of a fresh wheel), and a release storm of uploads only.
        Profile(
            name="production_incident_with_uploads",
            description=(
                "production_incident with 30 % of the runs uploading a fresh wheel (twine), "
                "the rest pip downloads: 3 clients, bursts of x25 every 60 s, 24 minutes."
            ),
            clients=3,
            duration_s=1440,
            burst_every_s=60,
            burst_multiplier=25,
            mix={"pip": 0.7, "twine": 0.3},
        ),
        Profile(
            name="upload_storm",
            description=(
                "Every run uploads (twine), like a monorepo release train: 5 uploads every "
                "10 s, bursts of x5 (25 at once) every 60 s, 5 minutes."
            ),
            clients=5,
            duration_s=300,
            burst_every_s=60,
            burst_multiplier=5,
            client="twine",
            thresholds={"p95_listing_ms": None, "p99_download_ms": None, "p95_upload_ms": 5000},
        ),
        # The seed module's current incident (issue 20): infrahouse/terraform-aws-pypiserver,
        # main as of 2026-04 (d646c9c). tests/stress_test.py TEST_PROFILES["production_incident"]:
        # concurrent_clients 3, burst_interval_seconds 60, burst_multiplier 170.0 ("3 x 170 = 510
        # workers"), test_duration_seconds 300; its loop bursts on iteration 0, so at t=0.
        # tests/test_stress.py test_stress_production_incident gates it: error_rate < 0.01,
        # latency_p95 < 15000 ms over ALL requests, error_5xx_count < 10 (docs/SIZING.md quotes
        # the same: "P95 latency: < 15 seconds (burst)", "5xx errors: < 10 per test"). The seed's
        # older per-operation defaults are not the module's gates for it, so they are off.
        Profile(
            name="incident_x170",
            description=(
                "The seed module's current production_incident: 3 clients baseline, bursts of "
                "x170 (510 clients) every 60 s from t=0, 5 minutes; its gates: errors < 1 %, "
                "p95 of all requests < 15 s, fewer than 10 5xx."
            ),
            clients=3,
            duration_s=300,
            burst_every_s=60,
            burst_multiplier=170,
            thresholds={
                "error_rate": 1.0,
                "p95_all_ms": 15000.0,
                "max_5xx": 9.0,
                "p95_listing_ms": None,
                "p99_download_ms": None,
            },
        ),
    )
}

_TOML_KEYS = {
    "name",
    "description",
    "clients",
    "duration_s",
    "tick_s",
    "burst_every_s",
    "burst_multiplier",
    "client",
    "thresholds",
    "mix",
    "faults",
    "launch",
    "allow_generator_bound",
}


def check_launch(mode: str, *, what: str = "--launch") -> str:
    """``mode`` if it is a launch mode (``LAUNCH_MODES``); the one spelling of the refusal."""
    if mode not in LAUNCH_MODES:
        raise ProfileError(f"{what} must be {' or '.join(LAUNCH_MODES)}, got {mode!r}")
    return mode


def launch_mode(asked: str | None, profile: Profile) -> str:
    """The launch mode a run uses: ``--launch``, else the profile's, else warm; checked."""
    return check_launch(asked or profile.launch or "warm")


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name, or a custom one from a ``.toml`` file."""
    if name_or_path in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[name_or_path]
    path = Path(name_or_path)
    if path.suffix != ".toml":
        known = ", ".join(BUILTIN_PROFILES)
        raise ProfileError(f"unknown profile {name_or_path!r} (built-in: {known}; or a .toml file)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from exc
    return profile_from_dict(data, default_name=path.stem, source=str(path))


def profile_from_dict(data: dict[str, Any], *, default_name: str, source: str) -> Profile:
    """Validate a profile table (from TOML) into a Profile, naming the first bad key."""
    if isinstance(data.get("profile"), dict):  # allow a [profile] table as well as top-level keys
        data = {**data["profile"], **{k: v for k, v in data.items() if k != "profile"}}
    unknown = sorted(set(data) - _TOML_KEYS)
    if unknown:
        raise ProfileError(f"profile {source}: unknown key {unknown[0]!r}")
    if "clients" not in data or "duration_s" not in data:
        raise ProfileError(f"profile {source}: 'clients' and 'duration_s' are required")
    thresholds = data.get("thresholds", {})
    if not isinstance(thresholds, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in thresholds.values()
    ):
        raise ProfileError(f"profile {source}: [thresholds] must map names to numbers")
    mix = data.get("mix", {})
    if not isinstance(mix, dict):
        raise ProfileError(f"profile {source}: mix must be a table such as {{pip = 0.6}}")
    expected: dict[str, tuple[type, ...]] = {
        "name": (str,),
        "description": (str,),
        "clients": (int,),
        "duration_s": (int, float),
        "tick_s": (int, float),
        "burst_every_s": (int, float),
        "burst_multiplier": (int,),
        "client": (str,),
        "launch": (str,),
        "allow_generator_bound": (bool,),
    }
    for key, types in expected.items():
        value = data.get(key)
        if value is not None and (
            isinstance(value, bool) != (bool in types) or not isinstance(value, types)
        ):
            raise ProfileError(f"profile {source}: {key} has the wrong type ({value!r})")
    return Profile(
        name=data.get("name", default_name),
        description=data.get("description", f"custom profile from {source}"),
        clients=data["clients"],
        duration_s=float(data["duration_s"]),
        tick_s=float(data.get("tick_s", 10.0)),
        burst_every_s=(
            float(data["burst_every_s"]) if data.get("burst_every_s") is not None else None
        ),
        burst_multiplier=data.get("burst_multiplier", 1),
        client=data.get("client", "pip"),
        thresholds={str(k): float(v) for k, v in thresholds.items()},
        mix={str(k): v for k, v in mix.items()},
        faults=_fault_specs(data.get("faults", []), source),
        launch=data.get("launch"),
        allow_generator_bound=data.get("allow_generator_bound", False),
    )


def _fault_specs(tables: object, source: str) -> tuple[str, ...]:
    """``[[faults]]`` tables (``spec = "..."`` or the keys themselves) or strings, checked."""
    if not isinstance(tables, list):
        raise ProfileError(f"profile {source}: faults must be [[faults]] tables or a list of specs")
    specs: list[str] = []
    try:
        for item in tables:
            if isinstance(item, str):
                specs.append(item)
            elif isinstance(item, dict):
                specs.append(spec_from_table(item, f"profile {source}"))
            else:
                raise FaultSpecError(f"a fault must be a table or a SPEC string, got {item!r}")
        parse_faults(specs)
    except FaultSpecError as exc:
        raise ProfileError(f"profile {source}: {exc}") from None
    return tuple(specs)
