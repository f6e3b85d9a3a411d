"""report.html and the chart PNGs: self-contained, offline, rendered by a real browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipstorm.engine.report.model import REPORT_HTML
from pipstorm.engine.report.write import write_reports
from tests.engine.chromium_shot import (
    colour_pixels,
    distinct_colours,
    needs_chromium,
    screenshot,
    verdict_colour,
)
from tests.engine.report.test_report_verdict import bound_run
from tests.engine.synthetic_run import write_run

MAIN_CHARTS = {"rate", "latency", "status", "latency-distribution", "clients"}


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-minute production_incident (2,160 client runs, 4,320 requests, host samples)."""
    run_dir = write_run(tmp_path_factory.mktemp("report") / "run")
    write_reports(run_dir)
    return run_dir


def test_every_chart_is_written_and_linked_from_report_md(big_run: Path) -> None:
    pngs = {p.name for p in big_run.glob("chart-*.png")}
    assert pngs == {f"chart-{k}.png" for k in (*MAIN_CHARTS, "host")}
    for name in pngs:
        assert (big_run / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    md = (big_run / "report.md").read_text()
    assert set(re.findall(r"\]\((chart-[a-z-]+\.png)\)", md)) == pngs
    assert "(report.html)" in md


def test_report_html_is_self_contained(big_run: Path) -> None:
    page = (big_run / REPORT_HTML).read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "PASS: all 2 thresholds passed" in page
    # Nothing to fetch: every src is inline data, no stylesheet or script from anywhere.
    sources = re.findall(r'\s(?:src|href)="([^"#][^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources), sources[:3]
    assert "<script" not in page and "<link" not in page
    assert page.count("<img ") == len(MAIN_CHARTS) + 1
    assert "no-host-samples" not in page
    assert json.loads((big_run / "report.json").read_text())["verdict"] == "pass"


def test_without_host_samples_the_page_says_so(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=120, host=False)
    (run_dir / "chart-host.png").write_bytes(b"stale")  # from an earlier rebuild
    write_reports(run_dir)
    page = (run_dir / REPORT_HTML).read_text()
    assert 'id="no-host-samples"' in page and "no host.jsonl in the run folder" in page
    assert not (run_dir / "chart-host.png").exists()
    (run_dir / "host.jsonl").write_text('{"ts": "x"}\n{"ts": 1, "mystery": 2}\n{"cut')
    write_reports(run_dir)
    assert "host.jsonl has no samples with known keys" in (run_dir / REPORT_HTML).read_text()


def test_a_crashed_run_with_a_cut_line_still_gets_every_report(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=300, ended=False)
    with (run_dir / "requests.jsonl").open("a") as fh:
        fh.write('{"ts": 1790000100.5, "op": "listing", "meth')  # the crash cut this line
    report = write_reports(run_dir)
    assert report.incomplete
    page = (run_dir / REPORT_HTML).read_text()
    assert "incomplete run" in page and "Skipped 1 malformed line" in page
    assert {p.name for p in run_dir.glob("chart-*.png")} >= {"chart-rate.png"}


def test_a_run_with_nothing_recorded_has_a_page_without_charts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"schema": 1, "started": None}))
    write_reports(run_dir)
    page = (run_dir / REPORT_HTML).read_text()
    assert "Nothing was recorded to chart." in page
    assert not list(run_dir.glob("chart-*.png"))


@needs_chromium
def test_chromium_renders_the_charts(big_run: Path, tmp_path: Path) -> None:
    shot = screenshot(big_run / REPORT_HTML, tmp_path / "shot.png", tmp_path / "profile")
    # the PASS banner's green (#1e7b34), not a white or blank page (white is 255, 255, 255)
    r, g, b = verdict_colour(shot)
    assert abs(r - 0x1E) < 24 and abs(g - 0x7B) < 24 and abs(b - 0x34) < 24, (r, g, b)
    for colour in ("#1f77b4", "#ff7f0e", "#2ca02c"):  # listing, download, status 200
        assert colour_pixels(shot, colour) > 1000, colour
    # Below the verdict, run and thresholds boxes come the charts: ~20,000 colours (lines,
    # bars, anti-aliasing); the same page with broken images measured ~1,300 (table text).
    assert distinct_colours(shot, slice(600, 3000)) > 5000


def test_burst_onset_is_in_every_rendering(big_run: Path) -> None:
    """Every burst tick of the 24-minute run has its onset row in report.json, .md and .html."""
    onset = json.loads((big_run / "report.json").read_text())["onset"]
    assert len(onset["bursts"]) == 24
    assert all(b["runs"] == 75 and b["reached"] == 75 for b in onset["bursts"])
    assert onset["base"]["runs"] == 2160 - 24 * 75
    assert onset["late"] is False and 0 < onset["worst_p95_s"] < 1
    md = (big_run / "report.md").read_text()
    assert "### Burst onset" in md and "| burst 6 " in md and "| base ticks " in md
    page = (big_run / REPORT_HTML).read_text()
    assert 'id="burst-onset"' in page and "<td>burst 138</td>" in page


def _banner_rgb(page: str, verdict: str) -> tuple[int, int, int]:
    """The banner's background as the page's own CSS gives it for the header's class."""
    assert f'<header class="verdict {verdict}" id="verdict">' in page
    found = re.search(rf"header\.{verdict} \{{ background: #([0-9a-f]{{6}}); \}}", page)
    assert found is not None, f"no colour for header.{verdict}"
    hex_ = found.group(1)
    r, g, b = (int(hex_[i : i + 2], 16) for i in (0, 2, 4))
    return r, g, b


def test_the_banner_is_green_red_or_neither_without_a_browser(tmp_path: Path) -> None:
    # Every verdict, not only PASS, and without Chromium: the class the page gives its banner
    # and the colour its stylesheet gives that class.
    passing = write_run(tmp_path / "pass", duration_s=120)
    failing = write_run(tmp_path / "fail", duration_s=120)
    run_json = failing / "run.json"
    meta = json.loads(run_json.read_text(encoding="utf-8"))
    meta["thresholds"] = {"p95_listing_ms": 0.001}  # no listing is that fast
    run_json.write_text(json.dumps(meta), encoding="utf-8")
    bound = bound_run(tmp_path / "bound")
    colours = {}
    for verdict, run_dir in (("pass", passing), ("fail", failing), ("inconclusive", bound)):
        assert write_reports(run_dir).verdict == verdict
        colours[verdict] = _banner_rgb((run_dir / REPORT_HTML).read_text("utf-8"), verdict)
    r, g, b = colours["pass"]
    assert g > r + 50 and g > b + 50  # green
    r, g, b = colours["fail"]
    assert r > g + 80 and r > b + 80  # red
    r, g, b = colours["inconclusive"]
    assert max(r, g, b) - min(r, g, b) < 40  # neither: grey
