"""Options several commands share, declared once, each in its ``--help`` panel.

The panels (typer's ``rich_help_panel``) group ``pipstorm run --help``'s options by what they
decide; the labs show the options they share with ``run`` under the same panels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Unpack

import typer

from pipstorm.infra.pypiserver.sizing import Sizing, SizingKnobs, custom, preset

if TYPE_CHECKING:
    from pipstorm.engine.report.model import Report
    from pipstorm.engine.run.live.dashboard import Dashboard

#: The ``--help`` panels (typer shows them in the order of their first option).
TARGET_PANEL = "Target"
LOAD_PANEL = "Load"
CLIENTS_PANEL = "Clients"
FAULTS_PANEL = "Faults"
SIZING_PANEL = "Sizing (the embedded target)"
OUTPUT_PANEL = "Output"
SCALE_OUT_PANEL = "Scale-out"
PANELS = (
    TARGET_PANEL,
    LOAD_PANEL,
    CLIENTS_PANEL,
    FAULTS_PANEL,
    SIZING_PANEL,
    OUTPUT_PANEL,
    SCALE_OUT_PANEL,
)

ProfileOpt = Annotated[
    str,
    typer.Option(
        "--profile", help="Built-in profile name or a .toml file.", rich_help_panel=LOAD_PANEL
    ),
]
DurationOpt = Annotated[
    float | None,
    typer.Option(
        "--duration",
        help="Run the first S seconds at the profile's real rates.",
        rich_help_panel=LOAD_PANEL,
    ),
]
TimeScaleOpt = Annotated[
    float | None,
    typer.Option(
        "--time-scale", help="Compress the whole profile F times.", rich_help_panel=LOAD_PANEL
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed", help="Seed for the packages each run asks for.", rich_help_panel=LOAD_PANEL
    ),
]
ResultsOpt = Annotated[
    Path, typer.Option("--results", help="Folder for the results.", rich_help_panel=OUTPUT_PANEL)
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Worker processes of the pool (default: CPU count).",
        rich_help_panel=CLIENTS_PANEL,
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", help="No progress lines.", rich_help_panel=OUTPUT_PANEL)
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="The index: terraform:DIR (a deployed Terraform root: URL, credentials and "
        "CloudWatch from its outputs), url:URL (as --index-url) or embedded (the default).",
        rich_help_panel=TARGET_PANEL,
    ),
]
AwsRoleOpt = Annotated[
    str | None,
    typer.Option(
        "--aws-role-arn",
        help="IAM role to assume (STS) for reading CloudWatch; default: AWS_ROLE_ARN.",
        rich_help_panel=TARGET_PANEL,
    ),
]

# The embedded target's sizing (pipstorm.infra.pypiserver.sizing): a preset and the knobs behind it.
SizingOpt = Annotated[
    str | None,
    typer.Option(
        "--sizing",
        help="Size the embedded target like the seed's deployments and confine it (cgroups): "
        "baseline (t3.micro, 128 MB), optimized (t3.small, 512 MB), heavy (t3.medium, 1024 MB).",
        rich_help_panel=SIZING_PANEL,
    ),
]
CpusOpt = Annotated[
    float | None,
    typer.Option(
        "--cpus", help="Target CPU quota in vCPUs, e.g. 0.2.", rich_help_panel=SIZING_PANEL
    ),
]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory", help="Target memory limit, e.g. 128M, 1G.", rich_help_panel=SIZING_PANEL
    ),
]
WorkerClassOpt = Annotated[
    str | None,
    typer.Option(
        "--worker-class",
        help="gunicorn worker class: gevent or sync.",
        rich_help_panel=SIZING_PANEL,
    ),
]
AuthOpt = Annotated[
    str | None,
    typer.Option(
        "--auth",
        help="htpasswd hash: none, apr1 or bcrypt:COST (e.g. bcrypt:12).",
        rich_help_panel=SIZING_PANEL,
    ),
]
HashAlgoOpt = Annotated[
    str | None,
    typer.Option(
        "--hash-algo",
        help="Hash in the listing links: sha256 or off (pypiserver's).",
        rich_help_panel=SIZING_PANEL,
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="pypiserver backend: simple-dir (the seed's) or cached-dir.",
        rich_help_panel=SIZING_PANEL,
    ),
]
AllowUnconfinedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unconfined",
        help="Run a sized target without limits where cgroups cannot be used (no root).",
        rich_help_panel=SIZING_PANEL,
    ),
]
AllowGeneratorBoundOpt = Annotated[
    bool,
    typer.Option(
        "--allow-generator-bound",
        help="Keep PASS/FAIL when the load generator was the bottleneck (with the warning) "
        "instead of the verdict INCONCLUSIVE, exit 3; run.json records it (docs/verdicts.md).",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
ServerWorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--server-workers",
        help="gunicorn workers of the sized embedded target.",
        rich_help_panel=SIZING_PANEL,
    ),
]


def build_sizing(sizing: str | None, **knobs: Unpack[SizingKnobs]) -> Sizing | None:
    """The sizing asked for: a preset changed by knobs, knobs alone (``custom``), or None."""
    if sizing is None and all(value is None for value in knobs.values()):
        return None
    base = preset(sizing) if sizing is not None else custom(knobs.get("workers") or 2)
    return base.with_knobs(**knobs)


LaunchOpt = Annotated[
    str | None,
    typer.Option(
        "--launch",
        help="warm: runs forked from a launcher that has imported the client, gated at their "
        "instant (default; uv and http always exec); exec: a fresh process per run.",
        rich_help_panel=CLIENTS_PANEL,
    ),
]
ThresholdOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Override a threshold: KEY=VALUE (or KEY=off). Repeatable.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
RunTimeoutOpt = Annotated[
    float,
    typer.Option(help="Seconds before a client run is stopped.", rich_help_panel=CLIENTS_PANEL),
]
ClientOpt = Annotated[
    str | None,
    typer.Option(
        help="Every run this client: pip, poetry, uv, twine or http.", rich_help_panel=CLIENTS_PANEL
    ),
]

# ``pipstorm run``'s own options (the labs declare theirs where their help differs).
IndexUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="Index to load (default: an embedded local pypiserver). "
        "Credentials come from PYPI_USERNAME/PYPI_PASSWORD.",
        rich_help_panel=TARGET_PANEL,
    ),
]
AllowRemoteTargetOpt = Annotated[
    bool,
    typer.Option(
        help="Allow a target (--target, --index-url) that is not a loopback address.",
        rich_help_panel=TARGET_PANEL,
    ),
]
AllowOriginOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Another origin (http(s)://host[:port]) the proxy may forward to, besides the "
        "index and the file hosts its listings link. Repeatable.",
        rich_help_panel=TARGET_PANEL,
    ),
]
MixOpt = Annotated[
    str | None,
    typer.Option(
        help="Client shares, e.g. pip=0.6,poetry=0.4 (default: profile).",
        rich_help_panel=CLIENTS_PANEL,
    ),
]
PipVersionOpt = Annotated[
    str | None, typer.Option(help="Pin pip, e.g. 25.3.", rich_help_panel=CLIENTS_PANEL)
]
PoetryVersionOpt = Annotated[
    str | None, typer.Option(help="Pin poetry, e.g. 2.1.3.", rich_help_panel=CLIENTS_PANEL)
]
UvVersionOpt = Annotated[
    str | None, typer.Option(help="Pin uv, e.g. 0.13.9.", rich_help_panel=CLIENTS_PANEL)
]
DepFanOutOpt = Annotated[
    int,
    typer.Option(
        help="Corpus packages each depend on N others (with --dep-depth).",
        rich_help_panel=LOAD_PANEL,
    ),
]
DepDepthOpt = Annotated[
    int, typer.Option(help="Longest dependency chain in the corpus.", rich_help_panel=LOAD_PANEL)
]
FaultOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Inject a fault: SPEC, e.g. op=listing,status=503,first=3. Repeatable.",
        rich_help_panel=FAULTS_PANEL,
    ),
]
CountInjectedOpt = Annotated[
    bool,
    typer.Option(
        help="Count injected faults as errors in the thresholds.", rich_help_panel=FAULTS_PANEL
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        help="Play a plan this machine cannot prepare or hold (recorded as a warning).",
        rich_help_panel=LOAD_PANEL,
    ),
]
ShardsOpt = Annotated[
    int | None,
    typer.Option(
        help="Spread the run over N generators (Dask workers; without --cluster a local "
        "cluster of N worker processes on 127.0.0.1).",
        rich_help_panel=SCALE_OUT_PANEL,
    ),
]
ClusterOpt = Annotated[
    str | None,
    typer.Option(
        help="tcp://HOST:PORT of a `pipstorm scheduler` (needs --shards).",
        rich_help_panel=SCALE_OUT_PANEL,
    ),
]
MaxClockOffsetOpt = Annotated[
    float,
    typer.Option(
        help="Refuse a worker whose clock is further off (ms; with --shards).",
        rich_help_panel=SCALE_OUT_PANEL,
    ),
]

# CI and the live page (docs/ci.md).
JunitOpt = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        help="Also write the verdict as JUnit XML to FILE (one testsuite per run, one testcase "
        "per threshold), for CI test reporters.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
AbortOnFailOpt = Annotated[
    bool,
    typer.Option(
        "--abort-on-fail",
        help="Stop the run (report of the part that ran, exit 1) once a threshold can no "
        "longer pass: max_5xx exceeded, the error budget spent, the target dead.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
DashboardOpt = Annotated[
    bool,
    typer.Option(
        "--dashboard",
        help="Serve a live page of the run on 127.0.0.1 (a free port; its URL is printed first).",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
DashboardAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--dashboard-address",
        metavar="HOST:PORT",
        help="Serve the live page there instead (implies --dashboard), e.g. 127.0.0.1:5665.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
DashboardRemoteOpt = Annotated[
    bool,
    typer.Option(
        "--dashboard-allow-remote",
        help="Allow --dashboard on an address that is not loopback (anyone reaching it sees "
        "the run).",
        rich_help_panel=OUTPUT_PANEL,
    ),
]


@dataclass(frozen=True)
class CiOutputs:
    """``--junit``, ``--abort-on-fail`` and the ``--dashboard`` options of one command, held
    together so a command's body stays short."""

    junit: Path | None = None
    abort_on_fail: bool = False
    dashboard: bool = False
    dashboard_address: str | None = None
    dashboard_allow_remote: bool = False


