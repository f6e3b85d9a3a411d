"""The proxy's connections to the index (and to the file hosts a listing links): pooled, parsed.

One :class:`UpstreamConnection` (an asyncio Protocol with an httptools response parser) per TCP
connection; :class:`UpstreamPool` keeps the idle ones per origin. Why each part:

- keep-alive: a connection per request would leave TIME_WAIT sockets and add a handshake to
  every measured latency; whether a request opened one is on its record (``upstream_new``);
- at most ``limit`` exchanges at once (256): a few hundred frozen clients can hold that many,
  and the stall timeout frees them (``pipstorm.infra.proxy.handler``);
- idle connections are reused newest first and closed after ``keepalive`` seconds (shorter
  than the keep-alive of the servers behind an index, gunicorn's 2 s), so the proxy never
  reuses one the server is closing, and the pool shrinks back after a peak;
- a request without a body that fails on a reused connection before any byte of an answer
  (the server closed it while idle) is sent again once on a new one, as nginx does: the index
  did nothing wrong. A new connection's failure is the index's (``upstream_reset``);
- the response body is a :class:`~pipstorm.infra.proxy.wire.messages.Body`: the connection's reading
  pauses while the client is slower than the index;
- on the fast path, an answer whose first read begins one the proxy made already (the same bytes
  from the same URL, ``pipstorm.infra.proxy.wire.replays``) is not parsed: its listener sends the
  kept one, at once or once the second read is the kept rest too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Coroutine
from functools import partial
from typing import Any, Final, Protocol

import httptools

from pipstorm.infra.proxy.rewrite import Origin
from pipstorm.infra.proxy.wire.messages import Body, Fields, Headers, WriteFlow, expire
from pipstorm.infra.proxy.wire.replays import Kept, Replay, Replays

#: How long an idle upstream connection is kept for reuse (see the module's docstring).
UPSTREAM_KEEPALIVE_S: Final = 1.5
UPSTREAM_LIMIT: Final = 256
_NO_BODY_STATUSES: Final = frozenset((204, 304))


class UpstreamGarbage(Exception):
    """The upstream's bytes are not an HTTP response (``upstream_error: <kind>``)."""


class UpstreamClosed(Exception):
    """The upstream closed the connection before its answer was complete (not a
    ``ConnectionError``: those are the client's)."""


class UpstreamResponse:
    """One answer's head, and its body as it arrives."""

    __slots__ = ("body", "fields", "length", "reason", "status")

    def __init__(self, status: int, reason: bytes, fields: Fields, body: Body) -> None:
        self.status = status
        self.reason = reason
        self.fields = fields
        self.body = body
        length = fields.known.get(b"content-length")
        self.length = int(length) if length is not None and length.isdigit() else None

    @property
    def headers(self) -> Headers:
        """The headers in order, as the upstream sent them."""
        return self.fields.headers


class Listener(Protocol):
    """Who is told, from the parser's callbacks, how an exchange begun with
    :meth:`UpstreamConnection.begin_fast` goes (``pipstorm.infra.proxy.fastpath``): no future
    and no task wake-up between the answer's bytes and the client's."""

    def upstream_head(self, response: UpstreamResponse) -> None:
        """The answer's head came (its body follows in ``response.body``)."""

    def upstream_done(self) -> None:
        """The answer is complete."""

    def upstream_failed(self, exc: BaseException) -> None:
        """No complete answer: ``UpstreamClosed``, ``UpstreamGarbage``."""

    def kept(self, data: bytes) -> Kept | None:
        """The answer's first read: the answer it began when it came before
        (``pipstorm.infra.proxy.wire.replays``), else None."""

    def replay(self, replay: Replay, ttfb: float) -> None:
        """The answer is the kept one (its head came at ``ttfb``): send it as then."""


