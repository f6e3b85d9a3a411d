"""The Dask side of a run spread over generators: the cluster, and the checks made before load.

``--shards N`` alone starts a LocalCluster of N worker processes (one thread each) on 127.0.0.1,
dashboard off; ``--cluster tcp://HOST:PORT`` connects to a scheduler started elsewhere (``pipstorm
scheduler``, ``pipstorm worker ADDRESS``: ``pipstorm.engine.run.shards.daemons``). Either way,
before any load the coordinator refuses, in one line, what would make the merged report a lie:

- fewer workers with a shard slot (``resources={"shard": 1}``) than shards;
- a scheduler that re-runs a task whose worker died (``allowed-failures`` above 0);
- pipstorm, distributed, virtualenv (the pip a venv gets) or Python versions that differ
  between coordinator, scheduler and a worker, or a scheduler or worker without pipstorm;
- a worker clock further from the coordinator's than ``--max-clock-offset`` (NTP-style: the
  worker's ``time.time()`` against the midpoint of the call, keeping the lowest round trip);
- a worker that cannot reach the target (one authenticated GET, as a one-machine run's preflight).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pipstorm.engine.errors import UsageError
from pipstorm.engine.run import reaper
from pipstorm.engine.run.shards.worker import SHARD_RESOURCE, reach_target, worker_facts
from pipstorm.infra.credentials import Credentials

#: Dask settings every pipstorm cluster runs with. ``allowed-failures`` 0: a task whose worker
#: died fails at once instead of being re-run elsewhere (a replayed shard). ``daemon`` False: a
#: worker process starts the pool's processes, which a daemonic process may not do.
DASK_CONFIG: dict[str, Any] = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.worker.daemon": False,
    "distributed.admin.tick.limit": "60s",  # a busy 2-core host is no reason to log stalls
}
#: Rounds of the clock exchange per worker; the one with the lowest round trip counts.
CLOCK_ROUNDS = 5
CONNECT_TIMEOUT_S = 10.0


class ClusterError(UsageError):
    """The cluster cannot play this run as asked; one line naming the worker and the problem."""


@dataclass(frozen=True)
class WorkerInfo:
    """A worker the run will use: its address, host, and clock against the coordinator's."""

    address: str
    host: str
    clock_offset_s: float
    clock_rtt_s: float


def check_scheduler_address(address: str) -> None:
    """Refuse a ``--cluster`` that is not ``tcp://HOST:PORT`` before Dask sees it: Dask's own
    error is a traceback that quotes the address, credentials included."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is not None and (parts.username or parts.password or "@" in parts.netloc):
        raise ClusterError("a scheduler address must be tcp://HOST:PORT, without credentials")
    if parts is None or parts.scheme != "tcp" or not parts.hostname or port is None:
        raise ClusterError(f"a scheduler address must be tcp://HOST:PORT, got {address!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ClusterError(f"a scheduler address must be tcp://HOST:PORT, got {address!r}")


@contextmanager
def open_cluster(shards: int, address: str | None) -> Iterator[Any]:
    """A Dask ``Client``: to a LocalCluster of ``shards`` workers on 127.0.0.1 (stopped, and its
    scratch folder removed, on exit) or to the scheduler at ``address``."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set(DASK_CONFIG):
        if address is not None:
            try:
                client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
            try:
                yield client
            finally:
                client.close()  # type: ignore[no-untyped-call]
            return
        with (
            reaper.guarded_folder("pipstorm-dask-") as scratch,
            dask.config.set({"temporary-directory": str(scratch)}),  # the scheduler's too
            LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=shards,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,  # no dashboard at all (else :8787 on every interface)
                resources={SHARD_RESOURCE: 1},
                memory_limit=0,  # the clients' memory is theirs, not the worker's to police
                local_directory=str(scratch),
                silence_logs=logging.CRITICAL,  # a lost shard is said once, by pipstorm
                scheduler_kwargs={"allowed_failures": 0},
            ) as cluster,
            Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
        ):
            yield client


