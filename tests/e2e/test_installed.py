"""pipstorm installed from its wheel into a clean venv, as a new user gets it (issue 19).

The wheel must hold exactly one top-level import package, ``pipstorm``: ``import engine`` (and
``clients``, ``infra``, ``packages``) fails; the console script, ``python -m pipstorm``, the
pytest11 plugin beside a user project that has its own ``engine`` package, and a real run (the
proxy and the warm agent are processes that import pipstorm by name) all work.

The venv gets pipstorm's dependencies from this test venv through a ``.pth`` line after its own
site-packages (installing them again would take minutes and prove nothing about pipstorm); the
wheel's own ``pipstorm`` comes first on the path, so the editable install behind it is never used.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LATENCY_OFF, leftovers

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("engine", "clients", "infra", "packages")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return next(out.glob("pipstorm-*.whl"))


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "virtualenv", "--quiet", str(root)], check=True)
    python = root / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = next((root / "lib").glob("python3*/site-packages"))
    (site / "zz-pipstorm-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield root


def run_in(venv: Path, *argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHON"))}
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        cwd=cwd,
        env={**clean, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert tops == {"pipstorm", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}


def test_only_pipstorm_imports(venv: Path, tmp_path: Path) -> None:
    for name in FOLDERS:
        gone = run_in(venv, "python", "-c", f"import {name}", cwd=tmp_path)
        assert gone.returncode == 1 and "ModuleNotFoundError" in gone.stderr, name
    found = run_in(
        venv, "python", "-c", "import pipstorm.engine.cli as m; print(m.__file__)", cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(str(venv)), found.stdout  # the wheel's, not the checkout's


def test_the_commands_work(venv: Path, tmp_path: Path) -> None:
    script = run_in(venv, "pipstorm", "--help", cwd=tmp_path)
    module = run_in(venv, "python", "-m", "pipstorm", "profiles", cwd=tmp_path)
    assert script.returncode == 0 and "sizing-lab" in script.stdout, script.stderr
    assert module.returncode == 0 and "production_incident" in module.stdout, module.stderr


def test_the_plugin_loads_beside_a_project_with_its_own_engine(venv: Path, tmp_path: Path) -> None:
    """The clash of issue 19: a user's ``engine`` package and pipstorm's plugin, one pytest."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text("NAME = 'the user project'\n")
    (tmp_path / "test_mine.py").write_text(
        "import engine\n\n"
        "def test_mine(request):\n"
        "    assert engine.NAME == 'the user project'\n"
        "    assert request.config.pluginmanager.has_plugin('pipstorm')\n"
    )
    result = run_in(venv, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_a_real_run_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    """The proxy (``python -m pipstorm.infra.proxy``), the embedded target and the warm agent
    (a script in pip's interpreter, importing its siblings without pipstorm) all start."""
    results, tmpdir = tmp_path / "results", tmp_path / "tmp"
    tmpdir.mkdir()
    argv = ("pipstorm", "run", "--profile", "light_load", "--duration", "8", "--client", "pip")
    result = run_in(
        venv,
        *argv,
        *LATENCY_OFF,
        "--results",
        str(results),
        cwd=tmp_path,
        TMPDIR=str(tmpdir),
        PIPSTORM_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = next(results.iterdir())
    assert (run_dir / "requests.jsonl").read_text().count("\n") > 0
    assert '"outcome":"ok"' in (run_dir / "clients.jsonl").read_text()
    assert leftovers(tmpdir) == []
