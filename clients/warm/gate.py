"""Where a warm child waits for its instant: before the client's ``main``, or at its first connect.

Part of the warm agent (``pipstorm.clients.warm.agent``; stdlib only). A child reports ``gated``,
waits until its instant (``due``) or until the launcher opens its gate, reports ``released``
and goes on. Where it waits is the ``gate_at`` of its spec:

- ``start``: before ``python -m MODULE`` runs; the client's option parsing, configuration, session
  and finder set-up then happen after the instant, in the burst.
- ``connect`` (the default): inside the client's first ``connect()`` of an internet socket, so
  all of that is done ahead and the first thing after the instant is the connection to the
  index. Nothing on the wire changes: no byte is sent before the gate, and the client's own code
  runs unchanged around it. A run that exits without connecting (bad arguments, nothing to
  fetch) waits for its instant before it exits, so it is released and recorded like any other.

After its first request is sent (the first ``send``/``sendall`` on an internet socket returned),
a child lowers its own nice to the spec's ``nice_after_send`` (when given): the runs that have
reached the index then make room for the ones of the same burst still on their way to it, which
is what the onset measures. Only the generator's scheduling changes: the issue allows a child's
nice to change after its first request is sent, and the bytes on the wire are the same.

At the same moment a child moves itself into the spec's ``cgroup_after_send`` (a ``cgroup.procs``
file, when given): one low-weight cpu cgroup that every child which has sent its first request
shares (made by the engine, ``pipstorm.engine.run.priority.clients_cgroup``). Its nice alone
cannot make it weigh little: with autogroups each child is its own session's group, and 500 of
them at nice 19 outweighed the local index's one group at nice -5 by 2.4:1 (docs/performance.md).
In one cgroup they weigh its ``cpu.shares`` together. Before their first request they are in the
clients' group they were born in (``pipstorm.infra.client_cgroup``), which outweighs this one,
so the runs still on their way to the index come first; or, when the spec names a
``cgroup_ready``, in that heavier group, joined on reaching the gate (ahead of the instant, so
nothing moves at the burst): then at the instant the released children come before a busy local
index too, not only before the sent ones.

``startup_s``/``startup_cpu_s`` in the ``gated`` event say how long (wall, CPU) the client's own
start-up ran before the gate (0 at ``start``).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .nice import join_cgroup, set_nice

GATE_AT = ("start", "connect")
_INET = (socket.AF_INET, socket.AF_INET6)
#: The last stretch of a gated child's wait, slept as a wait of its own. Why: the kernel lets a
#: ``select``/``poll`` timeout fire late by up to 0.5 % of its length for a task at a positive
#: nice (0.1 % otherwise, at most 0.1 s: ``select_estimate_accuracy``), to batch wake-ups; a
#: client at nice 10 gated 4-17 s ahead may wake 20-85 ms after its instant (the first of a
#: burst was released 8-27 ms after it, docs/performance.md). Waking this long before it and
#: sleeping the rest (at most twice this) bounds that to 0.5 ms.
LAST_WAIT_S = 0.05


def next_wait(left: float | None) -> float | None:
    """The timeout of the gate's next ``select`` with ``left`` seconds to the instant (None: no
    instant, wait for the gate): all but ``LAST_WAIT_S`` of a long wait, then the rest."""
    if left is None:
        return None
    if left > 2 * LAST_WAIT_S:
        return left - LAST_WAIT_S
    return max(0.0, left)


class Gate:
    """One child's gate: passed once, from whichever thread gets there first."""

    def __init__(
        self,
        spec: dict[str, Any],
        report: int,
        gate: int,
        *,
        send: Callable[..., None],
        cpu_s: Callable[[], float],
        left: Callable[[], list[str]],
    ) -> None:
        self.spec = spec
        self.report = report
        self.gate = gate
        self._send = send
        self._cpu_s = cpu_s
        self._left = left
        self._lock = threading.Lock()
        self.passed = False
        self.modules_at_release: set[str] = set()
        self._startup = (time.monotonic(), cpu_s())
        self._original: Any = None

    def pass_(self) -> None:
        """Report ``gated``, wait for the instant or the gate, report ``released``; once."""
        with self._lock:
            if self.passed:
                return
            try:
                self._wait()
            except BaseException:
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
                    sys.stderr.flush()
                os._exit(70)
            self.passed = True

    def _wait(self) -> None:
        run_id = self.spec["id"]
        ready = self.spec.get("cgroup_ready")
        if ready:
            join_cgroup(ready)  # ahead of the instant: nothing moves at the burst
        now, cpu = time.monotonic(), self._cpu_s()
        self._send(
            self.report,
            event="gated",
            id=run_id,
            mono=now,
            cpu_s=cpu,
            left=self._left(),
            startup_s=round(now - self._startup[0], 6),
            startup_cpu_s=round(cpu - self._startup[1], 6),
        )
        due = None if self.spec.get("due") is None else float(self.spec["due"])
        while True:
            wait = next_wait(None if due is None else due - time.monotonic())
            ready, _, _ = select.select([self.gate], [], [], wait)
            if ready:
                if os.read(self.gate, 1) != b"g":
                    os._exit(1)  # EOF: the launcher is gone
                break  # opened by the launcher
            if due is not None and time.monotonic() >= due:
                break  # the instant has come
        if self.spec.get("probe"):
            # Only a probe reports what it imported after its release: the set touches every
            # module name's refcount: in a child forked from a process with pip's modules
            # imported, ~285 copy-on-write page faults and ~1 ms of CPU, at the burst's instant.
            self.modules_at_release = set(sys.modules)
        self._send(
            self.report, event="released", id=run_id, mono=time.monotonic(), cpu_s=self._cpu_s()
        )
        os.close(self.report)
        os.close(self.gate)

    def at_start(self) -> None:
        """Mark the start-up's beginning and pass now (``gate_at = start``)."""
        self._startup = (time.monotonic(), self._cpu_s())
        self.pass_()

    def at_first_connect(self) -> None:
        """Mark the start-up's beginning and arm the gate in ``socket.socket.connect``: the
        first internet connect passes it, then the original method is put back."""
        self._startup = (time.monotonic(), self._cpu_s())
        original = socket.socket.connect
        self._original = original
        gate = self

        def connect(sock: socket.socket, address: object) -> None:
            if sock.family in _INET:
                gate.pass_()
                gate.disarm()
            return original(sock, address)  # type: ignore[arg-type]

        connect.__doc__ = original.__doc__
        socket.socket.connect = connect  # type: ignore[method-assign,assignment]

    def disarm(self) -> None:
        """Put ``socket.socket.connect`` back (after the gate, or before the child exits)."""
        if self._original is not None:
            socket.socket.connect = self._original  # type: ignore[method-assign]
            self._original = None


