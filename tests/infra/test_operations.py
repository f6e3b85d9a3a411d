"""classify(): the operation of a request, a pure function."""

from __future__ import annotations

import pytest

from infra.operations import OPERATIONS, classify


@pytest.mark.parametrize(
    ("method", "path", "status", "expected"),
    [
        ("GET", "/simple/", 200, "listing"),
        ("GET", "/simple", 200, "listing"),
        ("GET", "/simple/test-package-000/", 200, "listing"),
        ("GET", "/api/pypi/repo/simple/pkg/?format=json", 200, "listing"),
        ("GET", "/simple/Test_Package_000", 301, "redirect"),
        ("GET", "/packages/x-1.0-py3-none-any.whl", 302, "redirect"),
        ("GET", "/packages/x-1.0-py3-none-any.whl", 200, "download"),
        ("GET", "/packages/X-1.0-PY3-NONE-ANY.WHL", 200, "download"),
        ("GET", "/packages/x-1.0.tar.gz", 200, "download"),
        ("GET", "/packages/x-1.0.zip", 404, "download"),
        ("GET", "/packages/x-1.0.tar.bz2", None, "download"),
        ("GET", "/packages/x-1.0-py2.7.egg", 200, "download"),
        ("GET", "/packages/x-1.0-py3-none-any.whl?x=1", 200, "download"),
        ("GET", "/packages/x-1.0-py3-none-any.whl.metadata", 200, "metadata"),
        ("HEAD", "/packages/x-1.0-py3-none-any.whl", 200, "download"),
        ("POST", "/", 200, "upload"),
        ("PUT", "/packages/x-1.0-py3-none-any.whl", 201, "upload"),
        ("POST", "/", 303, "redirect"),
        ("GET", "/", 200, "other"),
        ("GET", "/health", 200, "other"),
        ("GET", "/pypi/pkg/json", 200, "other"),
        ("GET", "/simplex/", 200, "other"),
        ("GET", "/simple/", None, "listing"),
    ],
)
def test_classify(method: str, path: str, status: int | None, expected: str) -> None:
    assert classify(method, path, status) == expected
    assert expected in OPERATIONS
