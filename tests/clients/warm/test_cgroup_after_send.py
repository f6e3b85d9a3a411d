"""A warm child moves into the ready clients' cpu cgroup at its gate, and into the sent
clients' once its first request is sent, not before (``pipstorm.clients.warm.gate``, the paths
handed down by ``Launchers``), and a cgroup it cannot join leaves the run as it was.

Real processes: a launcher forks ``tests.clients.sendonce`` (one request to a socket server
here), the cgroup is a real one made by ``pipstorm.infra.client_cgroup`` (root, cgroup v1 cpu)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.warm.launcher import WarmSpec
from pipstorm.clients.warm.launchers import Launchers, outcome_of
from pipstorm.infra.client_cgroup import READY_SHARES, SENT_SHARES, create_group, procs_file
from pipstorm.infra.pypiserver.cgroups import CGROUP_ROOT, Cgroup

MODULE = "tests.clients.sendonce"

needs_cpu_cgroup = pytest.mark.skipif(
    os.geteuid() != 0 or not (CGROUP_ROOT / "cpu" / "cpu.shares").exists(),
    reason="the sent clients' cgroup needs root and a cgroup v1 cpu controller",
)


@pytest.fixture
def index() -> Iterator[tuple[int, list[bytes]]]:
    """A socket server on loopback that answers every request with an empty 200."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                received.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        server.close()
        thread.join(5)


def run_once(
    checkout_python: Path, tmp_path: Path, port: int, procs: str, ready: str | None = None
) -> dict[str, str]:
    """One warm run of ``sendonce`` whose children join ``ready`` at the gate and ``procs``
    after sending; what it saw."""
    root = tmp_path / "launchers"
    root.mkdir()
    work = tmp_path / "run"
    work.mkdir()
    spec = WarmSpec(MODULE, checkout_python, (str(port),), lambda _work: {})
    with Launchers(root, cgroup_ready=ready, cgroup_after_send=procs) as launchers:
        child = launchers.for_spec(spec).fork("sendonce", spec, work)
        assert child.gated.wait(60)
        assert child.pid is not None
        child.open()
        outcome = outcome_of(child, spec.argv, work, timeout_s=60, registry=ProcessRegistry())
    assert outcome.exit_code == 0, outcome.stderr_tail
    seen: dict[str, str] = json.loads(outcome.stdout_tail)
    return seen


def cpu_path(group: Cgroup) -> str:
    """``group``'s path as ``/proc/PID/cgroup`` names it."""
    return "/" + str(group.dirs[0].relative_to((CGROUP_ROOT / "cpu").resolve()))


@needs_cpu_cgroup
def test_a_child_joins_the_cgroup_after_its_first_request_and_not_before(
    checkout_python: Path, tmp_path: Path, index: tuple[int, list[bytes]]
) -> None:
    port, received = index
    group = create_group(SENT_SHARES)
    try:
        seen = run_once(checkout_python, tmp_path, port, procs_file(group))
        inside = cpu_path(group)
        assert seen["before_connect"] != inside
        assert seen["after_connect"] != inside  # connected, nothing sent yet
        assert seen["after_send"] == inside
        assert seen["after_answer"] == inside
        assert received and received[0].startswith(b"GET /simple/ HTTP/1.0")
        assert group.pids() == []  # the run has exited: nothing of it is left inside
        assert group.limits()["cpu_shares"] is not None
    finally:
        group.remove()
    assert not group.dirs[0].exists()


@needs_cpu_cgroup
def test_a_child_waits_at_its_gate_in_the_ready_group_then_moves_on_after_sending(
    checkout_python: Path, tmp_path: Path, index: tuple[int, list[bytes]]
) -> None:
    ready, sent = create_group(READY_SHARES), create_group(SENT_SHARES)
    try:
        seen = run_once(
            checkout_python,
            tmp_path,
            port=index[0],
            procs=procs_file(sent),
            ready=procs_file(ready),
        )
        assert seen["before_connect"] not in (cpu_path(ready), cpu_path(sent))
        assert seen["after_connect"] == cpu_path(ready)  # joined at the gate, in the connect
        assert seen["after_send"] == cpu_path(sent)
        assert ready.limits()["cpu_shares"] == READY_SHARES
        assert ready.pids() == [] and sent.pids() == []
    finally:
        ready.remove()
        sent.remove()


def test_a_cgroup_that_cannot_be_joined_leaves_the_run_as_it_was(
    checkout_python: Path, tmp_path: Path, index: tuple[int, list[bytes]]
) -> None:
    port, _ = index
    missing = str(tmp_path / "no-such-cgroup" / "cgroup.procs")
    seen = run_once(checkout_python, tmp_path, port, missing, ready=missing)
    assert seen["after_connect"] == seen["before_connect"]
    assert seen["after_send"] == seen["before_connect"]  # still where it started, run ok
    assert not Path(missing).exists()


def test_no_cpu_controller_is_a_one_line_reason(tmp_path: Path) -> None:
    from pipstorm.infra.pypiserver.cgroups import CgroupError

    with pytest.raises(CgroupError) as excinfo:
        group: Cgroup = create_group(SENT_SHARES, root=tmp_path)
        group.remove()
    message = str(excinfo.value)
    assert "\n" not in message
    assert ("no cgroup v1 cpu controller" in message) or ("needs root" in message)
