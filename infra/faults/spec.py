"""Fault rules for the recording proxy: the SPEC syntax and its parser.

A rule is one line of ``key=value`` items separated by commas, e.g.
``op=listing,status=503,first=3`` or ``path=*.whl,stall=10s,p=0.2``. Keys that *match*:

* ``op=listing|download`` operations (``|`` separates alternatives). The op is classified from
  method and path before the upstream answers, so ``redirect`` cannot be matched;
* ``path=GLOB`` fnmatch glob on the path (query left out) as forwarded upstream;
* ``client=pip|poetry`` client kind of the run (the engine hands the proxy a run-id -> kind map);
* ``after=DUR`` / ``before=DUR`` a time window, from the start of the run (time zero);
* ``during=bursts`` only in the tick window (``tick_s`` long) of a burst tick;
* ``first=N`` the first N attempts of each URL (method + path), per client run;
* ``every=N`` every Nth request that passed the other conditions;
* ``p=F`` probability; drawn from a hash of (seed, rule, run, URL, attempt), so it is the same
  under the same seed whatever order concurrent requests arrive in.

Keys that *act* (at most one besides ``delay``): ``status=CODE`` (``retry_after=S`` adds a
``Retry-After`` header), ``reset=before|after`` (the connection is cut before the headers or right
after them), ``stall=DUR`` (pause half-way through the body), ``truncate=BYTES|P%`` (the body is
cut, the connection closed), ``slow=RATE`` (body at RATE bytes/s, ``k``/``M`` suffixes);
``delay=DUR`` adds latency before the headers, alone or with another action. ``id=NAME`` names
the rule in ``requests.jsonl`` (default ``f1``, ``f2``... in the order given). The first rule
that matches a request fires; the others do not see it.

This module is pure (no aiohttp): the engine parses specs with it to fail fast, and the proxy
process reads the same specs from a plan file and matches requests with
``pipstorm.infra.faults.plan.FaultMatcher``; ``pipstorm.infra.proxy.shaping`` does the actions on
the wire.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pipstorm.infra.errors import InfraError
from pipstorm.infra.operations import OPERATIONS

MATCH_KEYS: Final = (
    *("id", "op", "path", "client", "after", "before", "during", "first", "every", "p"),
)
ACTION_KEYS: Final = ("status", "retry_after", "delay", "reset", "stall", "truncate", "slow")
# Actions that exclude each other; delay combines with any of them.
_MAIN_ACTIONS: Final = ("status", "reset", "stall", "truncate", "slow")
_ID_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)([kKmM]?)(?:[bB])?(?:/s)?")
_MATCHABLE_OPS: Final = tuple(op for op in OPERATIONS if op != "redirect")


class FaultSpecError(InfraError, ValueError):
    """A fault spec or fault plan is malformed; the message is one line naming the bad part."""


@dataclass(frozen=True)
class FaultRule:
    """One parsed rule: when it fires and what it does (see the module docstring)."""

    id: str
    spec: str
    ops: frozenset[str] | None = None
    path: str | None = None
    clients: frozenset[str] | None = None
    after_s: float | None = None
    before_s: float | None = None
    bursts: bool = False
    first: int | None = None
    every: int | None = None
    p: float | None = None
    status: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    reset: str | None = None  # "before" or "after" (the headers)
    stall_s: float | None = None
    truncate_bytes: int | None = None
    truncate_fraction: float | None = None
    slow_bps: float | None = None

    @property
    def needs_clock(self) -> bool:
        """The rule depends on the run's time zero."""
        return self.after_s is not None or self.before_s is not None or self.bursts

    @property
    def shapes_body(self) -> bool:
        """The action works on the upstream's body (stall, truncate, slow, reset after headers)."""
        return (
            self.stall_s is not None
            or self.truncate_bytes is not None
            or self.truncate_fraction is not None
            or self.slow_bps is not None
            or self.reset == "after"
        )

    @property
    def kind(self) -> str:
        """A short name of the action, for reports: ``503``, ``reset``, ``stall``, ``delay``..."""
        if self.status is not None:
            return str(self.status)
        if self.reset is not None:
            return f"reset {self.reset} headers"
        if self.stall_s is not None:
            return "stall"
        if self.truncate_bytes is not None or self.truncate_fraction is not None:
            return "truncate"
        return "slow body" if self.slow_bps is not None else "delay"


