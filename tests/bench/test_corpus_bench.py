"""Corpus build and cache benchmark: prints times and ratios, asserts only on correctness.

Baseline, measured in the same run: the naive way to make the same 300 wheels, a fresh
project tree per wheel handed to poetry-core's stock Factory + WheelBuilder (which also asks
git about ignored files for every wheel).

Run: .venv/bin/pytest -m bench -s tests/bench/test_corpus_bench.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from poetry.core.factory import Factory
from poetry.core.masonry.builders.wheel import WheelBuilder

from pipstorm.packages.build import build_corpus
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec, module_name

pytestmark = pytest.mark.bench

_NAIVE_PYPROJECT = """\
[project]
name = "{name}"
version = "{version}"
description = "naive baseline"
requires-python = ">=3.8"
"""


def _naive_build(spec: CorpusSpec, work: Path, out: Path) -> int:
    built = 0
    for project, version in spec.releases():
        project_dir = work / f"{project}-{version}"
        package_dir = project_dir / module_name(project)
        package_dir.mkdir(parents=True)
        (project_dir / "pyproject.toml").write_text(
            _NAIVE_PYPROJECT.format(name=project, version=version)
        )
        (package_dir / "__init__.py").write_text(f'__version__ = "{version}"\n')
        WheelBuilder(Factory().create_poetry(project_dir)).build(target_dir=out)
        built += 1
    return built


def _report(line: str) -> None:
    # A benchmark's output is its result (run with -s); this is the one place that prints.
    print(line)


def _timed(label: str, seconds: float, extra: str = "") -> None:
    _report(f"  {label:<48} {seconds * 1000:10.1f} ms {extra}")


def test_corpus_build_and_cache(tmp_path: Path) -> None:
    spec = CorpusSpec()
    _report(f"\ncorpus benchmark: {spec.packages} projects x {len(spec.versions)} versions")

    start = time.perf_counter()
    naive_count = _naive_build(spec, tmp_path / "naive-src", tmp_path / "naive")
    naive = time.perf_counter() - start
    assert naive_count == 300
    _timed("baseline: fresh project + stock builder, x300", naive)

    start = time.perf_counter()
    wheels = build_corpus(spec, tmp_path / "ours")
    cold = time.perf_counter() - start
    assert len(wheels) == 300
    _timed("build_corpus, cold, 300 wheels", cold, f"(baseline / ours = {naive / cold:.1f}x)")

    start = time.perf_counter()
    corpus = cached_corpus(spec, tmp_path / "cache")
    first = time.perf_counter() - start
    assert len(corpus.wheels) == 300
    _timed("cached_corpus, first call (build + publish)", first)

    lookups = []
    for _ in range(200):
        start = time.perf_counter()
        cached_corpus(spec, tmp_path / "cache")
        lookups.append(time.perf_counter() - start)
    warm = statistics.median(lookups)
    _timed(
        "cached_corpus, warm lookup (median of 200)",
        warm,
        f"(cold / warm = {first / warm:,.0f}x, max {max(lookups) * 1000:.2f} ms)",
    )

    big = CorpusSpec(packages=1, versions=("1.0.0",), payload_kb=50 * 1024)
    start = time.perf_counter()
    (big_wheel,) = build_corpus(big, tmp_path / "big")
    big_time = time.perf_counter() - start
    size_mb = big_wheel.stat().st_size / 1e6
    assert big_wheel.stat().st_size > 50 * 1024 * 1024
    _timed("one wheel with a 50 MiB payload", big_time, f"({size_mb:.1f} MB wheel)")

    padded = CorpusSpec(payload_kb=64)
    start = time.perf_counter()
    build_corpus(padded, tmp_path / "padded")
    padded_time = time.perf_counter() - start
    _timed("300 wheels with a 64 KiB payload each", padded_time, f"(x{padded_time / cold:.1f})")
