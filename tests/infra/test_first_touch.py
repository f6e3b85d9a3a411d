"""What memory touched for the first time costs the host: measured on real mappings."""

from __future__ import annotations

import mmap

import pytest

from pipstorm.infra.first_touch import FirstTouch, measure


def test_the_measure_touches_real_memory_and_says_how() -> None:
    touch = measure(8)
    # Faulting in 8 MB is never free (~1 ms of CPU at the warm rate here): a measure that
    # skipped the pages would say 0.
    assert touch.first_ms_per_mb > 0 and touch.again_ms_per_mb > 0
    # Asked for where Python has the advice (a kernel without THP may refuse it: then not).
    assert touch.huge_pages <= hasattr(mmap, "MADV_HUGEPAGE")
    assert touch.host_ms_per_mb == max(0.0, touch.first_ms_per_mb - touch.again_ms_per_mb)


def test_the_host_part_is_the_first_touch_over_the_touch_again_never_negative() -> None:
    assert FirstTouch(2.4, 0.1, True).host_ms_per_mb == pytest.approx(2.3)
    assert FirstTouch(0.1, 0.12, True).host_ms_per_mb == 0.0
