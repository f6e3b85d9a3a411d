"""The soak tests take about an hour: collected only when asked for (``make soak``: ``-m soak``),
so a plain ``pytest`` or any other marker expression never starts them by accident."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.getoption("-m") or "") and "not soak" not in config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="an hour-long soak: run it with `make soak`")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
