"""Bad input from outside the command line, systematically: an index that refuses, loops,
is no index or has an untrusted certificate, a port in use, a results folder that cannot be
written or a disk that is full. Each case is the CLI in a subprocess and must end with exit 2,
exactly one ``ERROR:`` line naming the problem, no traceback, no process and no temp file left
behind, and no half-written results folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import left_running, leftovers, pipstorm
from tests.e2e.index_servers import serving

pytestmark = pytest.mark.e2e

#: A cheap run: the synthetic client, a few seconds; every case is refused before any load.
RUN = ("run", "--profile", "light_load", "--duration", "5", "--client", "http", "--quiet")


def assert_refused(
    proc: subprocess.CompletedProcess[str], tmpdir: Path, results: Path | None, message: str
) -> str:
    """Exit 2, one ERROR line holding ``message``, no traceback, nothing left behind."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), proc.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert left_running(tmpdir) == []
    assert leftovers(tmpdir) == []
    if results is not None and results.is_dir():
        assert list(results.iterdir()) == [], "a half-written results folder"
    return lines[0]


def hostile_app() -> web.Application:
    """One loopback server, one misbehaviour per path prefix."""

    async def unauthorized(_: web.Request) -> web.Response:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="idx"'})

    async def forbidden(_: web.Request) -> web.Response:
        return web.Response(status=403, text="no")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.path)  # to itself, forever

    async def welcome(_: web.Request) -> web.Response:
        return web.Response(
            text="<html><body><p>Welcome</p></body></html>", content_type="text/html"
        )

    async def login(_: web.Request) -> web.Response:
        form = '<html><form><input name="u"><input type="password" name="p"></form></html>'
        return web.Response(text=form, content_type="text/html")

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404, text="not found")

    async def json_api(_: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="oops")

    app = web.Application()
    for prefix, handler in {
        "401": unauthorized,
        "403": forbidden,
        "loop": loop,
        "welcome": welcome,
        "login": login,
        "404": missing,
        "json": json_api,
        "500": broken,
    }.items():
        app.router.add_route("*", f"/{prefix}/{{tail:.*}}", handler)
    return app


@pytest.fixture(scope="module")
def hostile_http() -> Iterator[str]:
    with serving(hostile_app()) as base:
        yield base


@dataclass(frozen=True)
class SelfSigned:
    """A loopback https server whose certificate nobody trusts, and that certificate."""

    base: str
    cert: Path


@pytest.fixture(scope="module")
def hostile_https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SelfSigned]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with serving(hostile_app(), ssl_context=context) as base:
        yield SelfSigned(base, cert)


INDEX_CASES = [
    ("401", "refused access (HTTP 401): set PYPI_USERNAME/PYPI_PASSWORD"),
    ("403", "refused access (HTTP 403)"),
    ("loop", "(a redirect loop"),
    ("welcome", "links no files: not a simple index"),
    ("login", "answered a login page"),
    ("404", "has no project"),
    ("json", "is not a simple index page (it answered application/json)"),
    ("500", "the index answered 500"),
]


@pytest.mark.parametrize(("prefix", "message"), INDEX_CASES, ids=[c[0] for c in INDEX_CASES])
def test_an_index_that_is_no_index_is_one_line(
    e2e_env: dict[str, str], tmp_path: Path, hostile_http: str, prefix: str, message: str
) -> None:
    url = f"{hostile_http}/{prefix}/simple/"
    results = tmp_path / "r"
    proc = pipstorm(
        [*RUN, "--index-url", url, "--results", str(results)], e2e_env, tmpdir=tmp_path / "t"
    )
    assert_refused(proc, tmp_path / "t", results, message)


def test_an_untrusted_certificate_is_named(
    e2e_env: dict[str, str], tmp_path: Path, hostile_https: SelfSigned
) -> None:
    url = f"{hostile_https.base}/404/simple/"
    results = tmp_path / "r"
    args = [*RUN, "--index-url", url, "--results", str(results)]
    proc = pipstorm(args, e2e_env, tmpdir=tmp_path / "t")
    line = assert_refused(proc, tmp_path / "t", results, "certificate verify failed")
    assert "self-signed certificate" in line and "SSL_CERT_FILE" in line
    # The remedy the line names works: trusted, the same index gets past TLS to its 404.
    trusted = {**e2e_env, "SSL_CERT_FILE": str(hostile_https.cert)}
    proc = pipstorm(args, trusted, tmpdir=tmp_path / "t")
    assert_refused(proc, tmp_path / "t", results, "has no project")


def test_a_real_index_that_wants_credentials(e2e_env: dict[str, str], tmp_path: Path) -> None:
    """pypiserver with an htpasswd, and no PYPI_USERNAME/PYPI_PASSWORD given: 401."""
    corpus = cached_corpus(CorpusSpec(packages=2, versions=("1.0.0",)), tmp_path / "cache")
    with LocalPypiserver(corpus.directory, credentials=Credentials.generate()) as server:
        results = tmp_path / "r"
        proc = pipstorm(
            [*RUN, "--index-url", server.index_url, "--results", str(results)],
            e2e_env,
            tmpdir=tmp_path / "t",
        )
    assert_refused(proc, tmp_path / "t", results, "(HTTP 401): set PYPI_USERNAME/PYPI_PASSWORD")


