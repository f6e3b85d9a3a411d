"""A real devpi-server on 127.0.0.1 for tests: the second embedded index, next to pypiserver.

devpi lays its index out unlike pypiserver (``/<user>/<index>/+simple/``, files linked as
``../../+f/<hash>/<name>``, PEP 691 JSON), which is what the proxy's routing and classification
must cope with. Started as devpi's docs say: ``devpi-init`` makes a server dir (without the
``root/pypi`` mirror, so nothing reaches for the internet), ``devpi-server --port 0`` serves it
and logs the port it bound. The user and its index are made through devpi's HTTP API, so no
password is ever in argv. The server dir lives in pytest's temp tree; the server dies with its
owner (PR_SET_PDEATHSIG), also when the owner is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from pipstorm.infra.credentials import Credentials

START_TIMEOUT_S: Final = 90.0
_SERVING_RE: Final = re.compile(rb"Serving on (http://127\.0\.0\.1:[0-9]+)")
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class DevpiServer:
    """devpi-server with one user and one non-mirroring index; a context manager."""

    def __init__(self, serverdir: Path, *, index: str = "dev") -> None:
        self.serverdir = serverdir
        self.credentials = Credentials.generate()
        self.user = self.credentials.username
        self.index = index
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = serverdir.parent / f"{serverdir.name}.log"

    @property
    def index_url(self) -> str:
        """The simple index: ``/<user>/<index>/+simple/``."""
        return f"{self.url}/{self.user}/{self.index}/+simple/"

    @property
    def upload_url(self) -> str:
        """Where uploads go: the index itself."""
        return f"{self.url}/{self.user}/{self.index}/"

    def start(self) -> None:
        """Initialise the server dir, start the server, make the user and its index."""
        scripts = Path(sys.executable).parent
        subprocess.run(
            [str(scripts / "devpi-init"), "--serverdir", str(self.serverdir), "--no-root-pypi"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(scripts / "devpi-server"),
                    "--serverdir",
                    str(self.serverdir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run at this point
            )
        try:
            self.url = self._wait_for_url()
            self._api("PUT", f"/{self.user}", {"password": self.credentials.password})
            self._api(
                "PUT",
                f"/{self.user}/{self.index}",
                {"bases": [], "volatile": False},
                auth=True,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

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

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._proc is not None
            match = _SERVING_RE.search(self.log_path.read_bytes())
            if match is not None:
                return match.group(1).decode()
            if self._proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-400:]
        raise RuntimeError(f"devpi-server did not start: {tail}")

    def _api(self, method: str, path: str, body: object, *, auth: bool = False) -> None:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = self.credentials.basic_auth_header()
        request = urllib.request.Request(  # noqa: S310 - our own http URL
            self.url + path, data=json.dumps(body).encode(), headers=headers, method=method
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            response.read()
