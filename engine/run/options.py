"""What ``pipstorm run`` can be told, each value parsed once.

The CLI (and the pytest plugin, the labs) parse their input into these types at the door: the
profile is a ``Profile``, the target a ``TargetSpec``, ``--allow-origin`` a tuple of ``Origin``,
the sizing a ``Sizing``; the launch mode is checked when the options are made. Nothing further
down re-reads a profile file or re-parses a string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipstorm.engine.run.plan.profiles import Profile, check_launch, launch_mode
from pipstorm.engine.run.target.opening import TargetSpec
from pipstorm.infra.proxy.rewrite import Origin
from pipstorm.infra.pypiserver.sizing import Sizing
from pipstorm.packages.spec import CorpusSpec


@dataclass(frozen=True)
class RunOptions:
    """Everything ``pipstorm run`` can be told."""

    profile: Profile
    duration_s: float | None = None
    time_scale: float | None = None
    #: --target / --index-url: a URL, a Terraform root (a deployed AWS stack), or the embedded one.
    target: TargetSpec = field(default_factory=TargetSpec)
    allow_remote_target: bool = False
    # --allow-origin: other origins the proxy may forward to besides those the index links.
    allow_origins: tuple[Origin, ...] = ()
    results_root: Path = Path("results")
    threshold_overrides: tuple[str, ...] = ()
    seed: int = 1
    workers: int | None = None
    run_timeout_s: float = 120.0
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    quiet: bool = False
    #: pipstorm.engine.run.priority.protect_proxy's mode: auto, nice, none.
    proxy_priority: str = "auto"
    client: str | None = None  # --client: every run this kind (else the profile's mix)
    mix: dict[str, float] | None = None  # --mix: kinds and shares
    client_versions: dict[str, str | None] = field(default_factory=dict)  # --pip-version ...
    #: --fault SPEC (pipstorm.infra.faults.spec), before the profile's [[faults]].
    faults: tuple[str, ...] = ()
    count_injected: bool = False  # --count-injected: injected faults count as errors
    #: --force: play a plan pipstorm.engine.run.plan.capacity refuses, with a warning.
    force: bool = False
    aws_role_arn: str | None = None  # --aws-role-arn (else AWS_ROLE_ARN): for CloudWatch
    sizing: Sizing | None = None  # --sizing and its knobs: the embedded target, confined
    allow_unconfined: bool = False  # --allow-unconfined: a sizing without cgroups runs anyway
    probe_listing: bool = False  # measure one listing's server CPU first (the sizing lab)
    launch: str | None = None  # --launch warm|exec (else the profile's, else warm)
    memory_budget_mb: float | None = None  # what prepared runs may hold (default: half free)
    # --allow-generator-bound: a generator-bound run keeps PASS/FAIL, not inconclusive
    allow_generator_bound: bool = False
    abort_on_fail: bool = False  # --abort-on-fail: stop once a threshold cannot pass (live.abort)

    def __post_init__(self) -> None:
        if self.launch is not None:  # bad input is one line before anything starts
            check_launch(self.launch)

    @property
    def launch_mode(self) -> str:
        """``--launch``, else the profile's, else warm."""
        return launch_mode(self.launch, self.profile)
