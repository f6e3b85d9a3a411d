"""Fault specs: the parser (one-line errors naming the bad part) and the matcher (deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipstorm.infra.faults.plan import FaultMatcher, FaultPlan, unit_draw
from pipstorm.infra.faults.spec import FaultSpecError, parse_fault, parse_faults, spec_from_table

LISTING = "/simple/test-package-000/"
WHEEL = "/packages/test_package_000-1.0.0-py3-none-any.whl"


def test_a_full_spec_parses() -> None:
    rule = parse_fault(
        "id=flaky, op=listing|download, path=/simple/*, client=pip|poetry, after=1s, "
        "before=2m, first=3, every=2, p=0.5, status=503, retry_after=2, delay=250ms"
    )
    assert rule.id == "flaky"
    assert rule.ops == frozenset({"listing", "download"})
    assert rule.path == "/simple/*"
    assert rule.clients == frozenset({"pip", "poetry"})
    assert (rule.after_s, rule.before_s) == (1.0, 120.0)
    assert (rule.first, rule.every, rule.p) == (3, 2, 0.5)
    assert (rule.status, rule.retry_after, rule.delay_s) == (503, "2", 0.25)
    assert rule.kind == "503"
    assert not rule.shapes_body


@pytest.mark.parametrize(
    ("spec", "field", "value", "kind"),
    [
        ("reset=before", "reset", "before", "reset before headers"),
        ("reset=after", "reset", "after", "reset after headers"),
        ("stall=10s", "stall_s", 10.0, "stall"),
        ("truncate=4k", "truncate_bytes", 4096, "truncate"),
        ("truncate=25%", "truncate_fraction", 0.25, "truncate"),
        ("slow=10kB/s", "slow_bps", 10240.0, "slow body"),
        ("delay=1.5", "delay_s", 1.5, "delay"),
        ("during=bursts,status=500", "bursts", True, "500"),
    ],
)
def test_each_action_parses(spec: str, field: str, value: object, kind: str) -> None:
    rule = parse_fault(spec)
    assert getattr(rule, field) == value
    assert rule.kind == kind


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("", "fault spec is empty"),
        ("op=listing", "has no action"),
        ("op=listing,stauts=503", "'stauts' is not a fault key"),
        ("op=listng,status=503", "'op=listng' is not one of"),
        ("op=redirect,status=503", "known before the upstream answers"),
        ("status=5033", "'status=5033' must be an HTTP status code"),
        ("status=503,,first=2", "is an empty item"),
        ("status=503,first=0", "'first=0' must be a whole number >= 1"),
        ("status=503,every=x", "'every=x' must be a whole number"),
        ("status=503,p=1.5", "'p=1.5' must be a probability"),
        ("status=503,p=nan", "'p=nan' must be a probability"),
        ("delay=soon", "'delay=soon' is not a duration"),
        ("reset=middle", "'reset=middle' must be before or after"),
        ("truncate=150%", "'truncate=150%' must be a percentage"),
        ("slow=fast", "'slow=fast' must be a rate"),
        ("status=503,stall=1s", "'status and stall' exclude each other"),
        ("retry_after=3,delay=1s", "'retry_after' needs status=CODE"),
        ("status=503,after=10s,before=5s", "is an empty window"),
        ("status=503,during=calm", "must be during=bursts"),
        ("status=503,status=500", "'status' is given twice"),
        ("status", "must look like key=value"),
        ("path=simple/*,status=503", "must start with / or *"),
        ("id=a b,status=503", "'id=a b' must be 1-40"),
    ],
)
def test_malformed_specs_get_one_line_naming_the_bad_part(spec: str, named: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_fault(spec)
    message = str(info.value)
    assert named in message
    assert "\n" not in message


def test_ids_default_in_order_and_must_be_unique() -> None:
    rules = parse_faults(["status=503", "id=mine,delay=1s", "reset=before"])
    assert [r.id for r in rules] == ["f1", "mine", "f3"]
    with pytest.raises(FaultSpecError, match="id 'f1' is used by another rule"):
        parse_faults(["status=503", "id=f1,delay=1s"])


def test_profile_tables_become_specs() -> None:
    assert spec_from_table({"spec": "op=listing,status=503"}, "p") == "op=listing,status=503"
    table = {"op": "listing", "status": 503, "first": 3, "p": 0.5}
    assert parse_fault(spec_from_table(table, "p")).first == 3
    with pytest.raises(FaultSpecError, match="fault key 'first' must be a string or a number"):
        spec_from_table({"first": True}, "p")


def matcher(*specs: str, **plan: object) -> FaultMatcher:
    return FaultMatcher(FaultPlan(rules=parse_faults(specs), **plan))  # type: ignore[arg-type]


def fired(m: FaultMatcher, run: str, path: str, now: float = 0.0) -> str | None:
    decided = m.decide(run, "GET", path, now)
    return None if decided is None else decided[0].id


def test_first_n_attempts_of_each_url_per_run() -> None:
    m = matcher("op=listing,status=503,first=2")
    assert [fired(m, "a", LISTING) for _ in range(4)] == ["f1", "f1", None, None]
    assert fired(m, "b", LISTING) == "f1"  # another run counts its own attempts
    assert fired(m, "a", WHEEL) is None  # another operation


def test_every_nth_matching_request_and_path_glob() -> None:
    m = matcher("path=*.whl,every=3,reset=before")
    got = [fired(m, f"r{i}", WHEEL) for i in range(6)]
    assert got == [None, None, "f1", None, None, "f1"]
    assert fired(m, "r9", LISTING) is None


def test_client_kind_and_first_matching_rule_wins() -> None:
    m = matcher("client=poetry,status=500", "status=503", clients={"p1": "poetry", "q1": "pip"})
    assert fired(m, "p1", LISTING) == "f1"
    assert fired(m, "q1", LISTING) == "f2"


def test_time_window_and_bursts_count_from_time_zero() -> None:
    m = matcher("after=10s,before=20s,status=503", origin=1000.0)
    assert [fired(m, "a", LISTING, 1000.0 + t) for t in (5, 10, 19.9, 20)] == [
        None,
        "f1",
        "f1",
        None,
    ]
    bursts = matcher("during=bursts,delay=1s", origin=0.0, tick_s=10.0, burst_ticks_s=(0.0, 60.0))
    assert [fired(bursts, "a", LISTING, t) for t in (1, 15, 65, 71)] == ["f1", None, "f1", None]


def test_a_window_waits_for_time_zero_written_later(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    FaultPlan(rules=parse_faults(["after=0s,status=503"])).write(path)
    m = FaultMatcher(FaultPlan.load(path), path=path)
    assert fired(m, "a", LISTING, 50.0) is None  # no time zero yet: a window cannot hold
    FaultPlan(rules=parse_faults(["after=0s,status=503"]), origin=40.0).write(path)
    assert fired(m, "a", LISTING, 50.0) == "f1"


def test_probability_is_deterministic_under_a_seed_whatever_the_order() -> None:
    runs = [f"r{i}" for i in range(200)]

    def decisions(seed: int, order: list[str]) -> dict[str, str | None]:
        m = matcher("p=0.3,status=503", seed=seed)
        return {run: fired(m, run, LISTING) for run in order}

    first = decisions(7, runs)
    assert decisions(7, list(reversed(runs))) == first
    assert decisions(8, runs) != first
    hits = sum(1 for v in first.values() if v)
    assert 30 < hits < 90  # about 60 of 200
    assert 0.0 <= unit_draw(1, "x") < 1.0


def test_plan_round_trips_through_its_file(tmp_path: Path) -> None:
    plan = FaultPlan(
        rules=parse_faults(["id=x,op=listing,status=503,retry_after=1", "stall=2s"]),
        seed=3,
        clients={"r1": "pip"},
        origin=12.5,
        tick_s=5.0,
        burst_ticks_s=(0.0, 30.0),
    )
    plan.write(tmp_path / "faults.json")
    assert FaultPlan.load(tmp_path / "faults.json") == plan
    (tmp_path / "bad.json").write_text('{"schema": 1, "rules": [{"id": "a"}]}')
    with pytest.raises(FaultSpecError, match="malformed fault plan"):
        FaultPlan.load(tmp_path / "bad.json")
