"""The proxy's fast path: a plain request answered from the protocols' callbacks, no task.

Most requests of a load test are plain: a GET or HEAD without a body, no fault rule firing,
and an answer read whole (every listing, any small body; its length known and at most
``HIGH_WATER``), on a pooled keep-alive connection to its origin or a new one (an HTTP/1.0
index opens one per request), sent at once or once a slot of the pool's bound is free.
Served as a task, each of them cost a task and its steps, a future for the answer's head and
a timer for its read timeout, and both the request and the answer waited for a pass of the
event loop before they went on (issue 20 item 5: the proxy's added p50, docs/performance.md).
Here the request head goes upstream from the client's parser callback (or from the new
connection's connect), the answer goes back from the upstream's, and one timer per proxy
watches the read timeouts of all of them. Each exchange is a
``pipstorm.infra.proxy.fastexchange.FastExchange``.

The task path (``pipstorm.infra.proxy.handler``) takes over wherever a wait is needed, at the
point it turns out to be: a request with a body, a fault rule (before anything is sent); a
pooled connection that fails before any byte of an answer (its one retry on a new
connection); an answer that is streamed (too long, no length, not read whole: from its head
on); a client slower than a whole answer (the wait for its drain). Both paths make the same
bytes and the same records with the same pieces
(``Forwarder.head``, ``Relay.response_headers``/``whole_body``, ``Reply``, ``record_fields``);
here an answer's head comes from its header block's plan where it has one
(``pipstorm.infra.proxy.wire.heads``: the same bytes, spelled once per block).
The record and the hand-back of the upstream connection wait for the loop's next pass: the
answer is out first, and a client's pipelined requests are served one call after another,
never nested.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from pipstorm.infra.proxy.exchange import Exchange, record_fields
from pipstorm.infra.proxy.fastexchange import FastExchange, TaskPath
from pipstorm.infra.proxy.log import RecordWriter
from pipstorm.infra.proxy.relay import Reply
from pipstorm.infra.proxy.rewrite import Route
from pipstorm.infra.proxy.wire.clients import ClientConnection
from pipstorm.infra.proxy.wire.messages import Request
from pipstorm.infra.proxy.wire.upstream import UpstreamConnection

_PLAIN_METHODS: Final = frozenset(("GET", "HEAD"))


class FastPath:
    """Starts plain requests from the callbacks, watches their read timeouts, finishes them."""

    def __init__(self, tasks: TaskPath, writer: RecordWriter, read_timeout: float) -> None:
        self.tasks = tasks
        self.writer = writer
        self.read_timeout = read_timeout
        self._waiting: dict[FastExchange, None] = {}  # for the upstream, oldest first
        self._queued: dict[FastExchange, None] = {}  # for a pool slot (``UpstreamPool.queue``)
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
        """Whether an exchange is waiting for a slot, its upstream or its record."""
        return bool(self._waiting) or bool(self._queued) or self._finishing > 0

    def start(self, request: Request, reply: Reply, exchange: Exchange, route: Route) -> bool:
        """Send a plain request upstream now or once one of the pool's slots is free; False
        (nothing done) when it is not plain."""
        if request.body is not None or request.method not in _PLAIN_METHODS or route.origin is None:
            return False
        forwarder = self.tasks.forwarder
        fast = FastExchange(self, reply, exchange, route, forwarder.head(request, route))
        if forwarder.pool.try_slot():
            fast.go()
        else:  # a burst holds every slot: the pool hands one over when free (``set_result``)
            self._queued[fast] = None
            forwarder.pool.queue(fast)
        return True

    def dequeue(self, fast: FastExchange) -> None:
        """``fast`` was handed a pool slot: it goes, or gives the slot on if cut meanwhile."""
        if fast in self._queued:
            del self._queued[fast]
            fast.go()
        else:
            self.tasks.forwarder.pool.free()

    def finish(self, fast: FastExchange, upstream: UpstreamConnection | None = None) -> None:
        """``finish_soon`` for ``fast``."""
        self.finish_soon(fast.request, fast.exchange, fast.reply.conn, upstream)

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
        queued, self._queued = list(self._queued), {}
        for fast in queued:  # never sent: no slot, no upstream
            fast.exchange.error = "proxy_shutdown"
            fast.reply.conn.transport.abort()
            self.finish(fast)

    def release(self, fast: FastExchange) -> None:
        """``fast`` waits for its upstream no more."""
        self._waiting.pop(fast, None)

    def watch(self, fast: FastExchange) -> None:
        """Watch ``fast``'s read timeout (one timer for all)."""
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
