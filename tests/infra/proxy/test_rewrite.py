"""Routing and URL rewriting of the proxy (pure functions)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from typing import Any
from urllib.parse import urljoin

import pytest

from pipstorm.infra.proxy.links import LinkBook
from pipstorm.infra.proxy.rewrite import Links, Origin, UpstreamLayout, parse_origins

PROXY = "http://127.0.0.1:9000"
CDN = Origin("https", "cdn.example", 443)


@pytest.mark.parametrize(
    ("url", "origin", "index_path"),
    [
        ("http://127.0.0.1:8080/simple/", "http://127.0.0.1:8080", "/simple/"),
        ("http://127.0.0.1:8080/simple", "http://127.0.0.1:8080", "/simple/"),
        ("https://h.example/api/pypi/repo/simple/", "https://h.example", "/api/pypi/repo/simple/"),
        ("https://H.example:443/root/dev/+simple", "https://h.example", "/root/dev/+simple/"),
        ("http://h.example", "http://h.example", "/"),
        ("http://[::1]:81/index/", "http://[::1]:81", "/index/"),
    ],
)
def test_parse(url: str, origin: str, index_path: str) -> None:
    layout = UpstreamLayout.parse(url)
    assert (layout.origin.url, layout.index_path) == (origin, index_path)
    assert layout.index_url == origin + index_path


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


def test_origin_keys_round_trip_and_normalise() -> None:
    for url in ("https://cdn.example", "http://127.0.0.1:8080", "http://[::1]:81", "HTTP://A-b.c"):
        origin = Origin.from_url(url)
        assert origin is not None
        assert Origin.from_key(origin.key) == origin
        assert Origin.from_url(origin.url) == origin
    assert Origin.from_url("https://cdn.example:443/x") == CDN
    assert CDN.key == "https-443-cdn.example"
    for bad in ("ftp-21-h", "https-0-h", "https-99999-h", "https-443-", "x", "https-443-a/b"):
        assert Origin.from_key(bad) is None
    assert Origin.from_url("https://u:p@cdn.example/") is None  # never carries credentials
    assert parse_origins(["https://cdn.example/"]) == (CDN,)
    with pytest.raises(ValueError, match="allow-origin"):
        parse_origins(["https://cdn.example/path"])


@pytest.mark.parametrize(
    "index_url",
    [
        "http://h/simple/",
        "http://h/root/dev/+simple/",
        "http://h/index/",
        "http://h/api/pypi/repo/simple/",
        "http://h/repository/repo/simple/",
        "http://h/api/v4/projects/42/packages/pypi/simple/",
    ],
)
def test_no_relative_link_leaves_the_run_prefix(index_url: str) -> None:
    """The client's index URL mirrors the upstream's path, so whatever a relative link climbs
    to upstream, the same climb through the proxy lands on the same upstream path."""
    layout = UpstreamLayout.parse(index_url)
    client_index = f"{PROXY}/r/run1{layout.index_path}"
    project = "pkg/"
    for link in ("../../+f/d6e/403e7cc673f0d/pkg-1.0.whl", "../../packages/a.whl", "a.whl", "/x"):
        upstream = urljoin(urljoin(index_url, project), link)
        client = urljoin(urljoin(client_index, project), link)
        if link.startswith("/"):
            continue  # origin-relative links are rewritten in bodies (see below)
        route = layout.route(client[len(PROXY) :])
        assert route is not None and route.run_id == "run1"
        assert route.upstream_url == upstream


def test_route() -> None:
    layout = UpstreamLayout.parse("https://h/api/pypi/repo/simple/")
    route = layout.route("/r/run-1/api/pypi/repo/simple/pkg/?a=/b")
    assert route is not None
    assert (route.run_id, route.path, route.index_origin) == (
        "run-1",
        "/api/pypi/repo/simple/pkg/?a=/b",
        True,
    )
    assert route.upstream_url == "https://h/api/pypi/repo/simple/pkg/?a=/b"
    assert route.recorded_path() == "/api/pypi/repo/simple/pkg/?a=/b"
    route = layout.route("/r/run-1")
    assert route is not None and route.path == "/"
    other = layout.route("/o/r.2_x/https-443-cdn.example/files/a.whl?X-Sig=secret")
    assert other is not None
    assert (other.run_id, other.origin, other.index_origin) == ("r.2_x", CDN, False)
    assert other.upstream_url == "https://cdn.example/files/a.whl?X-Sig=secret"
    assert other.recorded_path() == "https://cdn.example/files/a.whl?..."  # no signature
    same = layout.route("/o/r/https-443-h/x")
    assert same is not None and same.index_origin
    broken = layout.route("/o/r/nonsense/x")
    assert broken is not None and broken.origin is None and broken.run_id == "r"
    for unattributed in ("/simple/", "/r/", "/r/bad!id/simple/", "/x/run/simple/"):
        assert layout.route(unattributed) is None
    assert layout.route("/r/" + "x" * 65 + "/simple/") is None


def test_location() -> None:
    layout = UpstreamLayout.parse("https://h/api/pypi/repo/simple/")
    base = "https://h/api/pypi/repo/simple/P/"

    def rewrite(location: str) -> str:
        return layout.rewrite_location(location, base, "r1", PROXY)[0]

    assert rewrite("https://h/api/pypi/repo/simple/p/") == f"{PROXY}/r/r1/api/pypi/repo/simple/p/"
    assert rewrite("/api/pypi/repo/simple/p/") == f"{PROXY}/r/r1/api/pypi/repo/simple/p/"
    assert rewrite("../p/") == f"{PROXY}/r/r1/api/pypi/repo/simple/p/"
    assert rewrite("https://h") == f"{PROXY}/r/r1/"
    assert rewrite("https://h?x") == f"{PROXY}/r/r1/?x"
    assert rewrite("https://h:8443/a") == f"{PROXY}/o/r1/https-8443-h/a"
    assert rewrite("//cdn.example/a.whl?sig=1") == f"{PROXY}/o/r1/https-443-cdn.example/a.whl?sig=1"
    new, target, origin = layout.rewrite_location("https://cdn.example/a.whl#x", base, "r1", PROXY)
    assert (new, target, origin) == (
        f"{PROXY}/o/r1/https-443-cdn.example/a.whl#x",
        "https://cdn.example/a.whl",
        CDN,
    )
    # Left alone: other schemes, user information.
    assert rewrite("ftp://cdn.example/a.whl") == "ftp://cdn.example/a.whl"
    assert rewrite("https://u:p@cdn.example/a") == "https://u:p@cdn.example/a"


def test_rewrite_html_listing() -> None:
    layout = UpstreamLayout.parse("http://127.0.0.1:8080/simple/")
    base = "http://127.0.0.1:8080/simple/pkg/"
    body = (
        b'<a href="/packages/a-1.0-py3-none-any.whl#sha256=ab" data-core-metadata="sha256=cd"'
        b' data-dist-info-metadata="sha256=cd">a</a>\n'
        b"<a href='http://127.0.0.1:8080/packages/b.whl'>b</a>\n"
        b'<A HREF="HTTP://127.0.0.1:8080/simple/c/">c</A>\n'
        b'<a href="../../packages/d.whl?x=1&amp;y=2">d</a>\n'
        b'<a href="//cdn.example/e.whl">e</a>\n'
        b'<a href="http://127.0.0.1:80801/f.whl">f</a>\n'
        b'<a href="http://127.0.0.1:808/f2.whl">f2</a>\n'
        b"<a href=https://cdn.example/g.whl>g</a>\n"
        b'<a href="https://u:p@cdn.example/h.whl">h</a>\n'
        b"see http://127.0.0.1:8080 for more\n"
    )
    rewritten, links = layout.rewrite_listing(body, "text/html", base, "r1", PROXY)
    assert rewritten == (
        b'<a href="/r/r1/packages/a-1.0-py3-none-any.whl#sha256=ab" data-core-metadata="sha256=cd"'
        b' data-dist-info-metadata="sha256=cd">a</a>\n'
        b"<a href='http://127.0.0.1:9000/r/r1/packages/b.whl'>b</a>\n"
        b'<A HREF="http://127.0.0.1:9000/r/r1/simple/c/">c</A>\n'
        b'<a href="../../packages/d.whl?x=1&amp;y=2">d</a>\n'
        b'<a href="http://127.0.0.1:9000/o/r1/http-80-cdn.example/e.whl">e</a>\n'
        b'<a href="http://127.0.0.1:80801/f.whl">f</a>\n'
        b'<a href="http://127.0.0.1:9000/o/r1/http-808-127.0.0.1/f2.whl">f2</a>\n'
        b"<a href=http://127.0.0.1:9000/o/r1/https-443-cdn.example/g.whl>g</a>\n"
        b'<a href="https://u:p@cdn.example/h.whl">h</a>\n'
        b"see http://127.0.0.1:8080 for more\n"
    )
    assert links.files() == (
        "http://127.0.0.1:8080/packages/a-1.0-py3-none-any.whl",
        "http://127.0.0.1:8080/packages/b.whl",
        "http://127.0.0.1:8080/packages/d.whl?x=1&y=2",
        "http://cdn.example/e.whl",
        "http://127.0.0.1:80801/f.whl",
        "http://127.0.0.1:808/f2.whl",
        "https://cdn.example/g.whl",
        "https://u:p@cdn.example/h.whl",
    )
    assert links.origins == {
        Origin("http", "cdn.example", 80),
        Origin("http", "127.0.0.1", 808),
        CDN,
    }


def test_root_page_links_projects_not_files() -> None:
    layout = UpstreamLayout.parse("http://h/root/dev/+simple/")
    body = b'<a href="pkg/">pkg</a><a href="/root/dev/+simple/other">other</a>'
    rewritten, links = layout.rewrite_listing(
        body, "text/html", "http://h/root/dev/+simple/", "r1", PROXY
    )
    assert rewritten == b'<a href="pkg/">pkg</a><a href="/r/r1/root/dev/+simple/other">other</a>'
    assert links.files() == ()


def test_rewrite_pep691_json_listing() -> None:
    layout = UpstreamLayout.parse("https://h/repo/simple/")
    page: dict[str, Any] = {
        "meta": {"api-version": "1.1"},
        "name": "/not-a-url",
        "files": [
            {"filename": "a.whl", "url": "https://h/repo/packages/a.whl", "core-metadata": True},
            {"filename": "b.whl", "url": "/files/b.whl", "hashes": {"sha256": "ab"}},
            {"filename": "c.whl", "url": "c.whl", "data-dist-info-metadata": {"sha256": "cd"}},
            {"filename": "d.whl", "url": "https://cdn.example/d.whl#sha256=ef"},
        ],
    }
    base = "https://h/repo/simple/pkg/"
    rewritten, links = layout.rewrite_listing(
        json.dumps(page).encode(), "application/vnd.pypi.simple.v1+json", base, "r1", PROXY
    )
    out = json.loads(rewritten)
    assert [f["url"] for f in out["files"]] == [
        f"{PROXY}/r/r1/repo/packages/a.whl",
        "/r/r1/files/b.whl",
        "c.whl",
        f"{PROXY}/o/r1/https-443-cdn.example/d.whl#sha256=ef",
    ]
    # Everything else, PEP 658/714 keys included, is kept as it was.
    for key in ("meta", "name"):
        assert out[key] == page[key]
    for before, after in zip(page["files"], out["files"], strict=True):
        assert {k: v for k, v in before.items() if k != "url"} == {
            k: v for k, v in after.items() if k != "url"
        }
    assert links.files() == (
        "https://h/repo/packages/a.whl",
        "https://h/files/b.whl",
        "https://h/repo/simple/pkg/c.whl",
        "https://cdn.example/d.whl",
    )
    assert links.origins == {CDN}
    garbage, nothing = layout.rewrite_listing(b"{not json", "application/json", base, "r1", PROXY)
    assert (garbage, nothing.files()) == (b"{not json", ())


def test_rewrite_keeps_non_utf8_bytes() -> None:
    layout = UpstreamLayout.parse("http://h/simple/")
    body = b'<a href="/packages/\xff\xfe.whl">x</a>'
    rewritten, _ = layout.rewrite_listing(body, "text/html", "http://h/simple/p/", "r1", PROXY)
    assert rewritten == b'<a href="/r/r1/packages/\xff\xfe.whl">x</a>'


def test_link_book_gates_origins_and_knows_linked_files() -> None:
    layout = UpstreamLayout.parse("http://h/simple/")
    book = LinkBook(layout.origin, [Origin("https", "mirror.example", 443)])
    assert book.allows(layout.origin) and book.allows(Origin("https", "mirror.example", 443))
    assert not book.allows(CDN) and not book.allows(None)
    body = b'<a href="https://cdn.example/f/a.whl#sha256=1">a</a>'
    _, links = layout.rewrite_listing(body, "text/html", "http://h/simple/a/", "r", PROXY)
    book.learn(links, body)
    assert book.allows(CDN)
    assert book.linked("https://cdn.example/f/a.whl") == "file"
    assert book.linked("https://cdn.example/f/a.whl?sig=2") == "file"
    assert book.linked("https://cdn.example/f/a.whl.metadata") == "metadata"
    assert book.linked("https://cdn.example/f/b.whl") is None
    book.add_file("http://h/u/i/+f/d6e/a-1.0")  # pip asks devpi for %2Bf: one file
    assert book.linked("http://h/u/i/%2Bf/d6e/a-1.0") == "file"
    s3 = Origin("https", "s3.example", 443)
    book.learn_redirect(s3, "https://s3.example/k", from_file=True)
    assert book.allows(s3) and book.linked("https://s3.example/k?X-Amz-Signature=x") == "file"


def test_a_loopback_only_book_refuses_linked_hosts_elsewhere() -> None:
    index = Origin("http", "127.0.0.1", 8080)
    files = [Origin("http", "127.0.0.1", 9000), Origin("http", "::1", 9000), CDN]
    local = Origin("http", "localhost", 1)
    book = LinkBook(index, [CDN, local], loopback_only=True)
    book.learn(Links(origins=frozenset(files)), b"")
    assert [book.allows(o) for o in (index, *files, local)] == [True, True, True, False, True]
    assert LinkBook(Origin("https", "remote.example", 443), loopback_only=True).allows(
        Origin("https", "remote.example", 443)
    )


def test_an_origin_unpickled_is_equal_and_hashes_as_one_made_here() -> None:
    # Pickled in another process (another hash seed): its hash is made anew here.
    made_there = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys; from pipstorm.infra.proxy.rewrite import Origin; "
            "sys.stdout.buffer.write(pickle.dumps(Origin.from_url('https://Files.Example:8443/x')))",
        ],
        env={**os.environ, "PYTHONHASHSEED": "1"},
        capture_output=True,
        check=True,
    ).stdout
    copy = pickle.loads(made_there)  # noqa: S301 - our own bytes
    here = Origin("https", "files.example", 8443)
    assert copy == here
    assert hash(copy) == hash(here)
    assert copy in {here}
    assert copy.url == "https://files.example:8443"
    assert copy.host_header == b"files.example:8443"
