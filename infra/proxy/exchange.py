"""One proxied exchange: its state until it becomes a record, and its request sent upstream.

:class:`Exchange` is what the handler learns while serving a request; :func:`record_fields`
turns it into the fields of the :class:`~pipstorm.infra.proxy.log.RequestRecord` written when
it ends.
:class:`Forwarder` sends the request to the upstream on a pooled connection
(``pipstorm.infra.proxy.wire.upstream``): the head with the client's headers less the hop-by-hop
ones and ``Host``/``Expect``, the proxy's ``Authorization`` for the index's origin only, and the
body streamed as it arrives (re-chunked when the client sent it chunked), counted, with the
stall timeout on each wait for the client's next bytes.
"""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Final

from pipstorm.infra.faults.spec import FaultRule
from pipstorm.infra.operations import Linked, classify_served
from pipstorm.infra.proxy.log import USER_AGENT_MAX, RecordFields
from pipstorm.infra.proxy.rewrite import Route
from pipstorm.infra.proxy.wire.clients import ClientConnection
from pipstorm.infra.proxy.wire.heads import RequestLines
from pipstorm.infra.proxy.wire.messages import HOP_BY_HOP, LAST_CHUNK, Body, Request, chunk
from pipstorm.infra.proxy.wire.upstream import (
    UpstreamClosed,
    UpstreamConnection,
    UpstreamGarbage,
    UpstreamPool,
    UpstreamResponse,
)

STALLED_ERROR: Final = "client_disconnected: stalled"
# Host is the upstream's; Expect is answered by the proxy; Authorization is the proxy's.
_DROP_FROM_REQUEST: Final = HOP_BY_HOP | {b"host", b"expect"}
_INDEX_ONLY: Final = frozenset((b"authorization", b"cookie"))
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange:
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

    def __init__(self, path: str, conn: int) -> None:
        self.ts = time.time()
        self.start = time.perf_counter()
        self.path = path
        self.conn = conn  # the client connection's number
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
        self.upstream_new: bool | None = None  # a new upstream connection, or a pooled one


def record_fields(request: Request, exchange: Exchange) -> RecordFields:
    """The record of a finished exchange (``RecordWriter.write_fields`` writes it)."""
    now = time.perf_counter()
    start = exchange.start
    known = request.fields.known
    user_agent = known.get(b"user-agent")
    range_ = known.get(b"range")
    method = request.method
    status = exchange.status
    fault = exchange.fault
    return {
        "ts": exchange.ts,
        "run_id": exchange.run_id,
        "op": classify_served(
            method,
            exchange.path,
            status,
            content_type=exchange.content_type,
            linked=exchange.linked,
        ),
        "method": method,
        "path": exchange.path,
        "status": status,
        "bytes": exchange.sent,
        "req_bytes": exchange.req_bytes,
        "ttfb_ms": ((exchange.ttfb or now) - start) * 1000.0,
        "total_ms": ((exchange.end or now) - start) * 1000.0,
        "error": exchange.error,
        "user_agent": None if user_agent is None else user_agent.decode("latin-1")[:USER_AGENT_MAX],
        "range": None if range_ is None else range_.decode("latin-1"),
        "fault": None if fault is None else fault.id,
        "conn": exchange.conn,
        "upstream_new": exchange.upstream_new,
    }


