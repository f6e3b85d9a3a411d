"""A sized embedded target end to end: the real CLI, pypiserver confined by cgroups, its counters
in the report, the sizing lab's diagnosis, and no cgroup left behind.

Short loads (light_load, seconds); a cgroup hierarchy and root are needed, else skipped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pipstorm.infra.pypiserver import cgroups
from tests.e2e.conftest import leftovers, pipstorm
from tests.engine.report.ci.test_junit import check_junit

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.serial,  # cgroups and their counters (docs/testing.md)
    pytest.mark.skipif(
        os.geteuid() != 0 or cgroups.detect_version() is None,
        reason="a sized target needs root and a cgroup v1 or v2 hierarchy",
    ),
]


def pipstorm_cgroups() -> list[Path]:
    """Every pipstorm cgroup on the machine whose owner is gone (what must never be left)."""
    return [path for path in cgroups.pipstorm_dirs() if not cgroups.owner_alive(path.name)]


def test_sized_run_records_the_cgroup_counters_and_leaves_no_cgroup(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            "run",
            "--profile",
            "light_load",
            "--duration",
            "10",
            "--client",
            "http",
            "--sizing",
            "baseline",
            "--hash-algo",
            "off",
            "--results",
            str(results),
            "--quiet",
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert proc.returncode in (0, 1, 3), proc.stderr  # a verdict, not an error
    (run_dir,) = list(results.iterdir())
    target = json.loads((run_dir / "report.json").read_text())["target"]
    assert target["sizing"]["name"] == "baseline+"  # a preset changed by a knob says so
    assert target["sizing"]["hash_algo"] == "off"
    assert target["cgroup"]["limits"] == {
        "cpu_quota_us": 200_000,  # a t3.micro's 2 vCPUs: unlimited credits, no baseline cap
        "cpu_period_us": 100_000,
        # Ahead of the clients only where 2 vCPUs leave them a core (infra/pypiserver/cgroups.py).
        "cpu_shares": cgroups.CPU_SHARES_V1 if cgroups.host_cores() >= 3 else 1024,
        "memory_limit_bytes": 256 * 2**20,  # its 2 tasks x 128 MB
    }
    counters = target["counters"]
    assert counters["survived"] is True
    assert counters["periods"] > 0
    assert counters["cpu_s"] > 0
    assert counters["oom_kills"] == 0
    samples = (run_dir / "target_cgroup.jsonl").read_text().splitlines()
    assert samples  # one a second while the load ran
    assert all(json.loads(line)["server_alive"] for line in samples)
    assert (run_dir / "chart-target-cgroup.png").is_file()
    assert "target sizing: baseline+" in proc.stderr
    assert not pipstorm_cgroups()
    assert leftovers(tmp_path / "tmp") == []


def test_sizing_lab_names_the_bcrypt_hash_and_a_memory_limit_too_small(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            "sizing-lab",
            "--profile",
            "light_load",
            "--duration",
            "10",
            "--client",
            "http",
            "--sizes",
            "optimized/auth=apr1/cpus=0.4,optimized/auth=bcrypt:12/cpus=0.4,"
            "baseline/workers=8/memory=128M",
            # A bcrypt:12 check is ~0.2 CPU-s: at 0.4 vCPU no request can take less than 0.5 s.
            "--threshold",
            "p95_listing_ms=400",
            "--allow-generator-bound",
            "--scale",  # the sizes as written: the default would halve baseline's 2 vCPUs here
            "1",
            "--results",
            str(results),
            "--quiet",
            "--junit",
            str(tmp_path / "junit.xml"),
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr
    (lab_dir,) = list(results.iterdir())
    lab = json.loads((lab_dir / "sizing-lab.json").read_text())
    by_name = {s["sizing"]["name"]: s for s in lab["sizings"]}
    apr1, bcrypt, small = (
        by_name["optimized/auth=apr1/cpus=0.4"],
        by_name["optimized/auth=bcrypt:12/cpus=0.4"],
        by_name["baseline/workers=8/memory=128M"],
    )
    bcrypt_causes = [d["cause"] for d in bcrypt["diagnosis"]]
    assert bcrypt["verdict"] in ("fail", "inconclusive")
    assert "auth-hash-bound" in bcrypt_causes
    assert "auth-hash-bound" not in [d["cause"] for d in apr1["diagnosis"]]
    # 8 gevent workers do not fit 128 MiB: the cgroup's OOM counter says so, whether the server
    # died while starting, during the load (the run completes with its failures) or after it
    # (then the thresholds may pass, and the diagnosis still names the kill).
    # Seen in CI: the 128 MiB server can also survive its start thrashing, too slow to answer
    # the corpus check before any load; the lab records that as the sizing's death and goes on.
    small_text = json.dumps(small["diagnosis"])
    assert "OOM" in small_text or ("died" in small_text and "before any load" in small_text)
    if small["run_dir"] is not None:
        report = json.loads((Path(small["run_dir"]) / "report.json").read_text())
        assert report["target"]["counters"]["oom_kills"] >= 1
    out = proc.stdout
    assert "optimized/auth=bcrypt:12/cpus=0.4: " in out
    assert "auth-hash-bound" in out
    assert (lab_dir / "sizing-lab.md").is_file()
    # --junit: one testsuite per sizing, in order, named after it (check_junit: the schema).
    suites = check_junit(tmp_path / "junit.xml")
    names = [str(s.get("name")) for s in suites]
    assert [n.split(" (")[0] for n in names] == [f"pipstorm sizing-lab {n}" for n in by_name]
    # An OOM-killed server's tasks can take longer to exit than the lab waits for (seen in CI:
    # its cpuacct and memory dirs stayed busy past the 10 s removal bound and the exit retry);
    # what the lab could not remove, the next pipstorm start removes as stale: that promise is
    # what is held here (a normal run's cleanup is held strictly by the test above).
    deadline = time.monotonic() + 120  # a bound for slow-exiting killed tasks, not a figure
    while pipstorm_cgroups() and time.monotonic() < deadline:
        cgroups.remove_stale()
        time.sleep(1)
    assert not pipstorm_cgroups()
    assert leftovers(tmp_path / "tmp") == []
