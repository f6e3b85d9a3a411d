"""``python -m tests.clients.sendonce PORT``: one HTTP request to 127.0.0.1:PORT, printing this
process's cpu cgroup before the connect, after it, after the request is sent and after the answer
(as JSON: the cgroup-after-send test)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path


def cpu_cgroup() -> str:
    """This process's path in the cgroup v1 cpu hierarchy ("" where there is none)."""
    for line in Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return ""


def main() -> None:
    """Connect, send one request, read the answer; say where this process was at each step."""
    seen = {"before_connect": cpu_cgroup()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(("127.0.0.1", int(sys.argv[1])))
    seen["after_connect"] = cpu_cgroup()
    sock.sendall(b"GET /simple/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    seen["after_send"] = cpu_cgroup()
    while sock.recv(65536):
        pass
    sock.close()
    seen["after_answer"] = cpu_cgroup()
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main()
