"""A warm child lowers its nice once its first request is sent, not before
(``pipstorm.clients.warm.gate.NiceAfterSend``), and a client's nice reaches its autogroup
(``pipstorm.clients.warm.nice``). Each case runs in a subprocess: it renices itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pipstorm.clients.warm.nice import autogroup_nice

SCRIPT = textwrap.dedent(
    """
    import json, os, socket
    from pipstorm.clients.warm.gate import NiceAfterSend
    from pipstorm.clients.warm.nice import autogroup_nice, set_nice

    os.setsid()  # its own session and autogroup, as a warm child has
    set_nice(0, 10)
    seen = {}
    after = NiceAfterSend(19)
    after.arm()
    server = socket.create_server(("127.0.0.1", 0))
    local_a, local_b = socket.socketpair()  # AF_UNIX: not a request to an index
    local_a.sendall(b"x")
    seen["after_unix_send"] = os.getpriority(os.PRIO_PROCESS, 0)
    client = socket.create_connection(server.getsockname())
    seen["after_connect"] = os.getpriority(os.PRIO_PROCESS, 0)
    client.sendall(b"GET / HTTP/1.1\\r\\n\\r\\n")
    seen["after_send"] = os.getpriority(os.PRIO_PROCESS, 0)
    seen["autogroup"] = autogroup_nice(0)
    seen["unhooked"] = "sendall" not in socket.socket.__dict__ or (
        socket.socket.sendall is getattr(socket.socket.__mro__[1], "sendall")
    )
    print(json.dumps(seen))
    """
)


def test_the_nice_drops_after_the_first_request_is_sent_and_the_hooks_go() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["after_unix_send"] == 10  # a local socket is not the index
    assert seen["after_connect"] == 10  # connected, nothing sent yet
    assert seen["after_send"] == 19
    if autogroup_nice(0) is not None:  # a kernel with autogroups: the group follows
        assert seen["autogroup"] == 19
    assert seen["unhooked"] is True
