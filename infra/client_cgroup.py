"""The clients' cpu cgroups: one for the whole generator's clients, one for those waiting at
their gate or released and on their way to the index, one for those that have sent their first
request.

Why: with autogroups (``kernel.sched_autogroup_enabled = 1``) every client leads its own session
and so its own scheduling group; at x170, ~495 runnable clients at nice 19 weighed 7,425 against
a local index's one group at nice -5 (3,121), and the index waited 89-94 % of its runnable time
(docs/performance.md, "Who starves the local index at x170"). Inside a cgroup other than the root
the kernel ignores autogroups, so the clients in one cgroup weigh its ``cpu.shares`` together:

- **the clients' group** (``CLIENTS_SHARES``): the pool's worker processes are put in it as they
  start, so every launcher and client they start is born in it (a fork inherits its parent's
  cgroup: no migration at the burst). Released clients on their way to the index then weigh as
  the group against the index, not as 510 autogroups (~56,000 at nice 10);
- **the ready group** (``READY_SHARES``), where a burst's release is small: a warm client moves
  itself there when it reaches its gate (ahead of its instant: nothing moves at the burst), so
  at the instant the released clients come before a busy local index; asleep at the gate they
  weigh nothing;
- **the sent group** (``SENT_SHARES``): a warm client that has sent its first request moves itself
  there (``pipstorm.clients.warm.gate``; it gets the ``cgroup.procs`` path, never this module),
  so the runs still on their way to the index outweigh the ones already there.

Only the ``cpu`` controller, only cgroup v1 written directly (as on this project's machine) and
only as root; elsewhere ``create_group`` raises ``CgroupError`` with the reason, and the run
keeps the autogroups' scheduling. Naming, the sweep of cgroups whose owner was SIGKILLed and
removal (killing what is still inside) are ``pipstorm.infra.pypiserver.cgroups``'s, shared with
the embedded target's cgroup: a later pipstorm start, or the run's reaper, removes a stale one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pipstorm.infra.pypiserver.cgroups import (
    CGROUP_ROOT,
    Cgroup,
    CgroupError,
    new_name,
    own_path,
    remove_stale,
    write_value,
)

#: The weight of every sent client together against one nice-0 task (1,024) and the local index's
#: autogroup at nice -5 (3,121). The kernel's floor is 2. Measured at x170 (docs/performance.md).
SENT_SHARES: Final = 16
#: The weight of all the clients together (workers, launchers, clients on their way to the
#: index): one nice-0 task's, a third of the local index's autogroup at nice -5 (3,121). The onset
#: and a local index share the burst's first second, and this weight divides it. Measured
#: (docs/performance.md, 2026-12-06, after the gate's probe-only module set): at 1,024 x170
#: against the one-thread static index passed in three runs of five (the index's counted share
#: 40-46 %; 56 % and 57 % flagged), x25 onset p95 0.05-0.07 s in five bursts of six (0.53 s
#: once); at 4,096 x170 was flagged in both runs (58 %, 65 %). Before that fix, 1,024 had cost
#: x25's onset (0.20-0.36 s) and 4,096 had not.
CLIENTS_SHARES: Final = 1024
#: The weight of the warm clients prepared and waiting at their gate, released at their instant
#: and not yet sent their first request: what a burst's onset is made of. Ahead of a local index
#: at nice -5 (3,121) and of everything else but the real-time proxy, so a burst's release
#: (~1 ms of CPU per client) comes first; asleep at their gate they weigh nothing. Used only
#: where a release is small (``pipstorm.engine.run.priority.release_first``): x25's onset p95
#: 0.03-0.11 s in 16 bursts of 16 (0.32-0.39 s in 3 of 16 at the clients' weight); x170's 510 at
#: once held the index long enough for the run to be judged generator-bound (52 %,
#: docs/performance.md).
READY_SHARES: Final = 8192


def create_group(shares: int, *, root: Path = CGROUP_ROOT) -> Cgroup:
    """Make a cgroup (below this process's own cpu cgroup) with ``shares``; stale pipstorm
    cgroups of dead owners are removed first. Its ``cgroup.procs`` is ``procs_file(group)``."""
    if os.geteuid() != 0:
        raise CgroupError("moving clients into a cpu cgroup needs root (cgroup files are root's)")
    hierarchy = (root / "cpu").resolve()
    if not (hierarchy / "cpu.shares").exists():
        raise CgroupError(f"no cgroup v1 cpu controller at {root / 'cpu'} (v2 is not built)")
    remove_stale(root)
    name = new_name()
    directory = hierarchy / own_path("cpu").lstrip("/") / name
    try:
        directory.mkdir()
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {name}: {exc.strerror or exc}") from None
    group = Cgroup(version=1, name=name, dirs=(directory,))
    try:
        write_value(directory / "cpu.shares", str(shares))
    except OSError as exc:
        group.remove()
        raise CgroupError(f"cannot set {name}'s cpu.shares: {exc.strerror or exc}") from None
    return group


def move_process(procs: str, pid: int) -> bool:
    """Put process ``pid`` (every thread; its later children follow) into the cgroup whose
    ``cgroup.procs`` file is ``procs``. Returns whether the kernel took it: a process gone, or a
    group removed, is left where it is (it then weighs as before), never an error."""
    try:
        write_value(Path(procs), str(pid))
    except OSError:
        return False
    return True


def procs_file(group: Cgroup) -> str:
    """The file a client writes its pid to, to join ``group``."""
    return str(group.dirs[0] / "cgroup.procs")


def shares_of(group: Cgroup) -> int | None:
    """The ``cpu.shares`` the kernel holds for ``group`` (read back, not what was asked)."""
    return group.limits().get("cpu_shares")
