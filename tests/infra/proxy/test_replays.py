"""Heads and answers the proxy made already, served again without the parser
(``pipstorm.infra.proxy.wire.replays``, ``ClientConnections.blocks``): byte for byte what the
parse makes, and only where the bytes can be nothing else.

The proxy here is the real one (its handler, pool, connections and record writer) on its own
event loop in this process, so a test can see what was kept and what was served from it; the
upstream is a raw asyncio server on 127.0.0.1 that answers with the bytes a test gives it, in
the writes the test says; the client writes raw heads and reads raw answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipstorm.infra.proxy.handler import ProxyHandler
from pipstorm.infra.proxy.log import RecordWriter
from pipstorm.infra.proxy.rewrite import UpstreamLayout
from pipstorm.infra.proxy.wire.clients import ClientConnections
from pipstorm.infra.proxy.wire.upstream import UpstreamPool

LISTING = b'<html><body><a href="/files/pkg-1.0.tar.gz">pkg-1.0.tar.gz</a></body></html>\n'
DATE = b"Date: Mon, 07 Dec 2026 02:00:00 GMT\r\n"


def answer(
    body: bytes = LISTING, *, extra: bytes = b"", content_type: bytes = b"text/html"
) -> bytes:
    """A whole keep-alive answer's bytes, as an index writes them."""
    return b"HTTP/1.1 200 OK\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        DATE,
        content_type,
        len(body),
        extra,
        body,
    )


@dataclass
class Upstream:
    """Answers each request head with ``writes(target)``: the writes of its answer, in order
    (a short pause between two; a HEAD's head only), and keeps the heads it got."""

    writes: Callable[[str], list[bytes]]
    heads: list[bytes] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.heads.append(head)
                target = head.split(b" ", 2)[1].decode()
                writes = self.writes(target)
                if head.startswith(b"HEAD "):  # its head only, its Content-Length as a GET's
                    writes = [b"".join(writes).partition(b"\r\n\r\n")[0] + b"\r\n\r\n"]
                for i, data in enumerate(writes):
                    if i:
                        await asyncio.sleep(0.05)  # a second read for the proxy
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass
class Proxy:
    """The proxy's parts a test looks into, and its port."""

    handler: ProxyHandler
    connections: ClientConnections
    port: int
    log: Path

    @property
    def replayed(self) -> int:
        """Answers sent from the kept ones."""
        return self.handler.relay.replays.hits

    def records(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines]