def test_credentials_in_the_url_are_refused_unquoted(
    e2e_env: dict[str, str], tmp_path: Path, hostile_http: str
) -> None:
    url = hostile_http.replace("http://", "http://someone:pw-in-url-123@") + "/404/simple/"
    results = tmp_path / "r"
    proc = pipstorm(
        [*RUN, "--index-url", url, "--results", str(results)], e2e_env, tmpdir=tmp_path / "t"
    )
    assert_refused(proc, tmp_path / "t", results, "must not carry credentials")
    assert "pw-in-url-123" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("command", ["serve", "scheduler"])
def test_a_port_in_use(e2e_env: dict[str, str], tmp_path: Path, command: str) -> None:
    """``serve --port`` and ``scheduler --port`` (``run`` takes no port: its proxy binds port 0);
    the scheduler's used to be Dask's traceback ("Scheduler failed to start.")."""
    corpus = cached_corpus(CorpusSpec(packages=2, versions=("1.0.0",)), tmp_path / "cache")
    extra = ["--corpus", str(corpus.directory)] if command == "serve" else []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = pipstorm([command, *extra, "--port", str(port)], e2e_env, tmpdir=tmp_path / "t")
    assert_refused(proc, tmp_path / "t", None, f"cannot bind 127.0.0.1:{port}")


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``where`` for the test (root only), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write into ``folder`` until its file system is full."""
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("under-a-file", "Not a directory"),
        ("read-only", "Read-only file system"),
        ("full", "No space left on device"),
    ],
)
def test_a_results_folder_that_cannot_be_written(
    e2e_env: dict[str, str], tmp_path: Path, where: str, message: str
) -> None:
    # Tests run as root, which ignores file modes: these are what even root cannot write.
    with contextlib.ExitStack() as stack:
        if where == "under-a-file":
            (tmp_path / "file").write_text("x")
            results = tmp_path / "file" / "r"
        elif where == "read-only":
            results = stack.enter_context(tmpfs(tmp_path / "mnt", "ro,size=64k"))
        else:
            results = stack.enter_context(tmpfs(tmp_path / "mnt", "size=64k"))
            fill(results)
            (results / "filler").rename(results / ".filler")  # not a run folder
        proc = pipstorm([*RUN, "--results", str(results)], e2e_env, tmpdir=tmp_path / "t")
        left = [p.name for p in results.iterdir()] if results.is_dir() else []
    assert_refused(proc, tmp_path / "t", None, message)
    assert [name for name in left if name != ".filler"] == [], "a half-written results folder"


def test_a_disk_that_fills_mid_run_stops_it_marked(e2e_env: dict[str, str], tmp_path: Path) -> None:
    """The results disk fills 2 s into the run: the run stops (not at the end of its 30 s),
    run.json says it was interrupted and why, no JSONL line is torn, no report is half-written,
    and the one ERROR line names the disk."""
    (tmp_path / "t").mkdir()
    with tmpfs(tmp_path / "mnt", "size=4m") as results:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipstorm", *RUN[:4], "30", *RUN[5:], "--results", str(results)],
            env={**e2e_env, "TMPDIR": str(tmp_path / "t")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not any(results.glob("*/requests.jsonl")) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
            free = shutil.disk_usage(results).free
            # 64 KiB left: run.json and the streams' next lines fit, the report does not.
            (results / ".filler").write_bytes(b"\0" * (free - 64 * 1024))
            filled = time.monotonic()
            out, err = proc.communicate(timeout=120)
            stopped_after = time.monotonic() - filled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        (run_dir,) = [p for p in results.iterdir() if p.name != ".filler"]
        meta = json.loads((run_dir / "run.json").read_text())
        names = sorted(p.name for p in run_dir.iterdir())
        lines = [
            line
            for stream in ("requests.jsonl", "clients.jsonl", "host.jsonl")
            for line in (run_dir / stream).read_text().splitlines()
        ]
    errors = [line for line in err.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err + out
    assert proc.returncode == 2, err
    assert "nearly full" in errors[0] and "No space left on device" in errors[0]
    assert "run.json: interrupted" in errors[0]
    print(f"disk full mid-run: exit {proc.returncode} {stopped_after:.1f} s after the fill")  # noqa: T201 - the README figure
    assert stopped_after < 15  # well before the run's 30 s: it did not play on blind
    assert meta["interrupted"] is True and meta["ended"] is not None
    assert any("stopped early" in w and "nearly full" in w for w in meta["warnings"])
    assert all(json.loads(line) for line in lines)  # not one torn line
    # The report did not fit: none of it is left, nor any temp file (`pipstorm report` later).
    assert not [n for n in names if n.startswith(("report", "chart-", "."))], names
    assert left_running(tmp_path / "t") == [] and leftovers(tmp_path / "t") == []
