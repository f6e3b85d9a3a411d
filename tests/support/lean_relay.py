"""A lean HTTP relay: the floor of what the recording proxy's HTTP layer could cost (issue 20).

Asyncio Protocols (run on uvloop) with httptools (llhttp) parsing request heads and response
heads and bodies; pooled keep-alive upstream connections; bodies relayed chunk by chunk with flow
control (the reading side paused while the writing side's buffer is high); only a listing that
is rewritten is read whole, and rewritten as the real proxy does (cached, one ``bytes.replace``).
With a writer, one record per request, made and written as the real proxy's (``RequestRecord``,
one ``write(2)`` on an ``O_APPEND`` descriptor).

A prototype to measure, not a proxy to run load through: no header or stall timeout, no faults,
no Expect, no pipelining, no HEAD, no retry on a stale pooled connection, no other origins. Run
by ``tests.support.proxy_floors`` for ``tests/bench/test_proxy_floor_bench.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time

import httptools

from pipstorm.infra.operations import classify_served
from pipstorm.infra.proxy.log import RecordWriter, RequestRecord
from pipstorm.infra.proxy.rewrite import Route, UpstreamLayout

_REWRITE_TYPES = (b"text/html", b"application/vnd.pypi.simple")
_TOKEN = f"pipstormrun{secrets.token_hex(16)}"
_HOP = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization proxy-connection te "
    b"trailer transfer-encoding upgrade host expect authorization content-length".split()
)
_HIGH = 256 * 1024
IDLE_S = 1.5


def announce(url: str) -> None:
    """The URL as one stdout line, for the bench that started this process."""
    sys.stdout.write(url + "\n")
    sys.stdout.flush()


class Listings:
    """The listing rewrite as the real handler caches it: once per body, then a replace."""

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


class Pool:
    """Idle keep-alive upstream connections, newest first; stale ones dropped on the way."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[float, Upstream]] = []

    def take(self) -> Upstream | None:
        now = time.monotonic()
        while self.idle:
            since, upstream = self.idle.pop()
            if now - since < IDLE_S and not upstream.closed:
                return upstream
            upstream.transport.close()
        return None

    def give(self, upstream: Upstream) -> None:
        self.idle.append((time.monotonic(), upstream))


