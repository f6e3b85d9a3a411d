"""The recording reverse proxy's process: ``python -m pipstorm.infra.proxy`` runs ``main`` here.

Started by ``pipstorm.infra.proxy.RecordingProxy``: it binds its port (port 0 has no race), prints
its URL as one line on stdout and serves until SIGTERM/SIGINT, or until its parent dies. Upstream
credentials come from the environment, never argv.

The HTTP layer is asyncio Protocols with httptools (llhttp) parsers on both sides
(``pipstorm.infra.proxy.wire``): no framework objects per request, one write per small
answer, the records as before. It replaced an aiohttp server and client session that cost
1.19 ms of CPU and added 0.97 ms (p50) per proxied listing (docs/performance.md, issue 20). A
process of its own keeps the busy load generator from adding any latency. There is no total
timeout and a generous read timeout: a slow upstream is the client's to give up on. A client
is not given the same patience before its request: ``client_header_timeout`` bounds a slowloris
client and an idle keep-alive connection alike (``pipstorm.infra.proxy.wire.clients``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from pipstorm.infra.credentials import UPSTREAM_PASSWORD_ENV, UPSTREAM_USERNAME_ENV, Credentials
from pipstorm.infra.faults.plan import FaultMatcher, FaultPlan
from pipstorm.infra.faults.spec import FaultSpecError
from pipstorm.infra.proxy.control import EVENT_LOOPS
from pipstorm.infra.proxy.handler import STALL_TIMEOUT_S, ProxyHandler
from pipstorm.infra.proxy.links import LinkBook
from pipstorm.infra.proxy.log import RecordWriter
from pipstorm.infra.proxy.rewrite import Origin, UpstreamLayout, parse_origins
from pipstorm.infra.proxy.wire.clients import ClientConnections
from pipstorm.infra.proxy.wire.upstream import UpstreamPool

#: How often the parent watch also compares ``getppid()`` with the owner's pid (the pidfd, where
#: there is one, wakes it at once).
PARENT_POLL_S = 1.0


async def serve(
    layout: UpstreamLayout,
    log_path: Path,
    *,
    host: str,
    port: int,
    read_timeout: float,
    shutdown_grace: float,
    credentials: Credentials | None,
    client_header_timeout: float = 60.0,
    client_stall_timeout: float = STALL_TIMEOUT_S,
    faults: FaultMatcher | None = None,
    allowed: Sequence[Origin] = (),
    loopback_only: bool = False,
    parent: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT or the death of ``parent`` (the owner's pid; by default the
    parent at the time of the call); print the URL once bound."""
    parent = os.getppid() if parent is None else parent
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with RecordWriter(log_path) as writer:
        pool = UpstreamPool(read_timeout)
        handler = ProxyHandler(
            layout,
            pool,
            writer,
            credentials.basic_auth_header() if credentials else None,
            read_timeout=read_timeout,
            faults=faults,
            links=LinkBook(layout.origin, allowed, loopback_only=loopback_only),
            stall_timeout=client_stall_timeout,
        )
        connections = ClientConnections(handler, writer, client_header_timeout)
        # Everything made so far (the modules, the handler) lives as long as the proxy: out of
        # the collector's generations, a full collection no longer walks it between requests.
        gc.freeze()
        server = await loop.create_server(connections, host, port, backlog=1024)
        try:
            bound_host, bound_port = server.sockets[0].getsockname()[:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            handler.proxy_url = f"http://{shown}:{bound_port}"
            watchdog = asyncio.create_task(_watch_parent(parent, stop))
            _announce(handler.proxy_url)
            await stop.wait()
            watchdog.cancel()
        finally:
            server.close()  # no new connections; requests being served get the grace
            connections.close_idle()
            await handler.wait_in_flight(shutdown_grace)
            connections.abort_all()
            pool.close()


def _announce(url: str) -> None:
    """Tell the parent the URL, then detach stdout so a closed pipe can never hurt later."""
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once ``parent`` (the owner's pid, given by the owner) is gone.

    Started in its own session, the proxy would outlive a parent killed with SIGKILL. The pid
    is the owner's word, not ``getppid()`` read here: read after a start-up the owner did not
    survive, that is init's pid, and the watch then waited for init (pid 1) for good, idle in
    epoll. A pidfd wakes the loop the moment the parent exits (no poll to miss, no pid reuse);
    the ``getppid()`` poll stays as a second line where pidfds are unavailable.
    """
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    pidfd = _open_pidfd(parent)
    if pidfd is not None:

        def on_exit() -> None:  # once: a pidfd stays readable
            loop.remove_reader(pidfd)
            exited.set()

        loop.add_reader(pidfd, on_exit)
    try:
        # Checked after the pidfd opened, so that pidfd is the parent's, not a reused pid's.
        while os.getppid() == parent and not exited.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PARENT_POLL_S):
                    await exited.wait()
        sys.stderr.write(f"pipstorm proxy: parent process {parent} is gone: stopping\n")
        stop.set()
    finally:
        if pidfd is not None:
            loop.remove_reader(pidfd)
            os.close(pidfd)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), or None where Linux or Python has none."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:  # gone already (the poll then sees it), or a kernel before 5.3
        return None


def _run(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on the chosen loop. uvloop (libuv) took 0.85x asyncio's CPU per proxied
    listing in tests/bench/test_proxy_bench.py (2026-12-06, a loaded 2-core machine): the
    proxy's CPU is what a burst of hundreds of first requests queues behind."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main)
            return
    asyncio.run(main)


def _parser() -> argparse.ArgumentParser:
    """The proxy's command line (written by ``RecordingProxy.start``)."""
    parser = argparse.ArgumentParser(prog="python -m pipstorm.infra.proxy")
    parser.add_argument("--upstream", required=True, help="upstream index URL")
    parser.add_argument("--log", required=True, type=Path, help="requests.jsonl to append to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--read-timeout", type=float, default=300.0)
    parser.add_argument("--shutdown-grace", type=float, default=5.0)
    parser.add_argument(
        "--client-header-timeout",
        type=float,
        default=60.0,
        help="seconds a client connection may go without a complete request head",
    )
    parser.add_argument(
        "--client-stall-timeout",
        type=float,
        default=STALL_TIMEOUT_S,
        help="seconds a client may take no part of its answer or send no part of its body",
    )
    parser.add_argument(
        "--faults", type=Path, help="fault plan JSON (pipstorm.infra.faults.spec.FaultPlan)"
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="another origin the proxy may forward to (repeatable)",
    )
    parser.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="the event loop: uvloop where installed (auto), or asyncio's own",
    )
    parser.add_argument(
        "--loopback-only",
        action="store_true",
        help="forward to loopback origins only (the index's own origin excepted)",
    )
    parser.add_argument(
        "--parent",
        type=int,
        help="the owner's pid: the proxy stops when it is gone (default: the parent process)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the proxy process; credentials are read from the environment."""
    args = _parser().parse_args(argv)
    if args.parent is not None and os.getppid() != args.parent:
        # The owner died while this process started: nobody will ever stop it.
        sys.stderr.write(f"pipstorm proxy: parent process {args.parent} is gone: stopping\n")
        return 2
    try:
        layout = UpstreamLayout.parse(args.upstream)
        allowed = parse_origins(args.allow_origin)
        credentials = Credentials.from_env(os.environ, UPSTREAM_USERNAME_ENV, UPSTREAM_PASSWORD_ENV)
        faults = (
            None
            if args.faults is None
            else FaultMatcher(FaultPlan.load(args.faults), path=args.faults)
        )
    except (ValueError, FaultSpecError) as exc:
        sys.stderr.write(f"ERROR {exc}\n")
        return 2
    # Nothing this process starts needs them.
    os.environ.pop(UPSTREAM_USERNAME_ENV, None)
    os.environ.pop(UPSTREAM_PASSWORD_ENV, None)
    try:
        _run(
            args.loop,
            serve(
                layout,
                args.log,
                host=args.host,
                port=args.port,
                read_timeout=args.read_timeout,
                shutdown_grace=args.shutdown_grace,
                credentials=credentials,
                client_header_timeout=args.client_header_timeout,
                client_stall_timeout=args.client_stall_timeout,
                faults=faults,
                allowed=allowed,
                loopback_only=args.loopback_only,
                parent=args.parent,
            ),
        )
    except OSError as exc:
        sys.stderr.write(f"ERROR {exc}\n")  # e.g. the port is taken, the log is not writable
        return 2
    return 0
