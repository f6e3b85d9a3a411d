"""Commands around the corpus and the embedded target: ``serve``, ``corpus build`` and
``corpus upload``."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.options import (
    AllowUnconfinedOpt,
    AuthOpt,
    BackendOpt,
    CpusOpt,
    HashAlgoOpt,
    MemoryOpt,
    QuietOpt,
    SizingOpt,
    WorkerClassOpt,
    build_sizing,
)
from packages.spec import CorpusError, CorpusSpec
from packages.upload import FileResult

if TYPE_CHECKING:
    from infra.pypiserver_target import LocalPypiserver


def _versions(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


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
    from engine.run.signals import Terminated, terminate_as_interrupt
    from infra.pypiserver_target import LocalPypiserver
    from packages.cache import cached_corpus

    directory = corpus if corpus is not None else cached_corpus(CorpusSpec()).directory
    if not directory.is_dir():
        raise CorpusError(f"corpus folder {directory} does not exist")

    from infra.credentials import Credentials

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


def corpus_build(
    out: Annotated[Path, typer.Option(help="Folder to write the wheels into.")],
    packages: Annotated[int, typer.Option(help="Number of projects.")] = 100,
    versions: Annotated[
        str, typer.Option(help="Comma-separated versions of each project.")
    ] = "1.0.0,1.1.0,2.0.0",
    payload_kb: Annotated[int, typer.Option(help="Extra payload per wheel, KiB.")] = 0,
) -> None:
    """Build the synthetic corpus (deterministic: same options, same bytes)."""

    from packages.build import build_corpus

    spec = CorpusSpec(packages=packages, versions=_versions(versions), payload_kb=payload_kb)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    wheels = build_corpus(spec, out)
    size = sum(w.stat().st_size for w in wheels)
    typer.echo(
        f"built {len(wheels)} wheels ({size / 1e6:.2f} MB) in {time.perf_counter() - start:.2f} s"
        f" -> {out}"
    )


def corpus_upload(
    index_url: Annotated[
        str, typer.Option(help="The index's simple URL, e.g. http://host/root/dev/+simple/.")
    ],
    corpus: Annotated[
        Path | None, typer.Option(help="Folder of wheels (default: the cached default corpus).")
    ] = None,
    upload_url: Annotated[
        str | None,
        typer.Option(help="Where to POST (default: the index URL without its simple/ part)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Uploads in flight at once.")] = 8,
    quiet: QuietOpt = False,
) -> None:
    """Upload the corpus to an index (skipping files it has). Credentials: PYPI_USERNAME and
    PYPI_PASSWORD."""
    from packages.cache import cached_corpus
    from packages.upload import IndexCredentials, distributions, upload_files

    directory = corpus if corpus is not None else cached_corpus(CorpusSpec()).directory
    if not directory.is_dir():
        raise CorpusError(f"corpus folder {directory} does not exist")
    files = distributions(directory)
    if not files:
        raise CorpusError(f"corpus folder {directory} holds no wheels or sdists")
    progress = _UploadProgress(len(files), quiet=quiet)
    summary = upload_files(
        index_url,
        files,
        credentials=IndexCredentials.from_env(os.environ),
        upload_url=upload_url,
        concurrency=concurrency,
        progress=progress,
    )
    typer.echo(f"{index_url}: {summary.line()}")
    if summary.failures:
        first = summary.failures[0]
        status = f"HTTP {first.status}" if first.status is not None else "no answer"
        raise CorpusError(
            f"{summary.failed} of {len(files)} files did not land; first: {first.path.name}: "
            f"{status} {first.detail}".rstrip()
        )


class _UploadProgress:
    """A line per tenth of the files (from the upload's worker threads, so under a lock)."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.total = total
        self.quiet = quiet
        self.done = 0
        self.step = max(1, total // 10)
        self._lock = threading.Lock()

    def __call__(self, result: FileResult) -> None:
        with self._lock:
            self.done += 1
            if not self.quiet and (self.done % self.step == 0 or self.done == self.total):
                typer.echo(f"  {self.done}/{self.total} files settled", err=True)
