"""The recording reverse proxy, seen from the process that runs the load: start, address, stop.

The proxy runs in its own process (``python -m pipstorm.infra.proxy``, code in
``pipstorm.infra.proxy.server`` and ``pipstorm.infra.proxy.handler``) so
that the load generator's busy event loop and process pool cannot add latency to what it
measures. Upstream credentials reach it through its environment, never argv. It binds its port
itself (port 0 has no race) and reports its URL on one stdout line.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from pipstorm.infra.credentials import (
    UPSTREAM_PASSWORD_ENV,
    UPSTREAM_USERNAME_ENV,
    Credentials,
    without_secrets,
)
from pipstorm.infra.errors import InfraError
from pipstorm.infra.proxy.rewrite import RUN_ID_RE, Origin, UpstreamLayout

START_TIMEOUT_S: Final = 15.0
SHUTDOWN_GRACE_S: Final = 5.0
# How long a client connection may stay without a complete request head: a slowloris client
# trickling its headers, or an idle keep-alive connection (nginx's client_header_timeout).
CLIENT_HEADER_TIMEOUT_S: Final = 60.0
# How long a client may take no part of its answer or send no part of its body
# (``pipstorm.infra.proxy.handler``: each stalled client holds an upstream connection).
CLIENT_STALL_TIMEOUT_S: Final = 60.0
# After SIGTERM the child gives in-flight requests the grace period; SIGKILL only after this.
_STOP_SLACK_S: Final = 5.0
_ERROR_TAIL_CHARS: Final = 400


class ProxyError(InfraError):
    """The proxy could not be started or was misused; the message is one line."""


#: The proxy's event loop: ``auto`` is uvloop where it is installed (a dependency on Linux and
#: macOS), else asyncio's own; the bench (tests/bench/test_proxy_bench.py) plays both.
EVENT_LOOPS: Final[tuple[str, ...]] = ("auto", "uvloop", "asyncio")


class RecordingProxy:
    """The proxy child process, as a context manager.

    Every request through it becomes one line of ``log_path`` (see ``pipstorm.infra.proxy.log``). A
    client run reaches the upstream index through ``index_url_for(run_id)``.
    """

    def __init__(
        self,
        upstream_index_url: str,
        log_path: Path,
        *,
        credentials: Credentials | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_read_timeout: float = 300.0,
        start_timeout: float = START_TIMEOUT_S,
        shutdown_grace: float = SHUTDOWN_GRACE_S,
        client_header_timeout: float = CLIENT_HEADER_TIMEOUT_S,
        client_stall_timeout: float = CLIENT_STALL_TIMEOUT_S,
        faults_path: Path | None = None,
        allow_origins: Sequence[Origin] = (),
        loopback_only: bool = False,
        loop: str = "auto",
    ) -> None:
        try:
            self.layout = UpstreamLayout.parse(upstream_index_url)
        except ValueError as exc:
            raise ProxyError(str(exc)) from None
        if not 0 <= port <= 65535:
            raise ProxyError(f"proxy port out of range: {port}")
        if upstream_read_timeout <= 0:
            raise ProxyError(f"upstream read timeout must be > 0: {upstream_read_timeout}")
        if client_header_timeout <= 0:
            raise ProxyError(f"client header timeout must be > 0: {client_header_timeout}")
        if client_stall_timeout <= 0:
            raise ProxyError(f"client stall timeout must be > 0: {client_stall_timeout}")
        if loop not in EVENT_LOOPS:
            raise ProxyError(f"event loop must be one of {', '.join(EVENT_LOOPS)}: {loop!r}")
        self.upstream_index_url = upstream_index_url
        self.log_path = log_path
        self.credentials = credentials
        self.host = host
        self._requested_port = port
        self.upstream_read_timeout = upstream_read_timeout
        self.start_timeout = start_timeout
        self.shutdown_grace = shutdown_grace
        self.client_header_timeout = client_header_timeout
        self.client_stall_timeout = client_stall_timeout
        # A fault plan file (pipstorm.infra.faults.spec.FaultPlan.write): rules, run kinds, times;
        # no secrets.
        self.faults_path = faults_path
        # Other origins the proxy may forward to besides those the index links (no secrets).
        self.allow_origins = tuple(allow_origins)
        # Refuse other origins that are not loopback (a run without --allow-remote-target).
        self.loopback_only = loopback_only
        # The proxy's event loop (EVENT_LOOPS); benches compare them.
        self.loop = loop
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, no trailing slash."""
        if self._url is None:
            raise ProxyError("the proxy is not running")
        return self._url

    @property
    def port(self) -> int:
        """The bound port (useful when port 0 was asked for)."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        """The proxy process id (for sampling its CPU and memory)."""
        if self._proc is None:
            raise ProxyError("the proxy is not running")
        return self._proc.pid

    def index_url_for(self, run_id: str) -> str:
        """The index URL a client run uses, so all its requests are attributed to ``run_id``."""
        if RUN_ID_RE.fullmatch(run_id) is None:
            raise ProxyError(f"run id must match [A-Za-z0-9_.-]{{1,64}}: {run_id!r}")
        return f"{self.url}/r/{run_id}{self.layout.index_path}"

    def start(self) -> None:
        """Start the proxy process and wait (bounded) for the URL it prints."""
        if self._proc is not None:
            raise ProxyError("the proxy is already running")
        env = without_secrets(os.environ)
        if self.credentials is not None:
            env[UPSTREAM_USERNAME_ENV] = self.credentials.username
            env[UPSTREAM_PASSWORD_ENV] = self.credentials.password
        argv = [
            sys.executable,
            "-m",
            "pipstorm.infra.proxy",
            "--upstream",
            self.upstream_index_url,
            "--log",
            str(self.log_path),
            "--host",
            self.host,
            "--port",
            str(self._requested_port),
            "--read-timeout",
            repr(self.upstream_read_timeout),
            "--shutdown-grace",
            repr(self.shutdown_grace),
            "--client-header-timeout",
            repr(self.client_header_timeout),
            "--client-stall-timeout",
            repr(self.client_stall_timeout),
            # It stops when this process is gone: told, not read from getppid() once it runs.
            "--parent",
            str(os.getpid()),
        ]
        if self.faults_path is not None:
            argv += ["--faults", str(self.faults_path)]
        for origin in self.allow_origins:
            argv += ["--allow-origin", origin.url]
        if self.loopback_only:
            argv.append("--loopback-only")
        if self.loop != "auto":
            argv += ["--loop", self.loop]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        try:
            self._proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                # Its own session: a Ctrl-C meant for the run must not kill the proxy before
                # the run has finished recording; the owner stops it.
                start_new_session=True,
            )
            self._url = self._read_url(self._proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM (the child finishes in-flight requests and closes the log), then SIGKILL."""
        proc, self._proc = self._proc, None
        self._url = None
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.shutdown_grace + _STOP_SLACK_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _read_url(self, proc: subprocess.Popen[bytes]) -> str:
        if proc.stdout is None:
            raise ProxyError("the proxy's stdout is not a pipe")
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProxyError(
                    f"the proxy did not report its URL within {self.start_timeout:.0f} s"
                    f"{self._stderr_tail()}"
                )
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.1))
            if not ready:
                continue
            data = os.read(fd, 4096)
            if not data:  # EOF: the child exited
                proc.wait(_STOP_SLACK_S)
                raise ProxyError(
                    f"the proxy exited with code {proc.returncode}{self._stderr_tail()}"
                )
            line += data
        url = line.decode("utf-8", "replace").strip()
        if not url.startswith("http://"):
            raise ProxyError(f"the proxy reported an unexpected line: {url[:200]!r}")
        return url

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        tail = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        return f": {tail[-_ERROR_TAIL_CHARS:]}" if tail else ""
