"""A plan this machine cannot prepare or hold is refused before any load, with its figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipstorm.engine.cli import main
from pipstorm.engine.run.plan import capacity
from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES
from pipstorm.engine.run.plan.schedule import timeline

#: The seed module's current x170 incident (issue 20) fits one machine only warm-launched.
WARM_ONLY = {"incident_x170"}


def on_two_cores(name: str, *, warm: bool = False, **mix: float) -> capacity.Capacity:
    profile = BUILTIN_PROFILES[name]
    measured = capacity.measure(
        timeline(profile),
        profile.clients,
        profile.burst_multiplier,
        mix or {"pip": 1.0},
        warm=warm,
    )
    return dataclasses.replace(measured, cores=2, available_mb=20_000.0)


@pytest.mark.parametrize("name", sorted(set(BUILTIN_PROFILES) - WARM_ONLY))
def test_the_seeds_profiles_fit_the_two_core_machine(name: str) -> None:
    assert on_two_cores(name).problems() == []


def test_x170_fits_two_cores_warm_and_is_refused_exec_with_its_figures() -> None:
    """510 fresh pips (0.33 CPU-s, 50 MB each) are 8x a tick's CPU and 25 GB: a real refusal;
    forked from a warm launcher they fit."""
    assert on_two_cores("incident_x170", warm=True).problems() == []
    problems = on_two_cores("incident_x170").problems()
    assert any("510 runs at one tick need 168 CPU-s" in p for p in problems), problems
    assert any("MB available" in p for p in problems), problems


def test_the_figures_of_a_burst() -> None:
    heavy = on_two_cores("heavy_load")
    assert heavy.peak_runs == 100
    assert heavy.planned_runs == 2800  # the README's table
    assert 1.5 < heavy.cpu_overload < 2.0  # 100 fresh pips need ~33 CPU-s of a 20 CPU-s tick


def test_warm_pip_is_priced_as_measured_for_warm_launchers() -> None:
    profile = BUILTIN_PROFILES["heavy_load"]
    line = timeline(profile)
    exec_ = capacity.measure(line, 100, profile.burst_multiplier, {"pip": 1.0})
    warm = capacity.measure(line, 100, profile.burst_multiplier, {"pip": 1.0}, warm=True)
    assert warm.cpu_s_per_run < exec_.cpu_s_per_run / 3
    assert warm.mb_per_run < exec_.mb_per_run
    poetry = capacity.measure(line, 100, profile.burst_multiplier, {"poetry": 1.0}, warm=True)
    assert poetry.cpu_s_per_run == capacity.RUN_COST["poetry"][0]  # not measured warm: exec cost


def test_a_huge_plan_is_refused_with_figures_and_forced_with_a_warning() -> None:
    huge = dataclasses.replace(on_two_cores("light_load"), peak_runs=1_000_000)
    problems = huge.problems()
    assert any("1,000,000 runs at one tick need 330,000 CPU-s" in p for p in problems)
    assert any("MB available" in p for p in problems)
    with pytest.raises(capacity.CapacityError, match="cannot play the plan"):
        capacity.check(huge, force=False)
    assert capacity.check(huge, force=True)[0].startswith("played with --force although")


def test_cli_refuses_a_million_clients_before_building_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "huge.toml"
    profile.write_text("clients = 1000000\nduration_s = 1440\n", encoding="utf-8")
    results = tmp_path / "results"
    code = main(["run", "--profile", str(profile), "--results", str(results), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ERROR: this machine cannot play the plan")
    assert "144,000,000 planned runs" in err
    assert not results.exists()  # refused before a results folder was made
