"""Pass-through proxies beside the recording proxy, one process each (issue 20, item 5).

``tests/bench/test_proxy_floor_bench.py`` measures them exactly as ``test_proxy_bench.py``
measures the real proxy. The kinds, all on uvloop:

- ``aiohttp``: the floor of today's design: a bare aiohttp ``web.Server`` and one pooled
  ``ClientSession``, routing and the cached listing rewrite as the real proxy does them, no
  records, no trace signals, no timeouts;
- ``lean``: the relay of ``tests.support.lean_relay`` (httptools on asyncio Protocols);
- ``lean-record``: ``lean`` plus one record per request, as the real proxy writes it.

Upstream credentials come from the environment, as the real proxy's do.

    python -m tests.support.proxy_floors KIND UPSTREAM_INDEX_URL LOG  # prints its URL; SIGTERM
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import uvloop
from aiohttp import ClientSession, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

from pipstorm.infra.credentials import UPSTREAM_PASSWORD_ENV, UPSTREAM_USERNAME_ENV, Credentials
from pipstorm.infra.proxy.log import RecordWriter
from pipstorm.infra.proxy.rewrite import UpstreamLayout
from tests.support.lean_relay import IDLE_S, Listings, Relay, announce, serve_lean

KINDS = ("aiohttp", "lean", "lean-record")


async def serve_aiohttp(layout: UpstreamLayout, authorization: str, stop: asyncio.Event) -> None:
    listings = Listings(layout)
    connector = TCPConnector(limit=256, limit_per_host=0, keepalive_timeout=IDLE_S)
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


async def main(kind: str, upstream: str, log: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    layout = UpstreamLayout.parse(upstream)
    credentials = Credentials.from_env(os.environ, UPSTREAM_USERNAME_ENV, UPSTREAM_PASSWORD_ENV)
    assert credentials is not None
    authorization = credentials.basic_auth_header()
    if kind == "aiohttp":
        await serve_aiohttp(layout, authorization, stop)
        return
    with RecordWriter(log) as writer:
        relay = Relay(layout, authorization, writer if kind == "lean-record" else None)
        await serve_lean(relay, stop)


if __name__ == "__main__":
    kind, upstream, log = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    assert kind in KINDS, kind
    profile_path = os.environ.get("PIPSTORM_LEAN_PROFILE")  # cProfile stats, written at exit
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(kind, upstream, log))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_path}.{kind}")
