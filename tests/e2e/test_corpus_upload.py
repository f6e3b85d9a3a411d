"""``pipstorm corpus upload`` and the corpus check of ``pipstorm run --index-url``, through the
real CLI: an index without the corpus is named with its remedy, an URL that is not a simple index
is one line, and after an upload the same run goes ahead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import pipstorm
from tests.e2e.test_bad_input import one_error_line
from tests.support.pages import Pages, serving

pytestmark = pytest.mark.e2e

PAGES: Pages = {
    "/nolinks/test-package-000/": (200, "text/html", b"<html><body>Our web UI</body></html>"),
    "/login/test-package-000/": (
        200,
        "text/html",
        b'<form action="/login"><input type="password" name="pw"></form>',
    ),
}


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serving(PAGES) as url:
        yield url


def _run(env: dict[str, str], index_url: str, tmp_path: Path) -> tuple[int, str]:
    proc = pipstorm(
        [
            *("run", "--profile", "light_load", "--duration", "3", "--quiet"),
            *("--index-url", index_url, "--results", str(tmp_path / "results")),
        ],
        env,
        tmpdir=tmp_path / "tmp",
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing/", "has no project test-package-000"),
        ("/nolinks/", "links no files: not a simple index"),
        ("/login/", "login page, not a simple index"),
    ],
)
def test_an_url_that_is_no_simple_index_is_one_line(
    e2e_env: dict[str, str], pages: str, tmp_path: Path, path: str, message: str
) -> None:
    code, stderr = _run(e2e_env, pages + path, tmp_path)
    assert code == 2
    assert message in one_error_line(stderr)
    results = tmp_path / "results"
    assert not results.exists() or not any(results.iterdir())  # no run folder: nothing ran


def test_upload_then_run(e2e_env: dict[str, str], tmp_path: Path) -> None:
    corpus = cached_corpus(CorpusSpec(), Path(e2e_env["PIPSTORM_CACHE_DIR"]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with LocalPypiserver(empty) as server:
        env = {
            **e2e_env,
            "PYPI_USERNAME": server.credentials.username,
            "PYPI_PASSWORD": server.credentials.password,
        }
        code, stderr = _run(env, server.index_url, tmp_path / "before")
        assert code == 2
        line = one_error_line(stderr)
        assert "has no project test-package-000" in line
        assert f"pipstorm corpus upload --index-url {server.index_url}" in line

        total = len(corpus.wheels)
        upload = ["corpus", "upload", "--index-url", server.index_url]
        first = pipstorm(upload, env, tmpdir=tmp_path / "t1")
        assert first.returncode == 0, first.stderr
        assert f"{total} uploaded, 0 already there" in first.stdout
        assert f"{total}/{total} files settled" in first.stderr
        again = pipstorm([*upload, "--quiet"], env, tmpdir=tmp_path / "t2")
        assert again.returncode == 0, again.stderr
        assert f"0 uploaded, {total} already there (skipped), 0 failed" in again.stdout
        assert again.stderr == ""
        assert server.credentials.password not in first.stdout + first.stderr

        code, stderr = _run(env, server.index_url, tmp_path / "after")
        assert code in (0, 1, 3), stderr  # a verdict (3: generator-bound), not a setup error


def test_upload_without_credentials_is_one_line(e2e_env: dict[str, str], tmp_path: Path) -> None:
    with LocalPypiserver(tmp_path) as server:
        proc = pipstorm(
            ["corpus", "upload", "--index-url", server.index_url], e2e_env, tmpdir=tmp_path / "t"
        )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "refused access (HTTP 401): set PYPI_USERNAME/PYPI_PASSWORD" in line
