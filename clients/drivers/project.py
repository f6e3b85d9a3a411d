"""The throwaway project a locking client (poetry, uv) locks, and the check of its lock file.

Both lock the same thing, a project depending on the run's pinned releases with the run's proxy
URL as the only index; they differ in how a requirement is written and in the tool table that
names the index. poetry.lock and uv.lock share the ``[[package]] name/version`` layout, so one
check reads both.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from pipstorm.clients.task import ClientTask
from pipstorm.packages.spec import canonical_name

_PROJECT = """\
[project]
name = "pipstorm-lock-{run_id}"
version = "0.0.0"
requires-python = ">=3.8"
dependencies = [
{dependencies}
]

{tool_tables}"""


def project_toml(task: ClientTask, requirement: Callable[[str, str], str], tool_tables: str) -> str:
    """The ``pyproject.toml`` of one run: its pins as dependencies (each written by
    ``requirement(project, version)``), then the tool's own tables (``{index_url}`` filled)."""
    deps = ",\n".join(f'    "{requirement(project, version)}"' for project, version in task.pins)
    run = "".join(c if c.isalnum() else "-" for c in task.run_id).lower()
    return _PROJECT.format(
        run_id=run, dependencies=deps, tool_tables=tool_tables.format(index_url=task.index_url)
    )


def write_project(work: Path, pyproject: str) -> Path:
    """A throwaway project dir in the run's ``work`` dir holding just ``pyproject.toml``."""
    project = work / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return project


def locked_versions(lock_file: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a ``poetry.lock`` or ``uv.lock``."""
    data = tomllib.loads(lock_file.read_text(encoding="utf-8"))
    packages = data.get("package", [])
    return {
        canonical_name(str(p.get("name", ""))): str(p.get("version", ""))
        for p in packages
        if isinstance(p, dict)
    }


def check_lock(task: ClientTask, lock_file: Path, tool: str) -> str | None:
    """None if ``lock_file`` is valid TOML that pins every release ``task`` asked for."""
    if not lock_file.is_file():
        return f"{tool} exited 0 but wrote no {lock_file.name}"
    try:
        locked = locked_versions(lock_file)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"{lock_file.name} is not valid TOML: {exc}"
    wrong = [
        f"{project}=={version} (locked: {locked.get(canonical_name(project), 'absent')})"
        for project, version in task.pins
        if locked.get(canonical_name(project)) != version
    ]
    return f"{lock_file.name} does not pin {', '.join(wrong)}" if wrong else None
