"""The proxy's side of fault injection: what an action does to a response on the wire.

The rules and their matching live in ``pipstorm.infra.faults.spec`` (pure, shared with the engine);
this module holds the wire parts the handler calls: the injected status answer, the resets,
and the :class:`BodyShaper` that stalls, slows or cuts a body as it is streamed to the client.

An injected answer never reaches the upstream (a 503 rule costs the index nothing), and a body
fault keeps the upstream's headers, ``Content-Length`` included, so a cut body looks cut to
the client exactly as a real broken connection would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from typing import Final, Protocol

from pipstorm.infra.faults.spec import FaultRule
from pipstorm.infra.proxy.wire.clients import ClientConnection

#: The pace of a slow body: one write per this many seconds.
SLOW_STEP_S: Final = 0.05
#: A reset right behind the headers would destroy them unread in the client's kernel buffer.
RESET_AFTER_HEADERS_S: Final = 0.1


def injected_answer(rule: FaultRule) -> tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]:
    """Status, body and extra headers of a ``status=`` rule's local answer (``Retry-After``
    when the rule sets one)."""
    assert rule.status is not None  # noqa: S101 - only called for status rules
    extra = () if rule.retry_after is None else ((b"Retry-After", rule.retry_after.encode()),)
    body = f"pipstorm injected fault {rule.id}: {rule.spec}\n".encode()
    return rule.status, body, extra


def reset(conn: ClientConnection) -> None:
    """Cut the client's connection now with a TCP reset (SO_LINGER 0), not an orderly close.

    A reset makes the client's kernel drop what it has not read yet, so a reset "after the
    headers" waits ``RESET_AFTER_HEADERS_S`` first (see ``reset_after_headers``).
    """
    sock = conn.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.closing = True
    conn.transport.abort()


async def reset_after_headers(conn: ClientConnection) -> None:
    """Reset once the client has had time to read the headers already sent."""
    await asyncio.sleep(RESET_AFTER_HEADERS_S)
    reset(conn)


def close(conn: ClientConnection) -> None:
    """End the connection in order (FIN) after what was written: a cut body looks cut."""
    conn.closing = True
    conn.transport.close()


class Reply(Protocol):
    """Where the shaper writes what it lets through (``pipstorm.infra.proxy.relay.Reply``)."""

    async def send(self, data: bytes) -> None: ...


class BodyShaper:
    """Streams a body through a rule's action: stall half-way, pace it, or cut it short.

    ``total`` is the body's length when known (Content-Length); without it a stall comes after
    the first chunk and a percentage cut applies to the first chunk.
    """

    def __init__(self, rule: FaultRule, total: int | None) -> None:
        self.rule = rule
        self.sent = 0
        self._stalled = False
        self._cut_at: int | None = rule.truncate_bytes
        if rule.truncate_fraction is not None and total is not None:
            self._cut_at = int(total * rule.truncate_fraction)
        self._stall_at = None if rule.stall_s is None else (total // 2 if total else None)
        self._slow_start = time.monotonic()

    async def send(self, reply: Reply, chunk: bytes) -> bool:
        """Write ``chunk`` as the rule says; False once the body is cut (stop sending)."""
        if self._cut_at is None and self.rule.truncate_fraction is not None:
            self._cut_at = int(len(chunk) * self.rule.truncate_fraction)  # length unknown
        cut = False
        if self._cut_at is not None:
            room = max(0, self._cut_at - self.sent)
            cut, chunk = len(chunk) > room, chunk[:room]
        if self.rule.stall_s is not None and not self._stalled:
            at = self._stall_at if self._stall_at is not None else self.sent + len(chunk)
            if self.sent + len(chunk) >= at:
                head, chunk = chunk[: at - self.sent], chunk[at - self.sent :]
                await self._write(reply, head)
                self._stalled = True
                await asyncio.sleep(self.rule.stall_s)
        await self._write(reply, chunk)
        return not cut

    async def _write(self, reply: Reply, data: bytes) -> None:
        if not data:
            return
        rate = self.rule.slow_bps
        if rate is None:
            await reply.send(data)
            self.sent += len(data)
            return
        step = max(1, int(rate * SLOW_STEP_S))
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            await reply.send(piece)
            self.sent += len(piece)
            # Paced against the start, so the rate holds however long each write took.
            due = self._slow_start + self.sent / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
