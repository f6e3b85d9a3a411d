"""A tiny HTTP/1.1 upstream on 127.0.0.1 written on raw sockets, for the proxy's abuse tests.

Raw sockets because the misbehaviours under test (a body shorter than its Content-Length,
garbage instead of HTTP, a reset) are what an HTTP server library would not let one write. It
answers by the request path's last segment and keeps every request head it received, so a test
can assert what the proxy never forwarded.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Final

BIG_SIZE: Final = 50 * 1024 * 1024
LISTING: Final = b'<html><body><a href="pkg-1.0.tar.gz">pkg-1.0.tar.gz</a></body></html>\n'
_CHUNK: Final = b"\x5a" * (1024 * 1024)
_HEAD_MAX: Final = 1024 * 1024


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset (linger 0), like a crashed server."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class RawUpstream:
    """Serves one request per connection (``Connection: close``), chosen by the path's end:

    ``big``: 50 MB streamed; ``upload``: the body is read and counted, then 200;
    ``short``: Content-Length 1,000,000 but 100,000 bytes, then close;
    ``short-small``: Content-Length 1000 but 10 bytes, then close;
    ``garbage``: bytes that are not HTTP; ``garbage-head``: a status line then garbage headers;
    ``reset``: a reset before any answer; anything else: a small HTML listing.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.heads: list[bytes] = []
        self.uploaded: list[int] = []  # body bytes received per ``upload`` request
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def targets(self) -> list[str]:
        """The request targets received so far (``GET /x HTTP/1.1`` -> ``/x``)."""
        with self._lock:
            heads = list(self.heads)
        return [head.split(b" ", 2)[1].decode("latin-1") for head in heads if head.count(b" ") >= 2]

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed: the test is over
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self._answer(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < _HEAD_MAX:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        with self._lock:
            self.heads.append(head)
        target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
        kind = target.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if kind == "upload":
            self._read_body(conn, head, len(rest))
            conn.sendall(_head(200, 2) + b"ok")
        elif kind == "big":
            conn.sendall(_head(200, BIG_SIZE, "application/octet-stream"))
            for _ in range(BIG_SIZE // len(_CHUNK)):
                conn.sendall(_CHUNK)
        elif kind == "short":
            conn.sendall(_head(200, 1_000_000, "application/octet-stream") + b"s" * 100_000)
        elif kind == "short-small":
            conn.sendall(_head(200, 1000, "application/octet-stream") + b"s" * 10)
        elif kind == "garbage":
            conn.sendall(b"\x00\xff\xfe this is not HTTP at all \x01\x02\r\n\r\n" * 100)
        elif kind == "garbage-head":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\x00\x01\r\n\r\nxx")
        elif kind == "reset":
            _reset(conn)
        else:
            conn.sendall(_head(200, len(LISTING), "text/html") + LISTING)

    def _read_body(self, conn: socket.socket, head: bytes, already: int) -> None:
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        received = already
        while received < length:
            chunk = conn.recv(1024 * 1024)
            if not chunk:
                break
            received += len(chunk)
        with self._lock:
            self.uploaded.append(received)

    def close(self) -> None:
        """Stop accepting and cut every connection still open."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self.listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(timeout=5)


def _head(status: int, length: int, content_type: str = "text/plain") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()
