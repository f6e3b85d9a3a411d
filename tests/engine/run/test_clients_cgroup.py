"""The pool's workers run in the clients' cpu cgroup from their start, so every launcher and
client they start is born there (``pipstorm.infra.client_cgroup``), and the group is gone after.

Real worker processes and a real cgroup v1 ``cpu`` group (root); skipped, with the reason, where
the machine has neither."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipstorm.engine.run.pool import ClientGroups, ClientPool
from pipstorm.engine.run.priority import clients_cgroup
from pipstorm.infra.client_cgroup import CLIENTS_SHARES, create_group, procs_file
from pipstorm.infra.pypiserver.cgroups import CGROUP_ROOT

needs_cpu_cgroup = pytest.mark.skipif(
    os.geteuid() != 0 or not (CGROUP_ROOT / "cpu" / "cpu.shares").exists(),
    reason="the clients' cgroup needs root and a cgroup v1 cpu controller",
)


def cpu_cgroup_of(pid: int) -> str:
    """The path of ``pid``'s cgroup in the v1 ``cpu`` hierarchy (``/`` for the root)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text(encoding="ascii").splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    raise AssertionError(f"no cpu controller line for {pid}")


@needs_cpu_cgroup
def test_the_pools_workers_start_in_the_clients_cgroup() -> None:
    group = create_group(CLIENTS_SHARES)
    pool = ClientPool(
        lambda result: None, workers=2, groups=ClientGroups(clients=procs_file(group))
    )
    try:
        pool.start()
        assert pool.workers_in_group == 2
        for pid in pool.pids:
            assert cpu_cgroup_of(pid).endswith("/" + group.name), pid
        assert not cpu_cgroup_of(os.getpid()).endswith("/" + group.name)  # the engine stays out
        assert (group.dirs[0] / "cpu.shares").read_text().strip() == str(CLIENTS_SHARES)
    finally:
        pool.stop()
        group.remove()
    assert not group.dirs[0].exists()


def test_without_a_group_the_workers_stay_where_the_engine_is() -> None:
    pool = ClientPool(lambda result: None, workers=1)
    try:
        pool.start()
        assert pool.workers_in_group == 0
        assert cpu_cgroup_of(pool.pids[0]) == cpu_cgroup_of(os.getpid())
    finally:
        pool.stop()


@needs_cpu_cgroup
def test_the_record_says_what_was_made_and_the_group_goes_with_the_block() -> None:
    record: dict[str, object] = {}
    with clients_cgroup(record, wanted=True, shares=CLIENTS_SHARES) as procs:
        assert procs is not None and Path(procs).exists()
        assert record["applied"] is True and record["cpu_shares"] == CLIENTS_SHARES
    assert not Path(procs).parent.exists()


def test_not_wanted_makes_nothing_and_records_nothing() -> None:
    record: dict[str, object] = {}
    with clients_cgroup(record, wanted=False, shares=CLIENTS_SHARES) as procs:
        assert procs is None
    assert record == {}
