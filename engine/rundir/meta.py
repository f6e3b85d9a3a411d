"""``run.json``: what a run was asked to do and how it went, as one versioned class.

:class:`RunMeta` is the only writer and the only reader of ``run.json``: ``pipstorm run`` and
``pipstorm retry-lab`` fill one in as they go and :meth:`RunMeta.write` it at each step (planned,
started, ended), atomically; reports, traces and charts :meth:`RunMeta.read` it back with every
field's type checked. A field an older version did not write reads as its default, an unknown
key is ignored, so folders from other versions of the same schema stay readable.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from pipstorm.engine.rundir.files import RUN_FILE, write_json_atomic
from pipstorm.engine.rundir.jsonl import RecordError

SCHEMA = 1
SUPPORTED_SCHEMAS = frozenset({SCHEMA})
#: Distributions whose versions a run records (the client versions are in ``clients``).
#: aiohttp stays for run.json's readers (the proxy's HTTP layer before issue 20; "unknown" where
#: it is not installed); httptools parses the proxy's HTTP since.
RECORDED_DISTRIBUTIONS = ("pipstorm", "pypiserver", "aiohttp", "httptools", "virtualenv")


def installed_versions() -> dict[str, str]:
    """Python's and the recorded distributions' versions on this generator."""
    found = {"python": platform.python_version()}
    for dist in RECORDED_DISTRIBUTIONS:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "unknown"
    return found


@dataclass
class ShardMeta:
    """One shard of a run spread over generators (``pipstorm run --shards N``), in ``run.json``.

    ``status``: ``ok`` (played and shipped back), ``lost`` (its worker died: only the records
    the coordinator had pulled before are kept), ``late`` (it could not start by the shared
    start time, so it never started: a shard is never played late), ``interrupted`` (stopped
    with the run), ``failed`` (it raised).
    ``lost_at`` is when the coordinator learnt of the loss (epoch s); ``clock_offset_s`` the
    worker's clock minus the coordinator's at the lowest round trip (``clock_rtt_s``);
    ``dispatch_s`` from submitting the shard to its start on the worker.
    """

    index: int
    runs: list[str] = field(default_factory=list)
    status: str = "pending"
    worker: str | None = None
    host: str | None = None
    clock_offset_s: float | None = None
    clock_rtt_s: float | None = None
    dispatch_s: float | None = None
    started: float | None = None
    ended: float | None = None
    lost_at: float | None = None
    runs_dispatched: int = 0
    error: str | None = None

    @classmethod
    def from_json(cls, data: object, source: str) -> ShardMeta:
        """One ``shards`` entry; RecordError names the field of the wrong type."""
        if not isinstance(data, dict):
            raise RecordError(f"{source}: a shard must be an object, got {data!r}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            value: Any = data.get(f.name)
            if value is None:
                continue
            want: tuple[type, ...] = _SHARD_TYPES.get(f.name, (str,))
            if not _is_json_type(value, want):
                raise RecordError(f"{source}: shard field {f.name!r} has the wrong type")
            if f.name == "runs" and not all(isinstance(r, str) for r in value):
                raise RecordError(f"{source}: shard field 'runs' must list run ids")
            values[f.name] = float(value) if want == (int, float) else value
        if "index" not in values:
            raise RecordError(f"{source}: a shard needs its 'index'")
        return cls(**values)


def _is_json_type(value: object, kinds: tuple[type, ...]) -> bool:
    """``value`` is of one of ``kinds`` (a JSON boolean is never a number)."""
    return not isinstance(value, bool) and isinstance(value, kinds)


_SHARD_TYPES: dict[str, tuple[type, ...]] = {
    "index": (int,),
    "runs_dispatched": (int,),
    "runs": (list,),
    **dict.fromkeys(
        ("clock_offset_s", "clock_rtt_s", "dispatch_s", "started", "ended", "lost_at"), (int, float)
    ),
}


@dataclass
class RunMeta:
    """The content of ``run.json`` (schema 1). Times are epoch seconds.

    ``profile`` is the profile as played (``Profile.to_dict()``, at least ``name``);
    ``thresholds`` None means none were recorded (the defaults apply); ``target`` holds
    ``kind`` (embedded, remote) and ``index_url``; ``clients`` the mix and the version of each
    kind; ``faults`` each injected rule's id and spec; ``priority`` what was applied to clients
    and proxy; ``lab`` what a retry-lab run asked for (None for a load run); ``warnings`` what the
    run was told and did anyway (``--force`` past the capacity check); ``shards`` each shard of
    a run spread over generators (:class:`ShardMeta`); ``launch``
    how client processes started (``mode``, per kind, lead time and measured costs:
    ``pipstorm.engine.run.plan.lead.LeadPlan``; empty for runs written before launch modes);
    ``allow_generator_bound`` whether a generator-bound run was accepted as PASS/FAIL.
    """

    profile: dict[str, Any]
    planned_duration_s: float | None = None
    time_scale: float = 1.0
    tick_s: float | None = None
    burst_ticks_s: list[float] = field(default_factory=list)
    started: float | None = None
    ended: float | None = None
    interrupted: bool = False
    seed: int = 1
    runs_planned: int = 0
    runs_dispatched: int = 0
    thresholds: dict[str, float] | None = None
    target: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=installed_versions)
    clients: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, str]] = field(default_factory=list)
    count_injected: bool = False
    priority: dict[str, Any] = field(default_factory=dict)
    lab: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    #: The shards of a run spread over generators (``--shards N``); empty for a one-machine run.
    shards: list[ShardMeta] = field(default_factory=list)
    launch: dict[str, Any] = field(default_factory=dict)
    #: A generator-bound run keeps its PASS/FAIL (``--allow-generator-bound`` or the profile's
    #: key) instead of being inconclusive (``pipstorm.engine.analysis.verdict``).
    allow_generator_bound: bool = False
    #: How long one client run may take (``--run-timeout``): a target silent for longer fails
    #: the run (pipstorm.engine.analysis.target.failure); None for runs written before it.
    run_timeout_s: float | None = None
    #: ``--abort-on-fail`` stopped the run: ``reason``, ``ts`` and ``at_s`` (seconds into the
    #: run; ``pipstorm.engine.run.live.abort``); None for a run that was not aborted.
    aborted: dict[str, Any] | None = None

    schema: ClassVar[int] = SCHEMA

    @property
    def profile_name(self) -> str:
        """The profile's name ("?" when run.json did not record one)."""
        name = self.profile.get("name")
        return name if isinstance(name, str) else "?"

    @property
    def embedded_target(self) -> bool:
        """Whether the index was pipstorm's own local pypiserver (its CPU is on this host)."""
        return self.target.get("kind") == "embedded"

    @property
    def local_target(self) -> bool:
        """Whether the index ran on the generator's host: embedded, or a loopback URL
        (``target.local``, written since issue 20; older runs: the embedded target only)."""
        return self.embedded_target or self.target.get("local") is True

    def to_json(self) -> dict[str, Any]:
        """The ``run.json`` document, ``schema`` first."""
        return {"schema": self.schema, **asdict(self)}

    def write(self, run_dir: Path) -> None:
        """Replace ``run_dir/run.json`` atomically with this state."""
        write_json_atomic(run_dir / RUN_FILE, self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = RUN_FILE) -> RunMeta:
        """Parse a ``run.json`` document; RecordError names the field of the wrong type."""
        schema = data.get("schema")
        if schema not in SUPPORTED_SCHEMAS:
            raise RecordError(f"{source}: unsupported schema {schema!r} (this version reads 1)")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data or (data[f.name] is None and f.name not in _NULLABLE):
                continue
            values[f.name] = _checked(f.name, data[f.name], source)
        if "shards" in values:
            values["shards"] = [ShardMeta.from_json(s, source) for s in values["shards"]]
        if "profile" not in values:
            values["profile"] = {}
        return cls(**values)

    @classmethod
    def read(cls, run_dir: Path) -> RunMeta:
        """``run_dir/run.json``; RecordError (one line) when it is missing or malformed."""
        if not run_dir.is_dir():
            raise RecordError(f"{run_dir}: no such run directory")
        path = run_dir / RUN_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordError(f"{run_dir}: no {RUN_FILE}, not a pipstorm run directory") from None
        except (ValueError, OSError) as exc:
            raise RecordError(f"{path}: unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise RecordError(f"{path}: expected a JSON object")
        return cls.from_json(data, source=str(path))


_NULLABLE = frozenset(
    {
        "planned_duration_s",
        "tick_s",
        "started",
        "ended",
        "thresholds",
        "lab",
        "run_timeout_s",
        "aborted",
    }
)
_NUMBERS = frozenset(
    {"planned_duration_s", "time_scale", "tick_s", "started", "ended", "run_timeout_s"}
)
_INTS = frozenset({"seed", "runs_planned", "runs_dispatched"})
_BOOLS = frozenset({"interrupted", "count_injected", "allow_generator_bound"})
_OBJECTS = frozenset(
    {
        "profile",
        "target",
        "versions",
        "clients",
        "priority",
        "thresholds",
        "lab",
        "launch",
        "aborted",
    }
)
_LISTS = frozenset({"burst_ticks_s", "faults", "warnings", "shards"})


def _checked(name: str, value: object, source: str) -> Any:  # noqa: ANN401 - checked per field
    """``value`` if it has the JSON type field ``name`` takes, else RecordError."""
    if value is None:
        return None
    ok = (
        (name in _NUMBERS and isinstance(value, int | float) and not isinstance(value, bool))
        or (name in _INTS and isinstance(value, int) and not isinstance(value, bool))
        or (name in _BOOLS and isinstance(value, bool))
        or (name in _OBJECTS and isinstance(value, dict))
        or (name in _LISTS and isinstance(value, list))
    )
    if not ok:
        kind = (
            "a number"
            if name in _NUMBERS
            else "an integer"
            if name in _INTS
            else "true or false"
            if name in _BOOLS
            else "an object"
            if name in _OBJECTS
            else "a list"
        )
        raise RecordError(f"{source}: {name!r} must be {kind}, got {value!r}")
    if name == "thresholds" and isinstance(value, dict):
        bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, int | float)]
        if bad:
            raise RecordError(f"{source}: threshold {bad[0]!r} must be a number")
    if name in _NUMBERS and isinstance(value, int | float):
        return float(value)
    if name == "burst_ticks_s" and isinstance(value, list):
        return [float(t) for t in value if isinstance(t, int | float) and not isinstance(t, bool)]
    return value
