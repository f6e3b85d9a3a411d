"""The one rule that turns a judged run into its verdict: ``pass``, ``fail`` or ``inconclusive``.

Every consumer asks this module: the report (terminal, report.md, report.html, report.json), the
exit code, ``compare``, the sizing lab and the pytest plugin. Nothing else compares thresholds to
decide a verdict.

A run whose load generator was the bottleneck (``pipstorm.engine.analysis.generator.saturation``:
sustained generator CPU, launch lag, late burst onset) did not play its profile: the index saw
less, and later, load than planned, and the proxy recorded the generator's own waits as latency.
Such a run's thresholds say nothing about the index either way, so its verdict is
**inconclusive** (exit code 3), unless a threshold failed in a way starvation cannot explain:

- ``max_5xx`` failed: the index answered with server errors. A starved generator makes answers
  late, never 5xx;
- ``error_rate`` failed and still fails with the proxy's upstream timeouts taken out: the errors
  that remain (4xx, 5xx, refused or reset connections) are the index's answers, not waits;
- any threshold failed while the target died or refused connections (a dead target).

A target that failed the run by itself (``pipstorm.engine.analysis.target.failure.target_failed``:
it died, or answered no request for longer than the run timeout) is a **fail** before anything
else, whatever the thresholds and the generator say: a load test whose index went away did not
pass, and no generator explains a dead index.

Latency thresholds, ``run_error_rate`` (client runs are what starves first) and an error rate
made of timeouts are explained by starvation: inconclusive. ``allow_generator_bound``
(``--allow-generator-bound`` or the profile's ``allow_generator_bound = true``) keeps the old
behaviour: PASS/FAIL from the thresholds alone, with the generator warning beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from pipstorm.engine.analysis.thresholds import ThresholdResult

Verdict = Literal["pass", "fail", "inconclusive"]

#: The exit code of each verdict (``pipstorm run``, ``pipstorm report``); 2 is a usage or
#: environment error and 130/143 an interrupted run (``pipstorm.engine.cli.app``).
EXIT_CODES: Mapping[Verdict, int] = {"pass": 0, "fail": 1, "inconclusive": 3}

#: What to do about an inconclusive run, in every rendering.
ADVICE = (
    "Play the profile again on a generator that keeps up: fewer clients per machine, the run "
    "spread over machines (--shards N), or a bigger generator. --allow-generator-bound accepts "
    "a generator-bound run's PASS/FAIL as it is."
)
#: Transport errors a starved generator causes by itself: the proxy, on the generator, gave up
#: waiting for an answer (it and a local target wait for a core).
STARVATION_ERRORS = frozenset({"upstream_timeout"})
#: Target failures (``pipstorm.engine.analysis.target.failure`` kinds) that mean a dead target.
DEAD_TARGET = {"died": "the target died", "refused": "the target refused connections"}


@dataclass(frozen=True)
class Evidence:
    """What the rule reads: the thresholds' results, the generator check's reasons, the
    target's failure kinds, and the request error counts (built from a ``Report`` or from a
    ``report.json`` document, so ``compare`` judges old files by the same rule)."""

    thresholds: tuple[ThresholdResult, ...]
    generator_reasons: tuple[str, ...] = ()  # empty: the generator kept up (or no check)
    target_causes: tuple[str, ...] = ()  # TargetCause kinds: died, stalled, refused, 5xx...
    requests: int = 0
    errors: int = 0  # requests counted as errors (pipstorm.engine.analysis.stats)
    starvation_errors: int = 0  # of those, the kinds in STARVATION_ERRORS
    allow_generator_bound: bool = False
    #: The target's failure that fails the run by itself (its text), else None.
    target_failed: str | None = None
    aborted: str | None = (
        None  # why --abort-on-fail stopped the run (pipstorm.engine.run.live.abort)
    )


@dataclass(frozen=True)
class Decision:
    """The verdict and why, as every rendering shows it (``report.json``'s ``decision``)."""

    verdict: Verdict
    reason: str  # one line: what the verdict rests on
    generator_bound: bool
    allowed: bool  # generator-bound, and accepted (--allow-generator-bound)
    failed: tuple[str, ...]  # keys of the thresholds that failed
    decisive: tuple[str, ...]  # generator-bound but still FAIL: what starvation cannot explain
    advice: str | None  # what to do (an inconclusive run)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail, 3 inconclusive."""
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; JUnit and other consumers read ``verdict`` and ``reason``."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "generator_bound": self.generator_bound,
            "generator_bound_allowed": self.allowed,
            "failed_thresholds": list(self.failed),
            "decisive": list(self.decisive),
            "advice": self.advice,
        }


def _counted(results: Sequence[ThresholdResult], failed: Sequence[ThresholdResult]) -> str:
    if not results:
        return "no thresholds set"
    if not failed:
        return f"all {len(results)} thresholds passed"
    return f"{len(failed)} of {len(results)} thresholds failed ({', '.join(t.key for t in failed)})"


