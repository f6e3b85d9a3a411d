"""Grouping logged requests into client runs and scheduling them: the rules of
``pipstorm.engine.run.replay.group`` one by one (the same rules on real clients' requests:
tests/e2e/test_replay.py)."""

from __future__ import annotations

import pytest

from pipstorm.engine.errors import UsageError
from pipstorm.engine.run.replay.group import client_of, group_runs, resolve_pins
from pipstorm.engine.run.replay.logline import LoggedRequest
from pipstorm.engine.run.replay.paths import release_of_file, target_of
from pipstorm.engine.run.replay.schedule import NothingToReplay, plan_replay

PIP = 'pip/25.3 {"ci":null,"cpu":"x86_64"}'
POETRY = "poetry/2.1.3 CPython/3.12.3 Linux/6.8.0"
UV = 'uv/0.5.0 {"installer":{"name":"uv","version":"0.5.0"}}'


def req(
    t: float, path: str, agent: str = PIP, *, host: str = "10.0.0.5", status: int | None = 200,
    method: str = "GET",
) -> LoggedRequest:  # fmt: skip
    return LoggedRequest(t, host, agent, method, path, status)


def pip_run(t: float, project: str, version: str, **kw: object) -> list[LoggedRequest]:
    wheel = f"/packages/{project.replace('-', '_')}-{version}-py3-none-any.whl"
    return [req(t, f"/simple/{project}/", **kw), req(t + 0.2, wheel, **kw)]  # type: ignore[arg-type]


def test_user_agents_name_the_client_and_its_version() -> None:
    assert client_of(PIP) == ("pip", "25.3")
    assert client_of(POETRY) == ("poetry", "2.1.3")
    assert client_of(UV) == ("uv", "0.5.0")
    assert client_of("twine/6.1.0 CPython/3.12.3") == ("twine", "6.1.0")
    assert client_of("curl/8.5.0") == (None, None)
    assert client_of("ELB-HealthChecker/2.0") == (None, None)


def test_paths_name_listings_files_and_uploads() -> None:
    assert target_of("GET", "/simple/Zope.Interface/").project == "zope-interface"
    assert target_of("GET", "/root/pypi/+simple/requests").asked == "listing"
    wheel = target_of("GET", "/packages/ab/cd/zope_interface-6.1-cp312-cp312-linux.whl")
    assert (wheel.asked, wheel.project, wheel.version) == ("file", "zope-interface", "6.1")
    metadata = target_of("GET", "/packages/requests-2.31.0-py3-none-any.whl.metadata")
    assert (metadata.asked, metadata.version) == ("file", "2.31.0")
    assert release_of_file("my-pkg-1.0.0.tar.gz") == ("my-pkg", "1.0.0")
    assert release_of_file("weird-latest.tar.gz") is None
    assert target_of("POST", "/").asked == "upload"
    assert target_of("GET", "/health").asked == "other"


def test_a_gap_or_a_listing_asked_again_starts_the_next_run() -> None:
    requests = [
        *pip_run(0.0, "a", "1.0.0"),
        *pip_run(1.0, "a", "1.0.0"),  # the same listing again: the next pip process
        *pip_run(30.0, "b", "2.0.0"),  # after 10 s of silence
        *pip_run(0.5, "b", "1.0.0", host="10.0.0.6"),  # another host: its own run
    ]
    runs = group_runs(requests)
    assert [(r.client, r.start, len(r.requests)) for r in runs] == [
        ("10.0.0.5", 0.0, 2), ("10.0.0.6", 0.5, 2), ("10.0.0.5", 1.0, 2), ("10.0.0.5", 30.0, 2)
    ]  # fmt: skip
    assert [r.fetched() for r in runs] == [[("a", "1.0.0")], [("b", "1.0.0")], [("a", "1.0.0")],
                                           [("b", "2.0.0")]]  # fmt: skip


