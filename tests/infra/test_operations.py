"""classify(): the operation of a request, a pure function."""

from __future__ import annotations

import pytest

from pipstorm.infra.operations import OPERATIONS, Linked, classify, classify_served


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


@pytest.mark.parametrize(
    ("method", "path", "status", "content_type", "linked", "expected"),
    [
        # What was served decides, whatever the path looks like.
        ("GET", "/root/dev/+simple/pkg/", 200, "text/html; charset=utf-8", None, "listing"),
        ("GET", "/index/pkg/", 200, "application/vnd.pypi.simple.v1+json", None, "listing"),
        ("GET", "/index/pkg/", 200, "application/vnd.pypi.simple.v1+html", None, "listing"),
        (
            "GET",
            "/root/dev/+f/d6e/403e/pkg-1.0",
            200,
            "application/octet-stream",
            "file",
            "download",
        ),
        ("GET", "/+f/d6e/pkg.whl", 404, "text/html", "file", "download"),
        ("GET", "https://cdn.example/k?...", 200, None, "file", "download"),
        ("GET", "/+f/d6e/pkg.whl.metadata", 200, "text/plain", "metadata", "metadata"),
        ("GET", "/+f/d6e/pkg.whl", 302, "text/html", "file", "redirect"),
        ("POST", "/root/dev/", 200, "text/html", None, "upload"),
        # Nothing served says more: the path's shape.
        ("GET", "/root/dev/+simple/pkg/", None, None, None, "listing"),
        ("GET", "/packages/a.whl", 200, "application/octet-stream", None, "download"),
        ("GET", "/+api", 200, "application/json", None, "other"),
    ],
)
def test_classify_served(  # noqa: PLR0917 - one parameter per column of the table
    method: str,
    path: str,
    status: int | None,
    content_type: str | None,
    linked: Linked | None,
    expected: str,
) -> None:
    served = classify_served(method, path, status, content_type=content_type, linked=linked)
    assert served == expected


def test_devpi_listing_paths_fall_back_to_listing() -> None:
    assert classify("GET", "/root/dev/+simple/pkg/", None) == "listing"
    assert classify("GET", "/root/dev/+simple", None) == "listing"
