"""A killed load generator leaves no server behind: both children watch their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.infra.conftest import Corpus

#: Serial: SIGKILLs of process groups, leak bounds on a loaded host (docs/testing.md).
pytestmark = pytest.mark.serial

REPO = Path(__file__).resolve().parents[2]

OWNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipstorm.infra.proxy.control import RecordingProxy
    from pipstorm.infra.pypiserver.target import LocalPypiserver

    server = LocalPypiserver(Path(sys.argv[1]), workers=1)
    server.start()
    proxy = RecordingProxy(server.index_url, Path(sys.argv[2]), credentials=server.credentials)
    proxy.start()
    print(server.pid, proxy.pid, flush=True)
    sys.stdin.read()  # until killed
    """
)


def test_servers_exit_when_their_owner_is_killed(corpus: Corpus, tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(corpus.directory), str(tmp_path / "r.jsonl")],
        cwd=REPO,
        env=dict(os.environ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        server_pid, proxy_pid = map(int, owner.stdout.readline().split())
        server = psutil.Process(server_pid)
        private_dir = Path(server.cwd())  # the server's htpasswd and log live there
        assert private_dir.name.startswith("pipstorm-pypiserver-")
        members = [server, *server.children(recursive=True), psutil.Process(proxy_pid)]
        assert len(members) == 3
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if owner.stdin is not None:
            owner.stdin.close()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 60  # a leak bound: they went in seconds, 20 s failed at load 20
    alive = members
    while alive and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(alive, timeout=0.2)
    for process in alive:  # do not leak them into other tests, then fail
        process.kill()
    assert not alive, f"orphans left: {alive}"
    assert not private_dir.exists()  # nobody else is left to remove it


REAPED_OWNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipstorm.engine.run import reaper
    from pipstorm.infra.pypiserver.target import LocalPypiserver

    with reaper.guarded_folder("pipstorm-run-") as scratch:
        server = LocalPypiserver(Path(sys.argv[1]), workers=1, temp_root=scratch)
        server.start()
        print(server.pid, flush=True)
        sys.stdin.read()  # until killed
    """
)


def test_a_server_killed_with_its_owner_leaves_no_htpasswd_folder(
    corpus: Corpus, tmp_path: Path
) -> None:
    # Both SIGKILLed: the server cannot remove its own folder (its atexit never runs), so it
    # lives under the owner's reaped folder (pipstorm.engine.run.reaper), which a reaper
    # removes once the owner is gone.
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    owner = subprocess.Popen(
        [sys.executable, "-c", REAPED_OWNER, str(corpus.directory)],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        server_pid = int(owner.stdout.readline())
        private_dir = Path(psutil.Process(server_pid).cwd())
        assert private_dir.name.startswith("pipstorm-pypiserver-")
        assert private_dir.parent.name.startswith("pipstorm-run-")
        assert (private_dir / "htpasswd").is_file()
        os.killpg(server_pid, signal.SIGKILL)  # master and workers, as a crash would
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if owner.stdin is not None:
            owner.stdin.close()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 60  # the reaper polls once a second; a busy host is slow
    while any(tmpdir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(p.name for p in tmpdir.iterdir()) == []


PROXY_OWNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipstorm.infra.proxy.control import RecordingProxy

    # No upstream is needed to serve: the proxy only has to live, then notice its owner's death.
    proxy = RecordingProxy("http://127.0.0.1:9/simple/", Path(sys.argv[1]), loop=sys.argv[2])
    proxy.start()
    print(proxy.pid, flush=True)
    sys.stdin.read()  # until killed
    """
)

