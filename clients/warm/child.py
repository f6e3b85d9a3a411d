"""A warm launcher's forked child becoming one run's client process (stdlib only).

Part of the warm agent (``pipstorm.clients.warm.agent``): ``child`` takes the run's world (session,
parent-death signal, stdin, stdout/stderr files, environment, cwd, nice, argv, only fds 0-2),
moves captured paths, does the client's pre-network start-up (``shared``), and runs ``python -m
MODULE`` once, exiting with the code the interpreter would have exited with; it waits for its
instant at its gate (``gate``): at its first connect, or before ``main``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import resource
import runpy
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from .gate import Gate, NiceAfterSend
from .nice import set_nice
from .paths import Slot, find_captured, relocate, slot_name
from .shared import AHEAD

_PR_SET_PDEATHSIG = 1
#: The warm agent's own package: ``pipstorm.clients.warm`` when imported by pipstorm (tests), the
#: private ``_pipstorm_warm`` inside a client's interpreter (``agent.py``).
AGENT_PACKAGE = __name__.rpartition(".")[0]


def send(fd: int, **event: object) -> None:
    """One event line in one write, so lines from the launcher and its children never mix."""
    data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    with contextlib.suppress(OSError):
        os.write(fd, data)


def set_pdeathsig(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def is_agent(name: str) -> bool:
    """Whether module ``name`` is the agent's own (not the client's)."""
    return name in {"__main__", AGENT_PACKAGE} or name.startswith(AGENT_PACKAGE + ".")


def _exit_code(code: object) -> int:
    """What the interpreter exits with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        sys.stderr.write(f"{code}\n")
    return 1


def _close_fds(keep: set[int]) -> None:
    for entry in Path("/proc/self/fd").iterdir():
        fd = int(entry.name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _enter_run(spec: dict[str, Any], launcher_pid: int, keep: set[int]) -> None:
    """Become the run's process (everything but the network), in the order that is safe."""
    os.setsid()  # its own process group: the owner stops it and whatever it spawns together
    set_pdeathsig(signal.SIGKILL)
    if os.getppid() != launcher_pid:
        os._exit(1)  # the launcher died before the parent-death signal was armed
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(spec["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(spec["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for fd, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    _close_fds({0, 1, 2, *keep})
    os.environ.clear()
    os.environ.update(spec["env"])
    tempfile.tempdir = None  # re-read TMPDIR from the run's environment
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    os.chdir(spec["cwd"])
    set_nice(0, int(spec["nice"]))  # and its session's autogroup (pipstorm.clients.warm.nice)


def _run_module(module: str) -> int:
    """``python -m module`` once: its exit code as the interpreter would report it."""
    atexit._clear()  # the launcher's handlers are not this run's
    # What runs as __main__ must not be imported already (runpy would warn on stderr, and the
    # interpreter would not have it): a package's __main__, or a plain module itself.
    sys.modules.pop(f"{module}.__main__", None)
    if not hasattr(sys.modules.get(module), "__path__"):
        sys.modules.pop(module, None)
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  # join non-daemon threads
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    return code


def child(
    spec: dict[str, Any], report: int, gate: int, launcher_pid: int, slots: list[Slot]
) -> None:
    """The forked child: enter the run, do the pre-network work, gate, run the client."""

    def left() -> list[str]:
        # Tests ask for proof that no launcher path is left in the client's modules.
        if not spec.get("verify"):
            return []
        return [slot_name(slot) for slot in find_captured(spec["root"], is_agent)]

    door = Gate(spec, report, gate, send=send, cpu_s=cpu_s, left=left)
    after_send: NiceAfterSend | None = None
    try:
        _enter_run(spec, launcher_pid, {report, gate})
        relocate(slots, [(a, b) for a, b in spec["moves"]])
        # What ``python -m MODULE ARGS`` would have had (runpy sets argv[0] to the module's file).
        sys.argv = [spec["module"], *spec["args"]]
        sys.orig_argv = [sys.executable, "-m", spec["module"], *spec["args"]]
        # ``python -m`` puts the cwd first on sys.path (pip's __main__ takes it off again).
        sys.path.insert(0, str(Path.cwd()))
        ahead = AHEAD.get(spec["module"])
        if ahead is not None:
            ahead(spec.get("shared") or {})
        nice_after = spec.get("nice_after_send")
        cgroup_after = spec.get("cgroup_after_send")
        if nice_after is not None or cgroup_after:
            after_send = NiceAfterSend(
                None if nice_after is None else int(nice_after), cgroup_after or None
            )
            after_send.arm()
        if spec.get("gate_at", "connect") == "connect":
            door.at_first_connect()
        else:
            door.at_start()
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(70)
    code = _run_module(spec["module"])
    door.disarm()
    if after_send is not None:
        after_send.disarm()
    door.pass_()  # a run that never connected is released at its instant all the same
    if spec.get("probe"):
        late = sorted(set(sys.modules) - door.modules_at_release)
        with contextlib.suppress(OSError):
            Path(spec["probe"]).write_text("\n".join(late) + "\n", encoding="utf-8")
    os._exit(code)
