"""Keep built corpora on disk, one directory per spec, so a corpus is built once per machine.

Layout: `<cache root>/corpus/<spec.key()>/` holds the wheels and nothing else (pypiserver
serves it as a flat directory). A corpus is built into a temporary sibling directory and then
renamed into place in one step, so a crash never leaves a half corpus under the final name and
concurrent builders are safe: whoever renames first wins, the others discard their copy and use
the winner's (the bytes are identical anyway, the build being deterministic).

A lookup of a corpus already built never imports the builder (poetry-core): it checks one
directory listing against the names `pipstorm.packages.spec` derives, which takes well under a
millisecond for the default 300 wheels.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import tempfile
import time
from pathlib import Path

from pipstorm.packages.spec import CorpusError, CorpusSpec, wheel_filename

CACHE_DIR_ENV = "PIPSTORM_CACHE_DIR"

# Temporary build directories are named `.<key>.<random>.building`; one left behind by a
# killed build is removed by the next cold build once it is older than this (a live build of
# even a huge corpus takes minutes, not a day).
_BUILDING_SUFFIX = ".building"
_STALE_BUILD_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A built corpus: its spec, the flat directory of its wheels and their paths."""

    spec: CorpusSpec
    directory: Path
    wheels: tuple[Path, ...]


def default_cache_root() -> Path:
    """Where corpora are cached: `$PIPSTORM_CACHE_DIR`, else `$XDG_CACHE_HOME/pipstorm`,
    else `~/.cache/pipstorm`; always absolute, since servers started elsewhere read it."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return (base / "pipstorm").absolute()


def corpus_directory(spec: CorpusSpec, cache_root: Path | None = None) -> Path:
    """The directory `cached_corpus` uses for `spec`, whether or not it is built yet."""
    root = cache_root if cache_root is not None else default_cache_root()
    return root.absolute() / "corpus" / spec.key()


def cached_corpus(spec: CorpusSpec, cache_root: Path | None = None) -> Corpus:
    """Return the corpus of `spec` from the cache, building it first if it is not there.

    Safe to call from several processes at once. Raises CorpusError if the cache cannot be
    written, or if a cached corpus was tampered with (wheels missing).
    """
    directory = corpus_directory(spec, cache_root)
    if not directory.is_dir():
        _build_into_cache(spec, directory)
    return _load(spec, directory)


def _load(spec: CorpusSpec, directory: Path) -> Corpus:
    names = [wheel_filename(project, version) for project, version in spec.releases()]
    try:
        present = {entry.name for entry in directory.iterdir()}
    except OSError as error:
        raise CorpusError(f"cannot read the cached corpus {directory}: {error}") from error
    missing = [name for name in names if name not in present]
    if missing:
        # Builds are published atomically, so this is outside interference: refuse to serve
        # an incomplete index rather than guess what to rebuild under a directory in use.
        raise CorpusError(
            f"cached corpus {directory} lacks {len(missing)} of {len(names)} wheels "
            f"(e.g. {missing[0]}); delete that directory to rebuild it"
        )
    return Corpus(spec=spec, directory=directory, wheels=tuple(directory / n for n in names))


def _build_into_cache(spec: CorpusSpec, directory: Path) -> None:
    # Imported here so that a warm lookup does not pay for importing poetry-core.
    from pipstorm.packages.build import build_corpus

    parent = directory.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(parent)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=_BUILDING_SUFFIX, dir=parent)
        )
    except OSError as error:
        raise CorpusError(f"cannot create the corpus cache in {parent}: {error}") from error
    try:
        build_corpus(spec, staging)
        rename_into_place(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def rename_into_place(staging: Path, directory: Path) -> bool:
    """Rename the finished `staging` directory to `directory` in one step.

    Returns False, leaving `staging` in place for the caller to remove, when another builder
    published `directory` first; True when this call did.
    """
    try:
        # rename(2) refuses to replace a non-empty directory: exactly the race we want to lose
        # gracefully, never half-overwrite a corpus another process may already be serving.
        staging.rename(directory)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and directory.is_dir():
            return False
        raise CorpusError(f"cannot publish the corpus to {directory}: {error}") from error
    return True


def _remove_stale_builds(parent: Path) -> None:
    cutoff = time.time() - _STALE_BUILD_SECONDS
    for entry in parent.iterdir():
        if not (entry.name.startswith(".") and entry.name.endswith(_BUILDING_SUFFIX)):
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except FileNotFoundError:
            continue  # another builder finished or cleaned it meanwhile
