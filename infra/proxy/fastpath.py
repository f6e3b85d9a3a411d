"""The proxy's fast path: a plain request answered from the protocols' callbacks, no task.

Most requests of a load test are plain: a GET or HEAD without a body, no fault rule firing, a
pooled keep-alive connection to its origin free, and an answer read whole (every listing, any
small body; its length known and at most ``HIGH_WATER``). Served as a task, each of them cost
a task and its steps, a future for the answer's head and a timer for its read timeout, and
both the request and the answer waited for a pass of the event loop before they went on
(issue 20 item 5: the proxy's added p50, docs/performance.md). Here the request head goes
upstream from the client's parser callback, the answer goes back from the upstream's, and one
timer per proxy watches the read timeouts of all of them.

The task path (``pipstorm.infra.proxy.handler``) takes over wherever a wait is needed, at the
point it turns out to be: a request with a body, a fault rule, no free slot or pooled
connection (before anything is sent); a pooled connection that fails before any byte of an
answer (its one retry on a new connection); an answer that is streamed (too long, no length, not
read whole: from its head on); a client slower than a whole answer (the wait for its drain).
Both paths make the same bytes and the same records with the same pieces
(``Forwarder.head``, ``Relay.response_headers``/``whole_body``, ``Reply``, ``record_fields``);
here an answer's head comes from its header block's plan where it has one
(``pipstorm.infra.proxy.wire.heads``: the same bytes, spelled once per block).
The record and the hand-back of the upstream connection wait for the loop's next pass: the
answer is out first, and a client's pipelined requests are served one call after another,
never nested.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from pipstorm.infra.proxy.exchange import (
    STALLED_ERROR,
    Exchange,
    Forwarder,
    UpstreamFailed,
    failure_kind,
    record_fields,
)
from pipstorm.infra.proxy.log import RecordWriter
from pipstorm.infra.proxy.relay import SMALL_BODY_BYTES, ClientStalled, Relay, Reply
from pipstorm.infra.proxy.rewrite import Route
from pipstorm.infra.proxy.wire.clients import ClientConnection
from pipstorm.infra.proxy.wire.heads import AnswerPlan
from pipstorm.infra.proxy.wire.messages import HIGH_WATER, Request
from pipstorm.infra.proxy.wire.upstream import (
    UpstreamClosed,
    UpstreamConnection,
    UpstreamResponse,
)

_PLAIN_METHODS: Final = frozenset(("GET", "HEAD"))
Step = Callable[[], Awaitable[None]]  # what a task runs (``TaskPath.spawn``)


class TaskPath(Protocol):
    """What the fast path hands a request over to (``ProxyHandler``)."""

    forwarder: Forwarder
    relay: Relay

    def spawn(self, request: Request, reply: Reply, exchange: Exchange, step: Step) -> None:
        """Go on serving the request as a task: ``step()``, then its record."""

    async def serve_routed(
        self, reply: Reply, exchange: Exchange, route: Route, *, fresh: bool = False
    ) -> None:
        """The task path from the upstream exchange on."""

    async def answer(
        self,
        reply: Reply,
        exchange: Exchange,
        route: Route,
        upstream: UpstreamConnection,
        response: UpstreamResponse,
    ) -> None:
        """The task path from the answer's head on."""

    def request_failed(self, reply: Reply, exchange: Exchange, failed: UpstreamFailed) -> None:
        """No upstream answer: the proxy's own (a 502)."""


