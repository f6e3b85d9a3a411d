"""The labs: ``realism``, ``retry-lab``, ``sizing-lab`` (each plays runs through the run's own
lifecycle and compares or explains them)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipstorm.engine.cli.options import (
    CLIENTS_PANEL,
    FAULTS_PANEL,
    SIZING_PANEL,
    AllowGeneratorBoundOpt,
    AllowUnconfinedOpt,
    AuthOpt,
    BackendOpt,
    ClientOpt,
    CpusOpt,
    DashboardAddressOpt,
    DashboardOpt,
    DashboardRemoteOpt,
    DurationOpt,
    HashAlgoOpt,
    JunitOpt,
    LaunchOpt,
    MemoryOpt,
    ProfileOpt,
    QuietOpt,
    ResultsOpt,
    RunTimeoutOpt,
    SeedOpt,
    ServerWorkersOpt,
    ThresholdOpt,
    TimeScaleOpt,
    WorkerClassOpt,
    WorkersOpt,
    check_ci_outputs,
    live_dashboard,
)
from pipstorm.engine.errors import UsageError

if TYPE_CHECKING:
    from pipstorm.engine.workflows.sizing_lab import SizingLab


def realism(
    profile: ProfileOpt,
    duration: DurationOpt = None,
    time_scale: TimeScaleOpt = None,
    client: Annotated[
        str | None,
        typer.Option(
            help="The real side: every run this client (default: profile).",
            rich_help_panel=CLIENTS_PANEL,
        ),
    ] = None,
    mix: Annotated[
        str | None,
        typer.Option(
            help="The real side's shares, e.g. pip=0.6,...", rich_help_panel=CLIENTS_PANEL
        ),
    ] = None,
    seed: SeedOpt = 1,
    results: ResultsOpt = Path("results"),
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
    launch: LaunchOpt = None,
) -> None:
    """Play a profile with the synthetic client, then with real clients, and compare them."""
    from pipstorm.engine.report.realism import terminal_summary
    from pipstorm.engine.run.execute import EXIT_INTERRUPTED
    from pipstorm.engine.run.plan.client_mix import parse_mix
    from pipstorm.engine.run.plan.profiles import load_profile
    from pipstorm.engine.workflows.realism import RealismOptions, run_realism

    found = run_realism(
        RealismOptions(
            profile=load_profile(profile),
            duration_s=duration,
            time_scale=time_scale,
            client=client,
            mix=parse_mix(mix) if mix is not None else None,
            seed=seed,
            results_root=results,
            workers=workers,
            quiet=quiet,
            launch=launch,
        )
    )
    typer.echo(terminal_summary(found))
    raise typer.Exit(EXIT_INTERRUPTED if found.interrupted else 0)


def retry_lab(
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Inject a fault: SPEC (see README). Repeatable.", rich_help_panel=FAULTS_PANEL
        ),
    ] = None,
    client: Annotated[
        str, typer.Option(help="The client kind.", rich_help_panel=CLIENTS_PANEL)
    ] = "pip",
    client_version: Annotated[
        list[str] | None,
        typer.Option(
            help="A client version to try; repeat to compare.", rich_help_panel=CLIENTS_PANEL
        ),
    ] = None,
    client_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="Arguments added to the client's command, e.g. '--retries 2'.",
            rich_help_panel=CLIENTS_PANEL,
        ),
    ] = None,
    package: Annotated[
        str | None, typer.Option(help="NAME==VERSION to ask for (default: the first release).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for fault probabilities.")] = 1,
    run_timeout: RunTimeoutOpt = 120.0,
    results: ResultsOpt = Path("results"),
    launch: LaunchOpt = None,
) -> None:
    """Run one client (once per --client-version) under injected faults and print its timeline."""

    from pipstorm.engine.workflows.retry_lab import LabOptions, run_lab

    try:
        extra = tuple(arg for text in client_arg or () for arg in shlex.split(text))
    except ValueError as exc:
        raise UsageError(f"--client-arg: {exc}") from None
    options = LabOptions(
        client=client,
        versions=tuple(client_version) if client_version else (None,),
        faults=tuple(fault or ()),
        client_args=extra,
        package=package,
        seed=seed,
        run_timeout_s=run_timeout,
        results_root=results,
        launch=launch or "warm",
    )
    lab = run_lab(options, lambda line: typer.echo(line, err=True))
    typer.echo(lab.render())


SizesOpt = Annotated[
    str,
    typer.Option(
        help="Comma-separated sizings, each a preset with optional /KNOB=VALUE changes, "
        "e.g. baseline,optimized or optimized,optimized/auth=bcrypt:12.",
        rich_help_panel=SIZING_PANEL,
    ),
]


def sizing_lab(
    profile: ProfileOpt,
    sizes: SizesOpt = "baseline,optimized,heavy",
    duration: DurationOpt = None,
    time_scale: TimeScaleOpt = None,
    results: ResultsOpt = Path("results"),
    client: ClientOpt = None,
    threshold: ThresholdOpt = None,
    seed: SeedOpt = 1,
    workers: WorkersOpt = None,
    run_timeout: RunTimeoutOpt = 120.0,
    quiet: QuietOpt = False,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    server_workers: ServerWorkersOpt = None,
    worker_class: WorkerClassOpt = None,
    auth: AuthOpt = None,
    hash_algo: HashAlgoOpt = None,
    backend: BackendOpt = None,
    allow_unconfined: AllowUnconfinedOpt = False,
    allow_generator_bound: AllowGeneratorBoundOpt = False,
    payload_kb: Annotated[
        int,
        typer.Option(
            min=0,
            help="KiB of data in every corpus wheel (the module's stress corpus averages "
            "2500: 1-5000 KB each); large corpora show the memory limit's page cache.",
        ),
    ] = 0,
    scale: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Play 1/K of the profile's clients against 1/K of each sizing's CPU, workers "
            "and memory: a deployment bigger than this machine, e.g. validated at 8. Default: "
            "the smallest K that leaves the clients a core (said when not 1); 1 forces full size.",
            rich_help_panel=SIZING_PANEL,
        ),
    ] = None,
    junit: JunitOpt = None,
    dashboard: DashboardOpt = False,
    dashboard_address: DashboardAddressOpt = None,
    dashboard_allow_remote: DashboardRemoteOpt = False,
) -> None:
    """Run a profile against each sizing (fresh target each) and say why the failing ones fail."""
    from pipstorm.engine.run.execute import EXIT_INTERRUPTED, RunOptions
    from pipstorm.engine.run.plan.profiles import load_profile
    from pipstorm.engine.workflows.sizing_lab import SizingLabOptions, run_sizing_lab
    from pipstorm.infra.pypiserver.sizing import SizingKnobs
    from pipstorm.packages.spec import CorpusSpec

    knobs: SizingKnobs = {"cpus": cpus, "memory": memory, "workers": server_workers, "auth": auth}
    knobs |= {"worker_class": worker_class, "hash_algo": hash_algo, "backend": backend}
    check_ci_outputs(junit)
    options = SizingLabOptions(
        run=RunOptions(
            profile=load_profile(profile),
            duration_s=duration,
            time_scale=time_scale,
            results_root=results,
            threshold_overrides=tuple(threshold or ()),
            seed=seed,
            workers=workers,
            run_timeout_s=run_timeout,
            quiet=quiet,
            client=client,
            allow_unconfined=allow_unconfined,
            allow_generator_bound=allow_generator_bound,
            corpus=CorpusSpec(payload_kb=payload_kb),
        ),
        sizes=tuple(s for s in sizes.split(",") if s.strip()),
        knobs={key: value for key, value in knobs.items() if value is not None},
        scale=scale,
    )
    with live_dashboard(dashboard, dashboard_address, allow_remote=dashboard_allow_remote) as board:
        lab = run_sizing_lab(replace(options, dashboard=board), _say)
    _lab_outputs(lab, junit)
    raise typer.Exit(EXIT_INTERRUPTED if lab.interrupted else 0)


def _lab_outputs(lab: SizingLab, junit: Path | None) -> None:
    """The comparison on stdout; ``--junit FILE`` and GitHub's job summary for CI."""
    from pipstorm.engine.report.ci.step_summary import append_markdown
    from pipstorm.engine.workflows.sizing_lab import LAB_MD, write_lab_junit

    typer.echo(lab.render())
    if junit is not None:
        write_lab_junit(junit, lab)
    append_markdown((lab.lab_dir / LAB_MD).read_text(encoding="utf-8"), _say)


def _say(line: str) -> None:
    typer.echo(line, err=True)
