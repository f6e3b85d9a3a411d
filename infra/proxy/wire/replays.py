"""Answers the proxy has made already, kept by the upstream's bytes (issue 20 item 5).

In a burst the index gives many clients the same listing within the same second: the same
bytes, its ``Date`` included. The proxy parsed each of them anew (the head's callbacks, its
``Fields``, the body's chunks, the head's plan, the listing's rewrite), the larger part of its
CPU per request after the syscalls (docs/performance.md, "Answers and request heads made
already, served again without the parser"). Here an answer that came in one read, or in two (an
index that writes its head and its body apart), as one whole message on a connection kept
alive, and went out on the fast path from its head's plan (``pipstorm.infra.proxy.wire.heads``),
is kept by its first read and the URL asked, with the rest of its bytes and what it became: its
status, its plan and its body (a listing's as the rewrite's template, each request's run id put
in as the parse puts it). The next answer from the same URL whose first read is the same, and
whose second is the kept rest where there was one, is not parsed: it goes out as the kept one,
byte for byte what the parse makes of it (tests/infra/proxy/test_replays.py); a second read that
differs is parsed with the first, as ever.

What a kept answer skips is what depends on nothing but those bytes and that URL: the parse, the
plan's lookup, the listing's rewrite and what the link book learns from it (the same listing
teaches it nothing new). A request's own part (its run id, its connection's ``Connection``
header, its record) is made per request as on the parse's path.

Bounded: ``REPLAYS_MAX`` answers of at most ``REPLAY_MAX_BYTES`` each, the oldest out first (a
new ``Date`` each second turns the table over; it does not grow).
"""

from __future__ import annotations

from typing import Final

from pipstorm.infra.proxy.wire.heads import AnswerPlan, keep

#: Answers kept; the oldest goes first.
REPLAYS_MAX: Final = 128
#: The largest answer kept (its bytes as read, head and body): a listing of a few hundred files.
REPLAY_MAX_BYTES: Final = 64 * 1024


class Replay:
    """What one answer became: its status, its head's plan, its body as it goes out (a
    rewritten listing's with the rewrite's placeholder for the run id)."""

    __slots__ = ("body", "plan", "status")

    def __init__(self, status: int, plan: AnswerPlan, body: bytes) -> None:
        self.status = status
        self.plan = plan
        self.body = body


#: A kept answer as its first read finds it: the rest of its bytes (b"": none, it came in one
#: read), and what it became.
Kept = tuple[bytes, Replay]


class Replays:
    """The answers kept, by (their first read, the upstream URL asked): an index that writes
    its head and its body apart (gunicorn) gives the proxy one read or two, as its wake-ups fall."""

    __slots__ = ("_kept", "hits")

    def __init__(self) -> None:
        self._kept: dict[tuple[bytes, str], Kept] = {}
        self.hits = 0  # first reads found (for tests and benches)

    def get(self, first: bytes, url: str) -> Kept | None:
        """The kept answer a first read of ``first`` from ``url`` began, or None."""
        found = self._kept.get((first, url))
        if found is not None:
            self.hits += 1
        return found

    def keep(self, first: bytes, rest: bytes, url: str, replay: Replay) -> None:
        """Keep what the answer read as ``first`` then ``rest`` from ``url`` became, within
        the bounds."""
        if len(first) + len(rest) <= REPLAY_MAX_BYTES:
            keep(self._kept, (first, url), (rest, replay), REPLAYS_MAX)

    def __len__(self) -> int:
        return len(self._kept)