class NiceAfterSend:
    """Lowers this process's nice (and moves it into ``cgroup``, a ``cgroup.procs`` file, when
    given) once its first request is sent, then puts ``send`` back.

    Hooks ``socket.socket.sendall``/``send`` (plain HTTP: ``http.client`` sends through
    ``sendall``) and ``ssl.SSLSocket``'s (HTTPS, when ``ssl`` is loaded): the first call on an
    internet socket runs unchanged, then the nice is lowered and every hook removed.
    """

    def __init__(self, nice: int | None, cgroup: str | None = None) -> None:
        self.nice = nice
        self.cgroup = cgroup
        self.lowered = False
        self.joined: bool | None = None  # whether the cgroup took it (None: none was asked)
        self._lock = threading.Lock()
        self._saved: list[tuple[type, str, Any]] = []

    def arm(self) -> None:
        """Install the hooks (before the client's ``main``)."""
        classes: list[type] = [socket.socket]
        ssl = sys.modules.get("ssl")
        if ssl is not None:
            classes.append(ssl.SSLSocket)
        for cls in classes:
            for name in ("sendall", "send"):
                # socket.socket inherits both from the C type: they are looked up, hooked on
                # the Python class and put back there (as the connect gate does).
                original = getattr(cls, name)
                self._saved.append((cls, name, original))
                setattr(cls, name, self._hook(original))

    def _hook(self, original: Callable[..., Any]) -> Callable[..., Any]:
        after = self

        def send(sock: socket.socket, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            result = original(sock, *args, **kwargs)
            if sock.family in _INET:
                after.lower()
            return result

        send.__doc__ = original.__doc__
        return send

    def lower(self) -> None:
        """Lower the nice and join the cgroup (once), and remove the hooks."""
        with self._lock:
            if self.lowered:
                return
            self.lowered = True
            if self.nice is not None:
                set_nice(0, self.nice)
            if self.cgroup is not None:
                self.joined = join_cgroup(self.cgroup)
            self.disarm()

    def disarm(self) -> None:
        """Put every hooked method back."""
        for cls, name, original in self._saved:
            setattr(cls, name, original)
        self._saved.clear()
