"""Throwaway virtualenvs: one per client run, never shared, always removed.

``virtualenv`` with app-data seeding and symlinks makes a venv with pip in about 0.15 s here,
against about 2 s for ``python -m venv`` (which copies pip in with ensurepip). Creation is done
in process; callers that create venvs from several threads must hold ``CREATION_LOCK`` because
virtualenv's session objects are not documented as thread-safe.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipstorm.clients.errors import VenvError

CREATION_LOCK = threading.Lock()


@dataclass(frozen=True)
class Venv:
    """A created virtualenv: where it is and how to run its interpreter."""

    path: Path
    python: Path
    bin_dir: Path


def create_venv(
    path: Path,
    *,
    python: str | None = None,
    pip_version: str | None = None,
    pip_wheel_dir: Path | None = None,
    symlink_app_data: bool = True,
) -> Venv:
    """Create a venv with pip at ``path``, which must not exist.

    pip is the newest virtualenv embeds, or ``pip_version`` seeded from the wheel in
    ``pip_wheel_dir`` (never downloaded: a run's venv must not touch any index). A venv that
    outlives its run (a cached tool venv) should not symlink into virtualenv's app-data.
    """
    from virtualenv import cli_run  # imported lazily: 0.1 s, only workers need it

    args = [
        str(path),
        *(["--symlink-app-data"] if symlink_app_data else []),
        *(["--pip", pip_version] if pip_version else []),
        *(["--extra-search-dir", str(pip_wheel_dir)] if pip_wheel_dir else []),
        "--no-setuptools",
        "--no-periodic-update",
        "--no-download",
        "--quiet",
        "--activators",
        "",
        "--python",
        python or sys.executable,
    ]
    # virtualenv logs through the root logger; keep a run's venv creation out of pipstorm's output.
    logging.getLogger("virtualenv").setLevel(logging.ERROR)
    try:
        with CREATION_LOCK:
            session = cli_run(args, setup_logging=False)
    except (Exception, SystemExit) as exc:  # virtualenv raises SystemExit on bad arguments
        raise VenvError(f"cannot create a virtualenv at {path}: {exc}") from exc
    return Venv(path=path, python=Path(session.creator.exe), bin_dir=Path(session.creator.bin_dir))


@contextmanager
def throwaway_dir(parent: Path | None, prefix: str) -> Iterator[Path]:
    """A private temp dir that is removed on exit, also when the body raises or is interrupted."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
