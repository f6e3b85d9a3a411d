"""One plain request's exchange on the fast path (``pipstorm.infra.proxy.fastpath``): told by
its upstream connection, from the parser's callbacks, how it goes.

A :class:`FastExchange` waits for one of the pool's slots without a task (it is the pool's
waiter: ``done``/``set_result``), takes a pooled connection or opens a new one (the loop's own
connect in a task, no coroutine of the proxy's: an HTTP/1.0 index's requests, every one on a
new connection, took the task path before, 0.1 ms more CPU each; docs/performance.md, issue 20),
sends the head, and answers the client once the answer is whole, or at once when its first read
begins an answer made already (``pipstorm.infra.proxy.wire.replays``: sent again, unparsed).
Wherever a wait is needed it hands the request to the task path (:class:`TaskPath`,
``pipstorm.infra.proxy.handler``): a streamed answer, a client slower than the answer, the stale
pooled connection's one retry.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Protocol

from pipstorm.infra.proxy.exchange import (
    STALLED_ERROR,
    Exchange,
    Forwarder,
    UpstreamFailed,
    failure_kind,
)
from pipstorm.infra.proxy.relay import SMALL_BODY_BYTES, ClientStalled, Relay, Reply
from pipstorm.infra.proxy.rewrite import Route
from pipstorm.infra.proxy.wire.heads import AnswerPlan
from pipstorm.infra.proxy.wire.messages import HIGH_WATER, Request
from pipstorm.infra.proxy.wire.replays import Kept, Replay
from pipstorm.infra.proxy.wire.upstream import (
    Opening,
    UpstreamClosed,
    UpstreamConnection,
    UpstreamResponse,
)

Step = Callable[[], Awaitable[None]]  # what a task runs (``TaskPath.spawn``)
Connecting = asyncio.Task[tuple[asyncio.Transport, UpstreamConnection]]


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


class Watch(Protocol):
    """What watches an exchange's read timeout and finishes it (``FastPath``)."""

    tasks: TaskPath

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop."""

    def watch(self, fast: FastExchange) -> None:
        """Watch ``fast``'s read timeout: it waits for its upstream."""

    def release(self, fast: FastExchange) -> None:
        """``fast`` waits for its upstream no more."""

    def dequeue(self, fast: FastExchange) -> None:
        """``fast`` was handed a pool slot: it goes (unless cut meanwhile)."""

    def finish(self, fast: FastExchange, upstream: UpstreamConnection | None = None) -> None:
        """The record and the hand-back of ``upstream``, on the loop's next pass."""