class FastPath:
    """Starts plain requests from the callbacks, watches their read timeouts, finishes them."""

    def __init__(self, tasks: TaskPath, writer: RecordWriter, read_timeout: float) -> None:
        self.tasks = tasks
        self.writer = writer
        self.read_timeout = read_timeout
        self._waiting: dict[FastExchange, None] = {}  # for the upstream, oldest first
        self._timer: asyncio.TimerHandle | None = None
        self._finishing = 0  # records scheduled, not yet written
        # Taken once: CPython 3.11's ``get_running_loop`` makes a getpid syscall per call.
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (the proxy has one for its life)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    @property
    def busy(self) -> bool:
        """Whether an exchange is waiting for its upstream or its record."""
        return bool(self._waiting) or self._finishing > 0

    def start(self, request: Request, reply: Reply, exchange: Exchange, route: Route) -> bool:
        """Send a plain request upstream now; False (nothing done) when it is not plain."""
        origin = route.origin
        if request.body is not None or request.method not in _PLAIN_METHODS or origin is None:
            return False
        forwarder = self.tasks.forwarder
        head = forwarder.head(request, route)
        pool = forwarder.pool
        if not pool.try_slot():
            return False
        upstream = pool.take(origin)
        if upstream is None:
            pool.free()
            return False
        exchange.upstream_new = False
        fast = FastExchange(self, reply, exchange, route, upstream)
        self._wait(fast)
        upstream.begin_fast(head, head_only=request.method == "HEAD", listener=fast)
        return True

    def finish_soon(
        self,
        request: Request,
        exchange: Exchange,
        conn: ClientConnection,
        upstream: UpstreamConnection | None = None,
    ) -> None:
        """On the loop's next pass: ``upstream`` back to the pool (its slot free), the record
        written, the client connection on to its next request."""
        self._finishing += 1
        self.loop.call_soon(self._finish, request, exchange, conn, upstream)

    def _finish(
        self,
        request: Request,
        exchange: Exchange,
        conn: ClientConnection,
        upstream: UpstreamConnection | None,
    ) -> None:
        self._finishing -= 1
        try:
            if upstream is not None:
                self.tasks.forwarder.close(upstream)
        finally:
            self.writer.write_fields(record_fields(request, exchange))
            conn.request_done()

    def cut_all(self) -> None:
        """Cut every exchange still waiting for its upstream (at the end of shutdown's grace):
        each is recorded as ``proxy_shutdown``."""
        for fast in list(self._waiting):
            fast.cut("proxy_shutdown")

    def release(self, fast: FastExchange) -> None:
        """``fast`` waits for its upstream no more."""
        self._waiting.pop(fast, None)

    def _wait(self, fast: FastExchange) -> None:
        self._waiting[fast] = None
        if self._timer is None:
            self._timer = self.loop.call_later(self.read_timeout, self._expire)

    def _expire(self) -> None:
        """Time out the exchanges past their read timeout; again at the soonest other one's.
        One timer for all: exchanges end far sooner than the timeout, so it rarely fires."""
        self._timer = None
        now = time.monotonic()
        soonest: float | None = None
        for fast in list(self._waiting):
            deadline = fast.deadline(self.read_timeout)
            if deadline <= now:
                fast.time_out()
            elif soonest is None or deadline < soonest:
                soonest = deadline
        if soonest is not None:
            self._timer = self.loop.call_later(soonest - now, self._expire)


