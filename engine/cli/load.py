"""Commands that send load: ``run``, ``realism``, ``retry-lab``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.options import (
    AllowUnconfinedOpt,
    AuthOpt,
    AwsRoleOpt,
    BackendOpt,
    ClientOpt,
    CpusOpt,
    DurationOpt,
    HashAlgoOpt,
    LaunchOpt,
    MemoryOpt,
    ProfileOpt,
    QuietOpt,
    ResultsOpt,
    RunTimeoutOpt,
    SeedOpt,
    ServerWorkersOpt,
    SizingOpt,
    TargetOpt,
    ThresholdOpt,
    TimeScaleOpt,
    WorkerClassOpt,
    WorkersOpt,
    build_sizing,
)
from engine.errors import UsageError
from packages.spec import CorpusSpec


def run(
    profile: ProfileOpt,
    duration: DurationOpt = None,
    time_scale: TimeScaleOpt = None,
    target: TargetOpt = None,
    index_url: Annotated[
        str | None,
        typer.Option(
            help="Index to load (default: an embedded local pypiserver). "
            "Credentials come from PYPI_USERNAME/PYPI_PASSWORD."
        ),
    ] = None,
    allow_remote_target: Annotated[
        bool,
        typer.Option(help="Allow a target (--target, --index-url) that is not a loopback address."),
    ] = False,
    aws_role_arn: AwsRoleOpt = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Another origin (http(s)://host[:port]) the proxy may forward to, besides the "
            "index and the file hosts its listings link. Repeatable."
        ),
    ] = None,
    results: ResultsOpt = Path("results"),
    threshold: ThresholdOpt = None,
    seed: SeedOpt = 1,
    workers: WorkersOpt = None,
    run_timeout: RunTimeoutOpt = 120.0,
    quiet: QuietOpt = False,
    client: ClientOpt = None,
    mix: Annotated[
        str | None, typer.Option(help="Client shares, e.g. pip=0.6,poetry=0.4 (default: profile).")
    ] = None,
    pip_version: Annotated[str | None, typer.Option(help="Pin pip, e.g. 25.3.")] = None,
    poetry_version: Annotated[str | None, typer.Option(help="Pin poetry, e.g. 2.1.3.")] = None,
    uv_version: Annotated[str | None, typer.Option(help="Pin uv, e.g. 0.13.9.")] = None,
    dep_fan_out: Annotated[
        int, typer.Option(help="Corpus packages each depend on N others (with --dep-depth).")
    ] = 0,
    dep_depth: Annotated[int, typer.Option(help="Longest dependency chain in the corpus.")] = 0,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="Inject a fault: SPEC, e.g. op=listing,status=503,first=3. Repeatable."),
    ] = None,
    count_injected: Annotated[
        bool, typer.Option(help="Count injected faults as errors in the thresholds.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="Play a plan this machine cannot prepare or hold (recorded as a warning)."
        ),
    ] = False,
    sizing: SizingOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    server_workers: ServerWorkersOpt = None,
    worker_class: WorkerClassOpt = None,
    auth: AuthOpt = None,
    hash_algo: HashAlgoOpt = None,
    backend: BackendOpt = None,
    allow_unconfined: AllowUnconfinedOpt = False,
    shards: Annotated[
        int | None,
        typer.Option(
            help="Spread the run over N generators (Dask workers; without --cluster a local "
            "cluster of N worker processes on 127.0.0.1)."
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(help="tcp://HOST:PORT of a `pipstorm scheduler` (needs --shards)."),
    ] = None,
    max_clock_offset: Annotated[
        float,
        typer.Option(help="Refuse a worker whose clock is further off (ms; with --shards)."),
    ] = 20.0,
    launch: LaunchOpt = None,
) -> None:
    """Run a load profile and judge it against the thresholds."""
    from engine.run.client_mix import parse_mix
    from engine.run.execute import RunOptions, execute_run
    from engine.run.target import parse_target

    if cluster is not None and shards is None:
        raise UsageError("--cluster needs --shards N (how many of its workers to use)")
    if shards is not None and shards < 1:
        raise UsageError(f"--shards must be at least 1, got {shards}")
    if cluster is not None:
        from engine.run.cluster import check_scheduler_address

        check_scheduler_address(cluster)
    if not max_clock_offset >= 0:
        raise UsageError(f"--max-clock-offset must be >= 0 ms, got {max_clock_offset}")
    spec = parse_target(target, index_url)
    options = RunOptions(
        profile=profile,
        duration_s=duration,
        time_scale=time_scale,
        index_url=spec.index_url,
        terraform_dir=spec.terraform_dir,
        aws_role_arn=aws_role_arn,
        allow_remote_target=allow_remote_target,
        allow_origins=tuple(allow_origin or ()),
        results_root=results,
        threshold_overrides=tuple(threshold or ()),
        seed=seed,
        workers=workers,
        run_timeout_s=run_timeout,
        quiet=quiet,
        client=client,
        mix=parse_mix(mix) if mix is not None else None,
        client_versions={"pip": pip_version, "poetry": poetry_version, "uv": uv_version},
        corpus=CorpusSpec(dep_fan_out=dep_fan_out, dep_depth=dep_depth),
        faults=tuple(fault or ()),
        count_injected=count_injected,
        force=force,
        sizing=build_sizing(
            sizing,
            cpus=cpus,
            memory=memory,
            workers=server_workers,
            worker_class=worker_class,
            auth=auth,
            hash_algo=hash_algo,
            backend=backend,
        ),
        allow_unconfined=allow_unconfined,
        launch=launch,
    )
    if shards is None:
        raise typer.Exit(execute_run(options).exit_code)
    from engine.run.sharded import ShardedOptions, execute_sharded_run, lost_shards

    result = execute_sharded_run(
        options,
        ShardedOptions(
            shards=shards, cluster=cluster, max_clock_offset_s=max_clock_offset / 1000.0
        ),
    )
    code = result.exit_code
    # A shard that did not play its part means the load was not the profile's: never a pass.
    raise typer.Exit(1 if code == 0 and lost_shards(result.report.run) else code)


def realism(
    profile: ProfileOpt,
    duration: DurationOpt = None,
    time_scale: TimeScaleOpt = None,
    client: Annotated[
        str | None, typer.Option(help="The real side: every run this client (default: profile).")
    ] = None,
    mix: Annotated[
        str | None, typer.Option(help="The real side's shares, e.g. pip=0.6,...")
    ] = None,
    seed: SeedOpt = 1,
    results: ResultsOpt = Path("results"),
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
    launch: LaunchOpt = None,
) -> None:
    """Play a profile with the synthetic client, then with real clients, and compare them."""
    from engine.report.realism import terminal_summary
    from engine.run.client_mix import parse_mix
    from engine.run.execute import EXIT_INTERRUPTED
    from engine.workflows.realism import RealismOptions, run_realism

    found = run_realism(
        RealismOptions(
            profile=profile,
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
        list[str] | None, typer.Option(help="Inject a fault: SPEC (see README). Repeatable.")
    ] = None,
    client: Annotated[str, typer.Option(help="The client kind.")] = "pip",
    client_version: Annotated[
        list[str] | None, typer.Option(help="A client version to try; repeat to compare.")
    ] = None,
    client_arg: Annotated[
        list[str] | None,
        typer.Option(help="Arguments added to the client's command, e.g. '--retries 2'."),
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

    from engine.workflows.retry_lab import LabOptions, run_lab

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


def sizing_lab(
    profile: ProfileOpt,
    sizes: Annotated[
        str,
        typer.Option(
            help="Comma-separated sizings, each a preset with optional /KNOB=VALUE changes, "
            "e.g. baseline,optimized or optimized,optimized/auth=bcrypt:12."
        ),
    ] = "baseline,optimized,heavy",
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
) -> None:
    """Run a profile against each sizing (fresh target each) and say why the failing ones fail."""
    from engine.run.execute import EXIT_INTERRUPTED, RunOptions
    from engine.workflows.sizing_lab import SizingLabOptions, run_sizing_lab

    knobs = {
        key: value
        for key, value in {
            "cpus": cpus,
            "memory": memory,
            "workers": server_workers,
            "worker_class": worker_class,
            "auth": auth,
            "hash_algo": hash_algo,
            "backend": backend,
        }.items()
        if value is not None
    }
    lab = run_sizing_lab(
        SizingLabOptions(
            run=RunOptions(
                profile=profile,
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
            ),
            sizes=tuple(s for s in sizes.split(",") if s.strip()),
            knobs=knobs,
        ),
        lambda line: typer.echo(line, err=True),
    )
    typer.echo(lab.render())
    raise typer.Exit(EXIT_INTERRUPTED if lab.interrupted else 0)
