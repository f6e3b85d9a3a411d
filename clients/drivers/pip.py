"""The pip driver: ``pip download`` of one pinned release, the way CI jobs fetch packages.

Each run gets a fresh throwaway venv (virtualenv, ~0.15 s) with the newest pip virtualenv
embeds, or a pinned pip (``--pip-version``) seeded from a wheel cached once per version, so a
run never installs anything from the index under test.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipstorm.clients.drivers.protocol import Command
from pipstorm.clients.drivers.tools import ensure_pip_venv, pip_wheel_dir
from pipstorm.clients.drivers.venv import create_venv
from pipstorm.clients.process import Outcome
from pipstorm.clients.task import ClientTask
from pipstorm.clients.warm.launcher import WarmSpec

#: The client kind this driver answers to in profiles and records.
KIND = "pip"


def pip_download_argv(
    python: Path, task: ClientTask, dest: Path, *, no_deps: bool = True
) -> list[str]:
    """The command line of one run: ``python -m pip`` and ``pip_download_args``."""
    return [str(python), "-m", "pip", *pip_download_args(task, dest, no_deps=no_deps)]


def pip_download_args(task: ClientTask, dest: Path, *, no_deps: bool = True) -> list[str]:
    """pip's arguments for one run.

    ``--no-cache-dir`` and a fresh venv make every run a cold client, like a CI job on a new
    runner. pip's own retry and timeout defaults (5 retries, 15 s) are kept: they are part of the
    load an index really sees. ``no_deps=False`` (a corpus with dependencies) lets pip resolve.
    """
    return [
        "download",
        *(["--no-deps"] if no_deps else []),
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "-d",
        str(dest),
        "--index-url",
        task.index_url,
        *(f"{project}=={version}" for project, version in task.pins),
    ]


class PipDriver:
    """``pip download`` from a throwaway venv."""

    kind = KIND
    pins_per_run = 1
    default_version: str | None = None  # the pip virtualenv embeds

    def warm_up(self, version: str | None) -> None:
        if version is not None:
            pip_wheel_dir(version)

    def prepare(self, task: ClientTask, work: Path) -> Command:
        version = task.client_version
        wheels = pip_wheel_dir(version) if version is not None else None
        venv = create_venv(work / "venv", pip_version=version, pip_wheel_dir=wheels)
        dest = work / "download"
        argv = pip_download_argv(venv.python, task, dest, no_deps=not task.resolve_deps)
        return Command(argv=argv, client_version=version or _seeded_version(venv.path))

    def warm(self, task: ClientTask, work: Path) -> WarmSpec:
        """The same ``pip download`` run from a warm launcher: pip from a venv cached per pip
        version (same pip, same Python, no setuptools: the same user agent)."""
        tool = ensure_pip_venv(task.client_version)
        args = pip_download_args(task, work / "download", no_deps=not task.resolve_deps)
        return WarmSpec("pip", tool.python, tuple(args), _no_env, tool.version)

    def check(self, task: ClientTask, work: Path, outcome: Outcome) -> str | None:
        del outcome
        got = {_normalized(p.name) for p in (work / "download").glob("*")}
        missing = [
            f"{project}=={version}"
            for project, version in task.pins
            if not any(n.startswith(_normalized(f"{project}-{version}-")) for n in got)
        ]
        return f"pip exited 0 but did not download {', '.join(missing)}" if missing else None


def _no_env(work: Path) -> dict[str, str]:
    del work
    return {}


def _normalized(name: str) -> str:
    """A file or project name with runs of ``-_.`` as one ``_``, lowercase (wheel style)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _seeded_version(venv: Path) -> str | None:
    """The pip version virtualenv put into ``venv`` (from its dist-info name)."""
    for info in venv.glob("lib/python*/site-packages/pip-*.dist-info"):
        return info.name[len("pip-") : -len(".dist-info")]
    return None


DRIVER = PipDriver()
