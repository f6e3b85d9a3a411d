"""The live dashboard's server: loopback by default, its routes and headers, and the page in a
real headless Chromium on a finished run (the e2e test watches a real run)."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from pipstorm.engine.errors import UsageError
from pipstorm.engine.report.write import write_reports
from pipstorm.engine.run.live.dashboard import Dashboard, open_dashboard, parse_address
from pipstorm.engine.rundir.files import RUN_FILE
from tests.engine.chromium_shot import CHROMIUM, needs_chromium
from tests.engine.synthetic_run import write_run

HOSTILE = '<img src=x onerror="document.title=1">'


def get(board: Dashboard, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    address = board.url.removeprefix("http://").rstrip("/")
    conn = http.client.HTTPConnection(address, timeout=30)
    conn.request("GET", path, headers={"Host": host or address})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), body


def test_addresses_are_loopback_unless_allowed() -> None:
    assert parse_address("127.0.0.1:0", allow_remote=False) == ("127.0.0.1", 0)
    assert parse_address(":5665", allow_remote=False) == ("127.0.0.1", 5665)
    assert parse_address("[::1]:5665", allow_remote=False) == ("::1", 5665)
    assert parse_address("localhost:1", allow_remote=False) == ("localhost", 1)
    with pytest.raises(UsageError, match="not a loopback address"):
        parse_address("0.0.0.0:5665", allow_remote=False)
    assert parse_address("0.0.0.0:5665", allow_remote=True) == ("0.0.0.0", 5665)  # noqa: S104
    for bad in ("127.0.0.1:x", "127.0.0.1:70000"):
        with pytest.raises(UsageError, match="--dashboard"):
            parse_address(bad, allow_remote=False)


def test_a_port_in_use_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match="cannot listen"):
            Dashboard("127.0.0.1", port)


def test_routes_headers_and_the_report_once_written(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=60)
    said: list[str] = []
    board = open_dashboard("127.0.0.1:0", allow_remote=False, say=said.append)
    assert board is not None
    with board:
        assert said == [f"pipstorm: dashboard at {board.url}"]
        status, _, body = get(board, "/state.json")
        assert (status, json.loads(body)) == (200, {"state": "waiting"})
        board.attach(run_dir)
        status, headers, body = get(board, "/")
        assert status == 200
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert b"/uPlot.iife.min.js" in body
        for path in ("/dashboard.js", "/uPlot.iife.min.js", "/uPlot.min.css"):
            assert get(board, path)[0] == 200
        state = json.loads(get(board, "/state.json")[2])
        assert state["verdict"] is not None and state["report"] is None
        assert get(board, "/report.html")[0] == 404
        write_reports(run_dir)
        assert json.loads(get(board, "/state.json")[2])["report"] == "report.html"
        assert get(board, "/report.html")[0] == 200
        # Another name for this address (DNS rebinding) is refused.
        assert get(board, "/state.json", host="attacker.example")[0] == 421
        assert get(board, "/../run.json")[0] == 404


@needs_chromium
def test_chromium_shows_the_end_escapes_what_it_shows_and_has_no_js_errors(
    tmp_path: Path,
) -> None:
    assert CHROMIUM is not None
    run_dir = write_run(tmp_path / "run", duration_s=120)
    meta = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    meta["profile"]["name"] = HOSTILE
    (run_dir / RUN_FILE).write_text(json.dumps(meta), encoding="utf-8")
    write_reports(run_dir)
    with Dashboard("127.0.0.1", 0) as board:
        board.attach(run_dir)
        dom = dump_dom(board.url, tmp_path / "profile")
    assert 'id="js-errors">0<' in dom
    assert 'class="verdict pass"' in dom or 'class="verdict fail"' in dom
    assert 'href="/report.html"' in dom
    assert "&lt;img src=x" in dom and "<img src=x" not in dom  # shown as text, never markup
    assert dom.count("<canvas") >= 7  # every chart drawn


def dump_dom(url: str, profile_dir: Path, *, budget_ms: int = 4000) -> str:
    """The page's DOM after ``budget_ms`` of its (virtual) time: its polls have run."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile_dir}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Console errors (uncaught exceptions, refused scripts) reach stderr with --enable-logging.
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Refused" in line], console
    shutil.rmtree(profile_dir, ignore_errors=True)
    return proc.stdout
