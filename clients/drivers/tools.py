"""Cached client tools: one venv per pinned tool version, and pinned pip wheels for seeding.

Why cached and not per run: installing poetry takes ~13 s and ~5 CPU-s here, far more than
the run it would serve, and is the generator's cost, not the index's load. So a tool
(``poetry``, ``uv``, ``twine``) is installed once per version under
``<pipstorm cache>/tools/<name>-<version>/`` and every run executes ``python -m <module>`` from
it, each with its own fresh caches and config, so nothing is shared between runs but the code.

Why this machine's pip configuration and not the target: the tool is part of the generator,
not of the load; it comes from wherever pip normally installs from (a mirror, find-links),
never from the index under test. Its install therefore runs with the unscrubbed environment.

Atomic: a tool venv is built in a temp sibling and renamed into place. pip writes the temp
folder's path into console-script shebangs and activate scripts, so before the rename they are
pointed at the final folder (pipstorm runs ``python -m``, but a user or a tool that runs
``<tools>/poetry-2.5.1/bin/poetry`` must work too); a venv cached by an older pipstorm is repaired
on its next use. Concurrent builders race on the rename; the loser removes its copy and uses the
winner's.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipstorm.clients.drivers.venv import create_venv
from pipstorm.clients.errors import ToolError
from pipstorm.clients.process import ProcessRegistry, run_process
from pipstorm.packages.cache import default_cache_root

#: Seconds a tool install may take (pip resolving poetry from a slow mirror).
INSTALL_TIMEOUT_S = 600.0
#: Marks a tool venv whose bin/ scripts name its final folder (see ``_relocate``).
RELOCATED = ".relocated"
_VERSION_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?")


@dataclass(frozen=True)
class Tool:
    """An installed tool: the interpreter of its venv and the module to run with ``-m``."""

    name: str
    version: str
    python: Path
    module: str

    def argv(self, *args: str) -> list[str]:
        """``python -m <module> args...`` from the tool's venv."""
        return [str(self.python), "-m", self.module, *args]


def tools_root() -> Path:
    """Where tool venvs and pinned pip wheels are cached."""
    return default_cache_root() / "tools"


def check_version(name: str, version: str) -> str:
    """``version`` if it is a plain release number, else a one-line ToolError."""
    if not _VERSION_RE.fullmatch(version):
        raise ToolError(f"{name} version must be a release number such as 2.1.3, got {version!r}")
    return version


def ensure_tool(name: str, version: str, *, module: str | None = None) -> Tool:
    """The venv of ``name==version``, installed first if it is not cached yet."""
    check_version(name, version)
    root = tools_root()
    final = root / f"{name}-{version}"
    python = final / "bin" / "python"
    tool = Tool(name=name, version=version, python=python, module=module or name)
    if (final / ".complete").is_file():
        if not (final / RELOCATED).is_file():
            _relocate(final, root, final)
        return tool
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".building", dir=root))
    try:
        venv = create_venv(staging / "v", symlink_app_data=False)
        _pip(
            [str(venv.python), "-m", "pip", "install", "--no-input", f"{name}=={version}"],
            staging,
            f"cannot install {name}=={version}",
        )
        _relocate(venv.path, root, final)
        (venv.path / ".complete").write_text(f"{name}=={version}\n", encoding="utf-8")
        _publish(venv.path, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tool


def pip_wheel_dir(version: str) -> Path:
    """A folder holding exactly the wheel of ``pip==version``, downloaded once, for seeding a
    run's venv with that pip (virtualenv ``--extra-search-dir``) without touching any index."""
    check_version("pip", version)
    root = tools_root()
    final = root / f"pip-wheel-{version}"
    if any(final.glob(f"pip-{version}-*.whl")):
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".building", dir=root))
    try:
        _pip(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"),
                *("--no-input", "-d", str(staging), f"pip=={version}"),
            ],
            staging,
            f"cannot download pip=={version}",
        )
        if not any(staging.glob(f"pip-{version}-*.whl")):
            raise ToolError(f"cannot download pip=={version}: no wheel came out")
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def embedded_pip_version() -> str:
    """The pip virtualenv seeds into a new venv when no version is pinned."""
    from virtualenv.seed.wheels.embed import get_embed_wheel

    wheel = get_embed_wheel("pip", f"{sys.version_info.major}.{sys.version_info.minor}")
    if wheel is None:
        raise ToolError("virtualenv embeds no pip for this Python")
    return str(wheel.version)


def ensure_pip_venv(version: str | None) -> Tool:
    """A venv holding only ``pip==version`` (None: the pip virtualenv embeds), cached.

    What a warm launcher runs pip from: the same pip, Python and (absent) setuptools as a run's
    throwaway venv, so pip's user agent and behaviour are the same; made once, not per run.
    """
    pinned = version is not None
    version = check_version("pip", version) if version is not None else embedded_pip_version()
    root = tools_root()
    final = root / f"pip-venv-{version}"
    tool = Tool(name="pip", version=version, python=final / "bin" / "python", module="pip")
    if (final / ".complete").is_file():
        return tool
    wheels = pip_wheel_dir(version) if pinned else None
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".building", dir=root))
    try:
        venv = create_venv(
            staging / "v",
            pip_version=version if pinned else None,
            pip_wheel_dir=wheels,
            symlink_app_data=False,
        )
        (venv.path / ".complete").write_text(f"pip=={version}\n", encoding="utf-8")
        _publish(venv.path, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tool


def _pip(argv: list[str], cwd: Path, what: str) -> None:
    # The machine's own pip configuration on purpose (see the module docstring); only an
    # enclosing venv is dropped so pip installs where it is told.
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    outcome = run_process(
        argv, env=env, cwd=cwd, timeout_s=INSTALL_TIMEOUT_S, registry=ProcessRegistry()
    )
    if outcome.exit_code != 0:
        lines = [ln for ln in outcome.stderr_tail.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {outcome.exit_code}"
        raise ToolError(f"{what}: {last.strip()}")


def _relocate(venv: Path, root: Path, final: Path) -> None:
    """Point the scripts in ``venv/bin`` (shebangs, activate) at ``final`` instead of the build
    folder (``<root>/.<name>-<version>.<random>.building/v``) they were written in. Idempotent,
    and each file is replaced atomically, so concurrent users of a cached venv never see half."""
    built_in = re.compile(re.escape(os.fsencode(root)) + rb"/\.[^/\s]+?\.building/v(?=[/\s\"']|$)")
    for path in (venv / "bin").iterdir():
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        fixed = built_in.sub(os.fsencode(final), data)
        if fixed == data:
            continue
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(fixed)
        shutil.copymode(path, temp)
        Path(temp).replace(path)
    (venv / RELOCATED).touch()


def _publish(staging: Path, final: Path) -> None:
    try:
        staging.rename(final)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and final.is_dir():
            return  # another process published it first: use theirs
        raise ToolError(f"cannot publish {final}: {error}") from error
