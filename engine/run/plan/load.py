"""A run's plan before anything starts: profile -> thresholds -> clients -> capacity check ->
schedule, and ``run.json`` as written before any load (``pipstorm.engine.run.execute`` plays
it on one machine, ``pipstorm.engine.run.shards.coordinator`` over several)."""

from __future__ import annotations

from dataclasses import dataclass

from pipstorm.engine.analysis import thresholds as thresholds_mod
from pipstorm.engine.run.options import RunOptions
from pipstorm.engine.run.plan import capacity
from pipstorm.engine.run.plan.client_mix import ClientChoice, choose_clients
from pipstorm.engine.run.plan.profiles import Profile
from pipstorm.engine.run.plan.schedule import PlannedRun, Timeline, build_schedule, timeline
from pipstorm.engine.rundir.meta import RunMeta


@dataclass(frozen=True)
class LoadPlan:
    """A run's plan before anything starts: the profile, thresholds, client choice, schedule,
    and the capacity check's warnings (``--force``)."""

    profile: Profile
    limits: dict[str, float]
    choice: ClientChoice
    line: Timeline
    runs: list[PlannedRun]
    warnings: list[str]


def plan_load(options: RunOptions, *, clients_per_machine: int | None = None) -> LoadPlan:
    """Profile -> thresholds -> clients -> capacity check -> schedule, for one machine or for
    shards (``clients_per_machine``: each generator's share of a tick). The capacity check comes
    before the schedule is built: an absurd profile must not exhaust memory building it."""
    profile = options.profile
    limits = thresholds_mod.merge(
        thresholds_mod.DEFAULTS,
        profile.thresholds,
        dict(thresholds_mod.parse_override(text) for text in options.threshold_overrides),
    )
    choice = choose_clients(
        profile, client=options.client, mix=options.mix, versions=options.client_versions
    )
    line = timeline(profile, duration_s=options.duration_s, time_scale=options.time_scale)
    warnings = capacity.check(
        capacity.measure(
            line,
            clients_per_machine or profile.clients,
            profile.burst_multiplier,
            choice.mix,
            warm=options.launch_mode == "warm",
        ),
        force=options.force,
    )
    line, runs = build_schedule(
        profile,
        options.corpus.releases(),
        seed=options.seed,
        duration_s=options.duration_s,
        time_scale=options.time_scale,
        mix=choice.mix,
        pins=choice.pins,
    )
    return LoadPlan(profile, limits, choice, line, runs, warnings)


def initial_meta(
    options: RunOptions, profile: Profile, line: Timeline, planned: int, limits: dict[str, float]
) -> RunMeta:
    """``run.json`` as written before the run; the run fills in start, end and target."""
    return RunMeta(
        profile=profile.to_dict(),
        planned_duration_s=line.duration_s,
        time_scale=line.time_scale,
        tick_s=line.tick_s,
        burst_ticks_s=list(line.burst_ticks),
        seed=options.seed,
        runs_planned=planned,
        thresholds=limits,
        target={"kind": "embedded" if options.target.embedded else "remote"},
        count_injected=options.count_injected,
        allow_generator_bound=options.allow_generator_bound or profile.allow_generator_bound,
        run_timeout_s=options.run_timeout_s,
    )