class Upstream(asyncio.Protocol):
    """One connection to the index: parses its responses and hands them to the exchange."""

    transport: asyncio.Transport

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.client: Client | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.client is not None
        self.client.upstream_head(self.parser.get_status_code(), self.reason, self.headers)

    def on_body(self, body: bytes) -> None:
        assert self.client is not None
        self.client.upstream_body(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        self.headers, self.reason = [], b""
        if self.parser.should_keep_alive():
            self.pool.give(self)
        else:
            self.transport.close()
        assert client is not None
        client.upstream_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.client is not None:
            self.client.upstream_failed()

    def pause_writing(self) -> None:  # an upload the index reads slowly
        if self.client is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.transport.resume_reading()


class Client(asyncio.Protocol):
    """One client connection: parses its requests, relays each through a pooled upstream."""

    transport: asyncio.Transport
    number = 0

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.upstream: Upstream | None = None
        self.waiting: list[bytes] = []  # request bytes until the upstream connection is made
        Client.number += 1
        self.conn = Client.number

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=_HIGH)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.ts, self.start, self.ttfb = time.time(), time.perf_counter(), 0.0
        self.sent = self.req_bytes = 0
        self.method = self.parser.get_method()
        self.keep_alive = self.parser.should_keep_alive()
        self.route = self.relay.layout.route(self.url.decode("latin-1"))
        assert self.route is not None
        head = [b"%s %s HTTP/1.1\r\n" % (self.method, self.route.path.encode("latin-1"))]
        self.user_agent = None
        self.chunked_in = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                self.chunked_in = b"chunked" in value.lower()
            elif lower == b"content-length":
                head.append(b"Content-Length: %s\r\n" % value)
            elif lower == b"user-agent":
                self.user_agent = value
            if lower not in _HOP:
                head.append(b"%s: %s\r\n" % (name, value))
        if self.chunked_in:
            head.append(b"Transfer-Encoding: chunked\r\n")
        head.append(self.relay.fixed_headers)
        self.url, self.headers = b"", []
        self.upstream = upstream = self.relay.pool.take()
        self.upstream_new = upstream is None
        if upstream is None:
            self.waiting = [b"".join(head)]
            asyncio.get_running_loop().create_task(self._connect())
        else:
            upstream.client = self
            upstream.transport.write(b"".join(head))

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        pool = self.relay.pool
        try:
            _, upstream = await loop.create_connection(lambda: Upstream(pool), pool.host, pool.port)
        except OSError:
            self.upstream_failed()
            return
        upstream.client, self.upstream = self, upstream
        upstream.transport.write(b"".join(self.waiting))
        self.waiting = []

    def on_body(self, body: bytes) -> None:
        self.req_bytes += len(body)
        data = b"%x\r\n%s\r\n" % (len(body), body) if self.chunked_in else body
        if self.upstream is None:
            self.waiting.append(data)
        else:
            self.upstream.transport.write(data)

    def on_message_complete(self) -> None:
        if self.chunked_in:
            self.on_body(b"")  # the last chunk (length 0 and an empty line)
        self.transport.pause_reading()  # until the answer is out

    def upstream_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.ttfb = time.perf_counter()
        self.status = status
        self.content_type = b""
        length = None
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-type":
                self.content_type = value
            elif lower == b"content-length":
                length = value
            if lower not in _HOP:
                out.append(b"%s: %s\r\n" % (name, value))
        self.rewrite = self.content_type.startswith(_REWRITE_TYPES)
        self.chunked_out = length is None and not self.rewrite and self.method != b"HEAD"
        if self.rewrite:
            self.head = out
            self.body: list[bytes] = []
            return
        if length is not None:
            out.append(b"Content-Length: %s\r\n" % length)
        elif self.chunked_out:
            out.append(b"Transfer-Encoding: chunked\r\n")
        out.append(b"\r\n")
        self.transport.write(b"".join(out))

    def upstream_body(self, body: bytes) -> None:
        if self.rewrite:
            self.body.append(body)
            return
        self.sent += len(body)
        self.transport.write(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked_out else body)

    def upstream_done(self) -> None:
        if self.rewrite:
            content_type = self.content_type.decode("latin-1")
            assert self.route is not None
            body = self.relay.listings.rewrite(b"".join(self.body), content_type, self.route)
            self.head.append(b"Content-Length: %d\r\n\r\n" % len(body))
            self.transport.write(b"".join(self.head) + body)
            self.sent = len(body)
        elif self.chunked_out:
            self.transport.write(b"0\r\n\r\n")
        self.upstream = None
        self.end = time.perf_counter()
        if not self.keep_alive:
            self.transport.close()
        else:
            self.transport.resume_reading()
        if self.relay.writer is not None:
            # The answer is out (uvloop writes at once when the socket's queue is empty); the
            # record waits for the loop's next pass, behind the other ready callbacks.
            asyncio.get_running_loop().call_soon(self.record)

    def upstream_failed(self) -> None:
        self.transport.abort()

    def record(self) -> None:
        assert self.relay.writer is not None and self.route is not None
        method = self.method.decode("ascii")
        content_type = self.content_type.decode("latin-1")
        user_agent = None if self.user_agent is None else self.user_agent.decode("latin-1")
        self.relay.writer.write(
            RequestRecord(
                ts=self.ts,
                run_id=self.route.run_id,
                op=classify_served(
                    method, self.route.path, self.status, content_type=content_type, linked=None
                ),
                method=method,
                path=self.route.path,
                status=self.status,
                bytes=self.sent,
                req_bytes=self.req_bytes,
                ttfb_ms=(self.ttfb - self.start) * 1000.0,
                total_ms=(self.end - self.start) * 1000.0,
                user_agent=user_agent,
                conn=self.conn,
                upstream_new=self.upstream_new,
            )
        )

    # The client's buffer is high: stop reading the upstream until it drains.
    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.client = None
            self.upstream.transport.abort()


class Relay:
    """What every connection of the lean relay shares."""

    def __init__(
        self, layout: UpstreamLayout, authorization: str, writer: RecordWriter | None
    ) -> None:
        self.layout = layout
        self.pool = Pool(layout.origin.host, layout.origin.port)
        self.listings = Listings(layout)
        self.writer = writer
        netloc = layout.origin.url.split("://", 1)[1]
        self.fixed_headers = f"Host: {netloc}\r\nAuthorization: {authorization}\r\n\r\n".encode()


async def serve_lean(relay: Relay, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(relay), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    relay.listings.proxy_url = f"http://127.0.0.1:{port}"
    announce(relay.listings.proxy_url)
    await stop.wait()
    server.close()
