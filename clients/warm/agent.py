"""The warm launcher's own process: runs INSIDE a client's interpreter, stdlib only.

Started as ``<client python> agent.py MODULE ROOT OWNER_PID`` by ``pipstorm.clients.warm.launcher``.
The client's venv has no pipstorm in it, so this script loads its own folder as a package named
``_pipstorm_warm`` and imports its siblings relatively (``preload``, ``paths``, ``child``,
``gate``, ``shared``: stdlib only too, like this folder's ``__init__``); nothing is put on
``sys.path``.

It imports the client once (``preload``), finds the launcher paths the client captured at
import (``paths``), then per run forks a child (``child``) that becomes that run's
client process: the run's world, pre-network start-up, ``python -m MODULE`` once, gated at its
first connect (``gate``). What every run of one environment computes the same (pip's user
agent) is computed once per environment fingerprint, in a forked helper (``shared``).
``random`` reseeds itself in a forked child; ``tempfile`` is told to look again; logging locks
are reinitialised by Python; the collector's objects are frozen so children share their pages.

Protocol: one JSON object per line. Owner -> launcher (stdin): ``run``, ``open``, ``signal``,
``quit``. Launcher and children -> owner (stdout, one ``os.write`` per line, atomic below
PIPE_BUF): ``ready``, ``forked``, ``gated``, ``released``, ``exit``, ``error``.

The launcher dies with its owner (PR_SET_PDEATHSIG SIGTERM, and EOF on stdin): it then kills
its children's process groups, reaps them and removes their run dirs and its ROOT, so a
SIGKILLed pipstorm leaves neither processes nor temp dirs. Children die with the launcher
(PR_SET_PDEATHSIG SIGKILL).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    # A script in a foreign interpreter (the client's venv has no pipstorm): this folder is loaded
    # as a package of a private name (importlib's recipe for importing a source file), so the
    # siblings' relative imports resolve and nothing of pipstorm is ever put on ``sys.path``. The
    # script's own folder, which Python put first on the path, comes off it: its ``run.py`` and
    # ``launcher.py`` would shadow any client module of those names.
    import importlib.util

    _HERE = Path(__file__).resolve().parent
    if sys.path and sys.path[0] == str(_HERE):
        sys.path.pop(0)
    _SPEC = importlib.util.spec_from_file_location(
        "_pipstorm_warm", _HERE / "__init__.py", submodule_search_locations=[str(_HERE)]
    )
    assert _SPEC is not None and _SPEC.loader is not None  # noqa: S101 (a file we ship)
    sys.modules[_SPEC.name] = importlib.util.module_from_spec(_SPEC)
    _SPEC.loader.exec_module(sys.modules[_SPEC.name])
    __package__ = _SPEC.name

from .child import child, cpu_s, is_agent, send, set_pdeathsig
from .paths import Slot, find_captured, relocate, slot_name
from .preload import preload
from .shared import SHARED, compute_in_helper, fingerprint


class Launcher:
    """The long-lived process: preloaded client, forked children, their reaping."""

    def __init__(self, module: str, root: str) -> None:
        self.module = module
        self.root = root
        self.children: dict[int, dict[str, Any]] = {}  # pid -> {"id", "gate", "work"}
        self.by_id: dict[str, int] = {}
        self.stopping = False
        self.slots: list[Slot] = []
        #: Environment fingerprint -> what every child of that environment computes the same.
        self.shared: dict[str, dict[str, str] | None] = {}

    def preload(self) -> dict[str, Any]:
        started = cpu_s()
        missing = preload(self.module)
        self.slots = find_captured(self.root, is_agent)
        gc.collect()
        gc.freeze()  # keep the collector from touching (copying) shared pages in every child
        return {
            "captured_at": sorted({slot_name(slot) for slot in self.slots}),
            "modules": len(sys.modules),
            "missing": missing,
            "captured": len(self.slots),
            "preload_cpu_s": round(cpu_s() - started, 4),
        }

    def shared_for(self, spec: dict[str, Any]) -> tuple[dict[str, str] | None, str | None]:
        """The module's shared values for this run's environment, computed on first sight of
        its fingerprint (in a helper; see ``shared``), and ``computed``/``cached``/``failed``;
        (None, None): the module has none, or the run asked to compute its own."""
        compute = SHARED.get(self.module)
        if compute is None or not spec.get("share", True):
            return None, None
        key = fingerprint(spec)
        how = "cached"
        if key not in self.shared:
            moves = [(a, b) for a, b in spec["moves"]]
            self.shared[key] = compute_in_helper(spec, compute, lambda: self._helper(moves))
            how = "computed"
        value = self.shared[key]
        return value, how if value is not None else "failed"

    def _helper(self, moves: list[tuple[str, str]]) -> None:
        """A shared-value helper becomes a quiet run-like process (no output to the owner)."""
        set_pdeathsig(signal.SIGKILL)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        relocate(self.slots, moves)

    def fork(self, spec: dict[str, Any]) -> None:
        spec["shared"], shared = self.shared_for(spec)
        gate_r, gate_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(gate_w)
            report = os.dup(1)  # fd 1 becomes the run's stdout file
            child(spec, report, gate_r, os.getppid(), self.slots)
            os._exit(70)  # not reached
        os.close(gate_r)
        self.children[pid] = {"id": spec["id"], "gate": gate_w, "work": spec.get("work")}
        self.by_id[spec["id"]] = pid
        send(1, event="forked", id=spec["id"], pid=pid, shared=shared)

    def open(self, run_id: str) -> None:
        pid = self.by_id.get(run_id)
        if pid is not None and self.children[pid]["gate"] is not None:
            with contextlib.suppress(OSError):
                os.write(self.children[pid]["gate"], b"g")
            self._close_gate(pid)

    def signal(self, run_id: str, sig: int) -> None:
        pid = self.by_id.get(run_id)
        if pid is not None:  # still ours, not reaped: the pid cannot have been reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)

    def _close_gate(self, pid: int) -> None:
        gate = self.children[pid]["gate"]
        if gate is not None:
            with contextlib.suppress(OSError):
                os.close(gate)
            self.children[pid]["gate"] = None

    def reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            # Whatever the run left in its session goes with it, like the exec path does.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self._close_gate_fd(child)
            self.by_id.pop(child["id"], None)
            send(
                1,
                event="exit",
                id=child["id"],
                status=os.waitstatus_to_exitcode(status),
                cpu_s=usage.ru_utime + usage.ru_stime,
                max_rss_kb=usage.ru_maxrss,
                mono=time.monotonic(),
            )

    @staticmethod
    def _close_gate_fd(child: dict[str, Any]) -> None:
        if child["gate"] is not None:
            with contextlib.suppress(OSError):
                os.close(child["gate"])

    def shutdown(self, *, remove_dirs: bool) -> None:
        """Kill every child's group, reap them; if the owner is gone, remove what it left."""
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while self.children and time.monotonic() < deadline:
            for pid in list(self.children):
                with contextlib.suppress(ChildProcessError):
                    done, _ = os.waitpid(pid, os.WNOHANG)
                    if done == 0:
                        continue
                child = self.children.pop(pid)
                self._close_gate_fd(child)
                if remove_dirs and child["work"]:
                    shutil.rmtree(child["work"], ignore_errors=True)
            time.sleep(0.01)
        if remove_dirs:
            shutil.rmtree(self.root, ignore_errors=True)


