"""The answer side of the proxy: an upstream answer relayed to its client, rewritten or shaped.

Called by ``pipstorm.infra.proxy.handler`` once the upstream's head came. Why each choice:
- bodies are streamed chunk by chunk (the upstream's reading pauses while the client is
  slower); only small bodies are read whole: listings, to rewrite upstream URLs back to the
  proxy (``pipstorm.infra.proxy.rewrite``), and bodies of at most ``SMALL_BODY_BYTES``, sent with
  their head in one write (one syscall, one wake-up of the client);
- a listing is rewritten once per body and URL for a placeholder run id, then per run with one
  ``bytes.replace`` (the regular expressions and URL parsing were the largest part of the
  proxy's CPU per listing);
- a write towards a client that takes no part of its answer for ``stall_timeout`` seconds
  raises :class:`ClientStalled` (the handler records ``client_disconnected: stalled``).
"""

from __future__ import annotations

import secrets
import zlib
from typing import Final, Protocol

from pipstorm.infra.faults.spec import FaultRule
from pipstorm.infra.proxy import shaping
from pipstorm.infra.proxy.links import LinkBook
from pipstorm.infra.proxy.rewrite import Links, Route, UpstreamLayout
from pipstorm.infra.proxy.wire.clients import ClientConnection
from pipstorm.infra.proxy.wire.heads import REWRITE_TYPES, AnswerPlans
from pipstorm.infra.proxy.wire.messages import (
    HOP_BY_HOP,
    LAST_CHUNK,
    Body,
    Headers,
    Request,
    chunk,
    header,
    reason_of,
    response_head,
)
from pipstorm.infra.proxy.wire.replays import Replays
from pipstorm.infra.proxy.wire.upstream import UpstreamResponse

REWRITE_MAX_BYTES: Final = 16 * 1024 * 1024
# Bodies up to this size (known from Content-Length) are sent with their head in one write.
SMALL_BODY_BYTES: Final = 64 * 1024
# Listings rewritten once for a placeholder run id, then per run with one bytes.replace: how
# many are kept, and the largest body kept (at most ~2 x 256 x 256 KB = 128 MB, rarely near).
LISTING_CACHE_SIZE: Final = 256
LISTING_CACHE_MAX_BYTES: Final = 256 * 1024
# A valid run id (RUN_ID_RE) no listing contains: random per proxy process.
_RUN_TOKEN: Final = f"pipstormrun{secrets.token_hex(16)}"
_RUN_TOKEN_BYTES: Final = _RUN_TOKEN.encode("ascii")
_TEXT: Final = (b"Content-Type", b"text/plain; charset=utf-8")
_CLOSE_END: Final = b"Connection: close\r\n\r\n"
_KEEP_ALIVE_END: Final = b"Connection: keep-alive\r\n\r\n"


class Progress(Protocol):
    """What a stream counts (the handler's exchange)."""

    sent: int


class ClientStalled(ConnectionError):
    """A write to the client made no progress within the stall timeout (a connection error:
    the client is as good as gone)."""


