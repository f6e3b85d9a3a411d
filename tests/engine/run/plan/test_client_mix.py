"""Client mixes and versions: parsing, checks, and how the schedule deals kinds and pins."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipstorm.clients.errors import ToolError, UnknownClientError
from pipstorm.engine.run.plan.client_mix import choose_clients, parse_mix
from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES, ProfileError, load_profile
from pipstorm.engine.run.plan.schedule import build_schedule
from pipstorm.packages.spec import CorpusSpec

LIGHT = BUILTIN_PROFILES["light_load"]
RELEASES = CorpusSpec().releases()


def test_parse_mix_and_its_errors() -> None:
    assert parse_mix("pip=0.6, poetry=0.4") == {"pip": 0.6, "poetry": 0.4}
    for bad in ("pip", "pip=x", "pip=-1", "=1", "pip=0"):
        with pytest.raises(ProfileError, match="--mix"):
            parse_mix(bad)


def test_choose_clients_checks_kinds_and_versions() -> None:
    assert choose_clients(LIGHT).mix == {"pip": 1.0}
    assert choose_clients(LIGHT, client="poetry").kinds == ["poetry"]
    with pytest.raises(UnknownClientError, match="unknown client kind 'npm'"):
        choose_clients(LIGHT, mix={"npm": 1.0})
    with pytest.raises(ProfileError, match="not both"):
        choose_clients(LIGHT, client="pip", mix={"pip": 1.0})
    with pytest.raises(ToolError, match="release number"):
        choose_clients(LIGHT, versions={"pip": "newest"})
    choice = choose_clients(LIGHT, mix={"pip": 1, "uv": 0}, versions={"pip": "25.3", "uv": None})
    assert choice.kinds == ["pip"]
    assert choice.to_dict() == {"mix": {"pip": 1, "uv": 0}, "versions": {"pip": "25.3"}}


def test_profile_mix_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "mixed.toml"
    path.write_text("clients = 4\nduration_s = 60\nmix = {pip = 0.6, poetry = 0.4}\n", "utf-8")
    assert load_profile(str(path)).client_mix == {"pip": 0.6, "poetry": 0.4}
    path.write_text("clients = 4\nduration_s = 60\nmix = {pip = -1}\n", "utf-8")
    with pytest.raises(ProfileError, match="share of 'pip'"):
        load_profile(str(path))


def test_a_single_client_schedule_picks_what_it_picked_before_mixes() -> None:
    _, plain = build_schedule(LIGHT, RELEASES, seed=3)
    _, mixed = build_schedule(
        LIGHT, RELEASES, seed=3, mix={"pip": 0.5, "poetry": 0.5}, pins={"poetry": 5}
    )
    assert [(r.project, r.version) for r in plain] == [(r.project, r.version) for r in mixed]
    assert all(r.client == "pip" and r.requirements == () for r in plain)
    kinds = Counter(r.client for r in mixed)
    assert set(kinds) == {"pip", "poetry"}
    for run in mixed:
        if run.client == "poetry":
            projects = [run.project, *(p for p, _ in run.requirements)]
            assert len(projects) == len(set(projects)) == 5
        else:
            assert run.requirements == ()
    _, again = build_schedule(
        LIGHT, RELEASES, seed=3, mix={"pip": 0.5, "poetry": 0.5}, pins={"poetry": 5}
    )
    assert again == mixed
