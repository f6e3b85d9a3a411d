"""Cost of one client run on the generator, per client kind: CPU seconds, wall time, peak RSS.

Each kind runs RUNS times against the same local pypiserver behind the recording proxy, each
run cold (fresh venv or project, fresh client cache); tool venvs are warmed up first, as a load
run does. CPU and RSS are the client process tree's (``os.wait4``); the preparation (venv,
project files, twine's fresh wheel) is timed apart as wall time. ``http`` (the synthetic client,
in process: CPU is its thread's, no RSS of its own) is the baseline: every other kind's CPU is
printed as a multiple of it. poetry and uv lock projects pinning 5 corpus releases, as in a load
run; twine uploads a fresh wheel to the same pypiserver. Prints a table; asserts nothing about
time. Run with ``make bench``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from pipstorm.clients.drivers.registry import driver_for
from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import launch, prepared
from pipstorm.clients.task import ClientTask
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec

pytestmark = pytest.mark.bench

RUNS = 5
KINDS = (
    ("http", None),  # the baseline
    ("pip", None),
    ("pip", "25.3"),
    ("poetry", None),
    ("uv", None),
    ("twine", None),
)
#: With the run's own release, the 5 releases a poetry or uv run locks (``pins_per_run``).
PINS = (
    ("test-package-002", "2.0.0"),
    ("test-package-003", "1.0.0"),
    ("test-package-004", "1.0.0"),
    ("test-package-005", "1.1.0"),
)


@pytest.fixture(scope="module")
def index_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    root = tmp_path_factory.mktemp("kinds-bench")
    corpus = cached_corpus(CorpusSpec(packages=10), root / "cache")
    (root / "uploads").mkdir()  # twine's uploads, never into the corpus
    with (
        LocalPypiserver(corpus.directory, upload_dir=root / "uploads") as server,
        RecordingProxy(
            server.index_url, root / "requests.jsonl", credentials=server.credentials
        ) as proxy,
    ):
        yield proxy.index_url_for


def test_cost_per_client_run_by_kind(index_url: Callable[[str], str]) -> None:
    rows = []
    baseline_cpu = None
    for kind, version in KINDS:
        driver = driver_for(kind)
        driver.warm_up(version)
        assert len(PINS) + 1 >= driver.pins_per_run, "the bench must lock what a run locks"
        cpu, wall, rss, prep_s = [], [], [], []
        for n in range(RUNS):
            run_id = f"{kind}-{version or 'default'}-{n}"
            task = ClientTask(
                run_id=run_id,
                client=kind,
                project="test-package-001",
                version="1.1.0",
                index_url=index_url(run_id),
                requirements=PINS[: driver.pins_per_run - 1],
                client_version=version,
            )
            began = time.perf_counter()
            with prepared(task, temp_root=None) as prep:
                prep_s.append(time.perf_counter() - began)
                result = launch(prep, registry=ProcessRegistry())
            assert result.outcome == "ok", (result.error, result.stderr_tail)
            assert result.launched is not None
            cpu.append(result.cpu_s)
            wall.append(result.ended - result.launched)
            rss.append(result.max_rss_kb / 1024)
        median_cpu = statistics.median(cpu)
        baseline_cpu = baseline_cpu or median_cpu
        version_shown = (result.client_version or "-")[:8]
        rows.append(
            f"{kind:6} {version_shown:8} {driver.pins_per_run:5d} {median_cpu:8.3f} "
            f"{median_cpu / baseline_cpu:8.0f}x {statistics.median(wall):8.3f} "
            f"{max(rss):9.1f} {statistics.median(prep_s):8.3f}"
        )
    # Linux keeps a forking process's RSS in the child's ru_maxrss across exec, so a client's
    # peak RSS is never reported below its spawner's: print that floor beside the column.
    floor = psutil.Process().memory_info().rss / 2**20
    print(f"\n{RUNS} cold runs per kind, medians (RSS: max); baseline: http's CPU")
    print(f"RSS floor: this process's RSS, {floor:.1f} MiB (a client below it shows as the floor)")
    print("kind   version  pins    CPU s   x http    wall s   RSS MiB   prep s")
    print("\n".join(rows))
