"""The clients' connections to the proxy: parsed, numbered, timed out, recorded when refused.

One :class:`ClientConnection` (an asyncio Protocol with an httptools request parser) per TCP
connection. Why each part:

- each connection gets a number; every request record carries the number of the connection
  that carried it (``conn``): "80 upstream connections for 78 pip runs" is a figure a user
  sizing an index needs;
- a client has ``header_timeout`` seconds from the moment its connection opens, or its last
  answer was sent, to complete a request head; bytes trickled meanwhile do not re-arm it. That
  bounds a slowloris client and an idle keep-alive connection alike. When it closes a
  connection that never sent a request, or sent part of one, that is one record of its own
  (no run, no status, ``error: client_header_timeout``, ``req_bytes`` the bytes sent since its
  last request); an idle keep-alive connection's end is not recorded;
- a head the parser refuses (garbage, a TLS hello, a 100 KB line, thousands of headers) gets a
  400 and a record (``error: bad_request: <kind>``), never a traceback on stderr, and nothing
  of it goes upstream;
- requests are served one at a time in order (pipelined ones wait, reading paused past a few);
  a request body is a :class:`~pipstorm.infra.proxy.wire.messages.Body` that pauses reading
  while its reader (the upstream) is slower.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from typing import Final, Protocol

import httptools

from pipstorm.infra.proxy.log import RecordWriter, RequestRecord
from pipstorm.infra.proxy.wire.heads import keep
from pipstorm.infra.proxy.wire.messages import HIGH_WATER, Body, Fields, Request, WriteFlow

#: The error of the record a connection closed by the header timeout leaves.
HEADER_TIMEOUT_ERROR: Final = "client_header_timeout"
#: Limits of a request head (aiohttp's and nginx's order of size): a request line or header
#: line, the whole head, the number of headers.
LINE_MAX_BYTES: Final = 8190
HEAD_MAX_BYTES: Final = 64 * 1024
HEADERS_MAX: Final = 128
#: Pipelined requests parsed ahead of the one being served before reading pauses.
PIPELINE_MAX: Final = 8
#: A request line whose head may skip the parser (``ClientConnection._known_head``): GET or
#: HEAD, an origin-form target of RFC 3986's characters only, HTTP/1.1 or 1.0. Anything else
#: goes to llhttp.
_PLAIN_LINE: Final = re.compile(
    rb"(GET|HEAD) (/[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]*) HTTP/1\.([01])\r\n"
)
#: Header blocks kept (``ClientConnections.blocks``), and the largest head that is kept.
BLOCKS_MAX: Final = 256
BLOCK_MAX_BYTES: Final = 8192
_LINE_VERSIONS: Final = {b"1": (1, 1), b"0": (1, 0)}
_BAD_KINDS: Final = {
    httptools.HttpParserInvalidMethodError: "BadMethod",
    httptools.HttpParserInvalidURLError: "BadTarget",
}


class Handler(Protocol):
    """What serves a request (``pipstorm.infra.proxy.handler.ProxyHandler``); it must call
    ``conn.request_done()`` once its answer is out."""

    def serve(self, request: Request, conn: ClientConnection) -> None: ...


class _TooLarge(Exception):
    """A head over one of the limits (raised from a parser callback)."""


class ClientConnection(WriteFlow):
    """One client's connection: parses its requests and hands them, in order, to the handler."""

    transport: asyncio.Transport

    def __init__(self, number: int, shared: ClientConnections) -> None:
        self.number = number
        self._shared = shared
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._fields = Fields()
        self._head_bytes = 0
        self._in_head = True
        self._too_large: str | None = None
        self._begun = 0  # requests the parser began (``on_message_begin``)
        self._parsing: Request | None = None  # the request whose body is being parsed
        self._queue: deque[Request] = deque()
        self.current: Request | None = None
        self._received = 0  # bytes from the client on this connection
        self._consumed = 0  # of those, the ones that belonged to requests already handled
        self._requests = 0
        self._waiting_since = time.time()  # opened, or its last answer sent
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # of the header timeout (loop time), when armed
        self._pauses: set[str] = set()
        self.closing = False  # no request after the current one
        self.lost = False
        # The loop, taken once: CPython 3.11's ``get_running_loop`` makes a getpid syscall.
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self._shared.live.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            current = self.current
            if current is None or current.body is None or current.body.complete:
                return  # no request after this one: nothing more is read
        self._received += len(data)
        # A read that is one whole head, the first of its request: its header block may be
        # one parsed already.
        whole = self._in_head and not self._head_bytes and len(data) <= BLOCK_MAX_BYTES
        line = _PLAIN_LINE.match(data) if whole else None
        if line is not None and self._known_head(data, line):
            return
        if self._in_head:
            self._head_bytes += len(data)
        self._begun = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.closing = True  # CONNECT or an Upgrade: answered, then nothing more
        except httptools.HttpParserError as exc:
            self._refuse(self._too_large or _BAD_KINDS.get(type(exc), "BadHttpMessage"))
            return
        if self._in_head and self._head_bytes > HEAD_MAX_BYTES:
            self._refuse("HeadTooLarge")  # a line without an end: no callback would see it
            return
        if line is not None and self._begun == 1 and self._done_in_read() and not self.closing:
            self._keep_block(data, line)
        self._dispatch()

    def _known_head(self, data: bytes, line: re.Match[bytes]) -> bool:
        """Serve a head whose header block the parser made already (``ClientConnections.blocks``)
        from it, the parser skipped: True; else False, nothing done. The parser's state is the
        same after a whole head skipped as after one parsed (at a request's start)."""
        found = self._shared.blocks.get((line.group(3), data[line.end() :]))
        if found is None:
            return False
        fields, keep_alive = found
        request = Request(
            line.group(1).decode("latin-1"),
            line.group(2).decode("latin-1"),
            _LINE_VERSIONS[line.group(3)],
            fields,
            keep_alive=keep_alive,
            body=None,
        )
        self._queue.append(request)
        self._disarm()
        self._dispatch()
        return True

    def _done_in_read(self) -> bool:
        """Whether the request begun in this read was parsed whole in it: its head complete
        (``_head_bytes`` reset) and its message too (``_in_head`` again); not a head cut short."""
        return self._in_head and not self._head_bytes

    def _keep_block(self, data: bytes, line: re.Match[bytes]) -> None:
        """``data`` was one whole head of a request without a body, nothing after it: its
        header block, as the parser made it, is kept for the next head with the same block."""
        request = self._queue[-1]  # parsed from ``data``, not served yet
        if request.body is not None or len(line.group(2)) > LINE_MAX_BYTES:
            return
        block = (line.group(3), data[line.end() :])
        keep(self._shared.blocks, block, (request.fields, request.keep_alive), BLOCKS_MAX)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._shared.live.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        gone = ConnectionResetError("the client closed the connection")
        for request in (self.current, *self._queue):
            if request is not None and request.body is not None:
                request.body.fail(gone)
        self._queue.clear()
        self.fail_drain(gone)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > LINE_MAX_BYTES:
            self._too_large = "LineTooLong"
            raise _TooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.add(name, value)
        if len(name) + len(value) > LINE_MAX_BYTES:
            self._too_large = "LineTooLong"
        elif len(self._fields.headers) > HEADERS_MAX:
            self._too_large = "TooManyHeaders"
        else:
            return
        raise _TooLarge

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        fields, self._fields = self._fields, Fields()
        known = fields.known
        body = None
        if (b"content-length" in known or b"transfer-encoding" in known) and _has_body(known):
            body = Body(self._pause_for_body, self._resume_for_body)
        request = Request(
            parser.get_method().decode("latin-1"),
            self._url.decode("latin-1"),
            _VERSIONS.get(version) or _version(version),
            fields,
            keep_alive=parser.should_keep_alive(),
            body=body,
        )
        self._url, self._in_head, self._head_bytes = b"", False, 0
        self._parsing = request
        self._queue.append(request)
        self._disarm()

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None and self._parsing.body is not None:
            self._parsing.body.feed(body)

    def on_message_complete(self) -> None:
        if self._parsing is not None and self._parsing.body is not None:
            self._parsing.body.finish()
            if self._parsing.body.release_producer():
                self._resume("body")
        self._parsing = None
        self._in_head = True

    # -- serving ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start the next request when none is being served."""
        if len(self._queue) >= PIPELINE_MAX:
            self._pause("pipeline")
        if self.current is None and self._queue:
            self.current = self._queue.popleft()
            self._shared.handler.serve(self.current, self)

    def request_done(self) -> None:
        """The current request's answer is out (or abandoned): on to the next, or close."""
        request, self.current = self.current, None
        self._requests += 1
        self._consumed = self._received
        self._waiting_since = time.time()
        if self.lost or self.transport.is_closing():
            self.closing = True
            return
        if self.closing or (request is not None and not self.keeps_open(request)):
            self.closing = True
            self.transport.close()
            return
        self._resume("pipeline")
        if self._queue:
            self._dispatch()
        else:
            self._arm()

    def keeps_open(self, request: Request) -> bool:
        """Whether the connection can carry another request after ``request``'s answer: the
        client wants it, and no unread body of ``request`` is left on the wire."""
        body_left = request.body is not None and not request.body.complete
        return not (self.closing or self.lost or body_left or not request.keep_alive)

    def write(self, data: bytes) -> None:
        """Write towards the client; ``ConnectionResetError`` once it is gone (a write to a
        closed transport would be dropped, and logged by asyncio after a few)."""
        if self.lost or self.transport.is_closing():
            raise ConnectionResetError("the client connection is closed")
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait until the client has taken enough of what was written; ``TimeoutError`` when
        it takes nothing for ``timeout`` seconds."""
        if self.lost and self.write_paused:
            raise ConnectionResetError("the client closed the connection")
        await self.wait_writable(timeout)

    # -- timers, refusals, flow control ---------------------------------------------------

    def _arm(self) -> None:
        """Start the header timeout. One timer per connection, re-armed only when it fires
        early: keep-alive requests come far more often than the timeout."""
        loop = self._loop
        self._deadline = loop.time() + self._shared.header_timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._header_timeout)

    def _disarm(self) -> None:
        self._deadline = None

    def _header_timeout(self) -> None:
        """No complete head in time: close, and record it unless it was an idle keep-alive."""
        self._timer = None
        if self._deadline is None or self.lost:
            return  # a request is being served: armed again after its answer
        loop = self._loop
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._header_timeout)
            return
        if self.current is not None or self._queue:
            return
        self.closing = True
        self.transport.close()
        pending = self._received - self._consumed
        if self._requests and not pending:
            return  # an idle keep-alive connection's ordinary end
        self._shared.writer.write(
            RequestRecord(
                ts=self._waiting_since,
                op="other",
                method="",
                path="",
                status=None,
                total_ms=(time.time() - self._waiting_since) * 1000.0,
                req_bytes=pending,
                error=HEADER_TIMEOUT_ERROR,
                conn=self.number,
            )
        )

    def _refuse(self, kind: str) -> None:
        """A head the parser refused: a 400 unless a request is being answered, a record, and
        the connection closes; requests parsed but not started are dropped unanswered."""
        self.closing = True
        self._disarm()
        parsing, self._parsing = self._parsing, None
        if parsing is not None and parsing in self._queue:
            self._queue.remove(parsing)
        error = f"bad_request: {kind}"
        if parsing is not None and parsing is self.current and parsing.body is not None:
            parsing.body.fail(ConnectionAbortedError(error))  # its handler records it
            return
        answered = self.current is None
        if answered:
            body = f"{error}\n".encode()
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            self._queue.clear()
            self.transport.close()
        self._shared.writer.write(
            RequestRecord(
                ts=time.time(),
                op="other",
                method="",
                path="",
                status=400 if answered else None,
                total_ms=0.0,
                error=error,
                conn=self.number,
            )
        )

    def _pause(self, reason: str) -> None:
        if not self._pauses and not self.lost:
            self.transport.pause_reading()
        self._pauses.add(reason)

    def _resume(self, reason: str) -> None:
        if reason in self._pauses:
            self._pauses.discard(reason)
            if not self._pauses and not self.lost:
                self.transport.resume_reading()

    def _pause_for_body(self) -> None:
        self._pause("body")

    def _resume_for_body(self) -> None:
        self._resume("body")


_VERSIONS: Final = {"1.1": (1, 1), "1.0": (1, 0)}


def _version(text: str) -> tuple[int, int]:
    """An HTTP version the parser gave as ``major.minor`` (the usual ones are in ``_VERSIONS``)."""
    major, _, minor = text.partition(".")
    return int(major or 0), int(minor or 0)


def _has_body(known: dict[bytes, bytes]) -> bool:
    """Whether a request head announces a body: chunked, or a length other than 0."""
    if b"chunked" in known.get(b"transfer-encoding", b"").lower():
        return True
    length = known.get(b"content-length")
    return length is not None and length.strip() not in (b"", b"0")


class ClientConnections:
    """What every client connection shares, and the factory the server calls per connection
    (numbered from 1 in this proxy's life)."""

    def __init__(self, handler: Handler, writer: RecordWriter, header_timeout: float) -> None:
        self.handler = handler
        self.writer = writer
        self.header_timeout = header_timeout
        self.live: set[ClientConnection] = set()
        self._numbers = itertools.count(1)
        # (HTTP/1.x minor version, a head's bytes after its request line) -> its headers as
        # the parser made them, and whether it keeps the connection alive.
        self.blocks: dict[tuple[bytes, bytes], tuple[Fields, bool]] = {}

    def __call__(self) -> ClientConnection:
        return ClientConnection(next(self._numbers), self)

    def close_idle(self) -> None:
        """Close every connection not serving a request (at shutdown)."""
        for conn in list(self.live):
            conn.closing = True
            if conn.current is None:
                conn.transport.close()

    def abort_all(self) -> None:
        """Cut every connection still open (at the end of shutdown)."""
        for conn in list(self.live):
            conn.transport.abort()