def check_cluster(
    client: Any,  # noqa: ANN401 - distributed.Client
    shards: int,
    *,
    index_url: str,
    credentials: Credentials | None,
    project: str,
    max_clock_offset_s: float,
) -> list[WorkerInfo]:
    """The ``shards`` workers the run will use (one shard each), or ClusterError."""
    info = client.scheduler_info(n_workers=-1)
    slots = sorted(
        address
        for address, worker in info.get("workers", {}).items()
        if (worker.get("resources") or {}).get(SHARD_RESOURCE, 0) >= 1
    )
    if len(slots) < shards:
        raise ClusterError(
            f"--shards {shards} needs {shards} workers with a shard slot; the cluster has "
            f"{len(slots)} (start them with `pipstorm worker ADDRESS`)"
        )
    chosen = slots[:shards]
    try:
        allowed = client.run_on_scheduler(_allowed_failures)
        theirs = client.run_on_scheduler(worker_facts)["versions"]
    except Exception as exc:  # it cannot unpickle a pipstorm function: not pipstorm's
        raise ClusterError(
            f"the scheduler cannot run pipstorm ({type(exc).__name__}); start it with "
            "`pipstorm scheduler`"
        ) from None
    mine = worker_facts()["versions"]
    _same_versions("the scheduler", theirs, mine)
    if allowed != 0:
        raise ClusterError(
            f"the scheduler re-runs a task whose worker died ({allowed} allowed failures): a "
            "lost shard would be replayed late; start it with `pipstorm scheduler`"
        )
    try:
        facts = client.run(worker_facts, workers=chosen)
    except Exception as exc:  # the worker cannot unpickle a pipstorm function
        raise ClusterError(f"a worker cannot run pipstorm: {type(exc).__name__}: {exc}") from None
    hosts: dict[str, str] = {}
    for address in chosen:
        _same_versions(f"worker {address}", facts[address]["versions"], mine)
        hosts[address] = str(facts[address]["host"])
    workers = [measure_clock(client, address, hosts[address]) for address in chosen]
    for w in workers:
        if abs(w.clock_offset_s) > max_clock_offset_s:
            raise ClusterError(
                f"worker {w.address} ({w.host}) clock is {w.clock_offset_s * 1000:+.1f} ms off "
                f"(round trip {w.clock_rtt_s * 1000:.1f} ms), above --max-clock-offset "
                f"{max_clock_offset_s * 1000:g} ms: sync the clocks (NTP)"
            )
    unreachable = client.run(reach_target, index_url, credentials, project, workers=chosen)
    for address in chosen:
        if unreachable.get(address):
            raise ClusterError(f"worker {address} cannot load the target: {unreachable[address]}")
    return workers


def _same_versions(who: str, theirs: dict[str, str], mine: dict[str, str]) -> None:
    for name, version in mine.items():
        if theirs.get(name) != version:
            raise ClusterError(
                f"{who} has {name} {theirs.get(name)}, this coordinator {version}: "
                "install the same versions everywhere"
            )


def _allowed_failures(dask_scheduler: Any) -> int:  # noqa: ANN401 - distributed.Scheduler
    return int(dask_scheduler.allowed_failures)


def measure_clock(client: Any, address: str, host: str) -> WorkerInfo:  # noqa: ANN401
    """NTP-style offset of one worker's clock: lowest round trip of CLOCK_ROUNDS exchanges."""
    best: tuple[float, float] | None = None  # (rtt, offset)
    for _ in range(CLOCK_ROUNDS):
        sent = time.time()
        theirs = client.run(time.time, workers=[address])[address]
        back = time.time()
        rtt, offset = back - sent, theirs - (sent + back) / 2
        if best is None or rtt < best[0]:
            best = (rtt, offset)
    assert best is not None  # noqa: S101 - CLOCK_ROUNDS > 0
    return WorkerInfo(address=address, host=host, clock_offset_s=best[1], clock_rtt_s=best[0])
