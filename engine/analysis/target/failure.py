"""How the target failed during a run, in a few named causes the verdict can show.

"error_rate 35 % > 1 %" says that a run failed, not that the index went away. The proxy records
why each request got no answer (``error``: ``upstream_refused``, ``upstream_reset``,
``upstream_timeout``), and the run records an embedded target that died (``run.json``'s
``target.died``); from those, each cause is one line: what happened, to how many requests, when
(seconds from the run's start) and whether requests were answered again afterwards:

- ``died``: the embedded pypiserver's master exited during the run (its exit code, and
  signal); its orphaned workers may answer a few seconds more before they notice;
- ``stalled``: the target answered nothing for ``STALL_S`` or more while requests waited (a
  frozen or wedged server: connections are still accepted by the kernel, nothing comes back);
- one cause per transport error kind: ``refused`` (nothing listens: the server is down),
  ``reset`` (connections cut: the server died or restarted under them), ``timeout`` (the
  proxy's own upstream timeout), and any other kind by its name;
- ``5xx``: the target answered with server errors;
- ``unanswered``: the target answered no request for longer than the run timeout (a client
  run's ``--run-timeout``) while requests were sent: refused, reset, left waiting, given up.

Two of these fail the run whatever its thresholds say (``fatal``; :func:`target_failed`, which
the verdict reads): ``died`` and ``unanswered``. A load test whose index went away tested
nothing the thresholds were set for; with every threshold off it must still not pass. The death
comes from ``run.json``'s ``target.died`` or, for a run whose pipstorm was killed before writing
it, from the ``target_died`` event appended the moment it was seen (``events.jsonl``).

Injected faults (``pipstorm run --fault``) are the test's, not the target's: left out unless
``count_injected``, like in every error count (``pipstorm.engine.analysis.stats``).
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

from pipstorm.engine.analysis.stats import is_injected, transport_kind
from pipstorm.engine.rundir.events import TARGET_DIED
from pipstorm.engine.rundir.records import CLIENT_DISCONNECTED, RequestRecord

#: The run timeout a run recorded before ``run.json`` had one is taken to be (the CLI default).
DEFAULT_RUN_TIMEOUT_S = 120.0
#: A silence of the target this long, while requests wait, is a stall. pip's read timeout is
#: 15 s and a healthy pypiserver answers a listing in milliseconds: 5 s of nothing is no load.
STALL_S = 5.0

# What each transport error kind says about the target, in the words a reader needs.
_TRANSPORT_WORDS = {
    "upstream_refused": ("refused", "target refused connections"),
    "upstream_reset": ("reset", "target reset connections"),
    "upstream_timeout": ("timeout", "upstream timeouts (the proxy gave up waiting)"),
    "upstream_error": ("upstream_error", "other upstream transport errors"),
    "unknown": ("unknown", "requests with no response and no recorded cause"),
}
# Not the target's doing: the client left, or the proxy was stopped at the end of the run.
_NOT_TARGET = frozenset({CLIENT_DISCONNECTED, "proxy_shutdown"})


@dataclass(frozen=True)
class TargetCause:
    """One way the target failed: a short ``kind``, the line shown, and its figures.

    Times are seconds from the run's start (None when the run has no start time);
    ``recovered_s`` is the first good answer to a request started after the cause's last
    failure (None: none came); ``fatal``: the run fails on it whatever its thresholds."""

    kind: str
    text: str
    count: int
    first_s: float | None
    last_s: float | None
    recovered_s: float | None = None
    fatal: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (report.json's ``target_failure``)."""
        return asdict(self)


def target_failed(causes: Sequence[TargetCause]) -> TargetCause | None:
    """The cause that fails the run whatever its thresholds (a death, a silence longer than
    the run timeout), the first found; None when the target did not fail the run itself."""
    return next((c for c in causes if c.fatal), None)


