"""A warm launcher's forked child becoming one run's client process (stdlib only).

Part of the warm agent (``pipstorm.clients.warm.agent``): ``child`` takes the run's world (session,
parent-death signal, stdin, stdout/stderr files, environment, cwd, nice, argv, only fds 0-2),
moves captured paths, does the client's pre-network start-up, reports ``gated``, waits for its
instant or its gate, reports ``released`` and runs ``python -m MODULE`` once, exiting with the
code the interpreter would have exited with.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import resource
import runpy
import select
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .paths import Slot, find_captured, relocate, slot_name

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


def _pip_ahead() -> None:
    """pip's pre-network start-up, done before the gate with the run's own environment.

    ``user_agent()`` spawns ``lsb_release`` and ``rustc --version`` and reads the run's
    environment (CI variables, PATH); ``_create_truststore_ssl_context()`` loads certifi's
    bundle. pip (20.x on) caches both per process (``lru_cache``), so calling them here, in this
    child, after its environment is the run's, is what pip itself does a moment later: the
    header is byte for byte the same. The launcher never calls them (its cache would be shared).
    An older pip without the cache gets its user agent handed back the same way.
    """
    from pip._internal.network import session

    _compute_once(session, "user_agent", patch=True)
    with contextlib.suppress(ImportError):
        from pip._internal.cli import index_command

        _compute_once(index_command, "_create_truststore_ssl_context", patch=False)


def _compute_once(module: object, name: str, *, patch: bool) -> None:
    function = getattr(module, name, None)
    if function is None:
        return
    clear = getattr(function, "cache_clear", None)
    if clear is not None:
        clear()  # nothing computed in the launcher survives into a run
        function()
    elif patch:
        value = function()
        setattr(module, name, lambda: value)


AHEAD: dict[str, Callable[[], None]] = {"pip": _pip_ahead}


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
    os.setpriority(os.PRIO_PROCESS, 0, int(spec["nice"]))


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
    """The forked child: enter the run, do the pre-network work, wait, run the client."""
    run_id = spec["id"]
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
            ahead()
        before = set(sys.modules)
        # Tests ask for proof that no launcher path is left in the client's modules.
        left = (
            [slot_name(slot) for slot in find_captured(spec["root"], is_agent)]
            if spec.get("verify")
            else []
        )
        send(report, event="gated", id=run_id, mono=time.monotonic(), cpu_s=cpu_s(), left=left)
        due = spec.get("due")
        while True:
            wait = None if due is None else max(0.0, float(due) - time.monotonic())
            ready, _, _ = select.select([gate], [], [], wait)
            if not ready:
                break  # the instant has come
            if os.read(gate, 1) != b"g":
                os._exit(1)  # EOF: the launcher is gone
            break
        send(report, event="released", id=run_id, mono=time.monotonic(), cpu_s=cpu_s())
        os.close(report)
        os.close(gate)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(70)
    code = _run_module(spec["module"])
    if spec.get("probe"):
        late = sorted(set(sys.modules) - before)
        with contextlib.suppress(OSError):
            Path(spec["probe"]).write_text("\n".join(late) + "\n", encoding="utf-8")
    os._exit(code)
