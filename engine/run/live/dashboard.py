"""``--dashboard [HOST:PORT]``: one live page of the run, served from the engine process.

A stdlib HTTP server in a thread: ``/`` is the page (``templates/dashboard/``, the vendored
uPlot beside it, nothing fetched from elsewhere), ``/state.json`` what the page shows, read
from the run's own JSONL streams by :class:`pipstorm.engine.report.live.feed.LiveFeed` on each
request (nothing is computed while no browser asks), ``/report.html`` the report once written.

On 127.0.0.1 by default; another address needs ``--dashboard-allow-remote`` (the targets'
``--allow-remote-target`` pattern: a page of the run is not published by accident). Requests
naming another host (DNS rebinding) are refused. The page shows no URL of the index and no
credential, and builds its DOM from text only (see the page's script).

The port is bound before anything else (a port in use is one ``ERROR:`` line, exit 2) and the
URL printed first; the server stays up while the run and its report are written, then, if a
browser polled in the last seconds, ``LINGER_S`` more so the page gets the verdict and its link.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Self

from pipstorm.engine.errors import UsageError
from pipstorm.engine.report.live.feed import LiveFeed

DEFAULT_ADDRESS = "127.0.0.1:0"
#: After the run: how long the page keeps being served when a browser is watching.
LINGER_S = 4.0
#: A browser that polled this recently is "watching".
WATCHING_S = 5.0
_STATIC = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/uPlot.iife.min.js": ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/uPlot.min.css": ("uPlot.min.css", "text/css; charset=utf-8"),
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)


def parse_address(text: str, *, allow_remote: bool) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); a non-loopback host needs
    ``allow_remote``."""
    host, sep, port_text = text.strip().rpartition(":")
    host = (host if sep else "").strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--dashboard {text!r}: expected HOST:PORT, e.g. 127.0.0.1:5665") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--dashboard {text!r}: port must be 0-65535")
    if not allow_remote and not _loopback(host):
        raise UsageError(
            f"--dashboard {text!r}: {host} is not a loopback address; the page shows the run "
            "to anyone who can reach it (--dashboard-allow-remote to serve it there anyway)"
        )
    return host, port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Dashboard:
    """The live page's server; :meth:`attach` points it at a run's folder (again for the next
    run of a lab: the page follows)."""

    def __init__(self, host: str, port: int) -> None:
        self._feed: LiveFeed | None = None
        self._feed_lock = threading.Lock()
        self.last_poll = 0.0
        handler = _handler_for(self)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise UsageError(f"--dashboard {host}:{port}: cannot listen ({exc.strerror})") from None
        self._server.daemon_threads = True
        bound_host, bound_port = str(self._server.server_address[0]), self._server.server_port
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/"
        self.hosts = {f"{shown}:{bound_port}", f"localhost:{bound_port}"}
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pipstorm-dashboard", daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(linger=kind is None)

    def attach(self, run_dir: Path) -> None:
        """Show this run from now on (its streams are read from their first byte)."""
        with self._feed_lock:
            self._feed = LiveFeed(run_dir)

    def state(self) -> bytes:
        """``/state.json``'s body."""
        self.last_poll = time.monotonic()
        with self._feed_lock:
            feed = self._feed
        data = {"state": "waiting"} if feed is None else feed.snapshot()
        return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()

    def report_path(self) -> Path | None:
        with self._feed_lock:
            feed = self._feed
        return None if feed is None else feed.run_dir / "report.html"

    def close(self, *, linger: bool = True) -> None:
        """Stop serving; first ``LINGER_S`` more if a browser is watching (it gets the end)."""
        if linger and time.monotonic() - self.last_poll < WATCHING_S:
            time.sleep(LINGER_S)
        self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join()


def open_dashboard(
    address: str | None, *, allow_remote: bool, say: Callable[[str], None]
) -> Dashboard | None:
    """The dashboard asked for (None: not asked); its URL is said first."""
    if address is None:
        return None
    board = Dashboard(*parse_address(address, allow_remote=allow_remote))
    say(f"pipstorm: dashboard at {board.url}")
    return board


def _handler_for(board: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pipstorm-dashboard"
        sys_version = ""

        def do_GET(self) -> None:
            if self.headers.get("Host") not in board.hosts:
                self._send(HTTPStatus.MISDIRECTED_REQUEST, b"unknown host\n", "text/plain")
                return
            path = self.path.split("?", 1)[0]
            if path == "/state.json":
                self._send(HTTPStatus.OK, board.state(), "application/json")
            elif path in _STATIC:
                name, kind = _STATIC[path]
                self._send(HTTPStatus.OK, _static(name), kind)
            elif path == "/report.html" and (report := board.report_path()) and report.is_file():
                self._send(
                    HTTPStatus.OK, report.read_bytes(), "text/html; charset=utf-8", csp=False
                )
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        def _send(self, status: HTTPStatus, body: bytes, kind: str, *, csp: bool = True) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            if csp:
                self.send_header("Content-Security-Policy", _CSP)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the run's own lines are what its terminal shows."""

    return Handler


def _static(name: str) -> bytes:
    return (
        resources.files("pipstorm.engine.report")
        .joinpath("templates", "dashboard", name)
        .read_bytes()
    )
