"""Commands that host a run spread over machines: ``scheduler`` and ``worker ADDRESS``."""

from __future__ import annotations

from typing import Annotated

import typer

HostOpt = Annotated[
    str,
    typer.Option(
        help="Address to listen on (default loopback; give this machine's address that the "
        "other machines reach to accept them)."
    ),
]


def scheduler(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the scheduler (0: a free one).")] = 8786,
    dashboard: Annotated[
        str | None,
        typer.Option(help="HOST:PORT for Dask's dashboard (default: no dashboard)."),
    ] = None,
) -> None:
    """A Dask scheduler for `pipstorm run --cluster`: bound to --host, no task re-runs."""
    from pipstorm.engine.run.shards.daemons import serve_scheduler

    serve_scheduler(host, port, dashboard, lambda line: typer.echo(line, err=True))


def worker(
    address: Annotated[str, typer.Argument(help="The scheduler: tcp://HOST:PORT.")],
    host: HostOpt = "127.0.0.1",
    name: Annotated[str | None, typer.Option(help="The worker's name (default: Dask's).")] = None,
) -> None:
    """A Dask worker with one shard slot (one thread, resources shard=1), bound to --host."""
    from pipstorm.engine.run.shards.daemons import serve_worker

    serve_worker(address, host, name, lambda line: typer.echo(line, err=True))