class Reply:
    """The answer to one request as it goes to its client: framing (Content-Length, chunked,
    or until close for an HTTP/1.0 client), ``Connection``, the stall timeout on writes."""

    __slots__ = ("chunked", "conn", "length", "request", "stall_timeout", "started")

    def __init__(self, conn: ClientConnection, request: Request, stall_timeout: float) -> None:
        self.conn = conn
        self.request = request
        self.stall_timeout = stall_timeout
        self.chunked = False
        self.started = False
        self.length: int | None = None  # the body's, as its head announced it

    def head(self, status: int, reason: bytes, headers: Headers, *, sized: bool) -> bytes:
        """The head's bytes; ``sized``: ``headers`` carry the body's length (or it has none)."""
        self.started = True
        request, conn = self.request, self.conn
        bodiless = request.method == "HEAD" or status in (204, 304) or status < 200
        keep = conn.keeps_open(request)
        if not sized and not bodiless:
            if request.version >= (1, 1):
                self.chunked = True
                headers = [*headers, (b"Transfer-Encoding", b"chunked")]
            else:
                keep = False  # an HTTP/1.0 client reads such a body until the close
        if not keep:
            conn.closing = True
            headers = [*headers, (b"Connection", b"close")]
        elif request.version < (1, 1):
            headers = [*headers, (b"Connection", b"keep-alive")]
        return response_head(status, reason, headers)

    def sized_end(self) -> bytes:
        """The end of a head ``head(..., sized=True)`` makes, after its status and header lines
        spelled already (``pipstorm.infra.proxy.wire.heads``): its ``Connection`` header as
        there, and the blank line."""
        self.started = True
        request, conn = self.request, self.conn
        if not conn.keeps_open(request):
            conn.closing = True
            return _CLOSE_END
        return _KEEP_ALIVE_END if request.version < (1, 1) else b"\r\n"

    def whole(self, status: int, reason: bytes, headers: Headers, body: bytes) -> None:
        """Head and body (its length in ``headers``) in one write."""
        head = self.head(status, reason, headers, sized=True)
        self.conn.write(head if self.request.method == "HEAD" else head + body)

    def local(self, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """An answer made by the proxy itself: plain text."""
        headers = [_TEXT, (b"Content-Length", b"%d" % len(body)), *extra]
        self.whole(status, reason_of(status), headers, body)

    async def send(self, data: bytes) -> None:
        """Part of the body; waits while the client's buffer is full."""
        self.conn.write(chunk(data) if self.chunked else data)
        await self.drain()

    async def end(self) -> None:
        """The end of the body."""
        if self.chunked:
            self.conn.write(LAST_CHUNK)
            await self.drain()

    async def drain(self) -> None:
        """Wait until the client took enough; :class:`ClientStalled` after the stall timeout."""
        try:
            await self.conn.drain(self.stall_timeout)
        except TimeoutError:
            raise ClientStalled from None


class Relay:
    """Relays upstream answers: headers, rewritten listings, small and streamed bodies."""

    def __init__(self, layout: UpstreamLayout, links: LinkBook, read_timeout: float) -> None:
        self.layout = layout
        self.links = links
        self.read_timeout = read_timeout
        self.proxy_url = ""  # known once the port is bound
        self.plans = AnswerPlans()  # answer heads spelled once per header block
        self.replays = Replays()  # answers made already, by the upstream's bytes
        # (body, content type, upstream URL) -> listing rewritten for _RUN_TOKEN, its links.
        self._listings: dict[tuple[bytes, str, str], tuple[bytes, Links]] = {}

    def response_headers(
        self, response: UpstreamResponse, route: Route, *, from_file: bool
    ) -> Headers:
        """The upstream's headers for the client: hop-by-hop ones dropped, a ``Location`` kept
        on the proxy (and its target's origin let through: the index sent the client there)."""
        out = response.fields.without(HOP_BY_HOP)
        if b"location" not in response.fields.known:
            return out
        for i, (name, value) in enumerate(out):
            if name.lower() == b"location":
                new, target, origin = self.layout.rewrite_location(
                    value.decode("latin-1"), route.upstream_url, route.run_id, self.proxy_url
                )
                out[i] = (name, new.encode("latin-1"))
                if target is not None and origin is not None:
                    self.links.learn_redirect(origin, target, from_file=from_file)
        return out

    def reads_whole(self, response: UpstreamResponse) -> bool:
        """Whether the answer's body is read whole before it is sent: a listing (rewritten),
        or a body of at most ``SMALL_BODY_BYTES`` by its Content-Length."""
        length = response.length
        return _rewrites(response) or (length is not None and length <= SMALL_BODY_BYTES)

    def whole_body(
        self, chunks: list[bytes], response: UpstreamResponse, headers: Headers, route: Route
    ) -> tuple[bytes, Headers]:
        """The body read whole (``chunks``) as it goes to the client, and its headers: a
        listing rewritten (its length set), another body as it came."""
        data = b"".join(chunks)
        if _rewrites(response):
            return self._rewritten(data, headers, route, response.status)
        return data, headers  # its Content-Length is the upstream's, and held

    async def small_body(
        self, response: UpstreamResponse, headers: Headers, route: Route
    ) -> tuple[list[bytes], bytes | None, Headers]:
        """Read a listing or a small body whole: (chunks read, the body to send or None when
        it was too big to read whole, its headers, with the body's length). Others: ([], None,
        headers)."""
        if not self.reads_whole(response):
            return [], None, headers
        body = response.body
        chunks = body.take_all()
        if chunks is None:
            limit = REWRITE_MAX_BYTES if _rewrites(response) else SMALL_BODY_BYTES
            chunks, complete = await _read_up_to(body, limit, self.read_timeout)
            if not complete:
                return chunks, None, headers
        data, headers = self.whole_body(chunks, response, headers, route)
        return chunks, data, headers

    async def stream(
        self,
        reply: Reply,
        body: Body,
        pending: list[bytes],
        rule: FaultRule | None,
        progress: Progress,
    ) -> str | None:
        """Stream the body (``pending`` first, then the rest from upstream) to the client,
        counting what was sent in ``progress.sent``; the injected error that cut it, if any.

        With a fault ``rule`` the body goes through its shaper; a cut body or a reset after
        the headers ends the connection.
        """
        if rule is None:
            for data in pending:
                await reply.send(data)
                progress.sent += len(data)
            while data := await body.read(self.read_timeout):
                await reply.send(data)
                progress.sent += len(data)
            await reply.end()
            return None
        if rule.reset == "after":
            await shaping.reset_after_headers(reply.conn)
            return "injected_reset_after_headers"
        return await self._shaped(reply, body, pending, rule, progress)

    async def _shaped(
        self, reply: Reply, body: Body, pending: list[bytes], rule: FaultRule, progress: Progress
    ) -> str | None:
        """The body through the rule's shaper: stalled, slowed or cut."""
        shaper = shaping.BodyShaper(rule, reply.length)
        try:
            for data in pending:
                if not await shaper.send(reply, data):
                    shaping.close(reply.conn)
                    return "injected_truncate"
            while data := await body.read(self.read_timeout):
                if not await shaper.send(reply, data):
                    shaping.close(reply.conn)
                    return "injected_truncate"
            await reply.end()
        finally:  # also when the client hung up during a stall or a slow body
            progress.sent = shaper.sent
        return None

    def _rewritten(
        self, body: bytes, headers: Headers, route: Route, status: int
    ) -> tuple[bytes, Headers]:
        encoding = (header(headers, b"content-encoding") or "").lower()
        if encoding in ("gzip", "deflate", "x-gzip"):
            try:
                body = zlib.decompress(body, zlib.MAX_WBITS | 32)  # gzip or zlib header
            except zlib.error:
                return body, with_length(headers, len(body))
            headers = [(k, v) for k, v in headers if k.lower() != b"content-encoding"]
        elif encoding not in ("", "identity"):
            return body, with_length(headers, len(body))  # cannot read it, so cannot rewrite
        rewritten = self.listing(body, header(headers, b"content-type") or "", route, status)
        return rewritten, with_length(headers, len(rewritten))

    def listing(self, body: bytes, content_type: str, route: Route, status: int) -> bytes:
        """A listing's body (not encoded) with its links rewritten for the route's run."""
        return self.for_run(self.listing_template(body, content_type, route, status), route)

    def listing_template(self, body: bytes, content_type: str, route: Route, status: int) -> bytes:
        """A listing's body rewritten for any run (``for_run`` puts one in); its links learnt."""
        template, links = self._listing_template(body, content_type, route.upstream_url)
        if status == 200:  # an error or login page links no files of the index
            self.links.learn(links, body)
        return template

    @staticmethod
    def for_run(template: bytes, route: Route) -> bytes:
        """A listing's template (``listing_template``) with the route's run id put in."""
        return template.replace(_RUN_TOKEN_BYTES, route.run_id.encode("ascii"))

    def _listing_template(
        self, body: bytes, content_type: str, base_url: str
    ) -> tuple[bytes, Links]:
        """The listing rewritten for a placeholder run id, and its links: the same for every
        run that gets this body from this URL. Bounded, least recently used first out; large
        bodies not kept."""
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


def _rewrites(response: UpstreamResponse) -> bool:
    """Whether the answer is a listing whose links are rewritten (HTML or PEP 691 JSON)."""
    return response.fields.known.get(b"content-type", b"").startswith(REWRITE_TYPES)


def with_length(headers: Headers, length: int) -> Headers:
    """``headers`` with their ``Content-Length`` set to ``length`` (where it was, else last)."""
    value = b"%d" % length
    out = [(k, value if k.lower() == b"content-length" else v) for k, v in headers]
    if not any(v is value for _, v in out):
        out.append((b"Content-Length", value))
    return out


async def _read_up_to(body: Body, limit: int, timeout: float) -> tuple[list[bytes], bool]:
    """The body's chunks, read until its end (True) or until more than ``limit`` bytes (False)."""
    # Content-Length is not relied on: a chunked listing has none.
    chunks: list[bytes] = []
    size = 0
    while data := await body.read(timeout):
        chunks.append(data)
        size += len(data)
        if size > limit:
            return chunks, False
    return chunks, True
