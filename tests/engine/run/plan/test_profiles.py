"""Custom profiles from TOML files: read, validated, with a one-line reason when they are bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipstorm.engine.analysis.thresholds import DEFAULTS, merge
from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES, ProfileError, load_profile
from pipstorm.engine.run.plan.schedule import build_schedule


def test_builtins_have_the_seeds_numbers() -> None:
    light = BUILTIN_PROFILES["light_load"]
    incident = BUILTIN_PROFILES["production_incident"]
    heavy = BUILTIN_PROFILES["heavy_load"]
    assert (light.clients, light.duration_s, light.has_bursts) == (3, 300, False)
    assert (incident.clients, incident.duration_s, incident.burst_every_s) == (3, 1440, 60)
    assert incident.peak_clients == 75
    assert (heavy.clients, heavy.duration_s, heavy.burst_every_s, heavy.peak_clients) == (
        20,
        600,
        30,
        100,
    )


def test_a_toml_profile_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ci_burst.toml"
    path.write_text(
        "clients = 2\nduration_s = 40\nburst_every_s = 20\nburst_multiplier = 4\n"
        "[thresholds]\np95_listing_ms = 500\n",
        encoding="utf-8",
    )
    profile = load_profile(str(path))
    assert profile.name == "ci_burst"
    assert profile.peak_clients == 8
    assert profile.thresholds == {"p95_listing_ms": 500.0}
    assert profile.launch is None  # warm where a kind has it


def test_a_profile_can_ask_for_exec(tmp_path: Path) -> None:
    path = tmp_path / "cold.toml"
    path.write_text('clients = 1\nduration_s = 10\nlaunch = "exec"\n', encoding="utf-8")
    assert load_profile(str(path)).launch == "exec"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clients = 2\n", "'clients' and 'duration_s' are required"),
        ("clients = 2\nduration_s = 10\nburst = 3\n", "unknown key 'burst'"),
        ('clients = "two"\nduration_s = 10\n', "clients has the wrong type"),
        ("clients = 2\nduration_s = [\n", "not valid TOML"),
        ("clients = 2\nduration_s = 10\n[thresholds]\nerror_rate = 'low'\n", "must map names"),
        ('clients = 2\nduration_s = 10\nlaunch = "fork"\n', "launch must be warm or exec"),
    ],
)
def test_bad_toml_profiles_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match=message):
        load_profile(str(path))


def test_unknown_names_list_the_builtins() -> None:
    with pytest.raises(ProfileError, match="light_load, production_incident, heavy_load"):
        load_profile("medium_load")
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile("/nonexistent/profile.toml")


def test_incident_x170_is_the_seed_modules_current_incident_with_its_gates() -> None:
    """infrahouse/terraform-aws-pypiserver tests/stress_test.py (main, 2026-04) and the gates
    of its tests/test_stress.py, test_stress_production_incident."""
    x170 = BUILTIN_PROFILES["incident_x170"]
    assert (x170.clients, x170.duration_s, x170.burst_every_s) == (3, 300, 60)
    assert (x170.burst_multiplier, x170.peak_clients) == (170, 510)
    assert load_profile("incident_x170") is x170
    merged = merge(DEFAULTS, x170.thresholds)
    assert merged == {"error_rate": 1.0, "max_5xx": 9.0, "p95_all_ms": 15000.0}
    line, runs = build_schedule(x170, [("p", "1.0")], seed=1)
    assert line.burst_ticks == [0.0, 60.0, 120.0, 180.0, 240.0]  # the module bursts on tick 0
    assert sum(1 for r in runs if r.offset_s == 0.0) == 510
    assert len(runs) == 5 * 510 + 25 * 3


def test_pipstorm_profiles_lists_incident_x170(capsys: pytest.CaptureFixture[str]) -> None:
    from pipstorm.engine.cli import main

    assert main(["profiles"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "incident_x170" in line)
    assert "x170 every 60 s" in row
    assert "510" in row
