"""Fault actions on the wire: the real proxy in front of the real pypiserver, raw HTTP clients."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipstorm.infra.faults.plan import FaultPlan
from pipstorm.infra.faults.spec import parse_faults
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from tests.infra.conftest import Corpus, proxy_address, wait_for_records

LISTING = "/r/{run}/simple/test-package-000/"


def _wheel_path(corpus: Corpus, run: str) -> str:
    return f"/r/{run}/packages/{corpus.wheel.name}"


@pytest.fixture(scope="module")
def faulty_proxy(
    pypiserver: LocalPypiserver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RecordingProxy]:
    """One proxy, one rule per run id (client kinds stand in for the runs)."""
    root = tmp_path_factory.mktemp("faults")
    specs = [
        "client=k503,status=503,retry_after=7",
        "client=kresetb,reset=before",
        "client=kreseta,op=download,reset=after",
        "client=ktrunc,op=download,truncate=50%",
        "client=kslow,op=download,slow=2k",
        "client=kstall,op=download,stall=300ms",
        "client=kdelay,delay=300ms",
    ]
    kinds = ("k503", "kresetb", "kreseta", "ktrunc", "kslow", "kstall", "kdelay", "kfine")
    plan = FaultPlan(rules=parse_faults(specs), clients={k: k for k in kinds}, origin=time.time())
    plan.write(root / "faults.json")
    with RecordingProxy(
        pypiserver.index_url,
        root / "requests.jsonl",
        credentials=pypiserver.credentials,
        faults_path=root / "faults.json",
    ) as proxy:
        yield proxy


def get(proxy: RecordingProxy, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*proxy_address(proxy), timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_status_answers_in_the_upstreams_place(faulty_proxy: RecordingProxy) -> None:
    status, headers, body = get(faulty_proxy, LISTING.format(run="k503"))
    assert (status, headers["Retry-After"]) == (503, "7")
    assert b"injected fault f1" in body
    (record,) = wait_for_records(faulty_proxy.log_path, "k503", 1)
    assert (record.status, record.fault, record.error, record.op) == (503, "f1", None, "listing")


def test_reset_before_the_headers(faulty_proxy: RecordingProxy) -> None:
    with pytest.raises(ConnectionError):
        get(faulty_proxy, LISTING.format(run="kresetb"))
    (record,) = wait_for_records(faulty_proxy.log_path, "kresetb", 1)
    assert (record.status, record.error, record.fault) == (
        None,
        "injected_reset_before_headers",
        "f2",
    )


def test_reset_after_the_headers(faulty_proxy: RecordingProxy, corpus: Corpus) -> None:
    conn = http.client.HTTPConnection(*proxy_address(faulty_proxy), timeout=30)
    try:
        conn.request("GET", _wheel_path(corpus, "kreseta"))
        response = conn.getresponse()  # the headers arrive...
        assert response.status == 200
        with pytest.raises(ConnectionError):  # ...the body never does
            response.read()
    finally:
        conn.close()
    (record,) = wait_for_records(faulty_proxy.log_path, "kreseta", 1)
    assert (record.status, record.error, record.fault) == (
        200,
        "injected_reset_after_headers",
        "f3",
    )


def test_truncated_body_keeps_the_full_length_header(
    faulty_proxy: RecordingProxy, corpus: Corpus
) -> None:
    size = corpus.wheel.stat().st_size
    with pytest.raises(http.client.IncompleteRead) as info:
        get(faulty_proxy, _wheel_path(corpus, "ktrunc"))
    assert len(info.value.partial) == size // 2
    (record,) = wait_for_records(faulty_proxy.log_path, "ktrunc", 1)
    assert (record.bytes, record.error, record.fault) == (size // 2, "injected_truncate", "f4")


@pytest.mark.parametrize(("run", "rule"), [("kslow", "f5"), ("kstall", "f6"), ("kdelay", "f7")])
def test_slow_stalled_and_delayed_answers_arrive_whole_and_late(
    faulty_proxy: RecordingProxy, corpus: Corpus, run: str, rule: str
) -> None:
    size = corpus.wheel.stat().st_size
    start = time.monotonic()
    status, _, body = get(faulty_proxy, _wheel_path(corpus, run))
    elapsed = time.monotonic() - start
    assert (status, body) == (200, corpus.wheel.read_bytes())
    # Lower bounds only: each action adds at least its own time (2 KiB/s: size / 2048 s).
    least = {"kslow": (size - 2048 * 0.05) / 2048, "kstall": 0.3, "kdelay": 0.3}[run]
    assert elapsed >= least
    (record,) = wait_for_records(faulty_proxy.log_path, run, 1)
    assert (record.fault, record.error, record.bytes) == (rule, None, size)
    assert record.total_ms >= least * 1000


def test_requests_no_rule_matches_are_left_alone(
    faulty_proxy: RecordingProxy, corpus: Corpus, tmp_path: Path
) -> None:
    status, _, body = get(faulty_proxy, _wheel_path(corpus, "kfine"))
    assert (status, body) == (200, corpus.wheel.read_bytes())
    (record,) = wait_for_records(faulty_proxy.log_path, "kfine", 1)
    assert record.fault is None
