"""Headless Chromium screenshots of report.html, and how to tell a chart from a blank box."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's `chromium` is not installed (apt-get install chromium; .ci/run does it)",
)


def screenshot(page: Path, out: Path, profile_dir: Path, *, height: int = 3000) -> Path:
    """Render ``page`` offline in headless Chromium at 1200 px wide and save a PNG."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile_dir}",
            f"--screenshot={out}",
            f"--window-size=1200,{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    return out


def distinct_colours(png: Path, rows: slice = slice(None)) -> int:
    """How many distinct RGB colours the image has in ``rows`` (a blank page has a handful)."""
    pixels = np.asarray(imread(png))[rows, :, :3]
    quantised = (pixels * 255).astype(np.uint8).reshape(-1, 3)
    return len(np.unique(quantised, axis=0))


def colour_pixels(png: Path, hex_colour: str, tolerance: int = 12) -> int:
    """How many pixels are within ``tolerance`` (per channel, 0-255) of ``#rrggbb``.

    The charts draw in matplotlib's palette (listing #1f77b4, download #ff7f0e, status 200
    #2ca02c), which nothing else on the page uses: thousands of such pixels mean the charts
    were drawn; a page with broken or blank images has none (measured: 0).
    """
    rgb = np.array([int(hex_colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)])
    pixels = (np.asarray(imread(png))[:, :, :3] * 255).astype(int)
    return int((np.abs(pixels - rgb).max(axis=2) <= tolerance).sum())


def verdict_colour(png: Path) -> tuple[int, int, int]:
    """The colour of the verdict banner (top-left of the page)."""
    r, g, b = (np.asarray(imread(png))[10, 10, :3] * 255).astype(int)
    return int(r), int(g), int(b)