class FastExchange:
    """One plain request's exchange, told by its upstream connection how it goes
    (an ``upstream.Listener``)."""

    __slots__ = (
        "exchange",
        "path",
        "plan",
        "reply",
        "request",
        "response",
        "route",
        "since",
        "upstream",
    )

    def __init__(
        self,
        path: FastPath,
        reply: Reply,
        exchange: Exchange,
        route: Route,
        upstream: UpstreamConnection,
    ) -> None:
        self.path = path
        self.request = reply.request
        self.reply = reply
        self.exchange = exchange
        self.route = route
        self.upstream = upstream
        self.response: UpstreamResponse | None = None
        self.plan: AnswerPlan | None = None  # the answer head's, once it came
        self.since = time.monotonic()

    def deadline(self, timeout: float) -> float:
        """When the read timeout ends: ``timeout`` after the request for the answer's head (as
        the task path's wait for it), after the last bytes for its body (as each read)."""
        if self.response is None:
            return self.since + timeout
        return max(self.since, self.upstream.last_data) + timeout

    def upstream_head(self, response: UpstreamResponse) -> None:
        """The head came: wait for a whole answer here, else stream it as a task."""
        exchange = self.exchange
        exchange.ttfb = time.perf_counter()
        exchange.status = response.status
        self.response = response
        try:
            self.plan = self.path.tasks.relay.plans.of(
                response.status, response.reason, response.fields
            )
            whole = self._whole(response)
        except Exception as exc:
            self._bug(exc)
            return
        if whole:
            return  # answered when complete (upstream_done)
        self.path.release(self)
        self.upstream.detach()
        tasks, reply, route, upstream = self.path.tasks, self.reply, self.route, self.upstream

        async def answer() -> None:
            await tasks.answer(reply, exchange, route, upstream, response)

        tasks.spawn(self.request, reply, exchange, answer)

    def _whole(self, response: UpstreamResponse) -> bool:
        """Whether the answer is sent once complete: a HEAD's, or a body read whole whose
        length is known and small enough never to pause its connection's reading."""
        if self.request.method == "HEAD":
            return True
        length = response.length
        if length is None or length > HIGH_WATER:
            return False
        plan = self.plan
        if plan is not None:  # ``Relay.reads_whole``, from the plan
            return plan.rewrites or length <= SMALL_BODY_BYTES
        return self.path.tasks.relay.reads_whole(response)

    def upstream_done(self) -> None:
        """The answer is complete: sent in one write, as the task path sends a whole one."""
        self.path.release(self)
        try:
            size = self._send_whole()
        except ConnectionError:  # the client hung up
            self.exchange.error = "client_disconnected"
            self.reply.conn.transport.abort()
        except Exception as exc:
            self._bug(exc)
            return
        else:
            if self.reply.conn.write_paused:
                self._wait_for_drain(size)
                return
            self.exchange.sent = size
            self.exchange.end = time.perf_counter()
        self.path.finish_soon(self.request, self.exchange, self.reply.conn, self.upstream)

    def _send_whole(self) -> int:
        """Write the answer (a HEAD's head, else head and body at once); the body's size."""
        response, reply, exchange, plan = self.response, self.reply, self.exchange, self.plan
        assert response is not None  # noqa: S101 - done comes after the head
        if plan is None:
            return self._send_whole_step_by_step(response)
        exchange.content_type = plan.content_type
        if self.request.method == "HEAD":
            reply.length = response.length
            reply.conn.write(plan.fixed + reply.sized_end())
            return 0
        chunks = response.body.take_all() or []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if plan.rewrites:
            relay = self.path.tasks.relay
            body = relay.listing(body, plan.content_type or "", self.route, response.status)
            parts = [plan.pre, b"%d" % len(body), plan.post, reply.sized_end(), body]
        else:  # the upstream's Content-Length, and its body as it came
            parts = [plan.fixed, reply.sized_end(), body]
        reply.conn.write(b"".join(parts))  # head and body in one write, copied once
        return len(body)

    def _send_whole_step_by_step(self, response: UpstreamResponse) -> int:
        """``_send_whole`` for a head no plan spells (``pipstorm.infra.proxy.wire.heads``)."""
        reply, exchange = self.reply, self.exchange
        relay = self.path.tasks.relay
        exchange.content_type = response.fields.get(b"content-type")
        from_file = exchange.linked == "file"
        headers = relay.response_headers(response, self.route, from_file=from_file)
        if self.request.method == "HEAD":
            reply.length = response.length
            reply.conn.write(reply.head(response.status, response.reason, headers, sized=True))
            return 0
        chunks = response.body.take_all() or []
        body, headers = relay.whole_body(chunks, response, headers, self.route)
        reply.whole(response.status, response.reason, headers, body)
        return len(body)

    def _wait_for_drain(self, size: int) -> None:
        """The client's buffer is full: a task waits for it as the task path would."""
        reply, exchange, upstream = self.reply, self.exchange, self.upstream
        forwarder = self.path.tasks.forwarder

        async def drained() -> None:
            try:
                await reply.drain()
                exchange.sent = size
                exchange.end = time.perf_counter()
            except ConnectionError as exc:  # a client that hung up or stalled
                stalled = isinstance(exc, ClientStalled)
                exchange.error = STALLED_ERROR if stalled else "client_disconnected"
                reply.conn.transport.abort()
            finally:
                forwarder.close(upstream)

        self.path.tasks.spawn(self.request, reply, exchange, drained)

    def upstream_failed(self, exc: BaseException) -> None:
        """No complete answer: the stale pooled connection's retry, else a 502."""
        self.path.release(self)
        upstream, tasks = self.upstream, self.path.tasks
        upstream.transport.abort()
        tasks.forwarder.pool.free()
        reply, exchange, route = self.reply, self.exchange, self.route
        if self.response is None and isinstance(exc, UpstreamClosed) and not upstream.answered:
            # The server closed this pooled connection while it was idle: once more, on a new
            # one (the task path's retry; the index did nothing wrong).

            async def retry() -> None:
                await tasks.serve_routed(reply, exchange, route, fresh=True)

            tasks.spawn(self.request, reply, exchange, retry)
            return
        exchange.status = None  # nothing of the answer was sent
        failed = UpstreamFailed(failure_kind(exc) or "upstream_error")
        try:
            tasks.request_failed(reply, exchange, failed)
        finally:
            self.path.finish_soon(self.request, exchange, reply.conn)

    def time_out(self) -> None:
        """The read timeout ended before the answer was complete."""
        self.upstream.detach()
        self.upstream_failed(TimeoutError())

    def cut(self, error: str) -> None:
        """End the exchange now, both connections cut (at shutdown)."""
        self.path.release(self)
        self.upstream.detach()
        self.upstream.transport.abort()
        self.path.tasks.forwarder.pool.free()
        self.exchange.error = self.exchange.error or error
        self.reply.conn.transport.abort()
        self.path.finish_soon(self.request, self.exchange, self.reply.conn)

    def _bug(self, exc: Exception) -> None:
        """An exception of the proxy's own: its trace, and the client cut off (as a task's)."""
        traceback.print_exception(exc, file=sys.stderr)
        self.exchange.error = f"proxy_error: {type(exc).__name__}"
        self.cut("proxy_error")
