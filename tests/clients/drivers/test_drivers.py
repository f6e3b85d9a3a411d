"""The client drivers without a network: registry, project files, lock checks, versions."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from pipstorm.clients.drivers.pip import pip_download_argv
from pipstorm.clients.drivers.poetry import project_toml as poetry_toml
from pipstorm.clients.drivers.project import check_lock
from pipstorm.clients.drivers.registry import KINDS, driver_for
from pipstorm.clients.drivers.tools import check_version
from pipstorm.clients.drivers.uv import project_toml as uv_toml
from pipstorm.clients.errors import ToolError, UnknownClientError
from pipstorm.clients.task import ClientTask

TASK = ClientTask(
    run_id="r00007",
    client="poetry",
    project="test-package-001",
    version="1.1.0",
    index_url="http://127.0.0.1:5000/r/r00007/simple/",
    requirements=(("test-package-002", "2.0.0"), ("Test_Package.003", "1.0.0")),
)


def test_registry_names_every_kind_the_runner_accepts() -> None:
    assert set(KINDS) >= {"pip", "poetry", "uv", "twine", "http"}
    with pytest.raises(UnknownClientError, match="unknown client kind 'npm'"):
        driver_for("npm")
    assert driver_for("pip").pins_per_run == 1
    assert driver_for("poetry").pins_per_run > 1


def test_pip_argv_keeps_no_deps_unless_the_corpus_has_dependencies(tmp_path: Path) -> None:
    single = ClientTask("r1", "pip", "a", "1.0.0", "http://127.0.0.1:1/r/r1/simple/")
    argv = pip_download_argv(tmp_path / "python", single, tmp_path)
    assert "--no-deps" in argv and argv[-1] == "a==1.0.0"
    assert "--no-deps" not in pip_download_argv(
        tmp_path / "python", single, tmp_path, no_deps=False
    )


@pytest.mark.parametrize("render", [poetry_toml, uv_toml])
def test_project_files_pin_every_release_with_the_run_url_as_only_source(
    render: Callable[[ClientTask], str],
) -> None:
    data = tomllib.loads(render(TASK))
    deps = " ".join(data["project"]["dependencies"])
    for project, version in TASK.pins:
        assert project in deps and version in deps
    text = render(TASK)
    assert text.count("url = ") == 1 and TASK.index_url in text


def test_check_lock_accepts_a_lock_naming_the_pins_and_rejects_others(tmp_path: Path) -> None:
    lock = tmp_path / "poetry.lock"
    assert "wrote no poetry.lock" in (check_lock(TASK, lock, "poetry") or "")
    rows = [("test-package-001", "1.1.0"), ("test-package-002", "2.0.0")]
    rows.append(("test-package-003", "1.0.0"))
    lock.write_text(
        "".join(f'[[package]]\nname = "{n}"\nversion = "{v}"\n\n' for n, v in rows),
        encoding="utf-8",
    )
    assert check_lock(TASK, lock, "poetry") is None
    lock.write_text('[[package]]\nname = "test-package-001"\nversion = "2.0.0"\n', "utf-8")
    problem = check_lock(TASK, lock, "poetry") or ""
    assert "test-package-001==1.1.0 (locked: 2.0.0)" in problem
    assert "test-package-002==2.0.0 (locked: absent)" in problem
    lock.write_text("[[package]\n", encoding="utf-8")
    assert "not valid TOML" in (check_lock(TASK, lock, "poetry") or "")


@pytest.mark.parametrize("bad", ["latest", "2.1.3; rm -rf /", "", "2..1"])
def test_tool_versions_must_be_release_numbers(bad: str) -> None:
    with pytest.raises(ToolError, match="must be a release number"):
        check_version("poetry", bad)
    assert check_version("pip", "25.3") == "25.3"
