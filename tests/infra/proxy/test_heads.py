"""Heads spelled once per header block (``pipstorm.infra.proxy.wire.heads``) are the bytes the
step by step functions make for the same block, and a block they cannot spell has no plan.

Each case parses a real head with the proxy's own parser callbacks (``Fields``), then compares
the plan's bytes with ``Relay.response_headers`` + ``with_length`` + ``response_head`` (the
answer) and ``Fields.lines_without`` (the request): a plan that drops, reorders or re-spells a
header, or keeps a ``Content-Length`` the rewrite changed, fails here.
"""

from __future__ import annotations

import httptools
import pytest

from pipstorm.infra.proxy.links import LinkBook
from pipstorm.infra.proxy.relay import Relay, with_length
from pipstorm.infra.proxy.rewrite import UpstreamLayout
from pipstorm.infra.proxy.wire.heads import AnswerPlans, RequestLines
from pipstorm.infra.proxy.wire.messages import HOP_BY_HOP, Body, Fields, response_head
from pipstorm.infra.proxy.wire.upstream import UpstreamResponse

LAYOUT = UpstreamLayout.parse("http://127.0.0.1:9/simple/")


class _Head:
    """Parser callbacks collecting one head's fields, as the proxy's protocols do."""

    def __init__(self) -> None:
        self.fields = Fields()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.add(name, value)


def _answer_fields(head: bytes) -> tuple[int, Fields]:
    collected = _Head()
    parser = httptools.HttpResponseParser(collected)
    parser.feed_data(head)
    return parser.get_status_code(), collected.fields


def _request_fields(head: bytes) -> Fields:
    collected = _Head()
    httptools.HttpRequestParser(collected).feed_data(head)
    return collected.fields


def _step_by_step(status: int, reason: bytes, fields: Fields, length: int | None) -> bytes:
    """The answer's head as the task path spells it (``length``: a rewritten body's)."""
    relay = Relay(LAYOUT, LinkBook(LAYOUT.origin), 30.0)
    response = UpstreamResponse(status, reason, fields, Body(lambda: None, lambda: None))
    route = LAYOUT.route("/r/run-1/simple/pkg/")
    assert route is not None
    headers = relay.response_headers(response, route, from_file=False)
    if length is not None:
        headers = with_length(headers, length)
    return response_head(status, reason, headers)


ANSWERS = {
    "listing": b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Sun, 06 Dec 2026 20:00:00 GMT\r\n"
    b"Connection: keep-alive\r\nContent-Type: text/html; charset=UTF-8\r\n"
    b"Content-Length: 707\r\nX-After: 1\r\n\r\n",
    "json listing, length first": b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n"
    b"Content-Type: application/vnd.pypi.simple.v1+json\r\nKeep-Alive: timeout=5\r\n\r\n",
    "file": b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 5\r\nETag: x\r\nProxy-Authenticate: Basic\r\n\r\n",
    "no length": b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n",
    "identity listing": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
    b"Content-Encoding: identity\r\nContent-Length: 3\r\n\r\n",
    "no reason": b"HTTP/1.1 200 \r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_an_answer_plan_spells_the_step_by_step_head(name: str) -> None:
    status, fields = _answer_fields(ANSWERS[name])
    reason = ANSWERS[name].split(b"\r\n", 1)[0].split(b" ", 2)[2]
    plan = AnswerPlans().of(status, reason, fields)
    assert plan is not None
    assert plan.fixed + b"\r\n" == _step_by_step(status, reason, fields, None)
    rewritten = plan.pre + b"1234" + plan.post + b"\r\n"
    assert rewritten == _step_by_step(status, reason, fields, 1234)
    content_type = fields.get(b"content-type")
    assert plan.content_type == content_type
    assert plan.rewrites == (content_type or "").startswith(("text/html", "application/vnd.pypi"))


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 302 Found\r\nLocation: /simple/other/\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n"
        b"Content-Length: 2\r\n\r\n",
    ],
    ids=["location", "gzip listing", "connection names a header"],
)
def test_a_head_no_plan_can_spell_has_none(head: bytes) -> None:
    status, fields = _answer_fields(head)
    assert AnswerPlans().of(status, b"X", fields) is None


def test_a_plan_is_kept_per_header_block_and_the_table_is_bounded() -> None:
    plans = AnswerPlans()
    status, fields = _answer_fields(ANSWERS["listing"])
    first = plans.of(status, b"OK", fields)
    _, again = _answer_fields(ANSWERS["listing"])
    assert plans.of(status, b"OK", again) is first
    _, other_date = _answer_fields(ANSWERS["listing"].replace(b"20:00:00", b"20:00:01"))
    assert plans.of(status, b"OK", other_date) is not first
    for second in range(2000):
        head = ANSWERS["listing"].replace(b"20:00:00", b"20:%02d:%02d" % divmod(second, 60))
        plans.of(status, b"OK", _answer_fields(head)[1])
    assert len(plans._plans) <= 512


@pytest.mark.parametrize(
    "head",
    [
        b"GET /x HTTP/1.1\r\nHost: proxy:1\r\nUser-Agent: pip/25\r\nAccept-Encoding: gzip\r\n"
        b"Connection: keep-alive\r\nAuthorization: Basic eA==\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: proxy:1\r\nConnection: X-Hop\r\nX-Hop: 1\r\nCookie: c\r\n"
        b"Expect: 100-continue\r\nTE: trailers\r\nX-Kept: 2\r\n\r\n",
    ],
    ids=["pip", "hop-by-hop"],
)
def test_request_lines_are_the_step_by_step_lines(head: bytes) -> None:
    drop = HOP_BY_HOP | {b"host", b"expect", b"authorization"}
    extra = b"Authorization: Basic cHc=\r\n"
    lines = RequestLines(drop, extra)
    fields = _request_fields(head)
    expected = _request_fields(head).lines_without(drop) + extra
    assert lines.of(fields) == expected
    assert lines.of(_request_fields(head)) == expected  # the kept lines, for the same block
    if b"X-Hop" in head:  # named by Connection: hop-by-hop too
        assert b"X-Hop" not in expected
        assert b"X-Kept: 2\r\n" in expected