# The owner is SIGKILLed while its proxy starts, before the proxy's parent watch runs; a process
# it forked keeps the proxy's URL pipe open (so the proxy's announcement does not fail) and
# reports what the proxy wrote to stderr once it has exited.
OWNER_KILLED_WHILE_STARTING = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    import psutil
    from pipstorm.infra.proxy.control import RecordingProxy

    class KilledWhileStarting(RecordingProxy):
        def _read_url(self, proc):
            if os.fork() == 0:
                print(proc.pid, flush=True)
                deadline = time.monotonic() + 60  # a leak bound
                while psutil.pid_exists(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                self._stderr.seek(0)
                print(self._stderr.read().decode().replace(chr(10), " | "), flush=True)
                os._exit(0)
            os.kill(os.getpid(), signal.SIGKILL)

    KilledWhileStarting("http://127.0.0.1:9/simple/", Path(sys.argv[1]), loop=sys.argv[2]).start()
    """
)


def _wait_gone(pid: int, bound_s: float = 60.0) -> bool:
    """Whether ``pid`` exited within ``bound_s`` (a leak bound, not a timing promise); killed
    otherwise, so a failure does not leak it into other tests."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    try:
        process.wait(bound_s)
    except psutil.TimeoutExpired:
        process.kill()
        return False
    return True


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_proxy_exits_when_its_owner_is_killed(tmp_path: Path, loop: str) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", PROXY_OWNER, str(tmp_path / "r.jsonl"), loop],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        proxy_pid = int(owner.stdout.readline())
        assert psutil.Process(proxy_pid).ppid() == owner.pid
    finally:
        owner.kill()
        owner.wait()
        for stream in (owner.stdin, owner.stdout):
            if stream is not None:
                stream.close()
    assert _wait_gone(proxy_pid), f"the proxy on {loop} outlived its SIGKILLed owner"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_proxy_whose_owner_died_while_it_started_exits(tmp_path: Path, loop: str) -> None:
    # The watch once compared the parent id it read when it started with the current one: an
    # owner already gone by then made it watch init (pid 1) forever, idle in epoll.
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_KILLED_WHILE_STARTING, str(tmp_path / "r.jsonl"), loop],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        proxy_pid = int(owner.stdout.readline())
        assert owner.wait(60) == -signal.SIGKILL
        assert _wait_gone(proxy_pid), f"the proxy on {loop} outlived its owner killed at start"
        said = owner.stdout.readline()  # the proxy's stderr, from the forked reporter
        assert "parent" in said and "gone" in said, said
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


# The owner makes the sent clients' cgroup as a run does (inside its reaped scratch folder's
# life), and a "client" that has sent its first request sits in it (a sleep that joined it).
SENT_GROUP_OWNER = textwrap.dedent(
    """
    import subprocess, sys
    from pipstorm.engine.run import reaper
    from pipstorm.infra.client_cgroup import SENT_SHARES, create_group, procs_file

    with reaper.guarded_folder("pipstorm-run-"):
        group = create_group(SENT_SHARES)
        client = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open(procs_file(group), "w") as procs:
            procs.write(str(client.pid))
        print(group.dirs[0], client.pid, flush=True)
        sys.stdin.read()  # until killed
    """
)

needs_cpu_cgroup = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/sys/fs/cgroup/cpu/cpu.shares").exists(),
    reason="the sent clients' cgroup needs root and a cgroup v1 cpu controller",
)


@needs_cpu_cgroup
def test_a_sigkilled_owners_sent_clients_cgroup_is_reaped(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    owner = subprocess.Popen(
        [sys.executable, "-c", SENT_GROUP_OWNER],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        directory, pid = owner.stdout.readline().split()
        group = Path(directory)
        assert group.name.startswith("pipstorm-")
        assert (group / "cgroup.procs").read_text().split() == [pid]
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if owner.stdin is not None:
            owner.stdin.close()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 60  # the reaper polls; a busy host is slow
    while group.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    leaked = group.exists()
    if leaked:  # do not leak it into other tests, then fail
        from pipstorm.infra.pypiserver.cgroups import Cgroup

        Cgroup(version=1, name=group.name, dirs=(group,)).remove()
    assert not leaked, f"cgroup left: {group}"
    assert _wait_gone(int(pid)), "the client inside the cgroup was left running"
    assert sorted(p.name for p in tmpdir.iterdir()) == []
