"""``pipstorm run --help`` groups its options into panels (issue 19), declared once."""

from __future__ import annotations

import pytest

from pipstorm.engine.cli.app import main
from pipstorm.engine.cli.options import (
    CLIENTS_PANEL,
    FAULTS_PANEL,
    LOAD_PANEL,
    OUTPUT_PANEL,
    PANELS,
    SCALE_OUT_PANEL,
    SIZING_PANEL,
    TARGET_PANEL,
)


def _help(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *cmd: str) -> str:
    monkeypatch.setenv("COLUMNS", "200")  # wide: a panel's title is never wrapped
    monkeypatch.setenv("TERM", "dumb")
    assert main([*cmd, "--help"]) == 0
    return capsys.readouterr().out


def _panel_titles(text: str) -> list[str]:
    """The titles of the boxes ``--help`` draws (``╭─ Title ───``), in order."""
    return [
        line.split("╭─ ", 1)[1].split(" ─", 1)[0].strip()
        for line in text.splitlines()
        if "╭─ " in line
    ]


def test_run_help_shows_every_panel(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    titles = _panel_titles(_help(capsys, monkeypatch, "run"))
    assert sorted(t for t in titles if t in PANELS) == sorted(PANELS)
    # Every option is in a panel: nothing is left in the catch-all box but --help.
    text = _help(capsys, monkeypatch, "run")
    options_box = text.split("╭─ Options ")[1].split("╰")[0] if "╭─ Options " in text else ""
    assert "--profile" not in options_box and "--shards" not in options_box


def test_options_land_in_their_panel(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _help(capsys, monkeypatch, "run")
    boxes = {title: text.split(f"╭─ {title} ")[1].split("╰")[0] for title in PANELS}
    assert "--index-url" in boxes[TARGET_PANEL]
    assert "--duration" in boxes[LOAD_PANEL]
    assert "--client " in boxes[CLIENTS_PANEL]
    assert "--fault" in boxes[FAULTS_PANEL]
    assert "--cpus" in boxes[SIZING_PANEL]
    assert "--results" in boxes[OUTPUT_PANEL]
    assert "--shards" in boxes[SCALE_OUT_PANEL]


@pytest.mark.parametrize("command", ["sizing-lab", "realism", "retry-lab"])
def test_the_labs_share_the_panels(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    titles = _panel_titles(_help(capsys, monkeypatch, command))
    assert len([t for t in titles if t in PANELS]) >= 2
