"""How far ahead runs are handed out: from the plan, the measured costs and the memory budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipstorm.engine.run.plan.lead import (
    BOOT_ID,
    GIVEN_BACK_MS_PER_MB,
    MIN_AHEAD_S,
    SAFETY,
    TOUCH_FILE,
    PrepareCost,
    kind_modes,
    measure_costs,
    plan_lead,
    remembered_touch,
    touch_cost,
)

PIP = PrepareCost("pip", "warm", cpu_s=0.1, held_mb=10.0, launcher_s=0.5)
UV = PrepareCost("uv", "exec", cpu_s=0.0, held_mb=0.0)


def incident(bursts: int = 2) -> list[tuple[float, str]]:
    """production_incident's first minutes: x25 bursts of 75 every 60 s, 3 runs per tick."""
    dues = []
    for tick in range(bursts * 6):
        at = tick * 10.0
        dues += [(at, "pip")] * (75 if tick % 6 == 0 else 3)
    return dues


def test_a_burst_is_handed_out_early_enough_to_be_prepared_on_these_cores() -> None:
    lead = plan_lead(incident(), [PIP], mode="warm", cores=2, budget_mb=4000, start_margin_s=2)
    needed = SAFETY * 75 * PIP.cpu_s / 2
    assert lead.prepare_s == pytest.approx(needed)
    assert lead.ahead_s == pytest.approx(needed + SAFETY * PIP.launcher_s)
    assert lead.largest_instant == 75
    # The first burst is at offset 0: the run starts late enough to prepare it.
    assert lead.start_margin_s == pytest.approx(lead.ahead_s)
    assert lead.peak_prepared == 75 and lead.peak_mb == pytest.approx(750.0)
    assert lead.problem is None
    assert "75 runs" in lead.summary() and "pip warm" in lead.summary()


def test_memory_the_host_must_back_again_is_added_per_mb_held_without_the_factor() -> None:
    """At 2.3 ms per MB (this VM, x170's burst), x25's 75 children of 10 MB add 1.7 CPU-s."""
    plain = plan_lead(incident(), [PIP], mode="warm", cores=2, budget_mb=4000, start_margin_s=2)
    lead = plan_lead(
        incident(), [PIP], mode="warm", cores=2, budget_mb=4000, start_margin_s=2,
        touch_ms_per_mb=2.3,
    )  # fmt: skip
    touched = 75 * PIP.held_mb * 2.3 / 1000 / 2
    assert lead.prepare_s == pytest.approx(plain.prepare_s + touched, abs=0.01)
    assert lead.ahead_s == pytest.approx(plain.ahead_s + touched, abs=0.01)
    assert lead.touch_ms_per_mb == 2.3 and lead.to_dict()["touch_ms_per_mb"] == 2.3
    assert "memory first touched +2.3 ms of CPU per MB" in lead.summary()
    assert "first touched" not in plain.summary() and lead.problem is None


def test_memory_first_touched_counts_in_the_window_a_lead_must_cover() -> None:
    """Runs of 1 ms CPU holding 100 MB: only the memory makes 300 of them due within a second
    too much for two cores."""
    dues = [(0.0, "pip")] * 100 + [(1.0, "pip")] * 100 + [(2.0, "pip")] * 100
    light = PrepareCost("pip", "warm", cpu_s=0.001, held_mb=100.0)
    kept = plan_lead(dues, [light], mode="warm", cores=2, budget_mb=10**6, start_margin_s=2)
    given_back = plan_lead(
        dues, [light], mode="warm", cores=2, budget_mb=10**6, start_margin_s=2,
        touch_ms_per_mb=2.5,
    )  # fmt: skip
    assert kept.problem is None
    assert given_back.problem is not None and "memory first touched" in given_back.problem


def test_fewer_cores_mean_more_lead_time() -> None:
    two = plan_lead(incident(), [PIP], mode="warm", cores=2, budget_mb=4000, start_margin_s=2)
    one = plan_lead(incident(), [PIP], mode="warm", cores=1, budget_mb=4000, start_margin_s=2)
    assert one.ahead_s > two.ahead_s


def test_a_small_plan_keeps_the_floor() -> None:
    lead = plan_lead(
        [(0.0, "pip"), (10.0, "pip")], [PIP], mode="warm", cores=2, budget_mb=4000,
        start_margin_s=2,
    )  # fmt: skip
    assert lead.ahead_s == MIN_AHEAD_S["warm"]
    assert lead.peak_prepared == 1


