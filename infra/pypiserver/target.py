"""The embedded target: the real pypiserver 2.4.2 as a subprocess on 127.0.0.1.

Configured like the production deployment the project was seeded from: the ``simple-dir``
backend, no fallback redirect to pypi.org, authentication on download, list and update with an
htpasswd file, and gunicorn workers. The credentials are generated per run and reach pypiserver
only through the htpasswd file in a private temporary directory, never through argv.

With a ``Sizing`` (``pipstorm.infra.pypiserver.sizing``) the server runs like the production image
instead: gevent workers, ``--preload``, the preset's worker count, auth hash, hash algorithm and
backend, inside a cgroup (``pipstorm.infra.pypiserver.cgroups``) holding the preset's CPU quota and
memory limit. The cgroup is made even for a sizing without limits: its counters are what the report
shows. Without a sizing the server is the light default pipstorm has always used (gthread workers,
no cgroup).

Port 0 is race free: gunicorn binds port 0 itself and the port is read from the master's
listening socket (psutil), rather than picking a port, closing it and hoping nobody takes it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pipstorm.infra.credentials import Credentials, without_secrets
from pipstorm.infra.errors import InfraError
from pipstorm.infra.pypiserver import cgroups
from pipstorm.infra.pypiserver.counters import CgroupCounters, read_counters
from pipstorm.infra.pypiserver.pagecache import drop_cached
from pipstorm.infra.pypiserver.server_process import (
    PRIVATE_DIR_PREFIX,
    http_status,
    listening_port,
    log_tail,
    serve_until_orphaned,
    terminate_group,
    worker_count,
)
from pipstorm.infra.pypiserver.sizing import Sizing, htpasswd_line

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05
_HEALTH_PATH = "/health"
_STDERR_TAIL_CHARS = 400


class TargetError(InfraError):
    """The local target could not be started or did not behave; the message is one line."""


class LocalPypiserver:
    """pypiserver serving ``package_dir`` until stopped; a context manager.

    ``start()`` returns once the server answers its health endpoint and accepts the generated
    credentials. The process runs in its own session, so a Ctrl-C in the terminal reaches the
    caller only, which then calls ``stop()``: the caller decides the order of shutdown.
    """

    def __init__(
        self,
        package_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int = 2,
        threads: int = 4,
        credentials: Credentials | None = None,
        log_path: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        upload_dir: Path | None = None,
        sizing: Sizing | None = None,
        allow_unconfined: bool = False,
        cgroup_root: Path = cgroups.CGROUP_ROOT,
        temp_root: Path | None = None,
    ) -> None:
        if not package_dir.is_dir():
            raise TargetError(f"package directory does not exist: {package_dir}")
        if upload_dir is not None and not upload_dir.is_dir():
            raise TargetError(f"upload directory does not exist: {upload_dir}")
        if workers < 1 or threads < 1:
            raise TargetError(f"workers and threads must be >= 1 (got {workers}, {threads})")
        if not 0 <= port <= 65535:
            raise TargetError(f"port out of range: {port}")
        self.package_dir = package_dir.resolve()
        # pypiserver writes uploads into its first package directory and serves (and checks
        # for an existing file) across all of them: a separate first directory keeps uploads
        # out of the corpus cache, which later runs would otherwise see changed.
        self.upload_dir = upload_dir.resolve() if upload_dir is not None else None
        self.host = host
        self.sizing = sizing
        self.allow_unconfined = allow_unconfined
        # Where the cgroup hierarchies are mounted; an empty directory is a machine without.
        self.cgroup_root = cgroup_root
        # Where the private folder is made: a caller's reaped folder outlives a SIGKILL of both
        # the server (whose own clean-up then never runs) and its owner; None: the temp folder.
        self.temp_root = temp_root
        self.workers = sizing.workers if sizing is not None else workers
        self.threads = threads
        self.credentials = credentials if credentials is not None else Credentials.generate()
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self._requested_port = port
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._server_log: Path | None = None
        self._cgroup: cgroups.Cgroup | None = None
        #: Why a sizing runs without a cgroup (``allow_unconfined``), for the report.
        self.unconfined_reason: str | None = None
        #: The cgroup's counters read just before ``stop`` removed it.
        self.final_counters: CgroupCounters | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` of the running server."""
        if self._port is None:
            raise TargetError("pypiserver is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}/"

    @property
    def port(self) -> int:
        """The bound port (useful when port 0 was asked for)."""
        if self._port is None:
            raise TargetError("pypiserver is not running")
        return self._port

    @property
    def index_url(self) -> str:
        """The PEP 503 simple index: ``url + "simple/"``."""
        return self.url + "simple/"

    @property
    def private_dir(self) -> Path:
        """The server's private temp dir (0700): removed when the server stops, and by the
        server itself when its owner dies without stopping it (SIGKILL). A file that must not
        outlive the server (the credentials ``pipstorm serve`` shows) belongs here."""
        if self._tmpdir is None:
            raise TargetError("pypiserver is not running")
        return self._tmpdir

    @property
    def pid(self) -> int:
        """The gunicorn master's pid (also the process group id of all workers)."""
        if self._proc is None:
            raise TargetError("pypiserver is not running")
        return self._proc.pid

    @property
    def cgroup(self) -> cgroups.Cgroup | None:
        """The server's cgroup while it runs (None without a sizing or when unconfined)."""
        return self._cgroup

    def counters(self) -> CgroupCounters | None:
        """The cgroup's counters now (None without a cgroup)."""
        return read_counters(self._cgroup) if self._cgroup is not None else None

    def alive(self) -> bool:
        """Whether the gunicorn master still runs (False once it died or was stopped)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The master's exit code once it died by itself (negative: the signal that killed
        it); None while it runs or after ``stop``."""
        proc = self._proc
        return None if proc is None else proc.returncode

    def start(self) -> None:
        """Start pypiserver and wait until it serves authenticated requests."""
        if self._proc is not None:
            raise TargetError("pypiserver is already running")
        if self._requested_port:
            # gunicorn retries a taken port for 5 s before giving up: fail fast instead.
            _check_port_free(self.host, self._requested_port)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=PRIVATE_DIR_PREFIX, dir=self.temp_root))
        try:
            prefix = self._confine()
            if self._cgroup is not None:  # its reads charged to its own memory limit
                drop_cached(d for d in (self.upload_dir, self.package_dir) if d is not None)
            self._launch(self._tmpdir, prefix)
            if self._cgroup is not None:
                self._cgroup = cgroups.attach_scope(self._cgroup, self.pid)
            self._port = self._wait_for_port()
            self._wait_until_ready()
        except TargetError as exc:
            # However the start failed (no answer, a refused check, the master gone), an OOM
            # kill in the cgroup is the reason to name; read before stop removes the cgroup.
            note = "" if "OOM-killed" in str(exc) else self._oom_note()
            try:
                self.stop()
            except TargetError as cleanup:  # keep the start's reason first, and say both
                note += f"; and then: {cleanup}"
            if note:
                raise TargetError(f"{exc}{note}") from None
            raise
        except BaseException:
            self.stop()
            raise

    def wait(self) -> int:
        """Block until the server exits (for a foreground ``serve``); returns its exit code."""
        if self._proc is None:
            raise TargetError("pypiserver is not running")
        return self._proc.wait()

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL what is left, remove the private temp dir.

        Safe to call more than once and after a failed start.
        """
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                terminate_group(proc, STOP_TIMEOUT_S)
        finally:
            self._port = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            cgroup, self._cgroup = self._cgroup, None
            if cgroup is not None:
                # What the kernel counted, kept: the OOM kill that ended a start is here.
                self.final_counters = read_counters(cgroup)
                try:
                    cgroup.remove()
                except cgroups.CgroupError as exc:
                    raise TargetError(str(exc)) from None

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

    def _confine(self) -> list[str]:
        """Make the sizing's cgroup; returns the argv prefix (systemd-run) or []."""
        if self.sizing is None:
            return []
        try:
            self._cgroup, prefix = cgroups.create(
                self.sizing.cpus, self.sizing.memory_bytes, root=self.cgroup_root
            )
        except cgroups.CgroupError as exc:
            if self.sizing.confined and not self.allow_unconfined:
                raise TargetError(
                    f"cannot confine pypiserver to sizing {self.sizing.name}: {exc}; "
                    "pass --allow-unconfined to run it without limits"
                ) from None
            self.unconfined_reason = str(exc)
            return []
        return prefix

    def _write_htpasswd(self, path: Path) -> bool:
        """The credentials in the sizing's hash; False when the sizing turns auth off."""
        if self.sizing is None:
            self.credentials.write_htpasswd(path)
            return True
        line = htpasswd_line(self.credentials, self.sizing.auth)
        if line is None:
            return False
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as htpasswd:
            htpasswd.write(line)
        return True

    def _pypiserver_options(self, htpasswd: Path) -> list[str]:
        sizing = self.sizing
        auth = (
            ["-a", "download,list,update", "-P", str(htpasswd)]
            if self._write_htpasswd(htpasswd)
            else ["-a", ".", "-P", "."]  # pypiserver's spelling of "no authentication"
        )
        backend = sizing.backend if sizing is not None else "simple-dir"
        hash_algo = ["--hash-algo", sizing.hash_algo] if sizing is not None else []
        return ["--backend", backend, *hash_algo, "--disable-fallback", *auth]

    def _gunicorn_options(self) -> list[str]:
        """Worker settings: the seed's gunicorn.conf.py with a sizing, light ones without."""
        worker_class = self.sizing.worker_class if self.sizing is not None else "gthread"
        options = ["--workers", str(self.workers), "--worker-class", worker_class]
        if worker_class == "gthread":
            options += ["--threads", str(self.threads)]
        if self.sizing is not None:
            options.append("--preload")  # the module's preload_app = True
        return [*options, "--graceful-timeout", "5", "--no-control-socket"]

    def _launch(self, tmpdir: Path, prefix: list[str]) -> None:
        htpasswd = tmpdir / "htpasswd"
        self._server_log = self.log_path or tmpdir / "pypiserver.log"
        self._server_log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self._server_log.open("ab")
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "pipstorm.infra.pypiserver.target",  # pypiserver's own main behind a parent watchdog
            "run",
            *self._pypiserver_options(htpasswd),
            "--server",
            "gunicorn",
            "--host",
            self.host,
            "--port",
            str(self._requested_port),
            "--health-endpoint",
            _HEALTH_PATH,
            *([str(self.upload_dir)] if self.upload_dir is not None else []),
            str(self.package_dir),
        ]
        env = without_secrets(os.environ)  # its own credentials are in the htpasswd file
        # pypiserver hands gunicorn a bind built from --host/--port; everything else comes from
        # GUNICORN_CMD_ARGS. cwd is the private dir so no stray ./gunicorn.conf.py is read, and
        # --no-control-socket keeps gunicorn 27 from creating ~/.gunicorn/.
        env["GUNICORN_CMD_ARGS"] = shlex.join(self._gunicorn_options())
        if self._cgroup is not None:
            env[cgroups.JOIN_ENV] = cgroups.join_value(self._cgroup)
        self._proc = subprocess.Popen(
            argv,
            cwd=tmpdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            self._check_alive()
            port = listening_port(self.pid)
            if port is not None and (self._requested_port in (0, port)):
                return port
            if time.monotonic() > deadline:
                raise TargetError(
                    f"pypiserver did not listen within {self.ready_timeout:.0f} s"
                    f"{self._stderr_tail()}"
                )
            time.sleep(_POLL_S)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while http_status(self.host, self.port, _HEALTH_PATH, None) != 200:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TargetError(
                    f"pypiserver did not become ready within {self.ready_timeout:.0f} s"
                    f"{self._stderr_tail()}"
                )
            time.sleep(_POLL_S)
        # One worker answering is not enough for a load test: wait for all of them to boot.
        while worker_count(self.pid) < self.workers:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TargetError(
                    f"pypiserver did not start {self.workers} workers within "
                    f"{self.ready_timeout:.0f} s{self._stderr_tail()}"
                )
            time.sleep(_POLL_S)
        auth = self.credentials.basic_auth_header()
        status = http_status(self.host, self.port, "/simple/", auth, timeout=self.ready_timeout)
        if status is None:
            self._check_alive()
            raise TargetError(
                f"pypiserver did not answer the credentials check{self._stderr_tail()}"
            )
        if status != 200:
            raise TargetError(
                f"pypiserver answered {status} to the generated credentials{self._stderr_tail()}"
            )

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise TargetError(
                f"pypiserver exited with code {self._proc.returncode}{self._oom_note()}"
                f"{self._stderr_tail()}"
            )

    def _oom_note(self) -> str:
        """Why a confined server died, when the kernel's OOM counter of its cgroup says so."""
        counters = self.counters()
        if counters is None or not counters.oom_kills:
            return ""
        limit = self.sizing.memory_mb if self.sizing is not None else None
        return f" (OOM-killed: {counters.oom_kills} kill(s) in its cgroup" + (
            f", memory limit {limit} MiB for {self.workers} workers)" if limit else ")"
        )

    def _stderr_tail(self) -> str:
        if self._server_log is None or self._log_file is None:
            return ""
        self._log_file.flush()
        return log_tail(self._server_log, _STDERR_TAIL_CHARS)


def _check_port_free(host: str, port: int) -> None:
    """TargetError (one line) when ``host:port`` cannot be bound: said before the server starts,
    rather than as a gunicorn traceback in its log."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # Same option as gunicorn, so a port in TIME_WAIT is not mistaken for a taken one.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise TargetError(f"cannot bind {host}:{port}: {exc.strerror}") from None


if __name__ == "__main__":
    serve_until_orphaned(sys.argv[1:])
