"""The cgroup's memory counters, read from synthetic cgroup files as the kernel writes them."""

from __future__ import annotations

from pathlib import Path

from pipstorm.infra.pypiserver.cgroups import Cgroup
from pipstorm.infra.pypiserver.counters import CgroupSampler, read_counters

V1_STAT = """cache 579682304
rss 1810432
pgpgin 268877
pgfault 272657
pgmajfault {majfault}
workingset_refault_anon 0
workingset_refault_file {refault}
total_pgmajfault 999999
"""


def v1_memory_dir(root: Path, *, majfault: int, refault: int, failcnt: int) -> Path:
    """A cgroup v1 memory directory with the files read_counters looks at."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "memory.usage_in_bytes").write_text("1000\n")
    (root / "memory.max_usage_in_bytes").write_text("2000\n")
    (root / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    (root / "memory.stat").write_text(V1_STAT.format(majfault=majfault, refault=refault))
    (root / "memory.failcnt").write_text(f"{failcnt}\n")
    (root / "cgroup.procs").write_text("")
    return root


def test_v1_memory_stat_gives_major_faults_refaults_and_limit_hits(tmp_path: Path) -> None:
    directory = v1_memory_dir(tmp_path / "memory", majfault=61, refault=2377, failcnt=40)
    counters = read_counters(Cgroup(version=1, name="x", dirs=(directory,)))
    # This cgroup's own counters, not total_* (its children's too).
    assert (counters.major_faults, counters.refaults, counters.limit_hits) == (61, 2377, 40)
    assert counters.memory_stall_us is None  # no memory.pressure on cgroup v1 here


def test_v1_limit_hits_are_counted_where_memsw_takes_them_first(tmp_path: Path) -> None:
    directory = v1_memory_dir(tmp_path / "memory", majfault=0, refault=10, failcnt=0)
    (directory / "memory.memsw.failcnt").write_text("734\n")  # memsw limit = memory limit
    counters = read_counters(Cgroup(version=1, name="x", dirs=(directory,)))
    assert counters.limit_hits == 734


def test_pressure_is_read_where_the_kernel_has_it(tmp_path: Path) -> None:
    directory = tmp_path / "v2"
    directory.mkdir()
    (directory / "cpu.stat").write_text("usage_usec 5000000\nnr_periods 10\nnr_throttled 2\n")
    (directory / "memory.current").write_text("1000\n")
    (directory / "memory.stat").write_text("pgmajfault 7\nworkingset_refault_file 30\n")
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 0\noom_kill 0\n")
    (directory / "memory.pressure").write_text(
        "some avg10=1.00 avg60=0.50 avg300=0.10 total=2500000\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n"
    )
    (directory / "cgroup.procs").write_text("")
    counters = read_counters(Cgroup(version=2, name="v2", dirs=(directory,)))
    assert (counters.major_faults, counters.refaults, counters.limit_hits) == (7, 30, 12)
    assert counters.memory_stall_us == 2_500_000  # "some": at least one task waited


def test_the_summary_counts_the_runs_memory_events_only(tmp_path: Path) -> None:
    directory = v1_memory_dir(tmp_path / "memory", majfault=10, refault=100, failcnt=5)
    sampler = CgroupSampler(Cgroup(version=1, name="x", dirs=(directory,)), alive=lambda: True)
    sampler.sample()
    v1_memory_dir(directory, majfault=25, refault=400, failcnt=9)
    sample = sampler.sample()
    assert sample is not None
    assert (sample["major_faults"], sample["refaults"], sample["limit_hits"]) == (15, 300, 4)
    summary = sampler.summary()
    assert (summary.major_faults, summary.refaults, summary.limit_hits) == (15, 300, 4)
    assert summary.memory_stall_s is None
    record = summary.as_record()
    assert record["refaults"] == 300
    assert record["memory_stall_s"] is None
