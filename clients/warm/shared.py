"""What every run of one environment computes the same, computed once per launcher (stdlib only).

Part of the warm agent (``pipstorm.clients.warm.agent``). pip's user agent is the costly case:
``user_agent()`` spawns ``lsb_release -a`` (through its vendored ``distro``) and ``rustc
--version`` (a rustup proxy on many hosts: ~0.1 CPU-s) and reads the run's environment (CI
variables, ``PIP_USER_AGENT_USER_DATA``, PATH, and HOME for rustup). Every run with the same
environment gets the same string, so a launcher computes it once per environment *fingerprint*
and hands it to each child, which then sends exactly the header pip would have computed itself.

The fingerprint is the client module, the run's environment and its cwd, with the run's own
folder (``work``: HOME, TMPDIR, XDG dirs and the cwd all lie in it) replaced by a placeholder:
every run's folder is made fresh by the same driver code, so a program reading it sees the same
thing in each. Any other difference in the environment (a CI variable, another PATH) is another
fingerprint, computed again. The value is computed in a forked *helper* of the launcher that
takes on the run's environment and cwd exactly as a child does, so the launcher's own caches
(pip's ``lru_cache``, ``distro``'s cached properties) never hold a value, and a child that gets
none (a helper that failed) computes it itself, as before.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import select
import signal
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

#: A helper that takes longer than this is abandoned; the children then compute the value.
HELPER_TIMEOUT_S = 30.0
_WORK = "\0work\0"


def fingerprint(spec: Mapping[str, Any]) -> str:
    """What makes two runs' shared values equal: module, environment and cwd, the run's own
    folder replaced by a placeholder."""
    work = str(spec.get("work") or "\0none\0")
    env = {key: str(value).replace(work, _WORK) for key, value in spec["env"].items()}
    data = [spec["module"], sorted(env.items()), str(spec["cwd"]).replace(work, _WORK)]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def _pip_shared() -> dict[str, str]:
    """pip's user agent as a fresh run would compute it (its cache cleared first)."""
    from pip._internal.network import session

    function = session.user_agent
    clear = getattr(function, "cache_clear", None)
    if clear is not None:
        clear()
    return {"user_agent": str(function())}


def _pip_ahead(shared: Mapping[str, str]) -> None:
    """pip's pre-network start-up in the child, with the run's own environment.

    With a shared user agent the child's ``user_agent()`` returns it (pip reads it through the
    module global, in ``PipSession.__init__``); without one the child computes it itself, as
    pip would a moment later (pip 20.x on caches it per process: the header is the same).
    The launcher itself never calls it (its cache would be shared). pip's SSL context, which
    reads no environment, is made once in the launcher (``preload.PREWARM``).
    """
    from pip._internal.network import session

    value = shared.get("user_agent")
    if value is not None:
        session.user_agent = functools.lru_cache(maxsize=None)(lambda: value)
    else:
        _compute_once(session, "user_agent", patch=True)


def _compute_once(module: object, name: str, *, patch: bool) -> None:
    function = getattr(module, name, None)
    if function is None:
        return
    clear = getattr(function, "cache_clear", None)
    if clear is not None:
        clear()  # nothing computed in the launcher survives into a run
        function()
    elif patch:  # an older pip without the cache gets its value handed back the same way
        value = function()
        setattr(module, name, lambda: value)


#: Per client module: what its children compute the same per fingerprint.
SHARED: dict[str, Callable[[], dict[str, str]]] = {"pip": _pip_shared}
#: Per client module: its pre-network start-up in a child, given the shared values (maybe {}).
AHEAD: dict[str, Callable[[Mapping[str, str]], None]] = {"pip": _pip_ahead}


def enter_environment(spec: Mapping[str, Any]) -> None:
    """Take on the run's environment and cwd (what a child's ``_enter_run`` does to them)."""
    os.environ.clear()
    os.environ.update(spec["env"])
    tempfile.tempdir = None  # re-read TMPDIR from the run's environment
    os.chdir(spec["cwd"])


def compute_in_helper(
    spec: Mapping[str, Any], compute: Callable[[], dict[str, str]], prepare: Callable[[], None]
) -> dict[str, str] | None:
    """Fork a helper that enters the run's environment (``prepare`` then ``enter_environment``),
    runs ``compute`` and writes its result back; None when it fails or takes too long."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the helper
        code = 1
        try:
            os.close(read_fd)
            prepare()
            enter_environment(spec)
            data = json.dumps(compute()).encode()
            while data:
                data = data[os.write(write_fd, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], HELPER_TIMEOUT_S)
            if not ready:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    try:
        value = json.loads(b"".join(chunks))
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}
