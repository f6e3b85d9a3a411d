"""``pipstorm run``: one load run of a profile against a target, judged against thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipstorm.engine.cli.options import (
    AllowGeneratorBoundOpt,
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
from pipstorm.engine.errors import UsageError
from pipstorm.packages.spec import CorpusSpec


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
    allow_generator_bound: AllowGeneratorBoundOpt = False,
) -> None:
    """Run a load profile and judge it against the thresholds."""
    from pipstorm.engine.run.execute import RunOptions, execute_run
    from pipstorm.engine.run.plan.client_mix import parse_mix
    from pipstorm.engine.run.target.opening import parse_target

    if cluster is not None and shards is None:
        raise UsageError("--cluster needs --shards N (how many of its workers to use)")
    if shards is not None and shards < 1:
        raise UsageError(f"--shards must be at least 1, got {shards}")
    if cluster is not None:
        from pipstorm.engine.run.shards.cluster import check_scheduler_address

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
        allow_generator_bound=allow_generator_bound,
    )
    if shards is None:
        raise typer.Exit(execute_run(options).exit_code)
    from pipstorm.engine.run.shards.coordinator import (
        ShardedOptions,
        execute_sharded_run,
        lost_shards,
    )

    result = execute_sharded_run(
        options,
        ShardedOptions(
            shards=shards, cluster=cluster, max_clock_offset_s=max_clock_offset / 1000.0
        ),
    )
    code = result.exit_code
    # A shard that did not play its part means the load was not the profile's: never a pass.
    raise typer.Exit(1 if code == 0 and lost_shards(result.report.run) else code)