class FastExchange:
    """One plain request's exchange, told by its upstream connection how it goes
    (an ``upstream.Listener``)."""

    __slots__ = (
        "connecting",
        "exchange",
        "granted",
        "head",
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
        path: Watch,
        reply: Reply,
        exchange: Exchange,
        route: Route,
        head: bytes,
    ) -> None:
        self.path = path
        self.request = reply.request
        self.reply = reply
        self.exchange = exchange
        self.route = route
        self.head = head  # the request head as it goes upstream
        self.upstream: UpstreamConnection | None = None
        self.granted = False  # the pool's slot was handed over (``set_result``)
        self.response: UpstreamResponse | None = None
        self.plan: AnswerPlan | None = None  # the answer head's, once it came
        self.since = time.monotonic()
        self.connecting: Connecting | None = None  # a new upstream connection's, until it is up

    def deadline(self, timeout: float) -> float:
        """When the read timeout ends: ``timeout`` after the request for the answer's head (as
        the task path's wait for it), after the last bytes for its body (as each read)."""
        if self.response is None or self.upstream is None:
            return self.since + timeout
        return max(self.since, self.upstream.last_data) + timeout

    def go(self) -> None:
        """Send the request, its pool slot taken: on a pooled connection now, else on a new
        one once it is connected."""
        origin = self.route.origin
        assert origin is not None  # noqa: S101 - a plain request's route has one
        pool = self.path.tasks.forwarder.pool
        upstream = self.upstream = pool.take(origin)
        self.exchange.upstream_new = upstream is None
        self.since = time.monotonic()
        self.path.watch(self)
        if upstream is None:  # an HTTP/1.0 index, a closing one, the first request of a burst
            self.connect(pool.opening(origin))
        else:
            head_only = self.request.method == "HEAD"
            upstream.begin_fast(self.head, head_only=head_only, listener=self)

    def done(self) -> bool:
        """Whether the wait for a pool slot is over (the pool's waiter interface)."""
        return self.granted or self.exchange.error is not None

    def set_result(self, _: None) -> None:
        """The pool hands a slot over (from ``UpstreamPool.free``): go on the loop's next
        pass, as a woken task would, never inside another exchange's end."""
        self.granted = True
        self.path.loop.call_soon(self.path.dequeue, self)

    def connect(self, opening: Opening) -> None:
        """Open a new upstream connection, the request going once it is up: the loop's own
        connect in a task, no coroutine of ours, no future or timer per exchange (the path's
        watch times the connect out as it does an answer). Served as a task instead, a request
        on a new connection cost 0.1 ms more CPU (docs/performance.md, issue 20)."""
        task = self.connecting = self.path.loop.create_task(opening)
        task.add_done_callback(self._connected)

    def _connected(self, task: Connecting) -> None:
        """Up: the request goes on it, with the read timeout from now on (as the task path's
        connect, then its wait for the head); failed: a 502, as the task path's."""
        if self.connecting is not task:  # cut or timed out meanwhile
            if not task.cancelled() and task.exception() is None:
                task.result()[0].abort()
            return
        self.connecting = None
        if task.cancelled():
            self.cut("proxy_shutdown")
            return
        exc = task.exception()
        if exc is not None:
            if failure_kind(exc) is None and isinstance(exc, Exception):
                self._bug(exc)  # the task path's ``proxy_error``
            else:
                self.upstream_failed(exc)
            return
        upstream = self.upstream = task.result()[1]
        self.since = time.monotonic()
        upstream.begin_fast(self.head, head_only=self.request.method == "HEAD", listener=self)

    def _abandon(self) -> None:
        """Hear no more from the upstream: its connect cancelled, or its listener gone."""
        task, self.connecting = self.connecting, None
        if task is not None:
            task.cancel()
        elif self.upstream is not None:
            self.upstream.detach()

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
        upstream = self.upstream
        assert upstream is not None  # noqa: S101 - the head came from it
        upstream.detach()
        tasks, reply, route = self.path.tasks, self.reply, self.route

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

    def kept(self, data: bytes) -> Kept | None:
        """The answer's first read: the answer it began when it came from this URL before
        (``pipstorm.infra.proxy.wire.replays``); None for none, and for a HEAD's."""
        if self.request.method != "GET":
            return None
        return self.path.tasks.relay.replays.get(data, self.route.upstream_url)

    def replay(self, replay: Replay, ttfb: float) -> None:
        """The answer is one made already: it goes out again, unparsed."""
        exchange = self.exchange
        exchange.ttfb = ttfb
        exchange.status = replay.status
        self.plan = replay.plan
        self._send(replay)

    def upstream_done(self) -> None:
        """The answer is complete: sent in one write, as the task path sends a whole one."""
        self._send(None)

    def _send(self, replay: Replay | None) -> None:
        """Send the whole answer (``replay``'s, else the one parsed), then finish."""
        self.path.release(self)
        try:
            size = self._send_whole() if replay is None else self._send_planned(replay)
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
        self.path.finish(self, self.upstream)

    def _send_whole(self) -> int:
        """Write the answer (a HEAD's head, else head and body at once); the body's size."""
        response, reply, plan = self.response, self.reply, self.plan
        assert response is not None  # noqa: S101 - done comes after the head
        if plan is None:
            return self._send_whole_step_by_step(response)
        if self.request.method == "HEAD":
            self.exchange.content_type = plan.content_type
            reply.length = response.length
            reply.conn.write(plan.fixed + reply.sized_end())
            return 0
        chunks = response.body.take_all() or []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if plan.rewrites:
            relay = self.path.tasks.relay
            body = relay.listing_template(
                body, plan.content_type or "", self.route, response.status
            )
        replay = Replay(response.status, plan, body)
        upstream = self.upstream
        assert upstream is not None  # noqa: S101 - the answer came on it
        upstream.offer(self.path.tasks.relay.replays, self.route.upstream_url, replay)
        return self._send_planned(replay)

    def _send_planned(self, replay: Replay) -> int:
        """Write a GET's answer from its plan and its body (a listing's template gets the
        route's run id); the body's size."""
        plan, reply = replay.plan, self.reply
        self.exchange.content_type = plan.content_type
        if plan.rewrites:
            body = self.path.tasks.relay.for_run(replay.body, self.route)
            parts = [plan.pre, b"%d" % len(body), plan.post, reply.sized_end(), body]
        else:  # the upstream's Content-Length, and its body as it came
            body = replay.body
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
        assert upstream is not None  # noqa: S101 - the answer came on it
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
        if upstream is not None:
            upstream.transport.abort()
        tasks.forwarder.pool.free()
        reply, exchange, route = self.reply, self.exchange, self.route
        stale = upstream is not None and not upstream.answered and not exchange.upstream_new
        if self.response is None and isinstance(exc, UpstreamClosed) and stale:
            # The server closed this pooled connection while it was idle: once more, on a new
            # one (the task path's retry; the index did nothing wrong). A new connection's
            # failure is the index's (``upstream_reset``).

            async def retry() -> None:
                await tasks.serve_routed(reply, exchange, route, fresh=True)

            tasks.spawn(self.request, reply, exchange, retry)
            return
        exchange.status = None  # nothing of the answer was sent
        failed = UpstreamFailed(failure_kind(exc) or "upstream_error")
        try:
            tasks.request_failed(reply, exchange, failed)
        finally:
            self.path.finish(self)

    def time_out(self) -> None:
        """The read timeout ended before the connect, or the answer, was complete."""
        self._abandon()
        self.upstream_failed(TimeoutError())

    def cut(self, error: str) -> None:
        """End the exchange now, both connections cut (at shutdown)."""
        self.path.release(self)
        self._abandon()
        if self.upstream is not None:
            self.upstream.transport.abort()
        self.path.tasks.forwarder.pool.free()
        self.exchange.error = self.exchange.error or error
        self.reply.conn.transport.abort()
        self.path.finish(self)

    def _bug(self, exc: Exception) -> None:
        """An exception of the proxy's own: its trace, and the client cut off (as a task's)."""
        traceback.print_exception(exc, file=sys.stderr)
        self.exchange.error = f"proxy_error: {type(exc).__name__}"
        self.cut("proxy_error")