def test_over_the_memory_budget_is_said_with_the_figures() -> None:
    lead = plan_lead(incident(), [PIP], mode="warm", cores=2, budget_mb=300, start_margin_s=2)
    assert lead.problem is not None
    assert "75 prepared runs would hold 750 MB, over the memory budget of 300 MB" in lead.problem


def test_bursts_closer_than_their_preparation_are_said() -> None:
    dues = [(0.0, "pip")] * 100 + [(1.0, "pip")] * 100 + [(2.0, "pip")] * 100
    slow = PrepareCost("pip", "warm", cpu_s=0.5, held_mb=1.0)
    lead = plan_lead(dues, [slow], mode="warm", cores=2, budget_mb=4000, start_margin_s=2)
    assert lead.problem is not None and "CPU-s of preparation" in lead.problem


def test_exec_kinds_hold_no_memory_and_keep_the_exec_floor() -> None:
    lead = plan_lead(incident(), [UV], mode="exec", cores=2, budget_mb=1, start_margin_s=2)
    assert lead.ahead_s == MIN_AHEAD_S["exec"] and lead.peak_mb == 0 and lead.problem is None
    assert lead.to_dict()["costs"]["uv"]["mode"] == "exec"


def test_only_kinds_with_a_warm_launch_are_warm() -> None:
    assert kind_modes("warm", ["pip", "uv", "poetry", "http"]) == {
        "pip": "warm", "uv": "exec", "poetry": "warm", "http": "exec",
    }  # fmt: skip
    assert set(kind_modes("exec", ["pip", "twine"]).values()) == {"exec"}


@pytest.mark.e2e
def test_a_warm_pip_probe_is_priced_with_its_fork_and_its_preparation() -> None:
    """The probe's price is a later run's (the launcher already started, the user agent
    shared): the child's CPU to its gate, which now includes pip's start-up, plus the
    launcher's fork and the owner's part; the launcher's own start is apart."""
    (cost,) = measure_costs({"pip": "warm"}, {"pip": None})
    assert (cost.kind, cost.mode) == ("pip", "warm")
    assert 0.005 < cost.cpu_s < 1.0, cost  # bounds a broken measurement, not a speed
    assert cost.held_mb > 1.0
    assert cost.launcher_s > 0.0


def test_a_figure_that_found_memory_given_back_is_kept_for_later_runs_of_this_boot(
    tmp_path: Path,
) -> None:
    """Just after another run freed its memory a measure finds it warm (x170 after a bench
    freed 6 GB: 0.05 ms/MB, 30 runs gated late); the host's price is the one seen before."""
    assert remembered_touch(0.05, tmp_path) == 0.05  # nothing kept yet
    assert remembered_touch(2.3, tmp_path) == 2.3  # found memory given back: kept
    assert remembered_touch(0.05, tmp_path) == 2.3
    assert remembered_touch(1.9, tmp_path) == 1.9  # the latest such figure, not the highest
    assert remembered_touch(0.0, tmp_path) == 1.9
    kept = json.loads((tmp_path / TOUCH_FILE).read_text(encoding="utf-8"))
    assert kept == {"boot_id": BOOT_ID.read_text(encoding="ascii").strip(), "touch_ms_per_mb": 1.9}


def test_a_figure_kept_from_another_boot_or_unreadable_is_not_used(tmp_path: Path) -> None:
    (tmp_path / TOUCH_FILE).write_text('{"boot_id": "another", "touch_ms_per_mb": 2.5}', "utf-8")
    assert remembered_touch(0.1, tmp_path) == 0.1
    (tmp_path / TOUCH_FILE).write_text('["not", "a", "record"]', "utf-8")
    assert remembered_touch(0.1, tmp_path) == 0.1
    # A cache that cannot be written to: the measure as it is, no error.
    blocked = tmp_path / "file"
    blocked.write_text("", "utf-8")
    assert remembered_touch(3.0, blocked / "cache") == 3.0
    assert remembered_touch(0.2, blocked / "cache") == 0.2


def test_the_cost_of_memory_is_measured_for_real_and_kept_when_it_found_memory_given_back(
    tmp_path: Path,
) -> None:
    used = touch_cost(tmp_path)
    kept = tmp_path / TOUCH_FILE
    if used >= GIVEN_BACK_MS_PER_MB:  # this machine's state decides which
        assert json.loads(kept.read_text(encoding="utf-8"))["touch_ms_per_mb"] == used
    else:
        assert not kept.exists() and used >= 0.0
