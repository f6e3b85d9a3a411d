"""How the target failed, from the proxy's records and run.json: refused, reset, stalled, died."""

from __future__ import annotations

import dataclasses

import pytest

from pipstorm.engine.analysis.target.failure import STALL_S, target_causes, target_failed
from pipstorm.engine.rundir.events import TARGET_DIED
from pipstorm.engine.rundir.records import RequestRecord

T0 = 1000.0  # the run's start (wall clock)


def req(
    at: float,
    status: int | None = 200,
    *,
    wait_s: float = 0.01,
    error: str | None = None,
    fault: str | None = None,
) -> RequestRecord:
    """A request started ``at`` s into the run, answered (first byte) ``wait_s`` later."""
    return RequestRecord(
        ts=T0 + at,
        op="listing",
        method="GET",
        path="/simple/test-package-000/",
        status=status,
        total_ms=wait_s * 1000.0 + 1.0,
        run_id="r1",
        ttfb_ms=wait_s * 1000.0 if status is not None else None,
        error=error,
        fault=fault,
    )


def test_refused_connections_are_named_with_their_window_and_no_recovery() -> None:
    requests = [req(1.0), req(2.0), *(req(t, None, error="upstream_refused") for t in (5, 6, 9))]
    (cause,) = target_causes(requests, {}, T0)
    assert (cause.kind, cause.count) == ("refused", 3)
    assert (cause.first_s, cause.last_s) == pytest.approx((5.0, 9.0))
    assert cause.recovered_s is None
    assert cause.text.startswith("target refused connections: 3 requests, t=5.0-9.0 s")
    assert cause.text.endswith("no request was answered after it")


def test_a_restart_shows_when_requests_were_ok_again() -> None:
    requests = [
        req(1.0),
        req(3.0, None, error="upstream_reset"),
        req(4.0, None, error="upstream_refused"),
        req(6.0, None, error="upstream_refused"),
        req(6.5, 502),  # the index's own error is no recovery
        req(7.2),
        req(8.0),
    ]
    causes = {c.kind: c for c in target_causes(requests, {}, T0)}
    assert set(causes) == {"refused", "reset", "5xx"}
    assert causes["refused"].recovered_s == pytest.approx(7.2)
    assert "requests ok again from t=7.2 s" in causes["refused"].text
    assert causes["reset"].count == 1
    assert "(502 x1)" in causes["5xx"].text


def test_injected_faults_and_clients_hanging_up_are_not_the_targets_doing() -> None:
    requests = [
        req(1.0, None, error="injected_reset_before_headers", fault="f1"),
        req(2.0, 503, fault="f2"),
        req(3.0, 200, error="client_disconnected"),
        req(4.0, None, error="proxy_shutdown"),
    ]
    assert target_causes(requests, {}, T0) == ()
    counted = {c.kind for c in target_causes(requests, {}, T0, count_injected=True)}
    assert counted == {"injected_reset_before_headers", "5xx"}


def test_a_silence_with_requests_waiting_is_a_stall_and_says_nobody_timed_out() -> None:
    requests = [
        req(1.0),
        req(2.0),
        req(3.0, wait_s=10.0),  # frozen from t=3 to t=13
        req(4.0, wait_s=9.0),
        req(13.5),
    ]
    (cause,) = target_causes(requests, {}, T0)
    assert cause.kind == "stalled"
    assert (cause.first_s, cause.last_s) == pytest.approx((3.0, 13.0))
    assert cause.count == 2
    assert cause.text.startswith("target answered nothing for 10.0 s (t=3.0-13.0 s)")
    assert "neither the clients nor the proxy timed out" in cause.text


def test_a_target_frozen_from_the_first_request_stalls_too() -> None:
    requests = [req(0.5, wait_s=8.0), req(1.0, wait_s=7.5), req(9.0)]
    (cause,) = target_causes(requests, {}, T0)
    assert (cause.first_s, cause.last_s) == pytest.approx((0.5, 8.5))