def test_a_retry_after_a_failure_and_repeated_file_requests_stay_in_the_run() -> None:
    requests = [
        req(0.0, "/simple/a/", status=503),
        req(1.0, "/simple/a/", status=None),  # no answer at all
        req(2.5, "/simple/a/"),
        req(2.6, "/packages/a-1.0.0-py3-none-any.whl", method="HEAD", agent=PIP),
        req(2.7, "/packages/a-1.0.0-py3-none-any.whl", status=206),
        req(2.8, "/packages/a-1.0.0-py3-none-any.whl", status=206),
    ]
    (run,) = group_runs(requests)
    assert len(run.requests) == 6 and run.fetched() == [("a", "1.0.0")]


def test_uploads_are_runs_of_their_own_and_lock_runs_pin_every_release() -> None:
    twine = "twine/6.1.0 CPython/3.12.3"
    requests = [
        req(0.0, "/", twine, method="POST"),
        req(0.5, "/", twine, method="POST"),
        req(1.0, "/simple/b/", POETRY, host="10.0.0.7"),
        req(1.1, "/simple/c/", POETRY, host="10.0.0.7"),  # listing only: the newest logged
        req(1.2, "/packages/b-1.0.0-py3-none-any.whl", POETRY, host="10.0.0.7", status=206),
        req(1.3, "/simple/zzz/", POETRY, host="10.0.0.7", status=404),  # no version anywhere
        *pip_run(5.0, "c", "1.9.0"),
        *pip_run(50.0, "c", "1.10.0"),
    ]
    runs = group_runs(requests)
    reasons = resolve_pins(runs, default_project=("b", "1.0.0"))
    assert not reasons
    assert [r.kind for r in runs] == ["twine", "twine", "poetry", "pip", "pip"]
    assert runs[0].pins == runs[1].pins == [("b", "1.0.0")]
    assert runs[2].pins == [("b", "1.0.0"), ("c", "1.10.0")]  # 1.10 is newer than 1.9


def test_the_schedule_divides_instants_by_the_speed_and_builds_the_corpus() -> None:
    requests = [
        *pip_run(1000.0, "a", "1.0.0"),
        *pip_run(1030.0, "b", "2.0.0", agent='pip/24.0 {"ci":true}'),
        req(1010.0, "/simple/a/", "curl/8.5.0", host="10.9.9.9"),
        req(1011.0, "/health", "ELB-HealthChecker/2.0", host="10.9.9.8"),
        *pip_run(1100.0, "a", "1.0.0", agent="pip/25.3-custom {}"),
    ]
    plan = plan_replay(requests, speed=10.0)
    assert [(r.run_id, r.offset_s, r.tick, r.client_version) for r in plan.runs] == [
        ("r00000", 0.0, 0, "25.3"), ("r00001", 3.0, 0, "24.0"), ("r00002", 10.0, 1, None)
    ]  # fmt: skip
    assert plan.corpus.releases() == [("a", "1.0.0"), ("b", "2.0.0")]
    assert plan.unexplained == {"curl/8.5.0": 1, "ELB-HealthChecker/2.0": 1}
    assert plan.odd_versions == {"pip 25.3-custom": 1}
    assert plan.duration_s == pytest.approx(10.02)
    raw = plan_replay(requests, speed=10.0, raw=True)
    assert [r.client for r in raw.runs].count("http") == 1  # the health check names no release
    assert raw.unreplayable == {"name no release the log shows a version of": 1}


def test_nothing_replayable_says_what_the_log_held() -> None:
    with pytest.raises(NothingToReplay, match="no request in the chosen window"):
        plan_replay([])
    browsers = [req(float(i), "/simple/", "Mozilla/5.0", host=f"10.0.0.{i}") for i in range(3)]
    with pytest.raises(NothingToReplay, match=r"3 come from clients .*'Mozilla/5.0'.*--raw"):
        plan_replay(browsers)
    with pytest.raises(NothingToReplay, match="1 runs name no release"):
        plan_replay([req(0.0, "/simple/ghost/", status=404)])
    with pytest.raises(UsageError, match="--speed must be > 0"):
        plan_replay(browsers, speed=0)
