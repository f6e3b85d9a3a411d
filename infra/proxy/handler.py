"""The request handler of the recording proxy: forward, stream back, rewrite, record.

Runs inside the proxy process (``pipstorm.infra.proxy.server``). Why each choice:
- one pooled ``ClientSession`` (made by the server) with keep-alive: a connection per request
  would leave TIME_WAIT sockets and add a handshake to every measured latency;
- bodies are streamed in both directions; only small bodies are read whole: listings, to
  rewrite upstream URLs back to the proxy (``pipstorm.infra.proxy.rewrite``), and bodies of at most
  ``SMALL_BODY_BYTES``, sent with their headers in one write;
- the client's Authorization is replaced by the upstream credentials, so clients never hold
  them; the header is never logged; requests to any other origin carry no Authorization and no
  Cookie at all (pip, too, sends an index's credentials to the index's host only);
- a path with a dot segment (``..``, also percent-encoded) is refused with a 400 recorded as
  ``path_refused``, and an HTTP/0.9 request as ``http_version_refused``: neither is forwarded;
- requests for another origin go out only when the index linked it in this proxy's life or it
  was allowed explicitly (``pipstorm.infra.proxy.links``); others get a 403, recorded as
  ``origin_refused``, so the proxy is never an open proxy;
- a client that takes no part of its answer, or sends no part of its body, for
  ``stall_timeout`` seconds is cut off and recorded as ``client_disconnected: stalled`` (the
  client's doing, counted apart from the index's errors like any disconnect): each such client
  holds an upstream connection of a bounded pool, and a few hundred of them (frozen or hostile)
  would otherwise leave none for the other runs;
- each exchange is classified by what was served (``pipstorm.infra.operations.classify_served``);
- an upstream transport failure is a 502 recorded with ``status: null`` and the error kind, so
  reports count it apart from the upstream's own 5xx.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from pipstorm.infra.faults.plan import FaultMatcher
from pipstorm.infra.faults.spec import FaultRule
from pipstorm.infra.operations import Linked, classify_served
from pipstorm.infra.proxy import shaping
from pipstorm.infra.proxy.connections import connection_of
from pipstorm.infra.proxy.links import LinkBook
from pipstorm.infra.proxy.log import USER_AGENT_MAX, RecordWriter, RequestRecord
from pipstorm.infra.proxy.rewrite import Links, Route, UpstreamLayout, has_dot_segment

REWRITE_MAX_BYTES: Final = 16 * 1024 * 1024
# Bodies up to this size (known from Content-Length) are sent with their headers in one write.
SMALL_BODY_BYTES: Final = 64 * 1024
_REWRITE_TYPES: Final = ("text/html", "application/vnd.pypi.simple")
_HOP_BY_HOP: Final = (
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
)
# Host is set by the client session for the upstream; Expect is answered here (see below).
_DROP_FROM_REQUEST: Final = (*_HOP_BY_HOP, "Host", "Expect")
# What only the index's origin may see.
_INDEX_ONLY: Final = ("Authorization", "Cookie")
_NOT_ROUTED: Final = b"not under /r/<run-id>/ or /o/<run-id>/<origin>/\n"
_REFUSED: Final = b"origin_refused: the index linked no such origin in this run\n"
_PATH_REFUSED: Final = b"path_refused: a dot segment would leave the run's path\n"
_VERSION_REFUSED: Final = b"http_version_refused: HTTP/1.0 or HTTP/1.1 only\n"
_STALLED: Final = b"request timeout: no part of the request body came in time\n"
# Listings rewritten once for a placeholder run id, then per run with one bytes.replace: how
# many are kept, and the largest body kept (at most ~2 x 256 x 256 KB = 128 MB, rarely near).
LISTING_CACHE_SIZE: Final = 256
LISTING_CACHE_MAX_BYTES: Final = 256 * 1024
# A valid run id (RUN_ID_RE) no listing contains: random per proxy process.
_RUN_TOKEN: Final = f"pipstormrun{secrets.token_hex(16)}"
_RUN_TOKEN_BYTES: Final = _RUN_TOKEN.encode("ascii")
# How long a client may take no part of its answer, or send no part of its body.
STALL_TIMEOUT_S: Final = 60.0
_STALLED_ERROR: Final = "client_disconnected: stalled"


class _ClientStalled(ConnectionError):
    """A write to the client made no progress within the stall timeout (a connection error:
    the client is as good as gone)."""


class _Exchange:
    """Mutable state of one request while it is served; becomes a RequestRecord at the end."""

    __slots__ = (
        "conn",
        "content_type",
        "end",
        "error",
        "fault",
        "linked",
        "path",
        "req_bytes",
        "run_id",
        "sent",
        "start",
        "status",
        "ts",
        "ttfb",
        "upstream_new",
    )

    def __init__(self, path: str) -> None:
        self.ts = time.time()
        self.start = time.perf_counter()
        self.path = path
        self.run_id: str | None = None
        self.status: int | None = None
        self.sent = 0
        self.req_bytes = 0
        self.ttfb: float | None = None
        self.end: float | None = None
        self.error: str | None = None
        self.fault: FaultRule | None = None  # the injected fault rule that fired, if any
        self.content_type: str | None = None  # the upstream answer's
        self.linked: Linked | None = None  # what a listing linked this URL as, if it did
        self.conn: int | None = None  # the client connection's number
        # Set by the upstream trace (pipstorm.infra.proxy.connections): a new connection or not.
        self.upstream_new: bool | None = None


class ProxyHandler:
    """Forwards one request upstream, streams the answer back, records the exchange."""

    def __init__(
        self,
        layout: UpstreamLayout,
        session: aiohttp.ClientSession,
        writer: RecordWriter,
        authorization: str | None,
        *,
        faults: FaultMatcher | None = None,
        links: LinkBook | None = None,
        stall_timeout: float = STALL_TIMEOUT_S,
    ) -> None:
        self.layout = layout
        self.stall_timeout = stall_timeout
        self.links = links if links is not None else LinkBook(layout.origin)
        self.session = session
        self.writer = writer
        self.authorization = authorization
        self.faults = faults
        self.proxy_url = ""  # known once the port is bound
        # Handlers still running, also for connections the client has closed (a stalled or
        # slow answer nobody reads any more): aiohttp's shutdown no longer sees those.
        self._in_flight: set[asyncio.Task[object]] = set()
        # (body, content type, upstream URL) -> listing rewritten for _RUN_TOKEN, its links.
        self._listings: dict[tuple[bytes, str, str], tuple[bytes, Links]] = {}

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        exchange = _Exchange(request.raw_path)
        connection = connection_of(request)
        exchange.conn = None if connection is None else connection.number
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            return await self._serve(request, exchange)
        except asyncio.CancelledError:
            exchange.error = exchange.error or "proxy_shutdown"
            raise
        except Exception as exc:
            exchange.error = f"proxy_error: {type(exc).__name__}"
            raise
        finally:
            self._in_flight.discard(task)
            self._record(request, exchange)
            if connection is not None:
                connection.request_done()

    async def cancel_in_flight(self) -> None:
        """Cancel the handlers still running after the server's graceful shutdown, and wait
        for them, so each still writes its record (``proxy_shutdown``) before the log closes."""
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, request: web.BaseRequest, exchange: _Exchange) -> web.StreamResponse:
        route = self.layout.route(exchange.path)
        if route is None:
            exchange.status = 404
            return await self._send_local(request, exchange, 404, _NOT_ROUTED)
        exchange.run_id, exchange.path = route.run_id, route.recorded_path()
        refusal = self._refusal(request, route)
        if refusal is not None:
            exchange.status, exchange.error, body = refusal
            return await self._send_local(request, exchange, exchange.status, body)
        exchange.linked = self.links.linked(route.upstream_url)
        if self.faults is not None:
            injected = await self._inject_before_upstream(request, exchange)
            if injected is not None:
                return injected
        headers = CIMultiDict(request.headers)
        _drop_headers(headers, _DROP_FROM_REQUEST)
        if not route.index_origin:
            _drop_headers(headers, _INDEX_ONLY)
        elif self.authorization is not None:
            headers["Authorization"] = self.authorization
        data = None
        if request.body_exists:
            if request.headers.get("Expect", "").lower() == "100-continue":
                # The low-level server does not answer Expect; the upstream never sees it.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            data = _counted(request.content, exchange, self.stall_timeout)
        try:
            upstream = await self.session.request(
                request.method,
                URL(route.upstream_url, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                trace_request_ctx=exchange,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return await self._request_failed(request, exchange, exc)
        try:
            exchange.ttfb = time.perf_counter()
            exchange.status = upstream.status
            exchange.content_type = upstream.headers.get("Content-Type")
            return await self._relay(request, upstream, exchange, route)
        finally:
            upstream.release()

    async def _request_failed(
        self, request: web.BaseRequest, exchange: _Exchange, exc: BaseException
    ) -> web.StreamResponse:
        """No upstream answer: the client's doing when reading its body failed (it hung up, or
        stalled: it gets a 408), else a transport failure (a 502)."""
        if exchange.error == "client_disconnected":
            return web.Response(status=400)  # the client is gone: nobody reads this
        if exchange.error == _STALLED_ERROR:
            response = await self._send_local(request, exchange, 408, _STALLED)
            if request.transport is not None:
                request.transport.close()  # rather than linger 10 s for the rest of its body
            return response
        exchange.error = _transport_error(exc)
        return await self._send_local(request, exchange, 502, f"{exchange.error}\n".encode())

    def _refusal(self, request: web.BaseRequest, route: Route) -> tuple[int, str, bytes] | None:
        """Status, error kind and body of a routed request the proxy must not forward."""
        if has_dot_segment(route.path):
            return 400, "path_refused", _PATH_REFUSED
        if request.version < aiohttp.HttpVersion10:  # HTTP/0.9: a request line and no headers
            return 400, "http_version_refused", _VERSION_REFUSED
        if not self.links.allows(route.origin):
            return 403, "origin_refused", _REFUSED
        return None

    async def _relay(
        self,
        request: web.BaseRequest,
        upstream: aiohttp.ClientResponse,
        exchange: _Exchange,
        route: Route,
    ) -> web.StreamResponse:
        headers = self._response_headers(upstream, exchange, route)
        content = upstream.content
        response: web.StreamResponse | None = None
        shaped = exchange.fault is not None and exchange.fault.shapes_body
        fault = exchange.fault if shaped and request.method != "HEAD" else None
        try:
            pending: list[bytes] = []
            if request.method != "HEAD":
                rewrite = headers.get("Content-Type", "").startswith(_REWRITE_TYPES)
                length = upstream.content_length
                if rewrite or (length is not None and length <= SMALL_BODY_BYTES):
                    limit = REWRITE_MAX_BYTES if rewrite else SMALL_BODY_BYTES
                    pending, complete = await _read_up_to(content, limit)
                    if complete:
                        body = b"".join(pending)
                        if rewrite:
                            body = self._rewritten(body, headers, route, upstream.status)
                        if fault is not None:  # a faulty body is streamed through the shaper
                            headers["Content-Length"] = str(len(body))
                            pending = [body]
                    if complete and fault is None:
                        # Headers and body in one write: one syscall, one wake-up of the client.
                        response = web.Response(
                            status=upstream.status, reason=upstream.reason, headers=headers
                        )
                        response.body = body
                        await self._timed(_prepare_and_end(response, request))
                        exchange.sent = len(body)
                        exchange.end = time.perf_counter()
                        return response
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=headers
            )
            await response.prepare(request)
            await self._stream(
                request, response, rule=fault, pending=pending, content=content, exchange=exchange
            )
        except ConnectionError as exc:
            # Raised by writes towards a client that hung up or stalled; upstream errors are
            # ClientErrors.
            stalled = isinstance(exc, _ClientStalled)
            exchange.error = _STALLED_ERROR if stalled else "client_disconnected"
            upstream.close()
            if request.transport is not None:
                request.transport.abort()  # a stalled client's answer must not look complete
        except (aiohttp.ClientError, TimeoutError) as exc:
            upstream.close()
            if response is None or not response.prepared:
                # Nothing sent yet: the client gets a 502 like for any transport failure.
                exchange.status = None
                exchange.error = _transport_error(exc)
                return await self._send_local(
                    request, exchange, 502, f"{exchange.error}\n".encode()
                )
            exchange.error = _transport_error(exc)
            if request.transport is not None:
                request.transport.abort()  # headers are out: cut the body so it looks cut
        if response is None:  # a client gone before anything was prepared
            response = web.Response(status=400)
        return response

    def _response_headers(
        self, upstream: aiohttp.ClientResponse, exchange: _Exchange, route: Route
    ) -> CIMultiDict[str]:
        """The upstream's headers for the client: hop-by-hop ones dropped, a ``Location`` kept on
        the proxy (and its target's origin let through: the index sent the client there)."""
        headers = CIMultiDict(upstream.headers)
        _drop_headers(headers, _HOP_BY_HOP)
        location = headers.get("Location")
        if location is not None:
            new, target, origin = self.layout.rewrite_location(
                location, route.upstream_url, route.run_id, self.proxy_url
            )
            headers["Location"] = new
            if target is not None and origin is not None:
                self.links.learn_redirect(origin, target, from_file=exchange.linked == "file")
        return headers

    async def _inject_before_upstream(
        self, request: web.BaseRequest, exchange: _Exchange
    ) -> web.StreamResponse | None:
        """Apply a fault rule that acts before the upstream is asked: delay, status, reset.

        Returns the response when the rule answers in the upstream's place, else None (the
        request goes upstream; a body rule stays in ``exchange.fault`` for ``_relay``).
        """
        assert self.faults is not None  # noqa: S101 - checked by the caller
        decided = self.faults.decide(exchange.run_id, request.method, exchange.path, time.time())
        if decided is None:
            return None
        rule = exchange.fault = decided[0]
        if rule.delay_s > 0:
            await asyncio.sleep(rule.delay_s)
        if rule.status is not None:
            response = shaping.injected_response(rule)
            exchange.status = rule.status
            exchange.ttfb = time.perf_counter()
            try:
                await response.prepare(request)
                await response.write_eof()
                exchange.sent = response.content_length or 0
            except ConnectionError:
                exchange.error = "client_disconnected"
            exchange.end = time.perf_counter()
            return response
        if rule.reset == "before":
            exchange.error = "injected_reset_before_headers"
            shaping.reset(request)
            exchange.end = exchange.ttfb = time.perf_counter()
            return web.Response(status=400)  # never sent: the connection is gone
        return None

    async def _stream(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        *,
        rule: FaultRule | None,
        pending: list[bytes],
        content: aiohttp.StreamReader,
        exchange: _Exchange,
    ) -> None:
        """Stream the body (``pending`` first, then the rest from upstream) to the client.

        With a fault ``rule`` the body goes through its shaper; a cut body or a reset after
        the headers aborts the connection.
        """
        if rule is None:
            async for chunk in _body(pending, content):
                await self._timed(response.write(chunk))
                exchange.sent += len(chunk)
            await self._timed(response.write_eof())
            exchange.end = time.perf_counter()
            return
        if rule.reset == "after":
            exchange.error = "injected_reset_after_headers"
            await shaping.reset_after_headers(request)
            exchange.end = time.perf_counter()
            return
        length = response.headers.get("Content-Length")
        shaper = shaping.BodyShaper(rule, int(length) if length and length.isdigit() else None)
        try:
            async for chunk in _body(pending, content):
                if not await shaper.send(response, chunk):
                    exchange.error = "injected_truncate"
                    shaping.close(request)
                    exchange.end = time.perf_counter()
                    return
            await response.write_eof()
            exchange.end = time.perf_counter()
        finally:  # also when the client hung up during a stall or a slow body
            exchange.sent = shaper.sent

    async def _timed(self, write: Awaitable[None]) -> None:
        """Await a write towards the client; ``_ClientStalled`` when it takes no bytes in time.

        Only the write is timed: waiting on the upstream has its own read timeout.
        """
        try:
            async with asyncio.timeout(self.stall_timeout):
                await write
        except TimeoutError:
            raise _ClientStalled from None

    def _rewritten(
        self, body: bytes, headers: CIMultiDict[str], route: Route, status: int
    ) -> bytes:
        encoding = headers.get("Content-Encoding", "").lower()
        if encoding in ("gzip", "deflate", "x-gzip"):
            try:
                body = zlib.decompress(body, zlib.MAX_WBITS | 32)  # gzip or zlib header
            except zlib.error:
                return body
            del headers["Content-Encoding"]
        elif encoding not in ("", "identity"):
            return body  # cannot read it, so cannot rewrite it
        template, links = self._listing_template(
            body, headers.get("Content-Type", ""), route.upstream_url
        )
        if status == 200:  # an error or login page links no files of the index
            self.links.learn(links, body)
        rewritten = template.replace(_RUN_TOKEN_BYTES, route.run_id.encode("ascii"))
        headers["Content-Length"] = str(len(rewritten))
        return rewritten

    def _listing_template(
        self, body: bytes, content_type: str, base_url: str
    ) -> tuple[bytes, Links]:
        """The listing rewritten for a placeholder run id, and its links: the same for every
        run that gets this body from this URL, so a burst of runs asking for one listing pays
        the rewrite (regular expressions, URL parsing: the largest part of the proxy's CPU
        per listing) once. Bounded, least recently used first out; large bodies not kept."""
        key = (body, content_type, base_url)
        found = self._listings.pop(key, None)
        if found is None:
            found = self.layout.rewrite_listing(
                body, content_type, base_url, _RUN_TOKEN, self.proxy_url
            )
            if len(body) > LISTING_CACHE_MAX_BYTES:
                return found
            if len(self._listings) >= LISTING_CACHE_SIZE:
                self._listings.pop(next(iter(self._listings)))
        self._listings[key] = found
        return found

    async def _send_local(
        self,
        request: web.BaseRequest,
        exchange: _Exchange,
        status: int,
        body: bytes,
    ) -> web.StreamResponse:
        """An answer made by the proxy itself (unattributed path, upstream unreachable)."""
        response = web.Response(status=status, body=body)
        response.content_type = "text/plain"
        exchange.ttfb = time.perf_counter()
        try:
            await response.prepare(request)
            await response.write_eof()
            exchange.sent = len(body)
        except ConnectionError:
            exchange.error = exchange.error or "client_disconnected"
        exchange.end = time.perf_counter()
        return response

    def _record(self, request: web.BaseRequest, exchange: _Exchange) -> None:
        now = time.perf_counter()
        start = exchange.start
        user_agent = request.headers.get("User-Agent")
        method = request.method
        status = exchange.status
        self.writer.write(
            RequestRecord(
                ts=exchange.ts,
                run_id=exchange.run_id,
                op=classify_served(
                    method,
                    exchange.path,
                    status,
                    content_type=exchange.content_type,
                    linked=exchange.linked,
                ),
                method=method,
                path=exchange.path,
                status=status,
                bytes=exchange.sent,
                req_bytes=exchange.req_bytes,
                ttfb_ms=((exchange.ttfb or now) - start) * 1000.0,
                total_ms=((exchange.end or now) - start) * 1000.0,
                error=exchange.error,
                user_agent=user_agent[:USER_AGENT_MAX] if user_agent is not None else None,
                range=request.headers.get("Range"),
                fault=None if exchange.fault is None else exchange.fault.id,
                conn=exchange.conn,
                upstream_new=exchange.upstream_new,
            )
        )


async def _counted(
    content: aiohttp.StreamReader, exchange: _Exchange, stall_timeout: float
) -> AsyncIterator[bytes]:
    """The request body as it arrives, counted; a failure to read it is the client's, and so
    is a wait of more than ``stall_timeout`` for its next bytes."""
    try:
        while True:
            async with asyncio.timeout(stall_timeout):
                chunk = await content.readany()
            if not chunk:
                return
            exchange.req_bytes += len(chunk)
            yield chunk
    except TimeoutError:
        exchange.error = _STALLED_ERROR
        raise
    except Exception:
        exchange.error = "client_disconnected"
        raise


async def _prepare_and_end(response: web.StreamResponse, request: web.BaseRequest) -> None:
    """Send a response whose body is set: headers and body in one write."""
    await response.prepare(request)
    await response.write_eof()


async def _body(pending: list[bytes], content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The chunks already read, then the rest of the upstream body as it arrives."""
    for chunk in pending:
        yield chunk
    while chunk := await content.readany():
        yield chunk


async def _read_up_to(content: aiohttp.StreamReader, limit: int) -> tuple[list[bytes], bool]:
    """The body's chunks, read until its end (True) or until more than ``limit`` bytes (False)."""
    # Content-Length is not relied on: a chunked listing has none.
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return chunks, False
    return chunks, True


def _drop_headers(headers: CIMultiDict[str], names: Sequence[str]) -> None:
    # Headers named by Connection are hop-by-hop too (RFC 9110 7.6.1).
    for token in headers.get("Connection", "").split(","):
        if token.strip():
            headers.popall(token.strip(), None)
    for name in names:
        headers.popall(name, None)


def _transport_error(exc: BaseException) -> str:
    """The short error kind of an upstream transport failure, for the record and the 502 body."""
    if isinstance(exc, TimeoutError):
        return "upstream_timeout"
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return "upstream_refused"
    if code in (errno.ECONNRESET, errno.EPIPE) or isinstance(
        exc,
        ConnectionResetError | aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError,
    ):
        return "upstream_reset"
    return f"upstream_error: {type(exc).__name__}"
