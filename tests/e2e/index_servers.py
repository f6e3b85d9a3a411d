"""Small real indexes unlike pypiserver, served by aiohttp on 127.0.0.1 from a thread.

- ``split_origin``: a static index under ``/index/`` that wants Basic auth, whose listings link
  each file (and its PEP 658/714 metadata) on a second origin, a file host that refuses, and
  remembers, any request carrying an Authorization header: the index's credentials must never
  reach it.
- ``json_only``: a GitLab-shaped index (``/api/v4/projects/42/packages/pypi/simple/``) that
  answers PEP 691 JSON only (406 otherwise), with origin-relative file URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import ssl
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web

from pipstorm.infra.credentials import Credentials

JSON_TYPE: Final = "application/vnd.pypi.simple.v1+json"
GITLAB_PREFIX: Final = "/api/v4/projects/42/packages/pypi"
#: Where the split index's files live; set on its app before it is served.
FILES_ORIGIN: Final = web.AppKey("files_origin", str)


@dataclass(frozen=True)
class Dist:
    """One corpus file as an index serves it."""

    path: Path
    project: str  # normalised
    sha256: str
    metadata: bytes

    @property
    def metadata_sha256(self) -> str:
        """The hash PEP 658/714 attributes carry."""
        return hashlib.sha256(self.metadata).hexdigest()


def load_dists(directory: Path) -> dict[str, list[Dist]]:
    """The wheels of a corpus directory grouped by normalised project name."""
    found: dict[str, list[Dist]] = {}
    for path in sorted(directory.glob("*.whl")):
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = archive.read(name)
        project = re.sub(r"[-_.]+", "-", path.name.split("-")[0]).lower()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found.setdefault(project, []).append(Dist(path, project, digest, metadata))
    return found


@dataclass
class Seen:
    """Requests a test server refused because they carried credentials it must not get."""

    leaked: list[str] = field(default_factory=list)
    requests: int = 0


@contextmanager
def serving(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 from a thread of its own; yields ``http://127.0.0.1:PORT``
    (``https://`` with ``ssl_context``)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-index", daemon=True)
    thread.start()
    runner = web.AppRunner(app, access_log=None)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        return int(runner.addresses[0][1])

    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def _file_routes(
    app: web.Application, prefix: str, dists: dict[str, list[Dist]], seen: Seen
) -> None:
    """``prefix/<sha>/<name>`` and ``.../<name>.metadata`` for every file."""
    by_key = {f"{d.sha256[:8]}/{d.path.name}": d for ds in dists.values() for d in ds}

    async def serve_file(request: web.Request) -> web.StreamResponse:
        seen.requests += 1
        if "Authorization" in request.headers:
            seen.leaked.append(request.path)
            return web.Response(status=400, text="credentials sent to the file host\n")
        key = request.match_info["key"]
        if key.endswith(".metadata"):
            dist = by_key.get(key[: -len(".metadata")])
            if dist is None:
                raise web.HTTPNotFound
            return web.Response(body=dist.metadata, content_type="text/plain")
        dist = by_key.get(key)
        if dist is None:
            raise web.HTTPNotFound
        return web.FileResponse(dist.path, headers={"Content-Type": "application/octet-stream"})

    app.router.add_get(prefix + "/{key:[0-9a-f]{8}/[^/]+}", serve_file)


def split_origin(
    dists: dict[str, list[Dist]], credentials: Credentials
) -> tuple[web.Application, web.Application, Seen]:
    """The index app (set ``FILES_ORIGIN`` on it), the file host app and what it saw."""
    seen = Seen()
    files = web.Application()
    _file_routes(files, "/files", dists, seen)
    index = web.Application()
    expected = credentials.basic_auth_header()

    def check(request: web.Request) -> None:
        if request.headers.get("Authorization") != expected:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="index"'})

    async def root(request: web.Request) -> web.Response:
        check(request)
        links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(dists))
        return web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")

    async def project(request: web.Request) -> web.Response:
        check(request)
        name = request.match_info["project"]
        if name not in dists:
            raise web.HTTPNotFound
        base = request.app[FILES_ORIGIN]
        links = "".join(
            f'<a href="{base}/files/{d.sha256[:8]}/{html.escape(d.path.name)}#sha256={d.sha256}"'
            f' data-dist-info-metadata="sha256={d.metadata_sha256}"'
            f' data-core-metadata="sha256={d.metadata_sha256}">{d.path.name}</a>\n'
            for d in dists[name]
        )
        return web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")

    index.router.add_get("/index/", root)
    index.router.add_get("/index/{project}/", project)
    return index, files, seen


def json_only(dists: dict[str, list[Dist]]) -> web.Application:
    """A PEP 691 JSON-only index with origin-relative file URLs, GitLab-shaped paths."""
    app = web.Application()
    seen = Seen()
    _file_routes(app, GITLAB_PREFIX + "/files", dists, seen)

    def json_response(request: web.Request, page: object) -> web.Response:
        if JSON_TYPE not in request.headers.get("Accept", ""):
            raise web.HTTPNotAcceptable(text="this index speaks PEP 691 JSON only\n")
        return web.json_response(page, content_type=JSON_TYPE)

    async def root(request: web.Request) -> web.Response:
        page = {"meta": {"api-version": "1.1"}, "projects": [{"name": p} for p in sorted(dists)]}
        return json_response(request, page)

    async def project(request: web.Request) -> web.Response:
        name = request.match_info["project"]
        if name not in dists:
            raise web.HTTPNotFound
        page = {
            "meta": {"api-version": "1.1"},
            "name": name,
            "files": [
                {
                    "filename": d.path.name,
                    "url": f"{GITLAB_PREFIX}/files/{d.sha256[:8]}/{d.path.name}",
                    "hashes": {"sha256": d.sha256},
                    "core-metadata": {"sha256": d.metadata_sha256},
                    "dist-info-metadata": {"sha256": d.metadata_sha256},
                }
                for d in dists[name]
            ],
            "versions": sorted({d.path.name.split("-")[1] for d in dists[name]}),
        }
        return json_response(request, page)

    app.router.add_get(GITLAB_PREFIX + "/simple/", root)
    app.router.add_get(GITLAB_PREFIX + "/simple/{project}/", project)
    return app
