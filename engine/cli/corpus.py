"""``pipstorm corpus build`` and ``corpus upload``: the synthetic corpus, on disk or on an index."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipstorm.engine.cli.options import (
    QuietOpt,
)
from pipstorm.packages.spec import CorpusError, CorpusSpec
from pipstorm.packages.upload import FileResult

if TYPE_CHECKING:
    pass


def _versions(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def corpus_build(
    out: Annotated[Path, typer.Option(help="Folder to write the wheels into.")],
    packages: Annotated[int, typer.Option(help="Number of projects.")] = 100,
    versions: Annotated[
        str, typer.Option(help="Comma-separated versions of each project.")
    ] = "1.0.0,1.1.0,2.0.0",
    payload_kb: Annotated[int, typer.Option(help="Extra payload per wheel, KiB.")] = 0,
) -> None:
    """Build the synthetic corpus (deterministic: same options, same bytes)."""

    from pipstorm.packages.build import build_corpus

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
    from pipstorm.infra.credentials import Credentials
    from pipstorm.packages.cache import cached_corpus
    from pipstorm.packages.upload import PASSWORD_ENV, USERNAME_ENV, distributions, upload_files

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
        credentials=Credentials.from_env(os.environ, USERNAME_ENV, PASSWORD_ENV),
        upload_url=upload_url,
        concurrency=concurrency,
        progress=progress,
    )
    typer.echo(f"{index_url}: {summary.line()}")
    for note in summary.notes:  # landed after a timeout or reset (pipstorm.packages.retry)
        typer.echo(f"  retried: {note}", err=True)
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