def _bad(spec: str, part: str, why: str) -> FaultSpecError:
    return FaultSpecError(f"fault {spec!r}: {part!r} {why}")


def parse_duration(text: str) -> float:
    """``2s``, ``500ms``, ``1.5``, ``1m`` -> seconds; ValueError otherwise."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


def parse_size(text: str) -> float:
    """``4096``, ``10k``, ``1M``, ``10kB/s`` -> bytes (1024-based); ValueError otherwise."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return float(match.group(1)) * scale


def _positive_int(spec: str, key: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise _bad(spec, f"{key}={value}", "must be a whole number >= 1")
    return int(value)


def _duration(spec: str, key: str, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise _bad(spec, f"{key}={value}", "is not a duration (e.g. 2s, 500ms, 1m)") from None


def _alternatives(spec: str, key: str, value: str, allowed: Sequence[str] | None) -> frozenset[str]:
    names = [v.strip() for v in value.split("|")]
    if not all(names):
        raise _bad(spec, f"{key}={value}", "has an empty alternative")
    for name in names:
        if allowed is not None and name not in allowed:
            hint = (
                " (the op is known before the upstream answers)"
                if key == "op" and name == "redirect"
                else ""
            )
            raise _bad(spec, f"{key}={name}", f"is not one of {'|'.join(allowed)}{hint}")
    return frozenset(names)


def _items(spec: str) -> dict[str, str]:
    items: dict[str, str] = {}
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            raise _bad(spec, raw, "is an empty item (two commas, or a trailing comma)")
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise _bad(spec, part, "must look like key=value")
        if key not in MATCH_KEYS and key not in ACTION_KEYS:
            known = ", ".join((*MATCH_KEYS, *ACTION_KEYS))
            raise _bad(spec, key, f"is not a fault key (known: {known})")
        if key in items:
            raise _bad(spec, key, "is given twice")
        items[key] = value
    return items


def parse_fault(spec: str, *, default_id: str = "f1") -> FaultRule:
    """Parse one SPEC; :class:`FaultSpecError` names the first bad part."""
    spec = spec.strip()
    if not spec:
        raise FaultSpecError("fault spec is empty")
    items = _items(spec)
    rule: dict[str, Any] = {"id": default_id, "spec": spec}
    for key, value in items.items():
        rule.update(_PARSERS[key](spec, value))
    _check_combination(spec, items, rule)
    return FaultRule(**rule)


def _parse_id(spec: str, value: str) -> dict[str, Any]:
    if _ID_RE.fullmatch(value) is None:
        raise _bad(spec, f"id={value}", "must be 1-40 of [A-Za-z0-9_.-]")
    return {"id": value}


def _parse_path(spec: str, value: str) -> dict[str, Any]:
    if not value.startswith(("/", "*")):
        raise _bad(spec, f"path={value}", "must start with / or * (a glob on the path)")
    return {"path": value}


def _parse_during(spec: str, value: str) -> dict[str, Any]:
    if value != "bursts":
        raise _bad(spec, f"during={value}", "must be during=bursts")
    return {"bursts": True}


def _parse_p(spec: str, value: str) -> dict[str, Any]:
    try:
        p = float(value)
    except ValueError:
        p = math.nan
    if not 0.0 < p <= 1.0:
        raise _bad(spec, f"p={value}", "must be a probability in (0, 1]")
    return {"p": p}


def _parse_status(spec: str, value: str) -> dict[str, Any]:
    if not value.isdigit() or not 100 <= int(value) <= 599:
        raise _bad(spec, f"status={value}", "must be an HTTP status code 100-599")
    return {"status": int(value)}


def _parse_retry_after(spec: str, value: str) -> dict[str, Any]:
    if not value.isdigit():
        raise _bad(spec, f"retry_after={value}", "must be whole seconds")
    return {"retry_after": value}


def _parse_reset(spec: str, value: str) -> dict[str, Any]:
    if value not in ("before", "after"):
        raise _bad(spec, f"reset={value}", "must be before or after (the headers)")
    return {"reset": value}


def _parse_slow(spec: str, value: str) -> dict[str, Any]:
    try:
        rate = parse_size(value)
    except ValueError:
        rate = 0.0
    if not rate >= 1:
        raise _bad(spec, f"slow={value}", "must be a rate >= 1 byte/s (e.g. 10k)")
    return {"slow_bps": rate}


def _parse_truncate(spec: str, value: str) -> dict[str, Any]:
    if value.endswith("%"):
        try:
            pct = float(value[:-1])
        except ValueError:
            pct = -1.0
        if not 0.0 <= pct < 100.0:
            raise _bad(spec, f"truncate={value}", "must be a percentage in [0, 100)")
        return {"truncate_fraction": pct / 100.0}
    try:
        size = parse_size(value)
    except ValueError:
        raise _bad(spec, f"truncate={value}", "must be bytes (e.g. 1000, 4k) or P%") from None
    return {"truncate_bytes": int(size)}


_PARSERS: Final[dict[str, Callable[[str, str], dict[str, Any]]]] = {
    "id": _parse_id,
    "op": lambda spec, v: {"ops": _alternatives(spec, "op", v, _MATCHABLE_OPS)},
    "path": _parse_path,
    "client": lambda spec, v: {"clients": _alternatives(spec, "client", v, None)},
    "after": lambda spec, v: {"after_s": _duration(spec, "after", v)},
    "before": lambda spec, v: {"before_s": _duration(spec, "before", v)},
    "during": _parse_during,
    "first": lambda spec, v: {"first": _positive_int(spec, "first", v)},
    "every": lambda spec, v: {"every": _positive_int(spec, "every", v)},
    "p": _parse_p,
    "status": _parse_status,
    "retry_after": _parse_retry_after,
    "delay": lambda spec, v: {"delay_s": _duration(spec, "delay", v)},
    "reset": _parse_reset,
    "stall": lambda spec, v: {"stall_s": _duration(spec, "stall", v)},
    "truncate": _parse_truncate,
    "slow": _parse_slow,
}


def _check_combination(spec: str, items: Mapping[str, str], rule: Mapping[str, Any]) -> None:
    main = [k for k in _MAIN_ACTIONS if k in items]
    if len(main) > 1:
        raise _bad(spec, f"{main[0]} and {main[1]}", "exclude each other (one action per rule)")
    if not main and "delay" not in items:
        raise _bad(spec, spec, "has no action (status, delay, reset, stall, truncate or slow)")
    if "retry_after" in items and "status" not in items:
        raise _bad(spec, "retry_after", "needs status=CODE")
    after, before = rule.get("after_s"), rule.get("before_s")
    if after is not None and before is not None and not after < before:
        raise _bad(spec, f"after={items['after']},before={items['before']}", "is an empty window")


def parse_faults(specs: Iterable[str]) -> tuple[FaultRule, ...]:
    """Parse several specs (CLI then profile order); ids default to f1, f2...; no duplicates."""
    rules: list[FaultRule] = []
    for index, spec in enumerate(specs, start=1):
        rule = parse_fault(spec, default_id=f"f{index}")
        if any(r.id == rule.id for r in rules):
            raise FaultSpecError(f"fault {spec!r}: id {rule.id!r} is used by another rule")
        rules.append(rule)
    return tuple(rules)


def spec_from_table(table: Mapping[str, object], where: str) -> str:
    """A profile's ``[[faults]]`` table as a SPEC: ``{spec = "..."}`` or the keys themselves."""
    if set(table) == {"spec"} and isinstance(table["spec"], str):
        return table["spec"]
    parts = []
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise FaultSpecError(f"{where}: fault key {key!r} must be a string or a number")
        parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    if not parts:
        raise FaultSpecError(f"{where}: a [[faults]] table is empty")
    return ",".join(parts)
