"""Heads the proxy writes, decided once per header block and kept (issue 20 item 5).

A load test's requests and answers repeat their header blocks: every request of one client run
carries the same headers, and an index answers a listing with the same headers but for its
``Date``, which changes once a second. Turning a block into the bytes that go on (hop-by-hop
headers dropped, ``Host`` and ``Authorization`` set, the lines spelled out) cost a few
microseconds per request on the proxy's fast path, the larger part of what it added to a
listing's latency. Here that work is done once per distinct block and kept in a small bounded
table; each request then costs one lookup and a join. The bytes are the same as the step by
step functions make (``Fields.lines_without``, ``Relay.response_headers``, ``with_length``,
``response_head``): a block that needs more than that (a ``Location`` to rewrite, a listing
with a ``Content-Encoding``, two ``Content-Length`` headers) has no plan, and the caller
takes the step by step path.
"""

from __future__ import annotations

from typing import Final, TypeVar

from pipstorm.infra.proxy.wire.messages import HOP_BY_HOP, Fields, connection_tokens, reason_of

K = TypeVar("K")
V = TypeVar("V")

#: Distinct header blocks kept per table; the oldest goes first (a new ``Date`` each second
#: makes a new answer block: the table turns over, it does not grow).
PLANS_MAX: Final = 512
#: Listings whose links the proxy rewrites (HTML or PEP 691 JSON), by their Content-Type.
REWRITE_TYPES: Final = (b"text/html", b"application/vnd.pypi.simple")
_IDENTITY: Final = (b"", b"identity")


class RequestLines:
    """A request head's header lines as they go upstream, per header block: the client's
    headers less ``drop`` (and those its ``Connection`` header names), then ``extra``."""

    __slots__ = ("_drop", "_extra", "_lines")

    def __init__(self, drop: frozenset[bytes], extra: bytes) -> None:
        self._drop = drop
        self._extra = extra
        self._lines: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}

    def of(self, fields: Fields) -> bytes:
        """The lines of ``fields`` (the blank line that ends a head not included)."""
        key = tuple(fields.headers)
        lines = self._lines.get(key)
        if lines is None:
            lines = fields.lines_without(self._drop) + self._extra
            keep(self._lines, key, lines)
        return lines


class AnswerPlan:
    """One answer header block as it goes to the client: the status line and the kept header
    lines with the Content-Length value left out (``pre`` + value + ``post``), or whole
    (``fixed``: the upstream's own Content-Length, or none)."""

    __slots__ = ("content_type", "fixed", "post", "pre", "rewrites")

    def __init__(self, status: int, reason: bytes, fields: Fields) -> None:
        kept = fields.without(HOP_BY_HOP)
        status_line = b"HTTP/1.1 %d %s\r\n" % (status, reason or reason_of(status))
        before: list[bytes] = [status_line]
        after: list[bytes] = []
        length_name = None
        for name, value in kept:
            if length_name is None and name.lower() == b"content-length":
                length_name = name
                before.append(b"%s: " % name)
                continue
            (before if length_name is None else after).append(b"%s: %s\r\n" % (name, value))
        self.fixed = b"".join([status_line, *(b"%s: %s\r\n" % pair for pair in kept)])
        if length_name is None:  # a rewritten listing's length goes last (``with_length``)
            before.append(b"Content-Length: ")
        self.pre = b"".join(before)
        self.post = b"".join([b"\r\n", *after])
        content_type = fields.known.get(b"content-type")
        self.content_type = None if content_type is None else content_type.decode("latin-1")
        self.rewrites = content_type is not None and content_type.startswith(REWRITE_TYPES)

    @staticmethod
    def possible(fields: Fields) -> bool:
        """Whether a plan makes this block's bytes: no ``Location`` (rewritten per route), one
        ``Content-Length`` at most, and a listing only without a ``Content-Encoding`` (its
        rewrite may decompress it, which changes its headers)."""
        known, names = fields.known, fields.names
        if b"location" in known or names.count(b"content-length") > 1:
            return False
        connection = known.get(b"connection")
        if connection is not None:
            named = connection_tokens(connection) - HOP_BY_HOP
            if named and not named.isdisjoint(names):
                return False  # it names more headers to drop: the step by step path drops them
        if not known.get(b"content-type", b"").startswith(REWRITE_TYPES):
            return True
        encoding = known.get(b"content-encoding")
        return encoding is None or encoding.lower() in _IDENTITY


class AnswerPlans:
    """The plans of the answer header blocks seen lately."""

    __slots__ = ("_plans",)

    def __init__(self) -> None:
        self._plans: dict[tuple[object, ...], AnswerPlan | None] = {}

    def of(self, status: int, reason: bytes, fields: Fields) -> AnswerPlan | None:
        """The plan of this answer's head; None when it needs the step by step path."""
        key = (status, reason, *fields.headers)
        try:
            return self._plans[key]
        except KeyError:
            pass
        plan = AnswerPlan(status, reason, fields) if AnswerPlan.possible(fields) else None
        keep(self._plans, key, plan)
        return plan


def keep(table: dict[K, V], key: K, value: V, limit: int = PLANS_MAX) -> None:
    """``table[key] = value``, the oldest entry out when the table holds ``limit``."""
    if len(table) >= limit:
        del table[next(iter(table))]
    table[key] = value