def _serve(launcher: Launcher) -> int:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    orphaned = [False]

    def on_term(signum: int, frame: object) -> None:
        del signum, frame
        orphaned[0] = True

    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd is written
    signal.signal(signal.SIGTERM, on_term)
    buffer = b""
    while not orphaned[0]:
        try:
            ready, _, _ = select.select([0, wake_r], [], [], 1.0)
        except InterruptedError:
            ready = []
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        launcher.reap()
        if 0 not in ready:
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:
            orphaned[0] = True  # EOF: the owner is gone without a word
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            message = json.loads(line)
            op = message.get("op")
            if op == "run":
                launcher.fork(message)
            elif op == "open":
                launcher.open(message["id"])
            elif op == "signal":
                launcher.signal(message["id"], int(message["sig"]))
            elif op == "quit":
                launcher.shutdown(remove_dirs=False)
                return 0
    launcher.shutdown(remove_dirs=True)
    return 0


def main(argv: list[str]) -> int:
    """``agent.py MODULE ROOT OWNER_PID``: preload, say ready, serve until told or orphaned."""
    module, root, owner = argv[0], argv[1], int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    set_pdeathsig(signal.SIGTERM)
    launcher = Launcher(module, root)
    if os.getppid() != owner:
        launcher.shutdown(remove_dirs=True)
        return 1
    try:
        facts = launcher.preload()
    except Exception as exc:
        send(1, event="error", message=f"cannot import {module}: {exc}")
        return 1
    send(1, event="ready", pid=os.getpid(), **facts)
    return _serve(launcher)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
