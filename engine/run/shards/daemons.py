"""``pipstorm scheduler`` and ``pipstorm worker ADDRESS``: Dask's, with what a pipstorm run needs.

Why not ``dask scheduler``/``dask worker`` as they are: the scheduler CLI listens on every
interface by default and so does its dashboard; it re-runs a task whose worker died up to three
times (a shard replayed late, an upload shard publishing twice); a worker offers no ``shard``
slot and runs as a daemonic process that may not start the pool's processes. Here every listener
is bound to the address given (default 127.0.0.1), the dashboard is off unless an address is
given for it, the scheduler allows no failures, and each worker has one thread and
``resources={"shard": 1}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine

from pipstorm.engine.errors import UsageError
from pipstorm.engine.run.shards.cluster import DASK_CONFIG, check_scheduler_address
from pipstorm.engine.run.shards.worker import SHARD_RESOURCE


class DaskServeError(UsageError):
    """A scheduler or worker cannot start (address in use, scheduler unreachable)."""


def serve_scheduler(
    host: str, port: int, dashboard: str | None, say: Callable[[str], None]
) -> None:
    """Run a scheduler on ``host:port`` until Ctrl-C or SIGTERM."""
    if port:
        _check_port_free(host, port)  # before Dask, which logs its start-up before failing
    import dask
    from distributed import Scheduler

    async def main() -> None:
        scheduler = Scheduler(
            host=host,
            port=port,
            dashboard=dashboard is not None,
            # Its HTTP endpoints (health, metrics) listen too: on the dashboard's address if one
            # is given, else on the scheduler's host at a free port.
            dashboard_address=dashboard or f"{host}:0",
            allowed_failures=0,
        )
        async with scheduler:
            say(f"pipstorm scheduler: {scheduler.address} (allowed failures 0)")
            await _until_stopped(scheduler.finished())  # type: ignore[no-untyped-call]

    with dask.config.set(DASK_CONFIG):
        _run(main)


def serve_worker(address: str, host: str, name: str | None, say: Callable[[str], None]) -> None:
    """Run one worker (under a nanny) for the scheduler at ``address`` until stopped."""
    check_scheduler_address(address)  # Dask's own error is a traceback quoting it
    import dask
    from distributed import Nanny

    async def main() -> None:
        nanny = Nanny(
            address,
            host=host,
            nthreads=1,
            resources={SHARD_RESOURCE: 1},
            memory_limit=0,
            dashboard=False,
            name=name,
        )
        async with nanny:
            say(f"pipstorm worker: {nanny.worker_address} for {address} (one shard slot)")
            await _until_stopped(nanny.finished())  # type: ignore[no-untyped-call]

    with dask.config.set(DASK_CONFIG):
        _run(main)


async def _until_stopped(finished: Awaitable[object]) -> None:
    """Wait for ``finished`` or SIGTERM (Ctrl-C arrives as a cancellation)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    waiters: list[asyncio.Future[object]] = [
        asyncio.ensure_future(finished),
        asyncio.ensure_future(stop.wait()),
    ]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _run(main: Callable[[], Coroutine[object, object, None]]) -> None:
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return
    except OSError as exc:
        raise DaskServeError(str(exc)) from None
    except RuntimeError as exc:  # Dask's "Scheduler failed to start." over the OSError
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise DaskServeError(f"{str(exc).rstrip('.')}: {cause}") from None


def _check_port_free(host: str, port: int) -> None:
    """DaskServeError, in one line, if ``host:port`` cannot be bound (in use, not an address
    of this machine). SO_REUSEADDR as tornado's own bind: a port in TIME_WAIT is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DaskServeError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise DaskServeError(f"cannot bind {host}:{port}: {exc.strerror}") from None
