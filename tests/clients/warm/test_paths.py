"""Paths captured at import are found in module globals and moved to the run's own."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from pipstorm.clients.warm.paths import find_captured, relocate, slot_name

ROOT = "/tmp/pipstorm-launcher-abc"


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    fake = types.ModuleType("pipstorm_fake_client")
    fake.CACHE = f"{ROOT}/work/home/.cache/pip"  # type: ignore[attr-defined]
    fake.CONFIG = Path(f"{ROOT}/work/home/.config/tool")  # type: ignore[attr-defined]
    fake.option = partial(dict, default=f"{ROOT}/work/home/.cache/pip")  # type: ignore[attr-defined]
    fake.DEFAULTS = {"cache-dir": f"{ROOT}/work/cache", "other": 1}  # type: ignore[attr-defined]
    fake.PATHS = [f"{ROOT}/work/home/.git-credentials", "/etc/gitconfig"]  # type: ignore[attr-defined]
    fake.UNRELATED = "/usr/lib"  # type: ignore[attr-defined]
    # A class whose attribute captured a path at import (made per test: tests move it).
    holder = type("Holder", (), {"cache": f"{ROOT}/work/home/.cache/tool"})
    holder.__module__ = fake.__name__
    fake.Holder = holder  # type: ignore[attr-defined]
    sys.modules[fake.__name__] = fake
    try:
        yield fake
    finally:
        del sys.modules[fake.__name__]


def test_captured_paths_are_found_and_moved(module: types.ModuleType) -> None:
    slots = find_captured(ROOT, lambda name: name != module.__name__)
    names = {slot_name(slot) for slot in slots}
    assert {"pipstorm_fake_client.CACHE", "pipstorm_fake_client.CONFIG"} <= names
    assert len(slots) == 6  # CACHE, CONFIG, the partial's default, DEFAULTS, PATHS[0], Holder
    moves = [(f"{ROOT}/work/home", "/run/w/home"), (f"{ROOT}/work", "/run/w")]
    assert relocate(slots, moves) == 6
    assert module.CACHE == "/run/w/home/.cache/pip"
    assert Path("/run/w/home/.config/tool") == module.CONFIG
    assert module.option.keywords["default"] == "/run/w/home/.cache/pip"
    assert module.DEFAULTS == {"cache-dir": "/run/w/cache", "other": 1}
    assert module.PATHS == ["/run/w/home/.git-credentials", "/etc/gitconfig"]
    assert module.Holder.cache == "/run/w/home/.cache/tool"
    assert module.UNRELATED == "/usr/lib"


def test_a_slot_reset_since_is_left_alone(module: types.ModuleType) -> None:
    slots = find_captured(ROOT, lambda name: name != module.__name__)
    setattr(module, "CACHE", None)  # noqa: B010 - like tempfile.tempdir, reset once the child has its environment
    del module.DEFAULTS["cache-dir"]
    assert relocate(slots, [(ROOT, "/run")]) == 4
    assert module.CACHE is None