class UpstreamConnection(WriteFlow):
    """One connection to an upstream origin, one exchange at a time."""

    transport: asyncio.Transport

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._fields = Fields()
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._listener: Listener | None = None
        self._asked = False  # a request was sent: its answer is expected
        self._response: UpstreamResponse | None = None
        self._head_only = False  # a HEAD request: the answer has no body, whatever it says
        self._delimited_by_close = False
        self.answered = False  # a byte of the current exchange's answer came
        self._reads = 0  # reads of the current exchange's answer
        self._first = b""  # the first of them (b"": not to be kept)
        self._messages = 0  # answers begun in them (an interim one, or bytes after the answer)
        self._offer: tuple[Replays, str, Replay] | None = None  # ``offer``
        # A first read that began a kept answer, not parsed yet: (it, the rest of the kept
        # answer, what it became, when it came).
        self._held: tuple[bytes, bytes, Replay, float] | None = None
        self.complete = False  # the current exchange's answer is complete
        self.reusable = False
        self.closed = False
        self.idle_since = 0.0
        self.last_data = 0.0  # time.monotonic() of the last bytes received

    def begin(self, data: bytes, *, head_only: bool) -> asyncio.Future[UpstreamResponse]:
        """Send a request head (and a body known whole); the future is its answer's head."""
        head = self._head = asyncio.get_running_loop().create_future()
        self._listener = None
        if self._send(data, head_only):
            head.set_exception(UpstreamClosed("the upstream closed the connection"))
        return head

    def begin_fast(self, data: bytes, *, head_only: bool, listener: Listener) -> None:
        """Send a request head; ``listener`` is told of its answer from the callbacks."""
        self._head = None
        self._listener = listener
        if self._send(data, head_only):
            self._listener = None
            listener.upstream_failed(UpstreamClosed("the upstream closed the connection"))

    def offer(self, replays: Replays, url: str, replay: Replay) -> None:
        """What the current answer became: kept in ``replays`` once its read is parsed, if one
        read or two were the whole answer and nothing more, on a connection kept alive."""
        self._offer = (replays, url, replay)

    def detach(self) -> None:
        """Tell the listener nothing more: a task reads the answer's body from here on."""
        self._listener = None

    def _send(self, data: bytes, head_only: bool) -> bool:
        """Start an exchange; True when the connection is closed already."""
        self._response = None
        self._head_only = head_only
        self._asked = True
        self._messages = 0
        self._held = None
        self.answered = self.complete = self.reusable = False
        if self.closed:
            return True
        self.transport.write(data)
        return False

    async def head(
        self, future: asyncio.Future[UpstreamResponse], timeout: float
    ) -> UpstreamResponse:
        """The answer's head, within ``timeout`` seconds (else ``TimeoutError``)."""
        if not future.done():
            timer = asyncio.get_running_loop().call_later(timeout, expire, future)
            try:
                await future
            finally:
                timer.cancel()
        return future.result()

    def write(self, data: bytes) -> None:
        """Part of a request body."""
        if self.closed:
            raise UpstreamClosed("the upstream closed the connection")
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait while the upstream reads an upload slower than the client sends it."""
        if self.closed:
            raise UpstreamClosed("the upstream closed the connection")
        await self.wait_writable(timeout)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.complete or not self._asked:  # bytes nobody asked for: not reusable
            self.reusable = False
            self.transport.abort()
            return
        self.last_data = time.monotonic()
        held = self._held
        if held is not None:  # the first read began a kept answer: is this its rest?
            self._held = None
            first, rest, replay, ttfb = held
            if data == rest and self._listener is not None:
                self._replay(replay, ttfb)
                return
            data, self._first, self._reads = first + data, b"", 2  # another: parsed whole
        elif self.answered:
            self._reads += 1
        elif self._first_read(data):
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._offer = None
            self._fail(UpstreamGarbage(type(exc).__name__))
            self.transport.abort()
            return
        if self._head_only and self._response is not None and not self.complete:
            # llhttp would wait for the body a HEAD answer's Content-Length announces.
            self.reusable = self._parser.should_keep_alive()
            self._parser = httptools.HttpResponseParser(self)
            self._message_done()
        if self._offer is not None:
            self._keep_offered(data)

    def _first_read(self, data: bytes) -> bool:
        """The answer's first read: True when it began an answer the proxy made already (not
        parsed: sent again now, or once its rest is as before too)."""
        self.answered = True
        self._reads = 1
        self._first = data
        listener = self._listener
        found = None if listener is None or self._head_only else listener.kept(data)
        if found is None:
            return False
        rest, replay = found
        if rest:  # its head, as before: the rest must be as before too
            self._held = (data, rest, replay, time.perf_counter())
        else:
            self._replay(replay, time.perf_counter())
        return True

    def _keep_offered(self, data: bytes) -> None:
        """Keep what the answer became (``offer``) if it was whole in this read, or in the
        first and this one, and nothing more, on a connection kept alive."""
        offer, self._offer = self._offer, None
        if offer is None or self._messages != 1 or not (self.complete and self.reusable):
            return
        replays, url, replay = offer
        if self._reads == 1:
            replays.keep(data, b"", url, replay)
        elif self._reads == 2 and self._first:
            replays.keep(self._first, data, url, replay)

    def _replay(self, replay: Replay, ttfb: float) -> None:
        """The answer is a kept one: whole and kept alive, as it was; its listener sends it."""
        self.complete = self.reusable = True
        listener, self._listener = self._listener, None
        assert listener is not None  # noqa: S101 - only an exchange with one looks for it
        listener.replay(replay, ttfb)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        if response is not None and not self.complete and self._delimited_by_close:
            self.complete = True  # a body without a length ends with the connection
            response.body.finish()
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.upstream_done()
            return
        self._fail(UpstreamClosed("the upstream closed the connection"))
        self.fail_drain(UpstreamClosed("the upstream closed the connection"))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._messages += 1

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.add(name, value)

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        fields, reason = self._fields, self._reason
        self._fields, self._reason = Fields(), b""
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows
        transport = self.transport
        response = UpstreamResponse(
            status, reason, fields, Body(transport.pause_reading, transport.resume_reading)
        )
        self._response = response
        chunked = b"chunked" in fields.known.get(b"transfer-encoding", b"").lower()
        self._delimited_by_close = not (
            self._head_only or chunked or response.length is not None or status in _NO_BODY_STATUSES
        )
        if self._head_only:
            response.body.finish()
        if self._listener is not None:
            self._listener.upstream_head(response)
        elif self._head is not None and not self._head.done():
            self._head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response.body.feed(body)

    def on_message_complete(self) -> None:
        if self._response is None or self.complete:
            return  # the end of an interim answer
        self.reusable = self._parser.should_keep_alive()
        self._message_done()

    def _message_done(self) -> None:
        assert self._response is not None  # noqa: S101 - called once a head came
        self.complete = True
        self._response.body.finish()
        if self._response.body.release_producer():
            self.transport.resume_reading()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.upstream_done()

    def _fail(self, exc: BaseException) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        elif self._response is not None and not self.complete:
            self._response.body.fail(exc)
        self.reusable = False
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.upstream_failed(exc)


class SlotWaiter(Protocol):
    """Who waits for one of the pool's slots: a task's future, or a fast path exchange."""

    def done(self) -> bool:
        """Whether it waits no more (handed a slot, or given up)."""

    def set_result(self, result: None, /) -> None:
        """Handed a slot."""


#: A new connection being made (``UpstreamPool.opening``).
Opening = Coroutine[Any, Any, tuple[asyncio.Transport, "UpstreamConnection"]]


class UpstreamPool:
    """Idle keep-alive connections per origin, newest first, and the bound on exchanges."""

    def __init__(
        self,
        connect_timeout: float,
        *,
        limit: int = UPSTREAM_LIMIT,
        keepalive: float = UPSTREAM_KEEPALIVE_S,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._free = limit  # exchanges that may start now
        self._waiting: deque[SlotWaiter] = deque()
        self._idle: dict[Origin, list[UpstreamConnection]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._tls: ssl.SSLContext | None = None

    def try_slot(self) -> bool:
        """Take one of the ``limit`` exchanges if one is free now (no wait); give it back
        with :meth:`free`."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        return False

    def queue(self, waiter: SlotWaiter) -> None:
        """Hand ``waiter`` the next slot freed (``free``), after those waiting before it."""
        self._waiting.append(waiter)

    async def slot(self) -> None:
        """Wait for one of the ``limit`` exchanges; give it back with :meth:`free`."""
        if self.try_slot():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter  # free() handed its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.free()  # handed over as this wait was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # free() may have dropped it already
                    self._waiting.remove(waiter)
            raise

    def free(self) -> None:
        """An exchange is over: its slot to the first waiting one, else back."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def take(self, origin: Origin) -> UpstreamConnection | None:
        """The newest idle connection to ``origin`` still fresh; stale ones are closed."""
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not (conn.closed or conn.transport.is_closing()) and (
                now - conn.idle_since < self.keepalive
            ):
                return conn
            conn.transport.close()
        return None

    async def connect(self, origin: Origin) -> UpstreamConnection:
        """A new connection to ``origin`` (TLS for https), within the connect timeout."""
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await self.opening(origin)
        return conn

    def opening(self, origin: Origin) -> Opening:
        """The loop's connect to ``origin`` (TLS for https), to be awaited; no timeout of its
        own. The loop resolves no numeric address (no ``getaddrinfo`` call for an IP)."""
        tls = None
        if origin.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        return asyncio.get_running_loop().create_connection(
            partial(UpstreamConnection, origin),
            origin.host,
            origin.port,
            ssl=tls,
            server_hostname=origin.host if tls is not None else None,
        )

    def give_back(self, conn: UpstreamConnection) -> None:
        """Keep ``conn`` for reuse if its last answer left it usable, else close it."""
        if conn.closed or not (conn.complete and conn.reusable):
            conn.transport.abort()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.keepalive, self._expire)

    def _expire(self) -> None:
        """Close the connections idle for ``keepalive``; again later while any are left."""
        self._sweep = None
        now = time.monotonic()
        left = False
        for idle in self._idle.values():
            for conn in [c for c in idle if c.closed or now - c.idle_since >= self.keepalive]:
                idle.remove(conn)
                conn.transport.close()
            left = left or bool(idle)
        if left:
            self._sweep = asyncio.get_running_loop().call_later(self.keepalive / 2, self._expire)

    def close(self) -> None:
        """Close every idle connection (at shutdown)."""
        if self._sweep is not None:
            self._sweep.cancel()
        for idle in self._idle.values():
            for conn in idle:
                with contextlib.suppress(Exception):
                    conn.transport.close()
        self._idle.clear()
