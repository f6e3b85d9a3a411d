"""The twine driver: ``twine upload`` of a freshly built wheel, what a release job does.

Uploads load an index differently from downloads: a multipart POST of the whole file, a write
to the index's storage, and a listing that changes under the readers. Each run builds one
wheel in process (``pipstorm.packages.build.build_release``: a new release of the project the
schedule picked, made like the corpus) and uploads it with the real twine, run from a tool venv
cached per version (``pipstorm.clients.drivers.tools``, installed from this machine's pip
configuration, never from the target).

Why the version is ``<release>.post<random>``: uploads must not collide, not within a run and
not with an earlier run against the same remote index (the same seed picks the same releases),
so the unique part is random, 12 digits, not derived from the run id.

Credentials: twine insists on a username and password, so it gets placeholders; the proxy
replaces the Authorization header with the index's own credentials, which twine never holds.

Conflicts: pypiserver refuses an existing file with 409, or 400 when the User-Agent says twine
(for twine's sake); twine 7 has no ``--skip-existing`` for indexes other than PyPI, so it exits
non-zero. The driver reads twine's ``--verbose`` output and calls such a run a ``conflict``,
which the report counts apart from failures.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from pipstorm.clients.drivers.protocol import Command
from pipstorm.clients.drivers.tools import ensure_tool
from pipstorm.clients.errors import DriverError
from pipstorm.clients.process import Outcome
from pipstorm.clients.task import ClientTask
from pipstorm.clients.warm.launcher import WarmSpec
from pipstorm.packages.build import build_release
from pipstorm.packages.spec import CorpusError
from pipstorm.packages.upload import upload_url_for

KIND = "twine"
#: A current twine (``pip index versions twine`` listed 7.0.0 as newest when written).
DEFAULT_VERSION = "7.0.0"
#: Placeholders twine sends; the proxy replaces them with the index's credentials.
PLACEHOLDER_USERNAME = "pipstorm"
PLACEHOLDER_PASSWORD = "replaced-by-the-proxy"  # noqa: S105 - not a secret, see above
_RELEASE_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_CONFLICT_RE = re.compile(r"HTTPError: 409\b|already exists?\b", re.IGNORECASE)


def upload_version(version: str, unique: int | None = None) -> str:
    """``1.1.0`` -> ``1.1.0.post<N>``: a release no other upload has (``unique``: N, for tests).

    Only the release segment of ``version`` is kept, so pre-, post- and dev-parts of a corpus
    version cannot make an invalid version.
    """
    match = _RELEASE_RE.match(version)
    release = match.group(0) if match else "0"
    number = unique if unique is not None else secrets.randbelow(10**12)
    return f"{release}.post{number}"


def twine_env(work: Path) -> dict[str, str]:
    """twine's variables for a run (none depends on ``work``)."""
    del work
    return {
        "TWINE_USERNAME": PLACEHOLDER_USERNAME,
        "TWINE_PASSWORD": PLACEHOLDER_PASSWORD,
        # twine asks a keyring for passwords it lacks; a desktop one could hang on D-Bus.
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        # rich wraps and colours its output; plain long lines keep the error readable.
        "NO_COLOR": "1",
        "TERM": "dumb",
        "COLUMNS": "240",
    }


def upload_args(task: ClientTask, wheel: Path) -> tuple[str, ...]:
    """twine's arguments for one run (after ``python -m twine``)."""
    return (
        *("upload", "--non-interactive", "--disable-progress-bar", "--verbose"),
        *("--repository-url", upload_url_for(task.index_url), str(wheel)),
    )


def _built(task: ClientTask, work: Path) -> Path:
    """A new release of the task's project, built into ``work/dist``."""
    try:
        return build_release(task.project, upload_version(task.version), work / "dist")
    except CorpusError as exc:
        raise DriverError(str(exc)) from exc


class TwineDriver:
    """``twine upload`` from a cached tool venv, one fresh wheel per run."""

    kind = KIND
    pins_per_run = 1
    default_version: str | None = DEFAULT_VERSION

    def warm_up(self, version: str | None) -> None:
        ensure_tool("twine", version or DEFAULT_VERSION)

    def prepare(self, task: ClientTask, work: Path) -> Command:
        version = task.client_version or DEFAULT_VERSION
        tool = ensure_tool("twine", version)
        args = upload_args(task, _built(task, work))
        return Command(argv=tool.argv(*args), env=twine_env(work), client_version=version)

    def warm(self, task: ClientTask, work: Path) -> WarmSpec:
        """The same ``twine upload`` run from a warm launcher of the tool venv's twine."""
        version = task.client_version or DEFAULT_VERSION
        tool = ensure_tool("twine", version)
        args = upload_args(task, _built(task, work))
        return WarmSpec(tool.module, tool.python, args, twine_env, version)

    def check(self, task: ClientTask, work: Path, outcome: Outcome) -> str | None:
        # twine exits 0 only once the index answered the upload with a success status.
        del task, work, outcome
        return None

    def conflict(self, task: ClientTask, work: Path, outcome: Outcome) -> str | None:
        del task
        text = " ".join(f"{outcome.stdout_tail}\n{outcome.stderr_tail}".split())
        if _CONFLICT_RE.search(text) is None:
            return None
        names = ", ".join(p.name for p in sorted((work / "dist").glob("*.whl"))) or "the file"
        return f"the index already has {names} (upload refused)"


DRIVER = TwineDriver()
