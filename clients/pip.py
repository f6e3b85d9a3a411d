"""The pip driver: ``pip download`` of one pinned release, the way CI jobs fetch packages."""

from __future__ import annotations

from pathlib import Path

from clients.task import ClientTask

#: The client kind this driver answers to in profiles and records.
KIND = "pip"


def pip_download_argv(python: Path, task: ClientTask, dest: Path) -> list[str]:
    """The command line of one run.

    ``--no-cache-dir`` and a fresh venv make every run a cold client, like a CI job on a new
    runner. pip's own retry and timeout defaults (5 retries, 15 s) are kept: they are part of the
    load an index really sees.
    """
    return [
        str(python),
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "-d",
        str(dest),
        "--index-url",
        task.index_url,
        f"{task.project}=={task.version}",
    ]
