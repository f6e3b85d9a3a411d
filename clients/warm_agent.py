"""The warm launcher's own process: runs INSIDE a client's interpreter, stdlib only.

Started as ``<client python> warm_agent.py MODULE ROOT OWNER_PID`` by ``clients.launcher``
(never imported by pipstorm: the client's venv has no pipstorm in it). It imports the client
once, then per run forks a child that becomes that run's client process:

1. the child takes the run's own world: session, parent-death signal, stdin from /dev/null,
   stdout/stderr to files in the run dir, the run's environment (``os.environ`` replaced),
   cwd, nice level, ``sys.argv``, and no file descriptor but 0, 1, 2 once released;
2. it does the client's pre-network start-up (pip: its user agent, which spawns
   ``lsb_release`` and ``rustc --version``; its SSL context) and reports ``gated``;
3. it blocks until the run's CLOCK_MONOTONIC instant, or until the owner opens its gate;
4. it runs ``python -m MODULE`` exactly as the interpreter would (``runpy.run_module``, once)
   and ``_exit``s with the code the interpreter would have exited with.

Import-time state that a fork would carry from the launcher into a run: module globals that
captured the launcher's HOME, TMPDIR or cache dirs at import (pip's default ``--cache-dir``,
poetry's config dir). The launcher runs with a template environment whose per-run paths all lie
under ROOT; after the imports it finds every module global (and dict, partial and class member)
that holds a string under ROOT, and each child rewrites those to its own run's paths. Modules
imported after the fork read the run's environment themselves. ``random`` reseeds itself in a
forked child; ``tempfile`` is told to look again; logging locks are reinitialised by Python.

Protocol: one JSON object per line. Owner -> launcher (stdin): ``run``, ``open``, ``signal``,
``quit``. Launcher and children -> owner (stdout, one ``os.write`` per line, atomic below
PIPE_BUF): ``ready``, ``forked``, ``gated``, ``released``, ``exit``, ``error``.

The launcher dies with its owner (PR_SET_PDEATHSIG SIGTERM, and EOF on stdin): it then kills
its children's process groups, reaps them and removes their run dirs and its ROOT, so a
SIGKILLed pipstorm leaves neither processes nor temp dirs. Children die with the launcher
(PR_SET_PDEATHSIG SIGKILL).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import importlib
import json
import os
import resource
import runpy
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path, PurePath
from typing import Any

if __name__ == "__main__" and sys.path and str(Path(__file__).resolve().parent) == sys.path[0]:
    # The script's own folder (pipstorm's clients/) must not shadow the client: clients/pip.py
    # would otherwise be imported as ``pip``.
    sys.path.pop(0)

_PR_SET_PDEATHSIG = 1
#: What each client module's runs import; imported once in the launcher so no child pays for
#: it. Missing names (another version) are skipped. Measured with ``late_imports`` (see below).
PRELOAD: dict[str, tuple[str, ...]] = {
    "pip": (
        "pip._internal.cli.main",
        "pip._internal.cli.main_parser",
        "pip._internal.cli.autocompletion",
        "pip._internal.commands.download",
        "pip._internal.network.session",
        "pip._internal.network.download",
        "pip._internal.network.lazy_wheel",
        "pip._internal.index.collector",
        "pip._internal.index.package_finder",
        "pip._internal.operations.prepare",
        "pip._internal.req.req_install",
        "pip._internal.resolution.resolvelib.resolver",
        "pip._internal.resolution.resolvelib.factory",
        "pip._internal.resolution.resolvelib.provider",
        "pip._internal.resolution.resolvelib.reporter",
        "pip._internal.metadata.importlib",
        "pip._internal.utils.logging",
        "pip._internal.self_outdated_check",
        "pip._vendor.truststore",
        "pip._vendor.distro",
        "pip._vendor.rich.console",
        "pip._vendor.rich.progress",
        "pip._vendor.urllib3",
        "pip._vendor.requests",
        "pip._vendor.idna",
        "pip._vendor.msgpack",
        "pip._vendor.cachecontrol",
        "pip._vendor.certifi",
        "ssl",
        "email.parser",
        "zipfile",
        "http.client",
        "netrc",
        "encodings.cp437",
    ),
    "poetry": (
        "poetry.console.application",
        "poetry.console.commands.lock",
        "poetry.console.commands.installer_command",
        "poetry.factory",
        "poetry.installation.installer",
        "poetry.installation.executor",
        "poetry.puzzle.solver",
        "poetry.puzzle.provider",
        "poetry.mixology.version_solver",
        "poetry.repositories.legacy_repository",
        "poetry.repositories.http_repository",
        "poetry.repositories.link_sources.html",
        "poetry.repositories.pypi_repository",
        "poetry.utils.authenticator",
        "poetry.utils.env",
        "poetry.utils.cache",
        "poetry.inspection.info",
        "poetry.inspection.lazy_wheel",
        "poetry.packages.locker",
        "poetry.core.factory",
        "poetry.core.packages.dependency",
        "cleo.application",
        "requests",
        "urllib3",
        "cachecontrol",
        "keyring",
        "keyring.backends.null",
        "pkginfo",
        "tomlkit",
        "dulwich.repo",
        "virtualenv",
        "ssl",
        "pickle",
        "getpass",
        "termios",
        "netrc",
        "encodings.cp437",
        "encodings.unicode_escape",
        "lark",
        "poetry.core.version.markers",
        "poetry.core.version.requirements",
        "poetry.core.packages.url_dependency",
        "poetry.core.packages.vcs_dependency",
        "poetry.core.spdx.helpers",
        "poetry.core.vcs.git",
        "poetry.console.logging.io_handler",
        "poetry.console.logging.io_formatter",
        "poetry.console.logging.formatters.builder_formatter",
        "poetry.console.commands.self.self_command",
        "poetry.repositories.single_page_repository",
    ),
    "twine": (
        "twine.cli",
        "twine.commands.upload",
        "twine.package",
        "twine.repository",
        "twine.settings",
        "twine.auth",
        "twine.utils",
        "requests",
        "requests_toolbelt.multipart.encoder",
        "urllib3",
        "rich.console",
        "rich.logging",
        "rich._emoji_codes",
        "keyring",
        "keyring.backends.null",
        "readme_renderer",
        "ssl",
        "netrc",
        "encodings.cp437",
    ),
}
#: Pure computations a client caches in its modules on first use (``functools.cache`` or a
#: lazy attribute), done once in the launcher so children share the result instead of each
#: redoing it after the gate: poetry's two lark LALR parsers (PEP 508 markers, requirements)
#: and its compiled JSON-schema validators. No I/O but reading installed files, no network;
#: (module, dotted callable, arguments).
PREWARM: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "poetry": (
        ("poetry.core.version.markers", "_parser.parse", ('python_version >= "3.8"',)),
        ("poetry.core.version.requirements", "_parser.parse", ("pipstorm (==1.0)",)),
        ("poetry.core.json", "_get_validator", ("project-schema",)),
        ("poetry.core.json", "_get_validator", ("poetry-schema",)),
        ("poetry.core.json", "_get_validator", ("dependency-groups-schema",)),
        ("poetry.json", "_get_validator_and_properties", ()),
    ),
}
#: Bounded walk into module globals when looking for captured launcher paths.
_SCAN_DEPTH = 3
Slot = tuple[Any, str, Any]  # (container, how: "attr"|"item", key)


def _send(fd: int, **event: object) -> None:
    """One event line in one write, so lines from the launcher and its children never mix."""
    data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    with contextlib.suppress(OSError):
        os.write(fd, data)


def _set_pdeathsig(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# --- captured paths ---------------------------------------------------------------------------


def _holds(value: object, root: str) -> bool:
    return (isinstance(value, str) and root in value) or (
        isinstance(value, PurePath) and root in str(value)
    )


def _members(obj: object) -> Iterator[tuple[str, Any, Any]]:
    """(how, key, value) of what a container holds that can be put back."""
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            yield "item", key, value
    elif isinstance(obj, list):
        for index, value in enumerate(list(obj)):
            yield "item", index, value
    elif isinstance(obj, partial):
        for key, value in list(obj.keywords.items()):
            yield "kwitem", key, value
    elif isinstance(obj, type):
        for key, value in list(vars(obj).items()):
            if not key.startswith("__"):
                yield "attr", key, value


def find_captured(root: str, skip: Callable[[str], bool]) -> list[Slot]:
    """Every place in loaded modules that holds a str or path containing ``root``."""
    slots: list[Slot] = []
    seen: set[int] = set()

    def walk(container: object, depth: int) -> None:
        if id(container) in seen or depth > _SCAN_DEPTH:
            return
        seen.add(id(container))
        for how, key, value in _members(container):
            if _holds(value, root):
                target = container.keywords if isinstance(container, partial) else container
                slots.append((target, "attr" if how == "attr" else "item", key))
            elif isinstance(value, dict | list | partial | type) and not isinstance(value, str):
                if isinstance(value, type) and getattr(value, "__module__", "") != getattr(
                    container, "__name__", getattr(container, "__module__", None)
                ):
                    continue  # a class imported from elsewhere is walked in its own module
                walk(value, depth + 1)

    for name, module in list(sys.modules.items()):
        if module is None or skip(name):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            if key.startswith("__"):
                continue
            if _holds(value, root):
                slots.append((module, "attr", key))
            elif isinstance(value, dict | list | partial) or (
                isinstance(value, type) and value.__module__ == name
            ):
                walk(value, 1)
    return slots


def _slot_name(slot: Slot) -> str:
    container, how, key = slot
    owner = getattr(container, "__name__", type(container).__name__)
    return f"{owner}.{key}" if how == "attr" else f"{owner}[{key!r}]"


def relocate(slots: list[Slot], moves: list[tuple[str, str]]) -> int:
    """Rewrite each captured path with the run's own (``moves``: launcher path -> run path)."""
    done = 0
    for container, how, key in slots:
        old = getattr(container, key) if how == "attr" else container[key]
        text = str(old)
        for before, after in moves:
            text = text.replace(before, after)
        new = type(old)(text) if isinstance(old, PurePath) else text
        if how == "attr":
            setattr(container, key, new)
        else:
            container[key] = new
        done += 1
    return done


