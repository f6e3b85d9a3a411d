"""A pass-through proxy beside the recording proxy, its own process (issue 20, item 5).

``tests/bench/test_proxy_floor_bench.py`` measures it exactly as ``test_proxy_bench.py``
measures the real proxy. The one kind, on uvloop:

- ``aiohttp``: the floor of the proxy's design before issue 20: a bare aiohttp ``web.Server``
  and one pooled ``ClientSession``, routing and the cached listing rewrite as the real proxy
  does them, no records, no trace signals, no timeouts.

The lean httptools relay that stood beside it (``lean``, ``lean-record``) is the shipped proxy
since issue 20: the bench's ``proxy`` row.

Upstream credentials come from the environment, as the real proxy's do.

    python -m tests.support.proxy_floors KIND UPSTREAM_INDEX_URL  # prints its URL; SIGTERM
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys

import uvloop
from aiohttp import ClientSession, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

from pipstorm.infra.credentials import UPSTREAM_PASSWORD_ENV, UPSTREAM_USERNAME_ENV, Credentials
from pipstorm.infra.proxy.rewrite import Route, UpstreamLayout
from pipstorm.infra.proxy.wire.upstream import UPSTREAM_KEEPALIVE_S

KINDS = ("aiohttp",)
_TOKEN = f"pipstormrun{secrets.token_hex(16)}"


def announce(url: str) -> None:
    """The URL as one stdout line, for the bench that started this process."""
    sys.stdout.write(url + "\n")
    sys.stdout.flush()


class Listings:
    """The listing rewrite as the real proxy caches it: once per body, then a replace."""

    def __init__(self, layout: UpstreamLayout) -> None:
        self.layout = layout
        self.proxy_url = ""
        self._cache: dict[tuple[bytes, str], bytes] = {}

    def rewrite(self, body: bytes, content_type: str, route: Route) -> bytes:
        key = (body, route.upstream_url)
        template = self._cache.get(key)
        if template is None:
            template = self.layout.rewrite_listing(
                body, content_type, route.upstream_url, _TOKEN, self.proxy_url
            )[0]
            self._cache[key] = template
        return template.replace(_TOKEN.encode(), route.run_id.encode())


async def serve_aiohttp(layout: UpstreamLayout, authorization: str, stop: asyncio.Event) -> None:
    listings = Listings(layout)
    connector = TCPConnector(limit=256, limit_per_host=0, keepalive_timeout=UPSTREAM_KEEPALIVE_S)
    skip = ("User-Agent", "Accept-Encoding", "Accept", "Content-Type")
    async with ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=skip
    ) as session:

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            route = layout.route(request.raw_path)
            assert route is not None
            headers = CIMultiDict(request.headers)
            for name in ("Host", "Connection", "Authorization"):
                headers.popall(name, None)
            headers["Authorization"] = authorization
            async with session.request(
                request.method, URL(route.upstream_url, encoded=True), headers=headers
            ) as upstream:
                body = await upstream.read()
                out = CIMultiDict(upstream.headers)
                for name in ("Connection", "Transfer-Encoding", "Keep-Alive"):
                    out.popall(name, None)
                content_type = out.get("Content-Type", "")
                if content_type.startswith(("text/html", "application/vnd.pypi.simple")):
                    body = listings.rewrite(body, content_type, route)
                out["Content-Length"] = str(len(body))
                return web.Response(status=upstream.status, headers=out, body=body)

        server = web.Server(handle, access_log=None, auto_decompress=False)
        runner = web.ServerRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        listings.proxy_url = f"http://127.0.0.1:{port}"
        announce(listings.proxy_url)
        await stop.wait()
        await runner.cleanup()


async def main(kind: str, upstream: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    layout = UpstreamLayout.parse(upstream)
    credentials = Credentials.from_env(os.environ, UPSTREAM_USERNAME_ENV, UPSTREAM_PASSWORD_ENV)
    assert credentials is not None
    await serve_aiohttp(layout, credentials.basic_auth_header(), stop)


if __name__ == "__main__":
    kind, upstream = sys.argv[1], sys.argv[2]
    assert kind in KINDS, kind
    profile_path = os.environ.get("PIPSTORM_FLOOR_PROFILE")  # cProfile stats, written at exit
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(kind, upstream))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_path}.{kind}")
