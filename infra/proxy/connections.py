"""Connections, as the proxy's records see them: the client's and the upstream's.

Why: "80 upstream connections for 78 pip runs" is a figure a user sizing an index needs (each
connection is a handshake and a worker slot on the index's side), and a client connection the
proxy closed before any request (a slowloris head trickled past the header timeout, a port
scan that connects and waits) was an event with no trace in the results. So:

- each client connection gets a number (:class:`ClientConnection`, made by
  :class:`RecordingServer`); every request record carries the number of the connection that
  carried it (``conn``);
- when the header timeout (aiohttp's keep-alive timer, ``pipstorm.infra.proxy.server``) closes a
  connection that never sent a request, or sent part of one, that is one record of its own:
  no run id, no status, ``error: client_header_timeout``, ``req_bytes`` the bytes it sent since
  its last request. An idle keep-alive connection closed after its requests were all answered is
  the ordinary end of a connection, not recorded;
- :func:`upstream_trace` marks on each exchange whether the proxy's pool opened a new upstream
  connection for it or reused one (``upstream_new``).

aiohttp offers no public hook for "closed by the keep-alive timer", so
:class:`ClientConnection` wraps the private ``_process_keepalive`` of its ``RequestHandler``; a
future aiohttp that renames it loses these records (``test_connections.py`` fails), not requests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from pipstorm.infra.proxy.log import RecordWriter, RequestRecord

#: The error of the record a connection closed by the header timeout leaves.
HEADER_TIMEOUT_ERROR = "client_header_timeout"


class ClientConnection(RequestHandler):
    """aiohttp's per-connection protocol, numbered, counting what the client sent."""

    def __init__(
        self,
        manager: web.Server,
        *,
        number: int,
        writer: RecordWriter,
        **kwargs: Any,  # noqa: ANN401 - aiohttp's own keyword arguments, passed through
    ) -> None:
        super().__init__(manager, **kwargs)
        self.number = number
        self._writer = writer
        self._received = 0  # bytes from the client on this connection
        self._consumed = 0  # of those, the ones that belonged to requests already handled
        self._requests = 0
        self._waiting_since = time.time()  # opened, or its last answer sent

    def data_received(self, data: bytes) -> None:
        """Count the bytes, then parse them as aiohttp does."""
        self._received += len(data)
        super().data_received(data)

    def request_done(self) -> None:
        """A request on this connection was handled: what it sent so far was that request."""
        self._requests += 1
        self._consumed = self._received
        self._waiting_since = time.time()

    def _process_keepalive(self) -> None:
        was_closing = self._force_close
        super()._process_keepalive()
        if was_closing or not self._force_close:
            return  # not closed by the timer this time
        pending = self._received - self._consumed
        if self._requests and not pending:
            return  # an idle keep-alive connection's ordinary end
        self._writer.write(
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


class RecordingServer(web.Server):
    """``web.Server`` whose connections are :class:`ClientConnection`, numbered from 1."""

    def __init__(self, handler: Any, *, writer: RecordWriter, **kwargs: Any) -> None:  # noqa: ANN401 - aiohttp's handler type and keyword arguments
        super().__init__(handler, **kwargs)
        self._writer = writer
        self._numbers = itertools.count(1)
        self._handler_kwargs = kwargs

    def __call__(self) -> RequestHandler:
        loop = asyncio.get_running_loop()
        own = {k: v for k, v in self._handler_kwargs.items() if k not in _SERVER_ONLY}
        return ClientConnection(
            self, loop=loop, number=next(self._numbers), writer=self._writer, **own
        )


# web.Server's own keyword arguments, not the RequestHandler's.
_SERVER_ONLY = frozenset({"request_factory", "handler_cancellation"})


class _Marked(Protocol):
    upstream_new: bool | None


def upstream_trace() -> aiohttp.TraceConfig:
    """Trace hooks that set ``upstream_new`` on the ``trace_request_ctx`` of each request."""
    trace = aiohttp.TraceConfig()

    async def created(session: aiohttp.ClientSession, ctx: Any, params: object) -> None:  # noqa: ANN401 - aiohttp's SimpleNamespace
        exchange: _Marked | None = ctx.trace_request_ctx
        if exchange is not None:
            exchange.upstream_new = True

    async def reused(session: aiohttp.ClientSession, ctx: Any, params: object) -> None:  # noqa: ANN401 - aiohttp's SimpleNamespace
        exchange: _Marked | None = ctx.trace_request_ctx
        if exchange is not None:
            exchange.upstream_new = False

    trace.on_connection_create_end.append(created)
    trace.on_connection_reuseconn.append(reused)
    return trace


def connection_of(request: web.BaseRequest) -> ClientConnection | None:
    """The numbered connection a request came on (None outside a :class:`RecordingServer`)."""
    protocol = request.protocol
    return protocol if isinstance(protocol, ClientConnection) else None