def test_slow_answers_that_keep_coming_are_no_stall() -> None:
    # An overloaded target: many requests wait 6 s, but answers arrive every second.
    requests = [req(float(t), wait_s=6.0) for t in range(20)]
    requests += [req(float(t), wait_s=0.5) for t in range(6)]
    assert target_causes(requests, {}, T0) == ()


def test_a_stall_the_clients_gave_up_on_says_so() -> None:
    requests = [
        req(1.0),
        req(2.0, 200, wait_s=STALL_S + 12.0, error="client_disconnected"),
        req(20.0),
    ]
    (cause,) = target_causes(requests, {}, T0)
    assert "1 client(s) gave up first" in cause.text


def test_a_dead_embedded_target_comes_first_with_its_signal() -> None:
    requests = [req(1.0), req(5.0, None, error="upstream_refused")]
    target = {"kind": "embedded", "died": {"ts": T0 + 4.5, "exit_code": -9}}
    causes = target_causes(requests, target, T0)
    assert [c.kind for c in causes] == ["died", "refused"]
    assert causes[0].first_s == pytest.approx(4.5)
    assert "died at t=4.5 s (exit code -9: killed by SIGKILL)" in causes[0].text


def test_a_death_is_the_run_failing_whatever_the_requests_say() -> None:
    # Every request answered: only the death says the target went away.
    requests = [req(1.0), req(2.0), req(30.0)]
    target = {"kind": "embedded", "died": {"ts": T0 + 4.5, "exit_code": -9}}
    failed = target_failed(target_causes(requests, target, T0))
    assert failed is not None
    assert failed.kind == "died"
    assert failed.fatal


def test_a_death_appended_as_an_event_counts_like_one_in_run_json() -> None:
    # A SIGKILLed pipstorm never wrote run.json's target.died; its events stream has the death.
    events = [{"ts": T0 + 8.0, "event": TARGET_DIED, "exit_code": -9}]
    causes = target_causes([req(1.0)], {"kind": "embedded"}, T0, events=events)
    assert [c.kind for c in causes] == ["died"]
    assert "died at t=8.0 s (exit code -9: killed by SIGKILL)" in causes[0].text
    assert target_failed(causes) is causes[0]


def test_a_target_silent_longer_than_the_run_timeout_fails_the_run() -> None:
    # Answered until t=2, then every request refused or left waiting for 130 s: a remote index
    # that went away (no process of ours to watch) is seen from the requests alone.
    requests = [
        req(1.0),
        req(2.0),
        *(req(t, None, error="upstream_refused") for t in range(5, 125, 10)),
        req(125.0, None, wait_s=7.0, error="client_disconnected"),
    ]
    causes = target_causes(requests, {}, T0, run_timeout_s=120.0)
    failed = target_failed(causes)
    assert failed is not None, causes
    assert failed.kind == "unanswered"
    assert failed.first_s == pytest.approx(5.0)  # the first request left unanswered
    assert failed.last_s == pytest.approx(132.0, abs=0.1)
    assert "answered no request for 127.0 s" in failed.text
    assert "longer than the run timeout (120 s)" in failed.text


def test_a_silence_shorter_than_the_run_timeout_does_not_fail_the_run_by_itself() -> None:
    requests = [
        req(1.0),
        *(req(t, None, error="upstream_refused") for t in (5.0, 20.0, 40.0)),
        req(61.0),
    ]
    causes = target_causes(requests, {}, T0, run_timeout_s=120.0)
    assert target_failed(causes) is None
    assert [c.kind for c in causes] == ["refused"]  # still named, not fatal


def test_an_idle_profile_is_no_silence() -> None:
    # 200 s with nothing asked is no target failing: a silence needs requests left unanswered.
    causes = target_causes([req(1.0), req(201.0)], {}, T0, run_timeout_s=120.0)
    assert causes == ()


def test_requests_no_run_sent_are_no_cause() -> None:
    # A port scan during the run: the proxy refused it itself; the target was never asked.
    scan = dataclasses.replace(req(3.0, 400, error="bad_request: BadStatusLine"), run_id=None)
    timeout = dataclasses.replace(req(4.0, None, error="client_header_timeout"), run_id=None)
    assert target_causes([req(1.0), scan, timeout, req(5.0)], {}, T0) == ()
