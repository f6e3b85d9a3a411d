"""A gated child sleeps to its instant in two waits: a long one that wakes ``LAST_WAIT_S`` early,
then the rest, so the kernel's timer slack for a niced sleeper (0.5 % of the timeout) is taken
on the short one only (``pipstorm.clients.warm.gate.next_wait``)."""

from __future__ import annotations

import pytest

from pipstorm.clients.warm.gate import LAST_WAIT_S, next_wait


def test_no_instant_waits_for_the_gate_alone() -> None:
    assert next_wait(None) is None


@pytest.mark.parametrize("left", [17.0, 4.2, 2 * LAST_WAIT_S + 0.001])
def test_a_long_wait_wakes_early_by_the_last_stretch(left: float) -> None:
    wait = next_wait(left)
    assert wait is not None
    assert wait == pytest.approx(left - LAST_WAIT_S)
    # What is left after it is a short wait, slept exactly (within its own, small, slack).
    assert next_wait(left - wait) == pytest.approx(LAST_WAIT_S)


@pytest.mark.parametrize("left", [2 * LAST_WAIT_S, 0.03, 0.0])
def test_a_short_wait_is_slept_whole(left: float) -> None:
    assert next_wait(left) == left


def test_a_passed_instant_does_not_wait() -> None:
    assert next_wait(-0.5) == 0.0
