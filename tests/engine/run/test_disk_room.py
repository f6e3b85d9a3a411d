"""The results disk's free space: measured, and refused in one line under the run's reserve."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipstorm.engine.errors import UsageError
from pipstorm.engine.run.disk_room import MIN_FREE_BYTES, DiskFull, check_room, free_bytes


def test_under_the_reserve_is_one_usage_line(tmp_path: Path) -> None:
    check_room(tmp_path, minimum=1)  # room enough
    with pytest.raises(DiskFull) as caught:
        check_room(tmp_path, minimum=free_bytes(tmp_path) + (1 << 40))
    assert isinstance(caught.value, UsageError)  # the CLI's exit 2, one ERROR line
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path) in message and "nearly full" in message
    assert "No space left on device" in message
    check_room(tmp_path, minimum=min(MIN_FREE_BYTES, free_bytes(tmp_path)))