class UpstreamFailed(Exception):
    """No answer from the upstream; ``kind`` is the record's error (``upstream_refused``...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Forwarder:
    """Sends requests upstream on the pool's connections and ends their exchanges."""

    def __init__(
        self,
        pool: UpstreamPool,
        authorization: str | None,
        read_timeout: float,
        stall_timeout: float,
    ) -> None:
        self.pool = pool
        self.authorization = None if authorization is None else authorization.encode("latin-1")
        # The header lines a request forwarded to the index's origin, and to another, goes
        # with: without the hop-by-hop ones, and with the index's credentials to the index only.
        self._index_lines = RequestLines(
            _DROP_FROM_REQUEST | ({b"authorization"} if self.authorization is not None else set()),
            b"" if self.authorization is None else b"Authorization: %s\r\n" % self.authorization,
        )
        self._other_lines = RequestLines(_DROP_FROM_REQUEST | _INDEX_ONLY, b"")
        self.read_timeout = read_timeout
        self.stall_timeout = stall_timeout
        self._senders: dict[UpstreamConnection, asyncio.Task[None]] = {}

    async def open(
        self,
        request: Request,
        client: ClientConnection,
        exchange: Exchange,
        route: Route,
        *,
        fresh: bool = False,
    ) -> tuple[UpstreamConnection, UpstreamResponse]:
        """Send ``request`` and wait for the answer's head; :class:`UpstreamFailed` when none
        came (the pool's slot is then free again). End the exchange with :meth:`close`.
        ``fresh``: on a new connection only (a pooled one failed already: its one retry)."""
        assert route.origin is not None  # noqa: S101 - a refused route never gets here
        head = self.head(request, route)
        await self.pool.slot()
        conn: UpstreamConnection | None = None
        try:
            for attempt in range(1 if fresh else 0, 2):
                conn = self.pool.take(route.origin) if attempt == 0 else None
                exchange.upstream_new = conn is None
                if conn is None:
                    conn = await self.pool.connect(route.origin)
                answer = conn.begin(head, head_only=request.method == "HEAD")
                if request.body is not None:
                    self._send_body(request, client, conn, exchange)
                try:
                    return conn, await conn.head(answer, self.read_timeout)
                except UpstreamClosed:
                    self._cancel_sender(conn)
                    stale = not exchange.upstream_new and not conn.answered
                    if attempt or not stale or request.body is not None:
                        raise
                    # The server closed this pooled connection while it was idle: once more.
        except (OSError, TimeoutError, UpstreamClosed, UpstreamGarbage) as exc:
            if conn is not None:
                self._cancel_sender(conn)
                conn.transport.abort()
            self.pool.free()
            raise UpstreamFailed(self.failure(exc) or "upstream_error") from None
        except BaseException:
            if conn is not None:
                self._cancel_sender(conn)
                conn.transport.abort()
            self.pool.free()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self, conn: UpstreamConnection) -> None:
        """The exchange is over: the connection back to the pool when its answer was read
        whole and its request sent whole, else closed; the pool's slot free."""
        if self._cancel_sender(conn):
            conn.transport.abort()  # part of the request body never went out
        self.pool.give_back(conn)
        self.pool.free()

    def failure(self, exc: BaseException) -> str | None:
        """The record's error kind of an upstream failure; None for anything else."""
        return failure_kind(exc)

    def head(self, request: Request, route: Route) -> bytes:
        """The request head as it goes upstream."""
        origin = route.origin
        assert origin is not None  # noqa: S101 - checked by the caller
        fields = request.fields
        lines = (self._index_lines if route.index_origin else self._other_lines).of(fields)
        if request.body is not None and b"content-length" not in fields.known:
            lines += b"Transfer-Encoding: chunked\r\n"
        return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            request.method.encode("latin-1"),
            route.path.encode("latin-1"),
            origin.host_header,
            lines,
        )

    def _send_body(
        self,
        request: Request,
        client: ClientConnection,
        conn: UpstreamConnection,
        exchange: Exchange,
    ) -> None:
        body = request.body
        assert body is not None  # noqa: S101 - checked by the caller
        expect = (request.header(b"expect") or "").lower() == "100-continue"
        if expect and not body.complete and exchange.req_bytes == 0:
            client.write(_CONTINUE)  # the upstream never sees Expect
        chunked = b"content-length" not in request.fields.known
        task = asyncio.get_running_loop().create_task(
            self._stream_body(body, conn, exchange, chunked=chunked)
        )
        self._senders[conn] = task

    async def _stream_body(
        self, body: Body, conn: UpstreamConnection, exchange: Exchange, *, chunked: bool
    ) -> None:
        """Forward the request body; a client that fails or stalls cuts the upstream request
        (its answer then fails, and the handler records the client's error)."""
        while True:
            try:
                data = await body.read(self.stall_timeout)
            except TimeoutError:
                exchange.error = STALLED_ERROR
                conn.transport.abort()
                return
            except ConnectionError as exc:
                error = str(exc)
                bad = error.startswith("bad_request: ")
                exchange.error = error if bad else "client_disconnected"
                conn.transport.abort()
                return
            exchange.req_bytes += len(data)
            try:
                if not data:
                    if chunked:
                        conn.write(LAST_CHUNK)
                    return
                conn.write(chunk(data) if chunked else data)
                await conn.drain(self.read_timeout)
            except (UpstreamClosed, TimeoutError):
                conn.transport.abort()  # the upstream stopped reading: its answer, or its
                return  # failure, tells the rest

    def _cancel_sender(self, conn: UpstreamConnection) -> bool:
        """Cancel the body still being sent on ``conn``; whether one was still running."""
        task = self._senders.pop(conn, None)
        if task is None or task.done():
            return False
        task.cancel()
        return True


def failure_kind(exc: BaseException) -> str | None:
    """The record's error kind of an upstream failure; None for anything else."""
    kind = None
    if isinstance(exc, TimeoutError):
        kind = "upstream_timeout"
    elif isinstance(exc, UpstreamGarbage):
        kind = f"upstream_error: {exc}"
    elif isinstance(exc, UpstreamClosed):
        kind = "upstream_reset"
    elif isinstance(exc, OSError):
        kind = f"upstream_error: {type(exc).__name__}"
        if exc.errno == errno.ECONNREFUSED:
            kind = "upstream_refused"
        elif exc.errno in (errno.ECONNRESET, errno.EPIPE):
            kind = "upstream_reset"
    return kind
