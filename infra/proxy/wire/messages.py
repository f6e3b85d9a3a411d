"""HTTP/1.1 pieces both sides of the proxy share: a body in flight, a parsed request head, and
the bytes of a response head.

The proxy speaks HTTP/1.1 on asyncio Protocols with httptools (llhttp, the parser uvicorn
uses) on both sides (``pipstorm.infra.proxy.wire.clients`` towards clients,
``pipstorm.infra.proxy.wire.upstream`` towards indexes). A framework would parse the same bytes into
objects of its own and copy them again for the other side: here a head stays a list of byte
pairs from the parser to the wire, and a body is a queue of the chunks as they came.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

#: Buffered body bytes above which the side that feeds a :class:`Body` is paused.
HIGH_WATER: Final = 256 * 1024
Headers = list[tuple[bytes, bytes]]
#: Headers of one hop only (RFC 9110 7.6.1), never forwarded either way (lower case).
HOP_BY_HOP: Final = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
_REASONS: Final = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    408: b"Request Timeout",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


class Body:
    """The chunks of one body as they arrive, read by one consumer.

    The producer (a protocol's ``data_received``) is paused through ``pause`` while more than
    ``HIGH_WATER`` bytes wait, and resumed once they are read: a 50 MB wheel never sits in the
    proxy's memory, whichever side is the slower.
    """

    __slots__ = ("_chunks", "_error", "_pause", "_paused", "_resume", "_size", "_waiter", "eof")

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pause, self._resume = pause, resume
        self._paused = False

    def feed(self, data: bytes) -> None:
        """A chunk came (the producer's side)."""
        if not data or self.eof or self._error is not None:
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def finish(self) -> None:
        """The body is complete."""
        self.eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """The body cannot complete (the producer's connection failed): reads raise ``exc``
        once the chunks already here are read."""
        if not self.eof and self._error is None:
            self._error = exc
            self._wake()

    @property
    def complete(self) -> bool:
        """Whether the producer has delivered all of it (read or not)."""
        return self.eof

    def release_producer(self) -> bool:
        """The producer is done with this body (its message is complete): stop pausing it, and
        say whether it was paused (then its reading must resume for the next message)."""
        paused, self._paused = self._paused, False
        self._pause = self._resume = _nothing
        return paused

    def take_all(self) -> list[bytes] | None:
        """Every chunk, when the whole body is here already (no wait); else None."""
        if not self.eof:
            return None
        chunks = list(self._chunks)
        self._chunks.clear()
        self._size = 0
        return chunks

    async def read(self, timeout: float | None = None) -> bytes:
        """The next chunk; ``b""`` at the end. ``TimeoutError`` when nothing came for
        ``timeout`` seconds; the producer's error once it failed."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.eof:
                return b""
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size <= HIGH_WATER // 2:
            self._paused = False
            self._resume()
        return chunk

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _nothing() -> None:
    pass


class WriteFlow(asyncio.Protocol):
    """A protocol's write side: paused while its transport's buffer is above the high-water
    mark, and a wait for it to fall (both sides' connections share it).

    ``drain`` waits only when the transport said it is paused: below the mark what was
    written is on its way, and no future or timer is made."""

    _write_paused = False
    _drain: asyncio.Future[None] | None = None

    @property
    def write_paused(self) -> bool:
        """Whether the transport's buffer is above its high-water mark."""
        return self._write_paused

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def fail_drain(self, exc: BaseException) -> None:
        """The connection is gone: a wait for it to drain raises ``exc``."""
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(exc)

    async def wait_writable(self, timeout: float) -> None:
        """Wait while the buffer is above the mark; ``TimeoutError`` after ``timeout`` s."""
        if not self._write_paused:
            return
        loop = asyncio.get_running_loop()
        waiter = self._drain = loop.create_future()
        timer = loop.call_later(timeout, expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._drain = None


def expire(waiter: asyncio.Future[Any]) -> None:
    """Fail ``waiter`` with ``TimeoutError`` unless it is done (a ``call_later`` target: one
    timer per wait that does wait, none on the fast path)."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


#: Headers the proxy looks at, kept by name as a head is parsed (lower case).
KNOWN: Final = frozenset(
    (
        b"connection",
        b"content-encoding",
        b"content-length",
        b"content-type",
        b"expect",
        b"location",
        b"range",
        b"transfer-encoding",
        b"user-agent",
    )
)


#: Header names as spelled on the wire -> their lower-case name when it is ``KNOWN``, else None:
#: a load test's heads use a handful of spellings, so most headers cost one lookup.
_SPELLINGS: dict[bytes, bytes | None] = {}
_SPELLINGS_MAX: Final = 4096


def _spelling(name: bytes) -> bytes | None:
    """The ``KNOWN`` name ``name`` spells (None: not one), remembered within the bound."""
    lower = name.lower()
    known = lower if lower in KNOWN else None
    if len(_SPELLINGS) < _SPELLINGS_MAX:
        _SPELLINGS[name] = known
    return known


class Fields:
    """A head's headers as parsed: in order, and the first value of each header the proxy
    looks at (``KNOWN``) by its lower-case name; the lower-case names of all of them only when
    asked (``names``: a head whose bytes are kept per header block never needs them)."""

    __slots__ = ("_names", "headers", "known")

    def __init__(self) -> None:
        self.headers: Headers = []
        self.known: dict[bytes, bytes] = {}
        self._names: list[bytes] | None = None

    def add(self, name: bytes, value: bytes) -> None:
        """One header, as the parser hands it over."""
        self.headers.append((name, value))
        try:
            lower = _SPELLINGS[name]
        except KeyError:  # a spelling not seen yet
            lower = _spelling(name)
        if lower is not None and lower not in self.known:
            self.known[lower] = value

    @property
    def names(self) -> list[bytes]:
        """The headers' names in lower case, in order."""
        names = self._names
        if names is None or len(names) != len(self.headers):
            names = self._names = [name.lower() for name, _ in self.headers]
        return names

    def get(self, name: bytes) -> str | None:
        """The first value of ``name`` (lower case), decoded as Latin-1."""
        if name in KNOWN:
            value = self.known.get(name)
            return None if value is None else value.decode("latin-1")
        return header(self.headers, name)

    def without(self, names: frozenset[bytes]) -> Headers:
        """The headers without ``names`` (lower case) and without the headers their
        ``Connection`` header names (those are hop-by-hop too)."""
        names = self._dropped(names)
        return [
            pair for pair, name in zip(self.headers, self.names, strict=True) if name not in names
        ]

    def lines_without(self, names: frozenset[bytes]) -> bytes:
        """``without(names)`` as the lines of a head (name, colon, value, CRLF), in one pass."""
        names = self._dropped(names)
        return b"".join(
            [
                b"%s: %s\r\n" % pair
                for pair, name in zip(self.headers, self.names, strict=True)
                if name not in names
            ]
        )

    def _dropped(self, names: frozenset[bytes]) -> frozenset[bytes]:
        """``names`` and the headers the ``Connection`` header names (``keep-alive`` and
        ``close`` name nothing more: no new set for them)."""
        connection = self.known.get(b"connection")
        if connection is None:
            return names
        tokens = connection_tokens(connection)
        return names if tokens <= names else names | tokens


@functools.lru_cache(maxsize=256)
def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The header names a ``Connection`` header's value lists (lower case)."""
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


class Request:
    """One request head as the client sent it, and its body (None: it has none)."""

    __slots__ = ("body", "fields", "keep_alive", "method", "target", "version")

    def __init__(
        self,
        method: str,
        target: str,
        version: tuple[int, int],
        fields: Fields,
        *,
        keep_alive: bool,
        body: Body | None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields
        self.keep_alive = keep_alive
        self.body = body

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower case), decoded as Latin-1."""
        return self.fields.get(name)


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of ``name`` (lower case) in ``headers``, decoded as Latin-1."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def response_head(status: int, reason: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A response head: the status line, ``headers`` as given, the blank line."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason or _REASONS.get(status, b"Unknown"))]
    parts.extend(b"%s: %s\r\n" % pair for pair in headers)
    parts.append(b"\r\n")
    return b"".join(parts)


def reason_of(status: int) -> bytes:
    """The usual reason phrase of ``status`` (the proxy's own answers)."""
    return _REASONS.get(status, b"Unknown")


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


#: The end of a chunked body.
LAST_CHUNK: Final = b"0\r\n\r\n"
