"""A fault plan (rules plus what matching needs) and the matcher the proxy runs on each request.

The plan is the JSON file the engine hands the proxy process (``--faults PATH``); the rules
inside are their SPEC text, read back with the one parser in ``pipstorm.infra.faults.spec``. The
matcher is deterministic under the plan's seed: probabilities are drawn from a hash of the request's
identity, not from a shared random stream, so concurrency cannot reorder them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pipstorm.infra.faults.spec import FaultRule, FaultSpecError, parse_fault
from pipstorm.infra.operations import classify

SCHEMA: Final = 1


@dataclass(frozen=True)
class FaultPlan:
    """Rules plus what the proxy needs to match them: the file handed to the proxy process.

    ``origin`` is time zero (epoch s) of ``after``/``before``/``during``; it may be written
    later than the rest (the engine learns it once its pool runs); ``clients`` maps run ids to
    client kinds. No secrets: specs, run ids, kinds and times only.
    """

    rules: tuple[FaultRule, ...]
    seed: int = 1
    clients: Mapping[str, str] = field(default_factory=dict)
    origin: float | None = None
    tick_s: float = 10.0
    burst_ticks_s: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON document (rules as their spec text and id: one parser reads them back)."""
        return {
            "schema": SCHEMA,
            "seed": self.seed,
            "rules": [{"id": r.id, "spec": r.spec} for r in self.rules],
            "clients": dict(self.clients),
            "origin": self.origin,
            "tick_s": self.tick_s,
            "burst_ticks_s": list(self.burst_ticks_s),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultPlan:
        """Read a plan back; FaultSpecError for any other shape."""
        try:
            if data.get("schema") != SCHEMA:
                raise FaultSpecError(f"fault plan schema {data.get('schema')!r} is not {SCHEMA}")
            rules = tuple(
                parse_fault(str(item["spec"]), default_id=str(item["id"])) for item in data["rules"]
            )
            origin = data.get("origin")
            return cls(
                rules=rules,
                seed=int(data.get("seed", 1)),
                clients={str(k): str(v) for k, v in dict(data.get("clients", {})).items()},
                origin=None if origin is None else float(origin),
                tick_s=float(data.get("tick_s", 10.0)),
                burst_ticks_s=tuple(float(t) for t in data.get("burst_ticks_s", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(f"malformed fault plan: {exc!r}") from None

    def write(self, path: Path) -> None:
        """Write atomically (the proxy may re-read it while the engine fills in ``origin``)."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FaultPlan:
        """Read a plan file; FaultSpecError when it is unreadable or malformed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FaultSpecError(f"cannot read fault plan {path}: {exc}") from None
        if not isinstance(data, dict):
            raise FaultSpecError(f"fault plan {path} is not a JSON object")
        return cls.from_json(data)


def unit_draw(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``parts``: order-independent randomness."""
    text = ":".join(str(p) for p in (seed, *parts)).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class FaultMatcher:
    """Decides, request by request, which rule (if any) fires. Not thread-safe: the proxy's
    event loop calls it from one thread.

    With ``path`` set, a plan without ``origin`` is re-read (when the file changed) until the
    engine has written time zero; until then rules with a time window do not fire.
    """

    def __init__(self, plan: FaultPlan, *, path: Path | None = None) -> None:
        self.plan = plan
        self._path = path
        self._mtime: float | None = None
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._every: dict[str, int] = {}

    def decide(
        self, run_id: str | None, method: str, path: str, now: float
    ) -> tuple[FaultRule, int] | None:
        """The rule that fires for this request and the request's attempt number of its URL."""
        key = (run_id or "", method, path)
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        op = classify(method, path, None)
        bare = path.split("?", 1)[0]
        client = self.plan.clients.get(run_id or "")
        for rule in self.plan.rules:
            if rule.ops is not None and op not in rule.ops:
                continue
            if rule.path is not None and not fnmatch.fnmatchcase(bare, rule.path):
                continue
            if rule.clients is not None and client not in rule.clients:
                continue
            if rule.needs_clock and not self._in_window(rule, now):
                continue
            if rule.first is not None and attempt > rule.first:
                continue
            if rule.every is not None:
                seen = self._every.get(rule.id, 0) + 1
                self._every[rule.id] = seen
                if seen % rule.every:
                    continue
            if rule.p is not None and (
                unit_draw(self.plan.seed, rule.id, run_id, method, path, attempt) >= rule.p
            ):
                continue
            return rule, attempt
        return None

    def _in_window(self, rule: FaultRule, now: float) -> bool:
        origin = self._origin()
        if origin is None:
            return False
        t = now - origin
        if rule.after_s is not None and t < rule.after_s:
            return False
        if rule.before_s is not None and t >= rule.before_s:
            return False
        if rule.bursts:
            tick = self.plan.tick_s
            return any(b <= t < b + tick for b in self.plan.burst_ticks_s)
        return True

    def _origin(self) -> float | None:
        if self.plan.origin is None and self._path is not None:
            try:
                mtime = self._path.stat().st_mtime
            except OSError:
                return None
            if mtime != self._mtime:
                self._mtime = mtime
                try:
                    self.plan = FaultPlan.load(self._path)
                except FaultSpecError:
                    return None
        return self.plan.origin