def _is_agent(name: str) -> bool:
    return name in (__name__, "__main__")


# --- the child ---------------------------------------------------------------------------------


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
    _set_pdeathsig(signal.SIGKILL)
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


def _child(
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
            [_slot_name(slot) for slot in find_captured(spec["root"], _is_agent)]
            if spec.get("verify")
            else []
        )
        _send(report, event="gated", id=run_id, mono=time.monotonic(), cpu_s=_cpu_s(), left=left)
        due = spec.get("due")
        while True:
            wait = None if due is None else max(0.0, float(due) - time.monotonic())
            ready, _, _ = select.select([gate], [], [], wait)
            if not ready:
                break  # the instant has come
            if os.read(gate, 1) != b"g":
                os._exit(1)  # EOF: the launcher is gone
            break
        _send(report, event="released", id=run_id, mono=time.monotonic(), cpu_s=_cpu_s())
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


# --- the launcher ------------------------------------------------------------------------------


class Launcher:
    """The long-lived process: preloaded client, forked children, their reaping."""

    def __init__(self, module: str, root: str) -> None:
        self.module = module
        self.root = root
        self.children: dict[int, dict[str, Any]] = {}  # pid -> {"id", "gate", "work"}
        self.by_id: dict[str, int] = {}
        self.stopping = False
        self.slots: list[Slot] = []

    def preload(self) -> dict[str, Any]:
        started = _cpu_s()
        importlib.import_module(self.module)
        missing = []
        for name in PRELOAD.get(self.module, ()):
            try:
                importlib.import_module(name)
            except Exception:
                missing.append(name)
        for name, dotted, args in PREWARM.get(self.module, ()):
            with contextlib.suppress(Exception):  # another version lacks it: no harm
                target: Any = importlib.import_module(name)
                for part in dotted.split("."):
                    target = getattr(target, part)
                target(*args)
        self.slots = find_captured(self.root, _is_agent)
        gc.collect()
        gc.freeze()  # keep the collector from touching (copying) shared pages in every child
        return {
            "captured_at": sorted({_slot_name(slot) for slot in self.slots}),
            "modules": len(sys.modules),
            "missing": missing,
            "captured": len(self.slots),
            "preload_cpu_s": round(_cpu_s() - started, 4),
        }

    def fork(self, spec: dict[str, Any]) -> None:
        gate_r, gate_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(gate_w)
            report = os.dup(1)  # fd 1 becomes the run's stdout file
            _child(spec, report, gate_r, os.getppid(), self.slots)
            os._exit(70)  # not reached
        os.close(gate_r)
        self.children[pid] = {"id": spec["id"], "gate": gate_w, "work": spec.get("work")}
        self.by_id[spec["id"]] = pid
        _send(1, event="forked", id=spec["id"], pid=pid)

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
            _send(
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
    """``warm_agent.py MODULE ROOT OWNER_PID``: preload, say ready, serve until told or orphaned."""
    module, root, owner = argv[0], argv[1], int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    _set_pdeathsig(signal.SIGTERM)
    launcher = Launcher(module, root)
    if os.getppid() != owner:
        launcher.shutdown(remove_dirs=True)
        return 1
    try:
        facts = launcher.preload()
    except Exception as exc:
        _send(1, event="error", message=f"cannot import {module}: {exc}")
        return 1
    _send(1, event="ready", pid=os.getpid(), **facts)
    return _serve(launcher)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
