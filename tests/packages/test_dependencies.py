"""Dependencies between corpus packages: deterministic, acyclic, bounded depth, in the wheels."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from poetry.core import __version__ as POETRY_CORE_VERSION

from pipstorm.packages.build import build_corpus
from pipstorm.packages.spec import CORPUS_FORMAT, CorpusError, CorpusSpec


def test_default_corpus_has_no_dependencies_and_keeps_its_old_key() -> None:
    spec = CorpusSpec()
    assert not spec.has_dependencies
    assert all(deps == [] for deps in spec.dependencies().values())
    # The key as computed before dep_fan_out/dep_depth existed: caches stay valid.
    params = {
        k: v
        for k, v in dataclasses.asdict(spec).items()
        if not k.startswith("dep_") and k != "listed"  # fields added later, keys kept
    }
    params["format"] = CORPUS_FORMAT
    params["poetry_core"] = POETRY_CORE_VERSION
    old = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    assert spec.key() == hashlib.sha256(old).hexdigest()[:16]
    assert CorpusSpec(dep_fan_out=2, dep_depth=2).key() != spec.key()


def depth_of(graph: dict[str, list[str]], name: str) -> int:
    return 1 + max((depth_of(graph, d) for d in graph[name]), default=0) if graph[name] else 0


def test_graph_is_deterministic_acyclic_with_the_asked_fan_out_and_depth() -> None:
    spec = CorpusSpec(packages=30, dep_fan_out=2, dep_depth=3)
    graph = spec.dependencies()
    assert graph == CorpusSpec(packages=30, dep_fan_out=2, dep_depth=3).dependencies()
    assert {len(d) for d in graph.values()} == {0, 2}
    assert max(depth_of(graph, n) for n in graph) == 3  # recursion ends: no cycles
    assert all(dep in graph and dep != name for name, deps in graph.items() for dep in deps)


@pytest.mark.parametrize(
    ("fan_out", "depth", "message"),
    [(1, 0, "go together"), (0, 2, "go together"), (5, 2, "packages >= 15"), (-1, 1, "at least")],
)
def test_bad_dependency_options_are_refused(fan_out: int, depth: int, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        CorpusSpec(packages=10, dep_fan_out=fan_out, dep_depth=depth)


def test_wheels_declare_their_dependencies(tmp_path: Path) -> None:
    spec = CorpusSpec(packages=4, versions=("1.0.0",), dep_fan_out=1, dep_depth=1)
    wheels = build_corpus(spec, tmp_path)
    graph = spec.dependencies()
    for wheel, (project, _) in zip(wheels, spec.releases(), strict=True):
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            requires = [
                line.split(":", 1)[1].strip()
                for line in zf.read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:")
            ]
        assert requires == graph[project]
