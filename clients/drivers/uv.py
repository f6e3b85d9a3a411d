"""The uv driver: ``uv lock`` of a throwaway project depending on K corpus releases.

uv resolves like poetry but with its own HTTP behaviour (parallel requests, ``HEAD`` then
``Range`` reads into wheels when no ``.metadata`` file is offered), so it loads an index
differently and is worth its own kind. uv runs from a tool venv cached per version (``python -m
uv`` finds the binary the wheel ships); its cache is fresh per run (``UV_CACHE_DIR``) and user
or system config files are not found (private HOME and XDG dirs; ``UV_NO_CONFIG`` is not used:
it would also drop the project's own index). The run's proxy URL is the project's only index.
"""

from __future__ import annotations

from pathlib import Path

from pipstorm.clients.drivers.project import check_lock, write_project
from pipstorm.clients.drivers.project import project_toml as lock_project
from pipstorm.clients.drivers.protocol import Command
from pipstorm.clients.drivers.tools import ensure_tool
from pipstorm.clients.process import Outcome
from pipstorm.clients.task import ClientTask

#: Dependencies of each run's throwaway project: the incident's lock jobs had a handful.
LOCK_DEPENDENCIES = 5
KIND = "uv"
#: A current uv (``pip index versions uv`` listed 0.13.9 as newest when written).
DEFAULT_VERSION = "0.13.9"

_TOOL_TABLES = """\
[tool.uv]
package = false

[[tool.uv.index]]
name = "target"
url = "{index_url}"
default = true
"""


def project_toml(task: ClientTask) -> str:
    """The ``pyproject.toml`` of one run: its pins as dependencies, the run's URL as index."""
    return lock_project(task, lambda project, version: f"{project}=={version}", _TOOL_TABLES)


class UvDriver:
    """``uv lock`` from a cached tool venv, fresh cache per run."""

    kind = KIND
    pins_per_run = LOCK_DEPENDENCIES
    default_version: str | None = DEFAULT_VERSION

    def warm_up(self, version: str | None) -> None:
        ensure_tool("uv", version or DEFAULT_VERSION)

    def prepare(self, task: ClientTask, work: Path) -> Command:
        version = task.client_version or DEFAULT_VERSION
        tool = ensure_tool("uv", version)
        project = write_project(work, project_toml(task))
        env = {
            "UV_CACHE_DIR": str(work / "uv-cache"),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_PYTHON": str(tool.python),
            "UV_KEYRING_PROVIDER": "disabled",
            "UV_NO_PROGRESS": "1",
        }
        # The index is named twice (project and command line) so that no config can add PyPI.
        argv = tool.argv("lock", "--default-index", task.index_url, "--directory", str(project))
        return Command(argv=argv, env=env, client_version=version)

    def check(self, task: ClientTask, work: Path, outcome: Outcome) -> str | None:
        del outcome
        return check_lock(task, work / "project" / "uv.lock", "uv")


DRIVER = UvDriver()
