"""``--sizes``: presets with /KNOB=VALUE changes, the lab's knobs first; one-line errors."""

from __future__ import annotations

import pytest

from pipstorm.engine.errors import UsageError
from pipstorm.engine.workflows.sizing_lab import parse_size
from pipstorm.infra.errors import InfraError


def test_a_size_is_a_preset_with_the_labs_knobs_then_its_own() -> None:
    plain = parse_size("optimized", {})
    assert (plain.name, plain.cpus, plain.workers, plain.auth) == (
        "optimized",
        2.0,
        12,
        "bcrypt:10",
    )
    changed = parse_size("optimized/auth=bcrypt:12/cpus=1/workers=2", {"hash_algo": "off"})
    assert changed.name == "optimized/auth=bcrypt:12/cpus=1/workers=2"  # as written: unique
    assert (changed.auth, changed.cpus, changed.workers) == ("bcrypt:12", 1.0, 2)
    assert changed.hash_algo == "off"  # the lab's knob applies to every size
    assert parse_size("baseline", {"auth": "apr1"}).name == "baseline+"
    assert parse_size("heavy/worker-class=sync", {}).worker_class == "sync"


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("huge", InfraError, "unknown sizing"),
        ("baseline/threads=4", UsageError, "not KNOB=VALUE"),
        ("baseline/cpus", UsageError, "not KNOB=VALUE"),
        ("baseline/workers=many", UsageError, "must be a number"),
        ("baseline/auth=sha1", InfraError, "--auth"),
    ],
)
def test_bad_sizes_are_one_line_errors(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as excinfo:
        parse_size(text, {})
    assert "\n" not in str(excinfo.value)