def _decisive(evidence: Evidence, failed: Sequence[ThresholdResult]) -> list[str]:
    """The failures a starved generator cannot explain (see the module docstring)."""
    found: list[str] = []
    for t in failed:
        if t.key == "max_5xx" and t.measured is not None:
            found.append(f"{t.measured:g} 5xx responses (max_5xx {t.limit:g})")
        elif t.key == "error_rate" and evidence.requests > 0:
            own = evidence.errors - evidence.starvation_errors
            rate = 100.0 * own / evidence.requests
            if own > 0 and not rate < t.limit:
                found.append(
                    f"{rate:.2f} % of requests failed other than by timing out "
                    f"(error_rate {t.limit:g} %)"
                )
    if failed:
        found += [text for kind, text in DEAD_TARGET.items() if kind in evidence.target_causes]
    return found


def decide(evidence: Evidence) -> Decision:
    """The verdict of a run: the rule in the module docstring."""
    failed = [t for t in evidence.thresholds if not t.passed]
    counted = _counted(evidence.thresholds, failed)
    bound = bool(evidence.generator_reasons)
    plain: Verdict = "fail" if failed else "pass"
    keys = tuple(t.key for t in failed)
    if evidence.target_failed is not None:
        reason = f"target failed: {evidence.target_failed}; {counted}"
        return Decision("fail", reason, bound, False, keys, (evidence.target_failed,), None)
    if evidence.aborted is not None:
        # --abort-on-fail stopped the run because a threshold could no longer pass (or the
        # target died, possibly before any threshold failed): a failure, generator or not.
        reason = f"aborted (--abort-on-fail): {evidence.aborted}; {counted}"
        return Decision("fail", reason, bound, False, keys, (), None)
    if not bound:
        return Decision(plain, counted, False, False, keys, (), None)
    why = "; ".join(evidence.generator_reasons)
    if evidence.allow_generator_bound:
        reason = f"{counted}; the load generator was the bottleneck ({why}), accepted"
        return Decision(plain, reason, True, True, keys, (), None)
    decisive = tuple(_decisive(evidence, failed))
    if decisive:
        reason = (
            f"{counted}; the load generator was the bottleneck ({why}), but starvation "
            f"cannot explain: {'; '.join(decisive)}"
        )
        return Decision("fail", reason, True, False, keys, decisive, None)
    reason = (
        f"the load generator was the bottleneck ({why}): the profile's load was not played, "
        f"so the thresholds ({counted}) say nothing about the index"
    )
    return Decision("inconclusive", reason, True, False, keys, (), ADVICE)


def _get(data: object, *path: str) -> object:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _threshold(data: object) -> ThresholdResult | None:
    names = {f.name for f in fields(ThresholdResult)}
    if not isinstance(data, Mapping) or not {"key", "passed", "limit"} <= set(data):
        return None
    values = {k: v for k, v in data.items() if k in names}
    values.setdefault("description", str(data["key"]))
    values.setdefault("comparison", "<")
    values.setdefault("unit", "")
    values.setdefault("measured", None)
    return ThresholdResult(**values)


def evidence_from_json(report: Mapping[str, Any]) -> Evidence:
    """The rule's input from a ``report.json`` document (older ones too: a missing part reads
    as absent), for readers that have only the file (``compare``)."""
    listed = report.get("thresholds")
    results = tuple(
        t for t in map(_threshold, listed if isinstance(listed, list) else []) if t is not None
    )
    listed_reasons = _get(report, "generator", "reasons")
    saturated = _get(report, "generator", "saturated") is True
    reasons = [str(r) for r in listed_reasons] if isinstance(listed_reasons, list) else []
    if saturated and not reasons:  # a report.json with only the joined ``reason``
        reasons = [str(_get(report, "generator", "reason") or "generator-bound")]
    causes = report.get("target_failure")
    transport = _get(report, "requests", "transport_errors")
    return Evidence(
        thresholds=results,
        generator_reasons=tuple(reasons) if saturated else (),
        target_causes=tuple(
            str(c.get("kind"))
            for c in (causes if isinstance(causes, list) else ())
            if isinstance(c, Mapping)
        ),
        requests=_int(_get(report, "requests", "count")),
        errors=_int(_get(report, "requests", "error_count")),
        starvation_errors=sum(
            _int(n)
            for k, n in (transport.items() if isinstance(transport, Mapping) else ())
            if k in STARVATION_ERRORS
        ),
        allow_generator_bound=_get(report, "run", "allow_generator_bound") is True,
        target_failed=str(text) if (text := _get(report, "target_failed", "text")) else None,
        aborted=_aborted(_get(report, "aborted", "reason")),
    )


def _aborted(reason: object) -> str | None:
    return None if reason is None else str(reason)
