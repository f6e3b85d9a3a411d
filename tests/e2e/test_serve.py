"""``pipstorm serve``: the embedded target in the foreground, credentials in a private file."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from base64 import b64encode
from pathlib import Path

import psutil
import pytest

from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_until_ctrl_c_or_sigterm(
    e2e_env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM (a service manager's stop) used to kill serve at once and orphan pypiserver,
    still listening, with the credentials file left in TMPDIR: now it unwinds like Ctrl-C."""
    corpus = cached_corpus(CorpusSpec(packages=2, versions=("1.0.0",)), tmp_path / "cache")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipstorm", "serve", "--corpus", str(corpus.directory)],
        env=e2e_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url_line = proc.stdout.readline()  # blocks until the server is ready (or the end)
        creds_line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+/simple/)", url_line)
        assert match, url_line + proc.stderr.read() if proc.stderr else url_line
        secret = Path(creds_line.split(" in ", 1)[1].split(" ", 1)[0])
        assert secret.stat().st_mode & 0o077 == 0  # owner only
        user_pass = secret.read_text().strip()
        assert user_pass.split(":", 1)[1] not in url_line + creds_line
        request = urllib.request.Request(  # noqa: S310 - a loopback http URL
            match.group(1) + "test-package-000/",
            headers={"Authorization": "Basic " + b64encode(user_pass.encode()).decode()},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert b"test_package_000-1.0.0-py3-none-any.whl" in response.read()
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert tree  # pypiserver and its gunicorn workers
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not secret.exists()


def test_a_sigkilled_serve_leaves_no_server_and_no_credentials(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL runs no clean-up in serve itself: the orphaned server stops on its own and takes
    its private dir, where the credentials file lives, with it (it used to sit in TMPDIR)."""
    corpus = cached_corpus(CorpusSpec(packages=2, versions=("1.0.0",)), tmp_path / "cache")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipstorm", "serve", "--corpus", str(corpus.directory)],
        env=e2e_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        creds_line = proc.stdout.readline()
        secret = Path(creds_line.split(" in ", 1)[1].split(" ", 1)[0])
        assert secret.is_file()
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert tree
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    _, alive = psutil.wait_procs(tree, timeout=30)  # a bound, not a figure
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    assert not secret.exists()
    assert not secret.parent.exists()
