"""The verdict rule, branch by branch, over its own inputs (``Evidence``); the same rule over
real report folders is in tests/engine/report/test_report_verdict.py."""

from __future__ import annotations

from typing import Any

from pipstorm.engine.analysis.thresholds import ThresholdResult
from pipstorm.engine.analysis.verdict import ADVICE, Evidence, decide, evidence_from_json

BOUND = ("generator host CPU above 90 % for 6 consecutive s", "burst onset p95 3.56 s > 1 s")


def result(key: str, measured: float, limit: float, *, passed: bool) -> ThresholdResult:
    return ThresholdResult(key, key, "<", limit, "", measured, passed)


LATENCY_OK = result("p95_listing_ms", 150.0, 2000.0, passed=True)
LATENCY_BAD = result("p95_listing_ms", 4100.0, 2000.0, passed=False)


def test_a_generator_that_kept_up_leaves_pass_and_fail_to_the_thresholds() -> None:
    passed = decide(Evidence((LATENCY_OK,)))
    assert (passed.verdict, passed.exit_code, passed.reason) == (
        "pass",
        0,
        "all 1 thresholds passed",
    )
    failed = decide(Evidence((LATENCY_OK, LATENCY_BAD)))
    assert (failed.verdict, failed.exit_code) == ("fail", 1)
    assert failed.failed == ("p95_listing_ms",)
    assert not failed.generator_bound and failed.advice is None


def test_a_bound_generator_makes_passing_thresholds_inconclusive() -> None:
    decision = decide(Evidence((LATENCY_OK,), generator_reasons=BOUND))
    assert (decision.verdict, decision.exit_code) == ("inconclusive", 3)
    assert BOUND[0] in decision.reason and BOUND[1] in decision.reason
    assert decision.advice == ADVICE
    assert "--shards" in ADVICE and "fewer clients per machine" in ADVICE


def test_latency_failing_under_a_bound_generator_is_inconclusive() -> None:
    decision = decide(Evidence((LATENCY_BAD,), generator_reasons=BOUND))
    assert decision.verdict == "inconclusive"
    assert decision.failed == ("p95_listing_ms",)


def test_5xx_over_max_5xx_fails_even_when_the_generator_was_bound() -> None:
    five = result("max_5xx", 3.0, 0.0, passed=False)
    decision = decide(Evidence((LATENCY_BAD, five), generator_reasons=BOUND))
    assert (decision.verdict, decision.exit_code) == ("fail", 1)
    assert decision.decisive == ("3 5xx responses (max_5xx 0)",)
    assert "starvation cannot explain" in decision.reason


def test_an_error_rate_of_timeouts_is_inconclusive_and_of_other_errors_fails() -> None:
    rate = result("error_rate", 6.0, 1.0, passed=False)
    timeouts = Evidence(
        (rate,), BOUND, ("timeout",), requests=1000, errors=60, starvation_errors=58
    )
    assert decide(timeouts).verdict == "inconclusive"  # 0.2 % without the timeouts
    refused = Evidence((rate,), BOUND, ("reset",), requests=1000, errors=60, starvation_errors=10)
    decision = decide(refused)
    assert decision.verdict == "fail"  # 5 % of requests failed other than by timing out
    assert decision.decisive == ("5.00 % of requests failed other than by timing out "
                                 "(error_rate 1 %)",)  # fmt: skip


def test_a_dead_target_fails_any_failed_threshold_but_not_a_passing_run() -> None:
    died = decide(Evidence((LATENCY_BAD,), BOUND, ("died", "refused")))
    assert died.verdict == "fail"
    assert died.decisive == ("the target died", "the target refused connections")
    # Nothing failed: the run still did not play the profile.
    assert decide(Evidence((LATENCY_OK,), BOUND, ("died",))).verdict == "inconclusive"


def test_allowing_a_bound_generator_restores_pass_and_fail() -> None:
    passed = decide(Evidence((LATENCY_OK,), BOUND, allow_generator_bound=True))
    assert (passed.verdict, passed.allowed, passed.generator_bound) == ("pass", True, True)
    assert "accepted" in passed.reason
    failed = decide(Evidence((LATENCY_BAD,), BOUND, allow_generator_bound=True))
    assert (failed.verdict, failed.exit_code) == ("fail", 1)


def test_report_json_of_an_older_version_is_judged_by_the_same_rule() -> None:
    """The issue's report.json: "verdict": "pass" above a saturated generator, no decision."""
    old: dict[str, Any] = {
        "schema": 1,
        "verdict": "pass",
        "thresholds": [LATENCY_OK.to_dict(), result("error_rate", 0.1, 1.0, passed=True).to_dict()],
        "generator": {"saturated": True, "reason": "; ".join(BOUND), "reasons": list(BOUND)},
        "requests": {"count": 900, "error_count": 1, "transport_errors": {"upstream_timeout": 1}},
        "target_failure": [],
        "run": {"schema": 1, "profile": {"name": "production_incident"}},
    }
    evidence = evidence_from_json(old)
    assert evidence.generator_reasons == BOUND
    assert (evidence.requests, evidence.errors, evidence.starvation_errors) == (900, 1, 1)
    assert decide(evidence).verdict == "inconclusive"
    allowed = {**old, "run": {**old["run"], "allow_generator_bound": True}}
    assert decide(evidence_from_json(allowed)).verdict == "pass"
    assert decide(evidence_from_json({"schema": 1, "verdict": "pass"})).verdict == "pass"
