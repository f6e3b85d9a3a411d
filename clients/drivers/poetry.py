"""The poetry driver: ``poetry lock`` of a throwaway project depending on K corpus releases.

This is what a developer or a CI job does to an index when it locks: poetry lists every
dependency, fetches ``.metadata`` files where the index offers them, else reads wheel metadata
with HTTP ``Range`` requests (lazy wheel), and downloads whole files to hash them. Nothing of
that is simulated here: the real poetry runs, from a tool venv cached per version
(``pipstorm.clients.drivers.tools``), with its cache, config and data dirs fresh in the run's dir,
so every run is a cold client. The proxy URL of the run is the project's only source, declared
``primary``, which makes poetry 2 drop PyPI: no request leaves for anywhere but the index under
test.
"""

from __future__ import annotations

from pathlib import Path

from pipstorm.clients.drivers.project import check_lock, write_project
from pipstorm.clients.drivers.project import project_toml as lock_project
from pipstorm.clients.drivers.protocol import Command
from pipstorm.clients.drivers.tools import ensure_tool
from pipstorm.clients.process import Outcome
from pipstorm.clients.task import ClientTask
from pipstorm.clients.warm.launcher import WarmSpec

#: Dependencies of each run's throwaway project: the incident's lock jobs had a handful.
LOCK_DEPENDENCIES = 5
KIND = "poetry"
#: A current poetry 2.x (``pip index versions poetry`` listed 2.5.1 as newest when written).
DEFAULT_VERSION = "2.5.1"

_TOOL_TABLES = """\
[tool.poetry]
package-mode = false

[[tool.poetry.source]]
name = "target"
url = "{index_url}"
priority = "primary"
"""


def project_toml(task: ClientTask) -> str:
    """The ``pyproject.toml`` of one run: its pins as dependencies, the run's URL as source."""
    return lock_project(task, lambda project, version: f"{project} (=={version})", _TOOL_TABLES)


def poetry_env(work: Path) -> dict[str, str]:
    """poetry's variables for a run in ``work``: fresh cache, config and data dirs there."""
    return {
        "POETRY_CACHE_DIR": str(work / "poetry-cache"),
        "POETRY_CONFIG_DIR": str(work / "poetry-config"),
        "POETRY_DATA_DIR": str(work / "poetry-data"),
        # A desktop keyring would be asked for credentials of the source (and can hang on
        # D-Bus); the proxy adds the index's credentials, so no keyring is ever needed.
        "POETRY_KEYRING_ENABLED": "false",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "POETRY_NO_INTERACTION": "1",
        "POETRY_VIRTUALENVS_CREATE": "false",
    }


def lock_args(project: Path) -> tuple[str, ...]:
    """poetry's arguments for one run (after ``python -m poetry``)."""
    return ("lock", "--no-interaction", "--directory", str(project))


class PoetryDriver:
    """``poetry lock`` from a cached tool venv, fresh cache and config per run."""

    kind = KIND
    pins_per_run = LOCK_DEPENDENCIES
    default_version: str | None = DEFAULT_VERSION

    def warm_up(self, version: str | None) -> None:
        ensure_tool("poetry", version or DEFAULT_VERSION)

    def prepare(self, task: ClientTask, work: Path) -> Command:
        version = task.client_version or DEFAULT_VERSION
        tool = ensure_tool("poetry", version)
        project = write_project(work, project_toml(task))
        return Command(
            argv=tool.argv(*lock_args(project)), env=poetry_env(work), client_version=version
        )

    def warm(self, task: ClientTask, work: Path) -> WarmSpec:
        """The same ``poetry lock`` run from a warm launcher of the tool venv's poetry."""
        version = task.client_version or DEFAULT_VERSION
        tool = ensure_tool("poetry", version)
        project = write_project(work, project_toml(task))
        return WarmSpec(tool.module, tool.python, lock_args(project), poetry_env, version)

    def check(self, task: ClientTask, work: Path, outcome: Outcome) -> str | None:
        del outcome
        return check_lock(task, work / "project" / "poetry.lock", "poetry")


DRIVER = PoetryDriver()
