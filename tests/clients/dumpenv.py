"""``python -m tests.clients.dumpenv``: print what this process is, as JSON (launcher tests)."""

from __future__ import annotations

import json
import os
import sys
import tempfile


def inheritable(fds: list[int]) -> list[int]:
    """The fds a program this one spawned would inherit (the listing's own fd is closed)."""
    found = []
    for fd in fds:
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            continue
    return found


def main() -> None:
    """What a client would see of its process: env, cwd, nice, argv, fds, session, stdin."""
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))  # noqa: PTH208
    json.dump(
        {
            "env": dict(os.environ),
            "cwd": os.getcwd(),  # noqa: PTH109 - the process's view, as a client reads it
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "argv": sys.argv,
            "orig_argv": sys.orig_argv,
            "tmp": tempfile.gettempdir(),
            "fds": fds,
            "inheritable": inheritable(fds),
            "sid": os.getsid(0),
            "pid": os.getpid(),
            "stdin": os.read(0, 10).decode(),
            "path0": sys.path[0],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
