"""Cost of one client run on the generator: a throwaway venv + one ``pip download``.

pipstorm's way (virtualenv, app-data seeding with symlinks, made in process) against the
baseline ``python -m venv`` (ensurepip copies pip in), measured in the same run against the same
local pypiserver behind the recording proxy. Prints CPU seconds and wall time per run and their
ratio; asserts nothing about time. Run with ``make bench``.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipstorm.clients.drivers.pip import pip_download_argv
from pipstorm.clients.drivers.venv import create_venv, throwaway_dir
from pipstorm.clients.environment import scrubbed_env
from pipstorm.clients.process import ProcessRegistry, run_process
from pipstorm.clients.task import ClientTask
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec

pytestmark = pytest.mark.bench

RUNS = 8


@pytest.fixture(scope="module")
def index_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    root = tmp_path_factory.mktemp("client-bench")
    corpus = cached_corpus(CorpusSpec(packages=10), root / "cache")
    with (
        LocalPypiserver(corpus.directory) as server,
        RecordingProxy(
            server.index_url, root / "requests.jsonl", credentials=server.credentials
        ) as proxy,
    ):
        yield proxy.index_url_for


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(
    index_url_for: Callable[[str], str], run_id: str, *, stdlib_venv: bool
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of making a venv and downloading one release with its pip."""
    registry = ProcessRegistry()
    wall = time.perf_counter()
    with throwaway_dir(None, "pipstorm-bench-") as work:
        home = work / "home"
        home.mkdir()
        env = scrubbed_env(home)
        cpu = 0.0
        if stdlib_venv:
            made = run_process(
                [sys.executable, "-m", "venv", str(work / "venv")],
                env=env,
                cwd=work,
                timeout_s=120,
                registry=registry,
            )
            assert made.exit_code == 0, made.stderr_tail
            cpu += made.cpu_s
            python = work / "venv" / "bin" / "python"
        else:
            before = self_cpu()
            python = create_venv(work / "venv").python
            cpu += self_cpu() - before
        task = ClientTask(run_id, "pip", "test-package-003", "1.1.0", index_url_for(run_id))
        outcome = run_process(
            pip_download_argv(Path(python), task, work / "dl"),
            env=env,
            cwd=work,
            timeout_s=120,
            registry=registry,
        )
        assert outcome.exit_code == 0, outcome.stderr_tail
        cpu += outcome.cpu_s
    return cpu, time.perf_counter() - wall


def test_cost_of_one_client_run(index_url: Callable[[str], str]) -> None:
    one_run(index_url, "warm", stdlib_venv=False)  # app-data seeding happens once
    ours, base = [], []
    for i in range(RUNS):  # interleaved, so drift in machine load hits both alike
        ours.append(one_run(index_url, f"v{i}", stdlib_venv=False))
        base.append(one_run(index_url, f"b{i}", stdlib_venv=True))
    cpu_ours = statistics.median(c for c, _ in ours)
    cpu_base = statistics.median(c for c, _ in base)
    wall_ours = statistics.median(w for _, w in ours)
    wall_base = statistics.median(w for _, w in base)
    print(f"\nclient run cost, median of {RUNS} (venv + pip download of one wheel):")
    print(f"  virtualenv (symlinked app-data) + pip: {cpu_ours:.2f} CPU-s, {wall_ours:.2f} s wall")
    print(f"  python -m venv + pip (baseline):       {cpu_base:.2f} CPU-s, {wall_base:.2f} s wall")
    print(
        f"  ratio baseline/ours: CPU x{cpu_base / cpu_ours:.1f}, wall x{wall_base / wall_ours:.1f}"
    )
