"""``pipstorm run``: one load run of a profile against a target, judged against thresholds.

The command parses each value once, into ``RunOptions`` (``pipstorm.engine.run.options``): the
profile file, the target, the allowed origins, the mix and the sizing; then plays it on this
machine or over shards.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pipstorm.engine.cli.options import (
    AbortOnFailOpt,
    AllowGeneratorBoundOpt,
    AllowOriginOpt,
    AllowRemoteTargetOpt,
    AllowUnconfinedOpt,
    AuthOpt,
    AwsRoleOpt,
    BackendOpt,
    CiOutputs,
    ClientOpt,
    ClusterOpt,
    CountInjectedOpt,
    CpusOpt,
    DashboardAddressOpt,
    DashboardOpt,
    DashboardRemoteOpt,
    DepDepthOpt,
    DepFanOutOpt,
    DurationOpt,
    FaultOpt,
    ForceOpt,
    HashAlgoOpt,
    IndexUrlOpt,
    JunitOpt,
    LaunchOpt,
    MaxClockOffsetOpt,
    MemoryOpt,
    MixOpt,
    PipVersionOpt,
    PoetryVersionOpt,
    ProfileOpt,
    QuietOpt,
    ResultsOpt,
    RunTimeoutOpt,
    SeedOpt,
    ServerWorkersOpt,
    ShardsOpt,
    SizingOpt,
    TargetOpt,
    ThresholdOpt,
    TimeScaleOpt,
    UvVersionOpt,
    WorkerClassOpt,
    WorkersOpt,
    build_sizing,
    check_ci_outputs,
    ci_outputs,
    live_dashboard,
)
from pipstorm.engine.errors import UsageError
from pipstorm.packages.spec import CorpusSpec

if TYPE_CHECKING:
    from pipstorm.engine.report.model import Report
    from pipstorm.engine.run.live.dashboard import Dashboard
    from pipstorm.engine.run.options import RunOptions
    from pipstorm.infra.pypiserver.sizing import SizingKnobs


def run(
    profile: ProfileOpt,
    duration: DurationOpt = None,
    time_scale: TimeScaleOpt = None,
    target: TargetOpt = None,
    index_url: IndexUrlOpt = None,
    allow_remote_target: AllowRemoteTargetOpt = False,
    aws_role_arn: AwsRoleOpt = None,
    allow_origin: AllowOriginOpt = None,
    results: ResultsOpt = Path("results"),
    threshold: ThresholdOpt = None,
    seed: SeedOpt = 1,
    workers: WorkersOpt = None,
    run_timeout: RunTimeoutOpt = 120.0,
    quiet: QuietOpt = False,
    client: ClientOpt = None,
    mix: MixOpt = None,
    pip_version: PipVersionOpt = None,
    poetry_version: PoetryVersionOpt = None,
    uv_version: UvVersionOpt = None,
    dep_fan_out: DepFanOutOpt = 0,
    dep_depth: DepDepthOpt = 0,
    fault: FaultOpt = None,
    count_injected: CountInjectedOpt = False,
    force: ForceOpt = False,
    sizing: SizingOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    server_workers: ServerWorkersOpt = None,
    worker_class: WorkerClassOpt = None,
    auth: AuthOpt = None,
    hash_algo: HashAlgoOpt = None,
    backend: BackendOpt = None,
    allow_unconfined: AllowUnconfinedOpt = False,
    shards: ShardsOpt = None,
    cluster: ClusterOpt = None,
    max_clock_offset: MaxClockOffsetOpt = 20.0,
    launch: LaunchOpt = None,
    allow_generator_bound: AllowGeneratorBoundOpt = False,
    junit: JunitOpt = None,
    abort_on_fail: AbortOnFailOpt = False,
    dashboard: DashboardOpt = False,
    dashboard_address: DashboardAddressOpt = None,
    dashboard_allow_remote: DashboardRemoteOpt = False,
) -> None:
    """Run a load profile and judge it against the thresholds."""
    from pipstorm.engine.run.options import RunOptions
    from pipstorm.engine.run.plan import client_mix, profiles
    from pipstorm.engine.run.target.opening import allowed_origins, parse_target

    ci = CiOutputs(junit, abort_on_fail, dashboard, dashboard_address, dashboard_allow_remote)
    knobs: SizingKnobs = {"cpus": cpus, "memory": memory, "workers": server_workers, "auth": auth}
    knobs |= {"worker_class": worker_class, "hash_algo": hash_algo, "backend": backend}
    options = RunOptions(
        profile=profiles.load_profile(profile),
        duration_s=duration,
        time_scale=time_scale,
        target=parse_target(target, index_url),
        aws_role_arn=aws_role_arn,
        allow_remote_target=allow_remote_target,
        allow_origins=allowed_origins(allow_origin or (), allow_remote=allow_remote_target),
        results_root=results,
        threshold_overrides=tuple(threshold or ()),
        seed=seed,
        workers=workers,
        run_timeout_s=run_timeout,
        quiet=quiet,
        client=client,
        mix=client_mix.parse_mix(mix) if mix is not None else None,
        client_versions={"pip": pip_version, "poetry": poetry_version, "uv": uv_version},
        corpus=CorpusSpec(dep_fan_out=dep_fan_out, dep_depth=dep_depth),
        faults=tuple(fault or ()),
        count_injected=count_injected,
        force=force,
        sizing=build_sizing(sizing, **knobs),
        allow_unconfined=allow_unconfined,
        launch=launch,
        allow_generator_bound=allow_generator_bound,
    )
    raise typer.Exit(_play(options, shards, cluster, max_clock_offset, ci))


def _check_scale_out(shards: int | None, cluster: str | None, max_clock_offset: float) -> None:
    """``--shards``, ``--cluster`` and ``--max-clock-offset`` make sense together."""
    if cluster is not None and shards is None:
        raise UsageError("--cluster needs --shards N (how many of its workers to use)")
    if shards is not None and shards < 1:
        raise UsageError(f"--shards must be at least 1, got {shards}")
    if cluster is not None:
        from pipstorm.engine.run.shards.cluster import check_scheduler_address

        check_scheduler_address(cluster)
    if not max_clock_offset >= 0:
        raise UsageError(f"--max-clock-offset must be >= 0 ms, got {max_clock_offset}")


def _play(
    options: RunOptions,
    shards: int | None,
    cluster: str | None,
    max_clock_offset: float,
    ci: CiOutputs,
) -> int:
    """Checked, the run on this machine or over ``shards`` generators, then what CI reads
    (``--junit``, GitHub's job summary); its exit code."""
    _check_scale_out(shards, cluster, max_clock_offset)
    check_ci_outputs(ci.junit)
    options = replace(options, abort_on_fail=ci.abort_on_fail)
    with live_dashboard(
        ci.dashboard, ci.dashboard_address, allow_remote=ci.dashboard_allow_remote
    ) as board:
        code, report = _execute(options, shards, cluster, max_clock_offset, board)
    ci_outputs(report, ci.junit)
    return code


def _execute(
    options: RunOptions,
    shards: int | None,
    cluster: str | None,
    max_clock_offset: float,
    board: Dashboard | None,
) -> tuple[int, Report]:
    """The run on this machine, or over ``shards`` generators; its exit code and report."""
    if shards is None:
        from pipstorm.engine.run.execute import execute_run

        single = execute_run(options, dashboard=board)
        return single.exit_code, single.report
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
        dashboard=board,
    )
    code = result.exit_code
    # A shard that did not play its part means the load was not the profile's: never a pass.
    return (1 if code == 0 and lost_shards(result.report.run) else code), result.report
