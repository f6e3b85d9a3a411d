"""A static PEP 503 index of the default corpus, served by ``python -m http.server`` on loopback.

The burst benches (``test_burst_bench.py``) measure the generator, not the index: a static
tree of pre-made pages served by the standard library's threading HTTP server costs almost
nothing per request. Also usable by hand (the commands in docs/performance.md):

    python -m tests.bench.static_index build DIR        # DIR/simple/..., DIR/packages/...
    python -m tests.bench.static_index serve DIR PORT   # on 127.0.0.1, until Ctrl-C

Served by the standard library's ``http.server`` handler with a listen backlog of 1024 instead
of socketserver's 5: with 5, a burst of a few hundred connections has most SYNs dropped, and the
clients' kernel retries them 1, 3, 7, 15 s later: the index then looks like it answered nothing
for tens of seconds (the plain ``python -m http.server`` did exactly that at x170).

The accepting thread serves each connection itself (HTTP/1.0: one request each; ``THREADS``
says why, and ``--threads N`` makes a fixed pool of N long-lived threads instead), never a
thread per connection: pipstorm watches this process's run-queue wait per thread
(``pipstorm.engine.run.runqueue``), and a thread that exits between two samples takes its wait
along. The server runs in its own session at the embedded
target's priority (``pipstorm.engine.run.priority.TARGET_NICE``, on its autogroup too) when
permitted, with the shortest EEVDF slice (``pipstorm.infra.wakeup``), as pipstorm gives its own
target: the bench measures the generator beside an index that is protected alike.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import hashlib
import html
import http.server
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipstorm.clients.warm.nice import set_nice
from pipstorm.engine.run.priority import TARGET_NICE
from pipstorm.infra.wakeup import SHORTEST_SLICE_US, set_slice
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


#: Threads serving connections besides the accepting one. None: the accepting thread serves each
#: connection itself; a request costs well under 1 ms here, and a pool queues for the cores by
#: itself. Measured (tests/bench/test_static_index_bench.py, 2026-12-06, 2 cores, 510
#: connections at once for a listing and a wheel each, from one cheap asyncio client): 32
#: threads ran 0.42-0.55 s and their run-queue waits summed to 2.1-2.3 s, with nothing else on
#: the host but that client; one thread ran 0.25 s and waited 0.05 s; the accepting thread alone
#: 0.24-0.30 s and 0.001 s. The generator rule cannot tell a pool's own queueing from the
#: generator's (pipstorm.engine.analysis.generator.cpu_wait): at x170 it was most of what the
#: 32-thread index's counted wait held, and with one pool thread, each connection handed from
#: the accepting thread to it (two wake-ups per connection, each a wait behind a client on a
#: busy core), the index's counted share was 48-61 % in seven x170 runs (flagged in four)
#: against 34-48 % in seven with none (none flagged; docs/performance.md, "An index served by
#: its accepting thread, and a short slice").
THREADS = 0


@contextmanager
def serving(
    root: Path,
    *,
    nice: int = TARGET_NICE,
    cpus: set[int] | None = None,
    spin: int = 0,
    fifo: int | None = None,
    threads: int = THREADS,
    slice_us: int = SHORTEST_SLICE_US,
) -> Iterator[str]:
    """Serve ``root`` with ``python -m http.server`` on loopback; yields the index URL.

    ``nice``: the server's (and its autogroup's); ``cpus``: the cores it is pinned to; ``spin``:
    busy-looping child processes it forks beside its threads (its own CPU, in its session):
    tests/e2e/test_generator_bound.py makes a starved local index and one that queues for
    its own cores with these. ``threads``: the serving pool's size (0: the accepting thread
    serves; see ``THREADS``); ``slice_us``: the slice its threads ask for (0: the kernel's
    default)."""
    port = _free_port()
    extra = ["--nice", str(nice), "--spin", str(spin), "--threads", str(threads)]
    extra += ["--slice-us", str(slice_us)]
    if cpus is not None:
        extra += ["--cpus", ",".join(map(str, sorted(cpus)))]
    if fifo is not None:
        extra += ["--fifo", str(fifo)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.static_index", "serve", str(root), str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own autogroup, niced ahead of the clients in serve()
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


class _Server(http.server.HTTPServer):
    """Accepts on the main thread, which serves each connection, or hands it to a pool of
    ``threads`` long-lived threads (``start_pool``)."""

    request_queue_size = 1024

    def start_pool(self, threads: int = THREADS) -> None:
        """``threads`` 0: no pool, the accepting thread serves each connection itself."""
        self._work: queue.SimpleQueue[tuple[socket.socket, object]] | None = None
        if threads > 0:
            self._work = queue.SimpleQueue()
        for _ in range(threads):
            threading.Thread(target=self._serve_queue, daemon=True).start()

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if self._work is None:
            super().process_request(request, client_address)
            return
        self._work.put((request, client_address))

    def _serve_queue(self) -> None:
        assert self._work is not None
        while True:
            request, client_address = self._work.get()
            try:
                self.finish_request(request, client_address)
            except Exception:  # one bad connection must not stop a thread
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)


def serve(
    root: Path,
    port: int,
    *,
    nice: int = TARGET_NICE,
    cpus: set[int] | None = None,
    spin: int = 0,
    fifo: int | None = None,
    threads: int = THREADS,
    slice_us: int = SHORTEST_SLICE_US,
) -> None:
    """Serve ``root`` on 127.0.0.1:``port`` until interrupted (see ``serving``)."""
    set_nice(0, nice)  # and its session's autogroup; silently not, unprivileged
    if slice_us:  # every thread started below inherits it
        set_slice(0, slice_us)
    if fifo is not None:  # every thread started below inherits it (no RESET_ON_FORK: threads
        # are clones, and would be reset to the ordinary policy)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo))
    if cpus is not None:
        os.sched_setaffinity(0, cpus)  # before any thread or child: they inherit it
    for _ in range(spin):
        if os.fork() == 0:
            set_pdeathsig()
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # never a real-time spin
            while True:
                pass
    handler = functools.partial(_QuietHandler, directory=str(root))
    with _Server(("127.0.0.1", port), handler) as server:
        server.start_pool(threads)
        server.serve_forever()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    #: A connection that sends nothing must not hold a serving thread (with no pool, the only
    #: one) for ever.
    timeout = 10

    def log_message(self, format: str, *args: object) -> None:
        del format, args


def set_pdeathsig() -> None:
    """A spinning child dies with the server (Linux ``PR_SET_PDEATHSIG`` SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.static_index")
    parser.add_argument("command", choices=["build", "serve"])
    parser.add_argument("root", type=Path)
    parser.add_argument("port", type=int, nargs="?")
    parser.add_argument("--nice", type=int, default=TARGET_NICE)
    parser.add_argument("--cpus", default=None)
    parser.add_argument("--spin", type=int, default=0)
    parser.add_argument("--fifo", type=int, default=None)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--slice-us", type=int, default=SHORTEST_SLICE_US)
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(args.root))
        return
    cpus = None if args.cpus is None else {int(c) for c in args.cpus.split(",")}
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            args.root,
            args.port,
            nice=args.nice,
            cpus=cpus,
            spin=args.spin,
            fifo=args.fifo,
            threads=args.threads,
            slice_us=args.slice_us,
        )


if __name__ == "__main__":
    _main(sys.argv[1:])
