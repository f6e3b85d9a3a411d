"""A static PEP 503 index of the default corpus, served by ``python -m http.server`` on loopback.

The burst benches (``test_burst_bench.py``) measure the generator, not the index: a static
tree of pre-made pages served by the standard library's threading HTTP server costs almost
nothing per request. Also usable by hand (the commands in docs/performance.md):

    python -m tests.bench.static_index build DIR        # DIR/simple/..., DIR/packages/...
    python -m tests.bench.static_index serve DIR PORT   # on 127.0.0.1, until Ctrl-C

Served by the standard library's ``http.server`` (``ThreadingHTTPServer``, a thread per
connection) with a listen backlog of 1024 instead of socketserver's 5: with 5, a burst of a few
hundred connections has most SYNs dropped, and the clients' kernel retries them 1, 3, 7, 15 s
later: the index then looks like it answered nothing for tens of seconds (the plain ``python -m
http.server`` did exactly that at x170).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import http.server
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec


def build(root: Path, spec: CorpusSpec | None = None) -> Path:
    """``root/simple/<project>/index.html`` and ``root/packages/*.whl`` of the corpus."""
    corpus = cached_corpus(spec or CorpusSpec())
    packages = root / "packages"
    packages.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[str]] = {}
    for wheel in sorted(corpus.directory.glob("*.whl")):
        shutil.copyfile(wheel, packages / wheel.name)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        link = f"../../packages/{wheel.name}#sha256={digest}"
        projects.setdefault(project, []).append(
            f'<a href="{html.escape(link)}">{html.escape(wheel.name)}</a><br>'
        )
    simple = root / "simple"
    for project, links in projects.items():
        (simple / project).mkdir(parents=True, exist_ok=True)
        page = "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n"
        (simple / project / "index.html").write_text(page, encoding="utf-8")
    names = "\n".join(f'<a href="{p}/">{p}</a><br>' for p in sorted(projects))
    (simple / "index.html").write_text(
        f"<!DOCTYPE html><html><body>\n{names}\n</body></html>\n", encoding="utf-8"
    )
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(root: Path) -> Iterator[str]:
    """Serve ``root`` with ``python -m http.server`` on loopback; yields the index URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.static_index", "serve", str(root), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/simple/"
    finally:
        proc.terminate()
        proc.wait(10)


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


def serve(root: Path, port: int) -> None:
    """Serve ``root`` on 127.0.0.1:``port`` until interrupted."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    with _Server(("127.0.0.1", port), handler) as server:
        server.serve_forever()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        del format, args


if __name__ == "__main__":
    if sys.argv[1] == "build":
        print(build(Path(sys.argv[2])))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            serve(Path(sys.argv[2]), int(sys.argv[3]))
