"""The synthetic client (``--client http``): the seed's approach, a plain HTTP client in process.

What the seed's stress test did for every simulated pip install, and nothing more: ask for the
project page without its trailing slash (pypiserver answers 301 to the slashed URL), read the
listing, download the file. Three requests per run, on one keep-alive connection, no venv, no
subprocess, no resolver, no retries: cheap (a few ms of CPU) and high-rate, and for that reason
blind to what real clients do (``pipstorm realism`` shows how blind).

It still goes through the proxy under the run's prefix, so every request is attributed to its
run, and it returns the same ``Outcome`` record as a subprocess, with the CPU this thread used.
It never follows a link or a redirect off the proxy's host.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import time
from dataclasses import dataclass, field
from functools import partial
from html import unescape
from importlib import metadata
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from pipstorm.clients.drivers.protocol import Command
from pipstorm.clients.process import Outcome, ProcessRegistry
from pipstorm.clients.task import ClientTask
from pipstorm.packages.spec import canonical_name

KIND = "http"
MAX_REDIRECTS = 5
#: Bytes read per ``read`` call of a download.
CHUNK = 64 * 1024
_SDIST_SUFFIXES = (".tar.gz", ".zip")
_ANCHOR_RE = re.compile(r"<a\s[^>]*?href=\"([^\"]+)\"[^>]*>([^<]*)</a>", re.IGNORECASE)


def _own_version() -> str:
    try:
        return metadata.version("pipstorm")
    except metadata.PackageNotFoundError:
        return "0"


VERSION = _own_version()
USER_AGENT = f"pipstorm-http/{VERSION} (synthetic client; python http.client)"


class FetchError(Exception):
    """A step of the run failed; the message names the step and why."""


class _Stopped(Exception):
    """The run hit its deadline (``timed_out``) or was told to stop."""

    def __init__(self, *, timed_out: bool) -> None:
        super().__init__("timed out" if timed_out else "interrupted")
        self.timed_out = timed_out


@dataclass
class _Session:
    """One keep-alive connection to the proxy and the tally of what went over it."""

    origin: str  # scheme://host:port of the proxy: nothing else is ever contacted
    deadline: float  # CLOCK_MONOTONIC
    registry: ProcessRegistry
    requests: int = 0
    received: int = 0
    steps: list[str] = field(default_factory=list)
    _conn: http.client.HTTPConnection | None = None

    def get(self, url: str, step: str) -> tuple[int, dict[str, str], bytes, str]:
        """GET ``url``: (status, headers, body, url); the body read whole (hashed later)."""
        if self.registry.stopping:
            raise _Stopped(timed_out=False)
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            raise FetchError(f"{step}: refusing to leave the proxy for {url}")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _Stopped(timed_out=True)
        conn = self._connection(remaining)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"}
        self.requests += 1
        self.steps.append(step)
        try:
            conn.request("GET", target or "/", headers=headers)
            response = conn.getresponse()
            chunks = []
            while chunk := response.read(CHUNK):
                chunks.append(chunk)
                self.received += len(chunk)
        except TimeoutError:
            self.close()
            raise _Stopped(timed_out=True) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise FetchError(f"{step}: {type(exc).__name__}: {exc}") from None
        if response.will_close:
            self.close()
        return response.status, dict(response.getheaders()), b"".join(chunks), url

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            parts = urlsplit(self.origin)
            self._conn = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=timeout
            )
        elif self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def fetch(task: ClientTask, session: _Session) -> str:
    """Redirect, listing, download of ``task``'s release; returns what was downloaded."""
    url = task.index_url + task.project  # no trailing slash: pypiserver redirects to it
    status, headers, body, url = session.get(url, "project page")
    for _ in range(MAX_REDIRECTS):
        if not 300 <= status < 400:
            break
        location = headers.get("Location") or headers.get("location")
        if not location:
            raise FetchError(f"listing: HTTP {status} without a Location")
        status, headers, body, url = session.get(urljoin(url, location), "listing")
    if status != 200:
        raise FetchError(f"listing: HTTP {status} for {url}")
    link = find_file(body.decode("utf-8", "replace"), task.project, task.version)
    if link is None:
        raise FetchError(f"listing: no file of {task.project}=={task.version} in {url}")
    file_url = urljoin(url, link)
    status, _, data, _ = session.get(file_url.split("#", 1)[0], "download")
    if status != 200:
        raise FetchError(f"download: HTTP {status} for {file_url}")
    expected = re.search(r"#sha256=([0-9a-f]{64})", file_url)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected.group(1):
        raise FetchError(f"download: sha256 mismatch for {file_url}")
    return f"{file_url.split('#', 1)[0].rsplit('/', 1)[-1]} ({len(data)} bytes)"


def find_file(listing: str, project: str, version: str) -> str | None:
    """The href of the file of ``project==version`` in a PEP 503 listing (a wheel first)."""
    found: list[tuple[int, str]] = []
    for href, text in _ANCHOR_RE.findall(listing):
        name = unescape(text).strip()
        if name.endswith(".whl"):
            rank, parts = 0, name.split("-")[:2]
        elif name.endswith(_SDIST_SUFFIXES):
            rank, parts = (
                1,
                name[: -len(next(filter(name.endswith, _SDIST_SUFFIXES)))].rsplit("-", 1),
            )
        else:
            continue
        if (
            len(parts) == 2
            and canonical_name(parts[0]) == canonical_name(project)
            and parts[1] == version
        ):
            found.append((rank, unescape(href)))
    return min(found)[1] if found else None


def run_in_process(task: ClientTask, timeout_s: float, registry: ProcessRegistry) -> Outcome:
    """One synthetic run, now, in this thread; the record a subprocess run would give."""
    parts = urlsplit(task.index_url)
    started, t0, cpu0 = time.time(), time.monotonic(), time.thread_time()
    session = _Session(
        origin=f"{parts.scheme}://{parts.netloc}", deadline=t0 + timeout_s, registry=registry
    )
    exit_code, out, err, timed_out, interrupted = 0, "", "", False, False
    try:
        out = fetch(task, session)
    except FetchError as exc:
        exit_code, err = 1, str(exc)
    except _Stopped as stop:
        exit_code, err = 1, f"{session.steps[-1] if session.steps else 'start'}: {stop}"
        timed_out, interrupted = stop.timed_out, not stop.timed_out
    finally:
        session.close()
    summary = f"{session.requests} requests ({', '.join(session.steps)}), {session.received} bytes"
    return Outcome(
        argv=("GET", task.index_url + task.project),
        exit_code=exit_code,
        started=started,
        ended=time.time(),
        duration_s=time.monotonic() - t0,
        cpu_s=time.thread_time() - cpu0,
        max_rss_kb=0,  # no process of its own: it lives in the pool's worker
        stdout_tail=f"{out}; {summary}" if out else summary,
        stderr_tail=err,
        timed_out=timed_out,
        interrupted=interrupted,
    )


class SyntheticDriver:
    """The seed's three requests per run, in process: nothing to install or prepare."""

    kind = KIND
    pins_per_run = 1
    default_version: str | None = None

    def warm_up(self, version: str | None) -> None:
        del version  # nothing is installed

    def prepare(self, task: ClientTask, work: Path) -> Command:
        del work
        call = partial(run_in_process, task)
        return Command(
            argv=["GET", task.index_url + task.project], client_version=VERSION, call=call
        )

    def check(self, task: ClientTask, work: Path, outcome: Outcome) -> str | None:
        del task, work, outcome  # a run that got its file with the right hash exited 0
        return None


DRIVER = SyntheticDriver()