@contextmanager
def live_dashboard(
    flag: bool, address: str | None, *, allow_remote: bool
) -> Iterator[Dashboard | None]:
    """``--dashboard`` / ``--dashboard-address``: the live page, up (its URL said) before
    anything else and until the report is out; None when not asked for."""
    from pipstorm.engine.run.live.dashboard import DEFAULT_ADDRESS, open_dashboard

    board = open_dashboard(
        address or (DEFAULT_ADDRESS if flag else None), allow_remote=allow_remote, say=_say
    )
    if board is None:
        yield None
        return
    with board:
        yield board


def check_ci_outputs(junit: Path | None) -> None:
    """Refuse, before any load, a ``--junit`` file that could not be written afterwards."""
    if junit is not None:
        from pipstorm.engine.report.ci.junit import check_junit_path

        check_junit_path(junit)


def ci_outputs(report: Report, junit: Path | None) -> None:
    """What CI reads besides the exit code: ``--junit FILE``, and the report appended to
    GitHub's job summary when ``GITHUB_STEP_SUMMARY`` is set."""
    from pipstorm.engine.report.ci.step_summary import append_report

    append_report(report, _say)
    if junit is not None:
        from pipstorm.engine.report.ci.junit import write_run_junit

        write_run_junit(junit, [report])


def _say(line: str) -> None:
    typer.echo(line, err=True)
