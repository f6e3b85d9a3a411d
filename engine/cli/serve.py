"""``pipstorm serve``: the embedded target in the foreground, for a load from elsewhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipstorm.engine.cli.options import (
    AllowUnconfinedOpt,
    AuthOpt,
    BackendOpt,
    CpusOpt,
    HashAlgoOpt,
    MemoryOpt,
    SizingOpt,
    WorkerClassOpt,
    build_sizing,
)
from pipstorm.packages.spec import CorpusError, CorpusSpec

if TYPE_CHECKING:
    from pipstorm.infra.pypiserver.target import LocalPypiserver


def serve(
    corpus: Annotated[
        Path | None, typer.Option(help="Folder of wheels (default: the cached default corpus).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    workers: Annotated[
        int | None, typer.Option(help="gunicorn workers (default: 2, or the sizing's).")
    ] = None,
    sizing: SizingOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    worker_class: WorkerClassOpt = None,
    auth: AuthOpt = None,
    hash_algo: HashAlgoOpt = None,
    backend: BackendOpt = None,
    allow_unconfined: AllowUnconfinedOpt = False,
) -> None:
    """Run the embedded pypiserver in the foreground until Ctrl-C (or SIGTERM)."""
    from pipstorm.engine.run.signals import Terminated, terminate_as_interrupt
    from pipstorm.infra.pypiserver.target import LocalPypiserver
    from pipstorm.packages.cache import cached_corpus

    directory = corpus if corpus is not None else cached_corpus(CorpusSpec()).directory
    if not directory.is_dir():
        raise CorpusError(f"corpus folder {directory} does not exist")

    from pipstorm.infra.credentials import Credentials

    creds = Credentials.from_env(os.environ, "PYPI_USERNAME", "PYPI_PASSWORD")
    sized = build_sizing(
        sizing,
        cpus=cpus,
        memory=memory,
        workers=workers,
        worker_class=worker_class,
        auth=auth,
        hash_algo=hash_algo,
        backend=backend,
    )
    server = LocalPypiserver(
        directory,
        port=port,
        workers=workers or 2,
        credentials=creds,
        sizing=sized,
        allow_unconfined=allow_unconfined,
    )
    # SIGTERM unwinds like Ctrl-C: the server is stopped and the credentials file removed.
    with terminate_as_interrupt(), server:
        try:  # from here on a Ctrl-C (or SIGTERM) is the way to stop, at any instant
            # The password goes to a file only its owner can read, never to the terminal or a
            # log; in the server's private dir, which goes with the server even if serve is
            # SIGKILLed.
            secret = server.private_dir / "credentials"
            secret.touch(mode=0o600)
            secret.write_text(
                f"{server.credentials.username}:{server.credentials.password}\n", encoding="utf-8"
            )
            typer.echo(f"serving {directory} at {server.index_url}")
            typer.echo(f"username:password in {secret} (removed on exit); Ctrl-C stops the server.")
            if sized is not None:
                typer.echo(f"sizing {sized.label()}: {_confinement(server)}")
            code = server.wait()
        except (KeyboardInterrupt, Terminated):
            code = 0
            counters = server.counters()
            if counters is not None:
                typer.echo(
                    f"cgroup: {counters.cpu_s:.2f} CPU-s, throttled {counters.throttled_periods}"
                    f" of {counters.periods} periods, memory peak "
                    f"{counters.memory_peak_bytes / 2**20:.0f} MiB, OOM kills {counters.oom_kills}"
                )
    raise typer.Exit(code)


def _confinement(server: LocalPypiserver) -> str:
    if server.cgroup is None:
        return f"UNCONFINED ({server.unconfined_reason})"
    return f"cgroup v{server.cgroup.version} {server.cgroup.name}"