@asynccontextmanager
async def running(upstream: Upstream, tmp_path: Path) -> AsyncIterator[Proxy]:
    """The upstream and the proxy in front of it, both on 127.0.0.1."""
    index = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    upstream.port = index.sockets[0].getsockname()[1]
    layout = UpstreamLayout.parse(f"http://127.0.0.1:{upstream.port}/simple/")
    log = tmp_path / "requests.jsonl"
    with RecordWriter(log) as writer:
        pool = UpstreamPool(5.0)
        handler = ProxyHandler(layout, pool, writer, None, read_timeout=5.0)
        connections = ClientConnections(handler, writer, 5.0)
        server = await asyncio.get_running_loop().create_server(connections, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        handler.proxy_url = f"http://127.0.0.1:{port}"
        try:
            yield Proxy(handler, connections, port, log)
        finally:
            server.close()
            connections.abort_all()
            pool.close()
            index.close()
            await asyncio.sleep(0.05)  # the records of the last answers


class Client:
    """One keep-alive connection to the proxy, raw bytes both ways."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, *, head_only: bool = False) -> bytes:
        """One whole answer as it came (head, and its Content-Length's body)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = b"" if head_only else await self.reader.readexactly(length)
        return head + body

    async def get(self, target: str, headers: bytes = b"Host: proxy\r\n") -> bytes:
        await self.send(b"GET %s HTTP/1.1\r\n%s\r\n" % (target.encode(), headers))
        return await self.answer()

    def close(self) -> None:
        self.writer.close()


def test_the_same_answer_again_is_replayed_byte_for_byte_with_each_runs_links(
    tmp_path: Path,
) -> None:
    upstream = Upstream(lambda _: [answer()])

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            parsed = await client.get("/r/run-a/simple/pkg/")
            assert proxy.replayed == 0
            replayed = await client.get("/r/run-b/simple/pkg/")
            again = await client.get("/r/run-a/simple/pkg/")
            assert proxy.replayed == 2
            client.close()
        # The parse's answer, its run id swapped: the links are each run's own, the length too.
        assert b'href="/r/run-a/files/pkg-1.0.tar.gz"' in parsed
        assert replayed == parsed.replace(b"run-a", b"run-b")
        assert again == parsed
        records = proxy.records()
        assert [r["run_id"] for r in records] == ["run-a", "run-b", "run-a"]
        assert [r["upstream_new"] for r in records] == [True, False, False]
        for record in records:
            assert record["status"] == 200
            assert record["error"] is None
            assert record["bytes"] == len(parsed) - len(parsed.partition(b"\r\n\r\n")[0]) - 4
        assert {r["path"] for r in records} == {"/simple/pkg/"}

    asyncio.run(test())


def test_an_answer_in_two_reads_is_replayed_once_its_rest_is_the_same(tmp_path: Path) -> None:
    # The head, then the body (gunicorn writes them apart); the third time the body differs,
    # its head the same: parsed, and the client gets the new body.
    whole = answer()
    other = whole.replace(b"pkg-1.0.tar.gz</a>", b"pkg-2.0.tar.gz</a>")
    split = len(whole) - len(LISTING)
    answers = iter([whole, whole, other])

    def writes(_: str) -> list[bytes]:
        data = next(answers)
        return [data[:split], data[split:]]

    upstream = Upstream(writes)

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            first = await client.get("/r/run-a/simple/pkg/")
            assert len(proxy.handler.relay.replays) == 1
            second = await client.get("/r/run-a/simple/pkg/")
            assert proxy.replayed == 1
            third = await client.get("/r/run-a/simple/pkg/")
            client.close()
        assert second == first
        assert third == first.replace(b"pkg-1.0.tar.gz</a>", b"pkg-2.0.tar.gz</a>")
        assert [r["status"] for r in proxy.records()] == [200, 200, 200]

    asyncio.run(test())


def test_an_answer_in_three_reads_is_never_kept(tmp_path: Path) -> None:
    whole = answer()
    upstream = Upstream(lambda _: [whole[:40], whole[40:-10], whole[-10:]])

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            first = await client.get("/r/run-a/simple/pkg/")
            second = await client.get("/r/run-a/simple/pkg/")
            client.close()
            assert proxy.replayed == 0
            assert len(proxy.handler.relay.replays) == 0
        assert first == second

    asyncio.run(test())


def test_bytes_after_an_answer_in_its_read_keep_it_from_being_kept(tmp_path: Path) -> None:
    # The answer and the start of another nobody asked for, in one write: parsed, as ever.
    upstream = Upstream(lambda _: [answer() + b"HTTP/1.1 200 OK\r\n"])

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            first = await client.get("/r/run-a/simple/pkg/")
            client.close()
            assert len(proxy.handler.relay.replays) == 0
        assert first.endswith(b"pkg-1.0.tar.gz</a></body></html>\n")

    asyncio.run(test())


def test_a_kept_answer_is_only_for_its_url_for_a_get_and_a_connection_kept_alive(
    tmp_path: Path,
) -> None:
    closing = answer(extra=b"Connection: close\r\n")

    def writes(target: str) -> list[bytes]:
        return [closing if target.endswith("/closing/") else answer()]

    upstream = Upstream(writes)

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            await client.get("/r/run-a/simple/pkg/")
            await client.get("/r/run-a/simple/other/")  # the same bytes, another URL
            await client.send(b"HEAD /r/run-a/simple/pkg/ HTTP/1.1\r\nHost: proxy\r\n\r\n")
            head = await client.answer(head_only=True)
            assert proxy.replayed == 0
            await client.get("/r/run-a/simple/closing/")
            await client.get("/r/run-a/simple/closing/")
            assert proxy.replayed == 0
            assert len(proxy.handler.relay.replays) == 2  # pkg/ and other/
            client.close()
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")

    asyncio.run(test())


def test_a_header_block_parsed_once_is_not_parsed_again_and_goes_upstream_the_same(
    tmp_path: Path,
) -> None:
    upstream = Upstream(lambda _: [answer()])
    headers = b"Host: proxy\r\nUser-Agent: pip/25.3\r\nAccept: */*\r\n"

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            await client.get("/r/run-a/simple/pkg/", headers)
            assert len(proxy.connections.blocks) == 1
            await client.get("/r/run-a/simple/other/", headers)
            other = await Client.open(proxy.port)  # another connection, the same block
            await other.get("/r/run-b/simple/pkg/", headers)
            assert len(proxy.connections.blocks) == 1
            client.close()
            other.close()
        first, second, third = upstream.heads
        assert second == first.replace(b"/pkg/", b"/other/")
        assert third == first
        assert b"User-Agent: pip/25.3\r\n" in first

    asyncio.run(test())


def test_a_request_line_the_parser_refuses_is_refused_whatever_its_block(tmp_path: Path) -> None:
    upstream = Upstream(lambda _: [answer()])

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            await client.get("/r/run-a/simple/pkg/")
            assert len(proxy.connections.blocks) == 1
            # The same header block behind a target with a space: the parser's to refuse.
            await client.send(b"GET /r/run-a/simple/a b/ HTTP/1.1\r\nHost: proxy\r\n\r\n")
            refused = await client.answer()
            client.close()
        assert refused.startswith(b"HTTP/1.1 400 ")
        assert len(upstream.heads) == 1
        assert str(proxy.records()[-1]["error"]).startswith("bad_request: ")

    asyncio.run(test())


def test_a_head_cut_over_two_reads_is_never_kept_even_behind_a_request_being_served(
    tmp_path: Path,
) -> None:
    # The first request's answer is slow (b"" then a pause), so the second head's first part,
    # its request line and a header, comes while the first is served: that part is no block.
    upstream = Upstream(lambda target: [b"", answer()] if target.endswith("/slow/") else [answer()])

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            await client.send(b"GET /r/run-a/simple/slow/ HTTP/1.1\r\nHost: proxy\r\n\r\n")
            await asyncio.sleep(0.01)
            await client.send(b"GET /r/run-a/simple/pkg/ HTTP/1.1\r\nHost: proxy\r\n")
            await asyncio.sleep(0.01)
            await client.send(b"\r\n")
            first, second = await client.answer(), await client.answer()
            assert len(proxy.connections.blocks) == 1  # the first head's, whole in its read
            client.close()
        assert first == second
        assert [head.split(b" ")[1] for head in upstream.heads] == [
            b"/simple/slow/",
            b"/simple/pkg/",
        ]

    asyncio.run(test())


def test_pipelined_heads_and_heads_with_a_body_are_parsed_and_never_kept(tmp_path: Path) -> None:
    upstream = Upstream(lambda _: [answer()])

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            client = await Client.open(proxy.port)
            one = b"GET /r/run-a/simple/pkg/ HTTP/1.1\r\nHost: proxy\r\n\r\n"
            await client.send(one + one.replace(b"/pkg/", b"/other/"))
            first, second = await client.answer(), await client.answer()
            assert len(proxy.connections.blocks) == 0
            posted = b"GET /r/run-a/simple/pkg/ HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\n\r\nhi"
            await client.send(posted)
            await client.answer()
            assert len(proxy.connections.blocks) == 0
            client.close()
        assert first == second
        assert [head.split(b" ")[1] for head in upstream.heads] == [
            b"/simple/pkg/",
            b"/simple/other/",
            b"/simple/pkg/",
        ]

    asyncio.run(test())


def test_an_http_1_0_head_kept_closes_its_connection_as_parsed(tmp_path: Path) -> None:
    upstream = Upstream(lambda _: [answer()])
    head = b"GET /r/run-a/simple/pkg/ HTTP/1.0\r\nHost: proxy\r\n\r\n"

    async def test() -> None:
        async with running(upstream, tmp_path) as proxy:
            answers = []
            for _ in range(2):
                client = await Client.open(proxy.port)
                await client.send(head)
                answers.append(await client.answer())
                assert await asyncio.wait_for(client.reader.read(), 5) == b""  # closed
                client.close()
            assert len(proxy.connections.blocks) == 1
        assert answers[0] == answers[1]
        assert b"Connection: close\r\n" in answers[0]

    asyncio.run(test())