def target_causes(
    requests: Sequence[RequestRecord],
    target: Mapping[str, Any],
    started: float | None,
    *,
    count_injected: bool = False,
    events: Sequence[Mapping[str, Any]] = (),
    run_timeout_s: float | None = None,
) -> tuple[TargetCause, ...]:
    """Every cause found, the decisive first: a death, a silence longer than the run timeout,
    a stall, transport errors, 5xx. ``events``: the run's ``events.jsonl``; ``run_timeout_s``
    None: :data:`DEFAULT_RUN_TIMEOUT_S`."""
    judged = sorted(
        (
            r
            for r in requests
            # A request no run sent (a scan, a malformed head) was answered by the proxy.
            if r.run_id is not None and (count_injected or not is_injected(r))
        ),
        key=lambda r: r.ts,
    )
    origin = started if started is not None else (judged[0].ts if judged else None)
    limit = DEFAULT_RUN_TIMEOUT_S if run_timeout_s is None else run_timeout_s
    causes = [
        *_died(_death(target, events), origin),
        *_unanswered(judged, origin, limit),
        *_stall(judged, origin),
    ]
    by_kind: dict[str, list[RequestRecord]] = {}
    for rec in judged:
        kind = transport_kind(rec)
        if kind is not None and kind not in _NOT_TARGET:
            by_kind.setdefault(kind, []).append(rec)
    for kind, failed in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        short, words = _TRANSPORT_WORDS.get(kind, (kind, f"{kind} errors"))
        causes.append(_cause(short, words, failed, judged, origin, detail=kind))
    server_errors = [r for r in judged if r.status is not None and 500 <= r.status <= 599]
    if server_errors:
        codes = Counter(r.status for r in server_errors)
        detail = ", ".join(f"{code} x{n}" for code, n in sorted(codes.items()))
        causes.append(
            _cause("5xx", "target answered 5xx", server_errors, judged, origin, detail=detail)
        )
    return tuple(causes)


def _ok(rec: RequestRecord) -> bool:
    return rec.status is not None and rec.status < 400 and rec.error is None


def _at(ts: float, origin: float | None) -> float | None:
    return None if origin is None else ts - origin


def _span(first: float | None, last: float | None) -> str:
    if first is None or last is None:
        return ""
    return f"t={first:.1f} s" if last - first < 0.05 else f"t={first:.1f}-{last:.1f} s"


def _cause(
    kind: str,
    words: str,
    failed: Sequence[RequestRecord],
    judged: Sequence[RequestRecord],
    origin: float | None,
    *,
    detail: str,
) -> TargetCause:
    first, last = failed[0].ts, failed[-1].ts
    again = next((r for r in judged if r.ts > last and _ok(r)), None)
    first_s, last_s = _at(first, origin), _at(last, origin)
    recovered_s = None if again is None else _at(again.ts, origin)
    span = _span(first_s, last_s)
    text = f"{words}: {len(failed)} request{'s' if len(failed) != 1 else ''}"
    text += f", {span}" if span else ""
    text += f" ({detail})"
    if recovered_s is not None:
        text += f"; requests ok again from t={recovered_s:.1f} s"
    elif again is not None:
        text += "; requests ok again afterwards"
    else:
        text += "; no request was answered after it"
    return TargetCause(kind, text, len(failed), first_s, last_s, recovered_s)


