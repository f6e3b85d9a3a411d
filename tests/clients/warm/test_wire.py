"""Wire equivalence: a warm-launched run sends exactly the requests of the same run exec'd fresh.

Real pip (the embedded version and a pinned 25.3), poetry and twine, the real pypiserver and the
recording proxy; a byte-level relay in front of the proxy records what each client sent. The
same task runs both ways under two run ids; the requests must be equal in method, path, query,
every header (name, value, order) and order, except what varies by design: the run id in the
path, and for twine's multipart upload the random boundary, the random version in the file
(so the body's length) and the order of its metadata fields (string-hash order, see below).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import execute
from pipstorm.clients.task import ClientResult, ClientTask
from pipstorm.clients.warm.launchers import Launchers
from pipstorm.clients.warm.run import launch_warm, warm_prepared
from tests.clients.conftest import Index
from tests.clients.warm.wire_capture import CaptureRelay, Sent

pytestmark = pytest.mark.e2e

Request = tuple[str, str, tuple[tuple[str, str], ...]]
_BOUNDARY = re.compile(r"boundary=[0-9a-f]+")


@pytest.fixture
def relay(index: Index) -> Iterator[CaptureRelay]:
    with CaptureRelay(index.proxy.port) as running:
        yield running


def task_for(kind: str, run_id: str, port: int, version: str | None) -> ClientTask:
    extra = (("test-package-004", "1.0.0"), ("test-package-005", "2.0.0"))
    return ClientTask(
        run_id=run_id,
        client=kind,
        project="test-package-003",
        version="1.1.0",
        index_url=f"http://127.0.0.1:{port}/r/{run_id}/simple/",
        requirements=extra if kind == "poetry" else (),
        client_version=version,
    )


def normalized(sent: list[Sent], run_id: str) -> list[Request]:
    """What must be equal: the run id and twine's random multipart parts masked."""
    out = []
    for request in sent:
        headers = tuple(
            (name, _BOUNDARY.sub("boundary=B", value))
            for name, value in request.headers
            if not (request.method == "POST" and name.lower() == "content-length")
        )
        out.append((request.method, request.target.replace(f"/r/{run_id}/", "/r/RUN/"), headers))
    return out


def run_warm(task: ClientTask, launchers: Launchers) -> ClientResult:
    registry = ProcessRegistry()
    with warm_prepared(task, launchers=launchers, temp_root=None, due_mono=None) as prep:
        assert prep.child is not None, prep.error
        assert prep.child.gated.wait(60)
        if task.client == "pip":
            assert prep.child.shared == ("computed" if task.run_id == "warm1" else "cached")
        prep.child.open()
        return launch_warm(prep, registry=registry)


@pytest.mark.parametrize(
    ("kind", "version"),
    [("pip", None), ("pip", "25.3"), ("poetry", None), ("twine", None)],
    ids=["pip", "pip-25.3", "poetry", "twine"],
)
def test_a_warm_run_sends_what_the_same_exec_run_sends(
    kind: str,
    version: str | None,
    index: Index,
    relay: CaptureRelay,
    launchers: Launchers,
) -> None:
    warm = run_warm(task_for(kind, "warm1", relay.port, version), launchers)
    assert warm.outcome == "ok", warm.stderr_tail
    warm_sent = relay.take()
    fresh = execute(
        task_for(kind, "exec1", relay.port, version), temp_root=None, registry=ProcessRegistry()
    )
    assert fresh.outcome == "ok", fresh.stderr_tail
    exec_sent = relay.take()

    assert warm_sent, "the warm run sent nothing through the relay"
    assert relay.errors == []
    assert normalized(warm_sent, "warm1") == normalized(exec_sent, "exec1")
    assert warm.client_version == fresh.client_version
    agents = {value for s in warm_sent for name, value in s.headers if name == "User-Agent"}
    assert len(agents) == 1
    if kind == "pip":
        # The user agent pip computes with lsb_release and rustc, computed once per environment
        # by the launcher: a second run of the same environment gets it from there, the same.
        agent = agents.pop()
        assert agent.startswith(f"pip/{version or ''}")
        again = run_warm(task_for(kind, "warm2", relay.port, version), launchers)
        assert again.outcome == "ok", again.stderr_tail
        again_sent = relay.take()
        assert normalized(again_sent, "warm2") == normalized(exec_sent, "exec1")
    if kind == "twine":
        # The upload body differs only in the random version digits and the boundary; twine
        # orders the metadata fields by string hash (PYTHONHASHSEED), so their order differs
        # between any two processes, exec'd or not: the fields are compared as a set.
        assert sorted(form_fields(warm_sent)) == sorted(form_fields(exec_sent))
        assert len(form_fields(warm_sent)) > 5


def form_fields(sent: list[Sent]) -> list[str]:
    """The multipart field names of every upload, in order."""
    return [name.decode() for s in sent for name in re.findall(rb'\bname="([^"]+)"', s.body)]
