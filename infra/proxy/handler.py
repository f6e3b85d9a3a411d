"""The request handler of the recording proxy: route, refuse, forward, relay back, record.

Runs inside the proxy process (``pipstorm.infra.proxy.server``); each request a client
connection parsed (``pipstorm.infra.proxy.wire.clients``) is one task here. Why each choice:
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
  holds one of the upstream pool's bounded exchanges;
- ``Expect: 100-continue`` is answered here; the upstream never sees it;
- each exchange is classified by what was served (``pipstorm.infra.operations.classify_served``);
- an upstream transport failure is a 502 recorded with ``status: null`` and the error kind, so
  reports count it apart from the upstream's own 5xx.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Final

from pipstorm.infra.faults.plan import FaultMatcher
from pipstorm.infra.proxy import shaping
from pipstorm.infra.proxy.exchange import (
    STALLED_ERROR,
    Exchange,
    Forwarder,
    UpstreamFailed,
    record_fields,
)
from pipstorm.infra.proxy.fastpath import FastPath
from pipstorm.infra.proxy.links import LinkBook
from pipstorm.infra.proxy.log import RecordWriter
from pipstorm.infra.proxy.relay import ClientStalled, Relay, Reply
from pipstorm.infra.proxy.rewrite import Route, UpstreamLayout, has_dot_segment
from pipstorm.infra.proxy.wire.clients import ClientConnection
from pipstorm.infra.proxy.wire.messages import Request
from pipstorm.infra.proxy.wire.upstream import UpstreamConnection, UpstreamPool, UpstreamResponse

_NOT_ROUTED: Final = b"not under /r/<run-id>/ or /o/<run-id>/<origin>/\n"
_REFUSED: Final = b"origin_refused: the index linked no such origin in this run\n"
_PATH_REFUSED: Final = b"path_refused: a dot segment would leave the run's path\n"
_VERSION_REFUSED: Final = b"http_version_refused: HTTP/1.0 or HTTP/1.1 only\n"
_STALLED: Final = b"request timeout: no part of the request body came in time\n"
# How long a client may take no part of its answer, or send no part of its body.
STALL_TIMEOUT_S: Final = 60.0
# How often shutdown looks whether the requests answered from callbacks are done.
_SHUTDOWN_POLL_S: Final = 0.02


class ProxyHandler:
    """Serves each request: forwards it upstream, relays the answer, records it; from the
    protocols' callbacks when it is plain (``FastPath``), else as a task."""

    def __init__(
        self,
        layout: UpstreamLayout,
        pool: UpstreamPool,
        writer: RecordWriter,
        authorization: str | None,
        *,
        read_timeout: float,
        faults: FaultMatcher | None = None,
        links: LinkBook | None = None,
        stall_timeout: float = STALL_TIMEOUT_S,
    ) -> None:
        self.layout = layout
        self.stall_timeout = stall_timeout
        self.links = links if links is not None else LinkBook(layout.origin)
        self.writer = writer
        self.faults = faults
        self.relay = Relay(layout, self.links, read_timeout)
        self.forwarder = Forwarder(pool, authorization, read_timeout, stall_timeout)
        self.fast = FastPath(self, writer, read_timeout)
        # Requests being served, also for connections the client has closed (a stalled or
        # slow answer nobody reads any more): shutdown waits for them, then cancels them.
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def proxy_url(self) -> str:
        """The proxy's own URL, for rewritten links (set once the port is bound)."""
        return self.relay.proxy_url

    @proxy_url.setter
    def proxy_url(self, url: str) -> None:
        self.relay.proxy_url = url

    def serve(self, request: Request, conn: ClientConnection) -> None:
        """Serve ``request`` (called by its connection, from its parser's callbacks): from the
        callbacks when it is plain (``pipstorm.infra.proxy.fastpath``), else as a task."""
        exchange = Exchange(request.target, conn.number)
        reply = Reply(conn, request, self.stall_timeout)
        try:
            route = self._prelude(request, reply, exchange)
            if route is None:
                self.fast.finish_soon(request, exchange, conn)  # answered by the proxy
                return
            if exchange.fault is not None or not self.fast.start(request, reply, exchange, route):
                self.spawn(
                    request, reply, exchange, lambda: self.serve_routed(reply, exchange, route)
                )
            # Once the request is on its way: nothing can learn a link before this callback ends.
            exchange.linked = self.links.linked(route.upstream_url)
        except Exception as exc:  # a bug of the proxy: its trace, and the client cut off
            exchange.error = f"proxy_error: {type(exc).__name__}"
            traceback.print_exc(file=sys.stderr)
            conn.transport.abort()
            self.fast.finish_soon(request, exchange, conn)

    def spawn(
        self,
        request: Request,
        reply: Reply,
        exchange: Exchange,
        step: Callable[[], Awaitable[None]],
    ) -> None:
        """Go on serving ``request`` as a task: ``step()``, then its record."""
        task = asyncio.get_running_loop().create_task(self._handle(request, reply, exchange, step))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def wait_in_flight(self, grace: float) -> None:
        """Give the requests being served ``grace`` seconds to finish, then cut the rest (tasks
        are cancelled and waited for), so each still writes its record (``proxy_shutdown``)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while (self._in_flight or self.fast.busy) and loop.time() < end:
            if self._in_flight:
                await asyncio.wait(list(self._in_flight), timeout=min(_SHUTDOWN_POLL_S, grace))
            else:
                await asyncio.sleep(_SHUTDOWN_POLL_S)
        self.fast.cut_all()
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the records of answers finished just now

    async def _handle(
        self,
        request: Request,
        reply: Reply,
        exchange: Exchange,
        step: Callable[[], Awaitable[None]],
    ) -> None:
        conn = reply.conn
        try:
            await step()
        except asyncio.CancelledError:
            exchange.error = exchange.error or "proxy_shutdown"
            conn.transport.abort()
            raise
        except Exception as exc:  # a bug of the proxy: its trace, and the client cut off
            exchange.error = f"proxy_error: {type(exc).__name__}"
            traceback.print_exc(file=sys.stderr)
            conn.transport.abort()
        finally:
            self.writer.write_fields(record_fields(request, exchange))
            conn.request_done()

    def _prelude(self, request: Request, reply: Reply, exchange: Exchange) -> Route | None:
        """What is decided before the upstream is asked, without a wait: the route, a refusal
        or an unattributed path answered here (then None), the fault rule that fires."""
        route = self.layout.route(exchange.path)
        if route is None:
            exchange.status = 404
            self._local(reply, exchange, 404, _NOT_ROUTED)
            return None
        exchange.run_id, exchange.path = route.run_id, route.recorded_path()
        refusal = self._refusal(request, route)
        if refusal is not None:
            exchange.status, exchange.error, body = refusal
            self._local(reply, exchange, exchange.status, body)
            return None
        if self.faults is not None:
            decided = self.faults.decide(
                exchange.run_id, request.method, exchange.path, time.time()
            )
            exchange.fault = None if decided is None else decided[0]
        return route

    async def serve_routed(
        self, reply: Reply, exchange: Exchange, route: Route, *, fresh: bool = False
    ) -> None:
        """The task path of a routed request: its fault rule, the upstream, the answer
        (``fresh``: on a new upstream connection, a pooled one having failed)."""
        if exchange.fault is not None and await self._inject_before_upstream(reply, exchange):
            return
        request = reply.request
        try:
            upstream, response = await self.forwarder.open(
                request, reply.conn, exchange, route, fresh=fresh
            )
        except UpstreamFailed as failed:
            self.request_failed(reply, exchange, failed)
            return
        exchange.ttfb = time.perf_counter()
        await self.answer(reply, exchange, route, upstream, response)

    async def answer(
        self,
        reply: Reply,
        exchange: Exchange,
        route: Route,
        upstream: UpstreamConnection,
        response: UpstreamResponse,
    ) -> None:
        """Relay the answer whose head came; the upstream connection back to the pool."""
        try:
            exchange.status = response.status
            await self._relay(reply.request, reply, exchange, route, response)
        except asyncio.CancelledError:
            upstream.transport.abort()
            raise
        finally:
            self.forwarder.close(upstream)

    def request_failed(self, reply: Reply, exchange: Exchange, failed: UpstreamFailed) -> None:
        """No upstream answer: the client's doing when reading its body failed (it hung up, or
        stalled: it gets a 408), else a transport failure (a 502)."""
        if exchange.error is not None and exchange.error != STALLED_ERROR:
            reply.conn.transport.abort()  # the client is gone, or sent a broken body
            return
        if exchange.error == STALLED_ERROR:
            reply.conn.closing = True  # rather than wait for the rest of its body
            self._local(reply, exchange, 408, _STALLED)
            return
        exchange.error = failed.kind
        self._local(reply, exchange, 502, f"{failed.kind}\n".encode())

    def _refusal(self, request: Request, route: Route) -> tuple[int, str, bytes] | None:
        """Status, error kind and body of a routed request the proxy must not forward."""
        if has_dot_segment(route.path):
            return 400, "path_refused", _PATH_REFUSED
        if request.version < (1, 0):  # HTTP/0.9: a request line and no headers
            return 400, "http_version_refused", _VERSION_REFUSED
        if not self.links.allows(route.origin):
            return 403, "origin_refused", _REFUSED
        return None

    async def _relay(
        self,
        request: Request,
        reply: Reply,
        exchange: Exchange,
        route: Route,
        response: UpstreamResponse,
    ) -> None:
        exchange.content_type = response.fields.get(b"content-type")
        headers = self.relay.response_headers(response, route, from_file=exchange.linked == "file")
        shaped = exchange.fault is not None and exchange.fault.shapes_body
        fault = exchange.fault if shaped and request.method != "HEAD" else None
        try:
            pending: list[bytes] = []
            if request.method != "HEAD":
                pending, body, headers = await self.relay.small_body(response, headers, route)
                if body is not None:
                    if fault is None:
                        # Head and body in one write: one syscall, one wake-up of the client.
                        reply.whole(response.status, response.reason, headers, body)
                        await reply.drain()
                        exchange.sent = len(body)
                        exchange.end = time.perf_counter()
                        return
                    pending = [body]  # a faulty body is streamed through the shaper
                    reply.length = len(body)
            sized = request.method == "HEAD" or any(
                k.lower() == b"content-length" for k, _ in headers
            )
            if reply.length is None:
                reply.length = response.length
            reply.conn.write(reply.head(response.status, response.reason, headers, sized=sized))
            error = await self.relay.stream(reply, response.body, pending, fault, exchange)
            exchange.error = exchange.error or error
            exchange.end = time.perf_counter()
        except ConnectionError as exc:  # writes towards a client that hung up or stalled
            stalled = isinstance(exc, ClientStalled)
            exchange.error = STALLED_ERROR if stalled else "client_disconnected"
            reply.conn.transport.abort()  # a stalled client's answer must not look complete
        except Exception as exc:  # the upstream failed mid-answer
            kind = self.forwarder.failure(exc)
            if kind is None:
                raise
            if not reply.started:  # nothing sent yet: a 502 like any transport failure
                exchange.status = None
                exchange.error = kind
                self._local(reply, exchange, 502, f"{kind}\n".encode())
                return
            exchange.error = kind
            reply.conn.transport.abort()  # headers are out: cut the body so it looks cut

    async def _inject_before_upstream(self, reply: Reply, exchange: Exchange) -> bool:
        """Apply the fault rule that fired (``exchange.fault``, decided in ``_prelude``) where
        it acts before the upstream is asked: delay, status, reset.

        True when the rule answered in the upstream's place (a body rule stays in
        ``exchange.fault`` for the relay).
        """
        rule = exchange.fault
        assert rule is not None  # noqa: S101 - checked by the caller
        if rule.delay_s > 0:
            await asyncio.sleep(rule.delay_s)
        if rule.status is not None:
            exchange.status, body, extra = shaping.injected_answer(rule)
            self._local(reply, exchange, exchange.status, body, extra)
            return True
        if rule.reset == "before":
            exchange.error = "injected_reset_before_headers"
            shaping.reset(reply.conn)
            exchange.end = exchange.ttfb = time.perf_counter()
            return True
        return False

    def _local(
        self,
        reply: Reply,
        exchange: Exchange,
        status: int,
        body: bytes,
        extra: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """An answer made by the proxy itself (unattributed path, refusal, upstream failure)."""
        exchange.ttfb = time.perf_counter()
        try:
            reply.local(status, body, extra)
            exchange.sent = len(body)
        except ConnectionError:
            exchange.error = exchange.error or "client_disconnected"
        exchange.end = time.perf_counter()