def _death(
    target: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """run.json's ``target.died``, else the first ``target_died`` event (a killed pipstorm)."""
    died = target.get("died")
    if isinstance(died, Mapping):
        return died
    return next((e for e in events if e.get("event") == TARGET_DIED), None)


def _died(died: Mapping[str, Any] | None, origin: float | None) -> list[TargetCause]:
    if died is None:
        return []
    when = died.get("ts")
    at = _at(float(when), origin) if isinstance(when, int | float) else None
    code = died.get("exit_code")
    how = ""
    if isinstance(code, int) and not isinstance(code, bool):
        how = f" (exit code {code}"
        if code < 0:
            try:
                how += f": killed by {signal.Signals(-code).name}"
            except ValueError:
                how += ": killed by a signal"
        how += ")"
    # The master's death: its orphaned workers may serve a few seconds more (gunicorn's
    # parent check), which the refused cause's window shows.
    text = f"the embedded target (pypiserver) died{'' if at is None else f' at t={at:.1f} s'}"
    text += how
    return [TargetCause("died", text, 0, at, at, fatal=True)]


def _unanswered(
    judged: Sequence[RequestRecord], origin: float | None, limit_s: float
) -> list[TargetCause]:
    """The longest time the target answered no request while requests were sent, if longer
    than ``limit_s``: from the first request sent after its last answer to its next answer (or
    the last recorded request's end). Requests no client run sent (a port scan's) are not asked
    of the target, and an idle stretch of the profile is no silence."""
    asked = judged
    if not asked:
        return []
    answers = sorted(_answered(r) for r in asked if r.status is not None)
    bounds = [asked[0].ts, *answers, max(r.end for r in asked)]
    best: tuple[float, float] | None = None
    for before, after in pairwise(bounds):
        # No answer lies inside: a request started in it was answered at its end, or never.
        # The silence starts with the first of them (an idle stretch before it is no silence).
        begin = min((r.ts for r in asked if before <= r.ts < after), default=after)
        if after - begin > limit_s and (best is None or after - begin > best[1] - best[0]):
            best = (begin, after)
    if best is None:
        return []
    begin, end = best
    unanswered = [r for r in asked if begin <= r.ts < end]
    first_s, last_s = _at(begin, origin), _at(end, origin)
    span = _span(first_s, last_s)
    text = (
        f"target answered no request for {end - begin:.1f} s"
        + (f" ({span})" if span else "")
        + f", longer than the run timeout ({limit_s:g} s): {len(unanswered)} request"
        + ("s" if len(unanswered) != 1 else "")
        + " sent in that time got no answer"
    )
    return [TargetCause("unanswered", text, len(unanswered), first_s, last_s, fatal=True)]


def _answered(rec: RequestRecord) -> float:
    """When the target (or the kernel, refusing) answered: the first byte, else the end."""
    if rec.status is not None and rec.ttfb_ms is not None:
        return rec.ts + rec.ttfb_ms / 1000.0
    return rec.end


def _stall(judged: Sequence[RequestRecord], origin: float | None) -> list[TargetCause]:
    """The longest silence of the target with requests waiting, if it reaches ``STALL_S``."""
    slow = [r for r in judged if _answered(r) - r.ts >= STALL_S]
    if not slow:
        return []
    # The first request's start stands for an answer: a target frozen from the start stalls too.
    answers = sorted([judged[0].ts, *(_answered(r) for r in judged)])
    best: tuple[float, float, list[RequestRecord]] | None = None
    for before, after in pairwise(answers):
        if after - before < STALL_S:
            continue
        # Requests waiting when the silence ended; the earliest began the silence if it
        # started after the last answer.
        waiting = [r for r in slow if r.ts < after and _answered(r) >= after]
        if not waiting:
            continue
        begin = max(before, min(r.ts for r in waiting))
        if after - begin >= STALL_S and (best is None or after - begin > best[1] - best[0]):
            best = (begin, after, waiting)
    if best is None:
        return []
    begin, end, waiting = best
    first_s, last_s = _at(begin, origin), _at(end, origin)
    gave_up = sum(1 for r in waiting if r.error == CLIENT_DISCONNECTED)
    timed_out = sum(1 for r in waiting if r.error == "upstream_timeout")
    ends = [f"{gave_up} client(s) gave up first"] if gave_up else []
    ends += [f"the proxy timed out {timed_out}"] if timed_out else []
    answered = sum(1 for r in waiting if r.status is not None and r.error is None)
    if answered == len(waiting):
        ends.append("all were answered late; neither the clients nor the proxy timed out")
    span = _span(first_s, last_s)
    text = (
        f"target answered nothing for {end - begin:.1f} s"
        + (f" ({span})" if span else "")
        + f" while {len(waiting)} request{'s' if len(waiting) != 1 else ''} waited"
        + (f": {'; '.join(ends)}" if ends else "")
    )
    return [TargetCause("stalled", text, len(waiting), first_s, last_s, last_s)]
