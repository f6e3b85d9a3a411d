"""Routing and URL rewriting of the proxy (pure functions)."""

from __future__ import annotations

import pytest

from infra.proxy_rewrite import UpstreamLayout

PROXY = "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("url", "origin", "root_path", "suffix"),
    [
        ("http://127.0.0.1:8080/simple/", "http://127.0.0.1:8080", "/", "simple/"),
        ("http://127.0.0.1:8080/simple", "http://127.0.0.1:8080", "/", "simple/"),
        (
            "https://h.example/api/pypi/repo/simple/",
            "https://h.example",
            "/api/pypi/repo/",
            "simple/",
        ),
        ("https://h.example/root/dev/+simple", "https://h.example", "/root/dev/+simple/", ""),
        ("http://h.example", "http://h.example", "/", ""),
        ("http://h.example/notsimple/", "http://h.example", "/notsimple/", ""),
    ],
)
def test_parse(url: str, origin: str, root_path: str, suffix: str) -> None:
    layout = UpstreamLayout.parse(url)
    assert (layout.origin, layout.root_path, layout.index_suffix) == (origin, root_path, suffix)
    assert layout.root == origin + root_path


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://h/simple/", "http"),
        ("/simple/", "http"),
        ("http://user:pw@h/simple/", "credentials"),
        ("http://h/simple/?x=1", "query"),
        ("http://h:99999/simple/", "port"),
    ],
)
def test_parse_rejects(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as excinfo:
        UpstreamLayout.parse(url)
    assert "\n" not in str(excinfo.value)
    assert "pw" not in str(excinfo.value)


def test_route() -> None:
    layout = UpstreamLayout.parse("https://h/api/pypi/repo/simple/")
    assert layout.route("/r/run-1/simple/pkg/") == ("run-1", "/api/pypi/repo/simple/pkg/")
    assert layout.route("/r/run-1/simple/?a=/b") == ("run-1", "/api/pypi/repo/simple/?a=/b")
    assert layout.route("/r/run-1") == ("run-1", "/api/pypi/repo/")
    assert layout.route("/o/r.2_x/files/a.whl") == ("r.2_x", "/files/a.whl")
    assert layout.route("/simple/") is None
    assert layout.route("/r/") is None
    assert layout.route("/r/bad!id/simple/") is None
    assert layout.route("/r/" + "x" * 65 + "/simple/") is None
    assert layout.route("/x/run/simple/") is None


def test_proxy_path_and_location() -> None:
    layout = UpstreamLayout.parse("https://h/api/pypi/repo/simple/")
    assert layout.proxy_path("r1", "/api/pypi/repo/simple/p/") == "/r/r1/simple/p/"
    assert layout.proxy_path("r1", "/files/a.whl") == "/o/r1/files/a.whl"
    rewrite = layout.rewrite_location
    assert rewrite("https://h/api/pypi/repo/simple/p/", "r1", PROXY) == f"{PROXY}/r/r1/simple/p/"
    assert rewrite("https://h/elsewhere/a.whl", "r1", PROXY) == f"{PROXY}/o/r1/elsewhere/a.whl"
    assert rewrite("https://h", "r1", PROXY) == f"{PROXY}/o/r1/"
    assert rewrite("https://h?x", "r1", PROXY) == f"{PROXY}/o/r1/?x"
    assert rewrite("/api/pypi/repo/simple/p/", "r1", PROXY) == "/r/r1/simple/p/"
    assert rewrite("/other/", "r1", PROXY) == "/o/r1/other/"
    # Left alone: relative, other hosts, protocol-relative, a longer port.
    assert rewrite("../p/", "r1", PROXY) == "../p/"
    assert rewrite("https://cdn.example/a.whl", "r1", PROXY) == "https://cdn.example/a.whl"
    assert rewrite("//cdn.example/a.whl", "r1", PROXY) == "//cdn.example/a.whl"
    assert rewrite("https://h:8443/a", "r1", PROXY) == "https://h:8443/a"


def test_rewrite_html_body() -> None:
    layout = UpstreamLayout.parse("http://127.0.0.1:8080/simple/")
    body = (
        b'<a href="/packages/a-1.0-py3-none-any.whl#sha256=ab">a</a>\n'
        b"<a href='http://127.0.0.1:8080/packages/b.whl'>b</a>\n"
        b'<a href="HTTP://127.0.0.1:8080/simple/c/">c</a>\n'
        b'<a href="../../packages/d.whl">d</a>\n'
        b'<a href="//cdn.example/e.whl">e</a>\n'
        b'<a href="http://127.0.0.1:80801/f.whl">f</a>\n'
        b'<a href="https://cdn.example/g.whl">g</a>\n'
        b"see http://127.0.0.1:8080 for more\n"
    )
    assert layout.rewrite_body(body, "r1", PROXY) == (
        b'<a href="/r/r1/packages/a-1.0-py3-none-any.whl#sha256=ab">a</a>\n'
        b"<a href='http://127.0.0.1:9000/r/r1/packages/b.whl'>b</a>\n"
        b'<a href="http://127.0.0.1:9000/r/r1/simple/c/">c</a>\n'
        b'<a href="../../packages/d.whl">d</a>\n'
        b'<a href="//cdn.example/e.whl">e</a>\n'
        b'<a href="http://127.0.0.1:80801/f.whl">f</a>\n'
        b'<a href="https://cdn.example/g.whl">g</a>\n'
        b"see http://127.0.0.1:9000/r/r1/ for more\n"
    )


def test_rewrite_pep691_json_body() -> None:
    layout = UpstreamLayout.parse("https://h/repo/simple/")
    body = (
        b'{"files": [{"filename": "a.whl", "url": "https://h/repo/packages/a.whl"},'
        b' {"filename": "b.whl", "url": "/files/b.whl"},'
        b' {"filename": "c.whl", "url": "c.whl"}], "name": "/not-a-url"}'
    )
    assert layout.rewrite_body(body, "r1", PROXY) == (
        b'{"files": [{"filename": "a.whl", "url": "http://127.0.0.1:9000/r/r1/packages/a.whl"},'
        b' {"filename": "b.whl", "url": "/o/r1/files/b.whl"},'
        b' {"filename": "c.whl", "url": "c.whl"}], "name": "/not-a-url"}'
    )


def test_rewrite_keeps_non_utf8_bytes() -> None:
    layout = UpstreamLayout.parse("http://h/simple/")
    body = b'<a href="/packages/\xff\xfe.whl">x</a>'
    assert layout.rewrite_body(body, "r1", PROXY) == b'<a href="/r/r1/packages/\xff\xfe.whl">x</a>'
