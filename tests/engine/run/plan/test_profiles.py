"""Custom profiles from TOML files: read, validated, with a one-line reason when they are bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES, ProfileError, load_profile


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
