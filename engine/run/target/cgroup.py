"""Sampling the sized embedded target's cgroup during a run, into ``target_cgroup.jsonl``.

The counters are the kernel's (``pipstorm.infra.pypiserver.counters``): one line a second while the
load runs, and the run's totals into ``run.json``'s ``target.counters`` when it ends, however it
ends (an interrupted run keeps what was counted up to then). Stopped before the target it samples,
so ``survived`` says whether the server lived through the load, not through its own stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipstorm.engine.run.target.opening import Target
from pipstorm.engine.rundir.files import TARGET_CGROUP_FILE
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.pypiserver.counters import CgroupSampler


@contextmanager
def sample_target_cgroup(target: Target, run_dir: Path, meta: RunMeta) -> Iterator[None]:
    """Sample the target's cgroup while the block runs (nothing for an unsized target)."""
    server = target.server
    cgroup = server.cgroup if server is not None else None
    if server is None or cgroup is None:
        yield
        return
    with JsonlWriter(run_dir / TARGET_CGROUP_FILE) as writer:
        sampler = CgroupSampler(cgroup, alive=server.alive, on_sample=writer.write)
        sampler.start()
        try:
            yield
        finally:
            meta.target["counters"] = sampler.stop().as_record()
