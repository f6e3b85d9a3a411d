"""``pipstorm watch``'s loop: live CloudWatch values per tick, reasons for what is missing."""

from __future__ import annotations

import datetime as dt
import io
import threading
import time

import pytest

from pipstorm.infra.aws.metrics import metric_spec
from pipstorm.infra.aws.watch import format_value, watch_stack
from tests.infra.aws.support import DIMENSIONS, REGION, minute, put_points


@pytest.mark.usefixtures("aws")
def test_each_tick_prints_the_latest_values_and_why_others_are_missing() -> None:
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    put_points(metric_spec("ecs_memory"), [(minute(-i, now), 40.0 + i) for i in range(8)])
    put_points(metric_spec("efs_burst_credits"), [(minute(-1, now), 2.5 * 1024**4)])
    out = io.StringIO()
    ticks = watch_stack(
        DIMENSIONS, region=REGION, out=out, interval=0.0, max_ticks=2, clock=now.timestamp
    )
    assert ticks == 2
    blocks = out.getvalue().strip().split("\n\n")
    assert len(blocks) == 2
    lines = blocks[0].splitlines()
    window = f"{minute(-11, now):%H:%M}-{minute(2, now):%H:%M} UTC"
    assert lines[0] == f"{now:%H:%M:%S} UTC  {REGION}  {window}, 60 s periods"
    memory = next(line for line in lines if line.strip().startswith("ecs_memory"))
    # The six newest minutes, oldest first: 40 + i for i = 5..0 (the minute "now" holds 40.0).
    assert "45.0%  44.0%  43.0%  42.0%  41.0%  40.0%" in memory
    assert f"(latest {now:%H:%M}, Average)" in memory
    credits = next(line for line in lines if line.strip().startswith("efs_burst_credits"))
    assert "2.5TiB" in credits
    cpu = next(line for line in lines if line.strip().startswith("ecs_cpu"))
    assert cpu.endswith("-- no datapoints in the window")


def test_without_credentials_it_keeps_printing_the_reason_until_stopped() -> None:
    out = io.StringIO()
    stop = threading.Event()

    def stop_after_two_ticks() -> None:
        # On the ticks printed, not on a time (a 0.3 s timer gave 1 tick on a busy host).
        deadline = time.monotonic() + 60
        while out.getvalue().count("UTC  ") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()

    stopper = threading.Thread(target=stop_after_two_ticks, daemon=True)
    stopper.start()
    ticks = watch_stack(DIMENSIONS, region=REGION, out=out, interval=0.05, stop=stop)
    stopper.join(10)
    assert ticks >= 2
    assert out.getvalue().count("-- no AWS credentials") == 9 * ticks


def test_values_are_printed_in_their_units() -> None:
    assert format_value(57.94, "%") == "57.9%"
    assert format_value(0.2345, "s") == "234ms"
    assert format_value(3 * 1024**3, "bytes") == "3.0GiB"
    assert format_value(12.0, "count") == "12"
