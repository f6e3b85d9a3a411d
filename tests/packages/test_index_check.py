"""``check_corpus`` against URLs that are not a simple index holding the corpus: one line each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipstorm.packages.index_check import IndexCheckError, check_corpus
from tests.support.pages import Pages, serving

NAMES = {"pkg-1.0-py3-none-any.whl", "pkg-2.0-py3-none-any.whl"}
PAGES: Pages = {
    "/ok/pkg/": (
        200,
        "text/html",
        b'<a href="/f/pkg-1.0-py3-none-any.whl">1</a><a href="/f/pkg-2.0-py3-none-any.whl">2</a>',
    ),
    "/json/pkg/": (
        200,
        "application/vnd.pypi.simple.v1+json",
        b'{"files": [{"filename": "pkg-1.0-py3-none-any.whl", "url": "a"},'
        b' {"filename": "pkg-2.0-py3-none-any.whl", "url": "b"}]}',
    ),
    "/nolinks/pkg/": (200, "text/html", b"<html><body>Welcome to our web UI</body></html>"),
    "/login/pkg/": (
        200,
        "text/html; charset=utf-8",
        b'<form><input name="u"><input type="password" name="p"><a href="/help">?</a></form>',
    ),
    "/api/pkg/": (200, "application/json", b'{"status": "ok"}'),
    "/broken/pkg/": (500, "text/plain", b"oops"),
}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serving(PAGES) as url:
        yield url


@pytest.mark.parametrize("index", ["/ok/", "/json"])
def test_an_index_with_the_files_passes(base: str, index: str) -> None:
    check_corpus(base + index, "Pkg", NAMES, credentials=None)


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ("/missing/", "no project Pkg .*is 404.*pipstorm corpus upload --index-url"),
        ("/nolinks/", "links no files: not a simple index"),
        ("/login/", "login page"),
        ("/api/", r"not a simple index page \(it answered application/json\)"),
        ("/broken/", "answered 500"),
    ],
)
def test_bad_indexes_are_one_line(base: str, index: str, message: str) -> None:
    with pytest.raises(IndexCheckError, match=message) as excinfo:
        check_corpus(base + index, "Pkg", NAMES, credentials=None)
    assert "\n" not in str(excinfo.value)


def test_missing_files_are_named(base: str) -> None:
    with pytest.raises(IndexCheckError, match=r"lacks 1 of 3 files of Pkg \(pkg-3"):
        check_corpus(base + "/ok/", "Pkg", {*NAMES, "pkg-3.0-py3-none-any.whl"}, credentials=None)


def test_an_unreachable_index_is_one_line() -> None:
    with pytest.raises(IndexCheckError, match="is unreachable") as excinfo:
        check_corpus("http://127.0.0.1:9/simple/", "pkg", NAMES, credentials=None)
    assert "\n" not in str(excinfo.value)
