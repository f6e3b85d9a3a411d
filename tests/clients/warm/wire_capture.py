"""A loopback TCP relay that records every HTTP request a client sends, byte for byte.

Why not the proxy's own records: they keep what the report needs (path, user agent, range),
not every header in its order. The relay sits between the client and the real recording proxy,
forwards bytes unchanged both ways and parses the client's side: request line and header lines
exactly as sent, bodies skipped by ``Content-Length`` (chunked bodies are not expected from the
clients tested here and make the capture fail loudly).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, replace
from types import TracebackType


@dataclass(frozen=True)
class Sent:
    """One request as it left the client: when, on which connection, line and headers."""

    at: float  # monotonic, when its header block was complete
    connection: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]  # in the order sent, names as sent
    body_bytes: int
    body: bytes = b""  # filled in once the whole body has passed


class _Parser:
    def __init__(self, connection: int, sink: list[Sent], lock: threading.Lock) -> None:
        self.connection = connection
        self.sink = sink
        self.lock = lock
        self.buffer = b""
        self.body_left = 0
        self.body = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.body_left:
                used = min(self.body_left, len(self.buffer))
                self.body += self.buffer[:used]
                self.buffer = self.buffer[used:]
                self.body_left -= used
                if self.body_left:
                    return
                with self.lock:
                    last = self.sink.pop()
                    self.sink.append(replace(last, body=bytes(self.body)))
                self.body = bytearray()
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
            line, *rest = head.split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = tuple(
                (name, value.strip()) for name, value in (h.split(":", 1) for h in rest)
            )
            names = {name.lower(): value for name, value in headers}
            if "chunked" in names.get("transfer-encoding", "").lower():
                raise ValueError("chunked request bodies are not supported by the capture")
            self.body_left = int(names.get("content-length", "0"))
            with self.lock:
                self.sink.append(
                    Sent(time.monotonic(), self.connection, method, target, headers, self.body_left)
                )


class CaptureRelay:
    """``with CaptureRelay(upstream_port) as relay``: clients use ``relay.port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.sent: list[Sent] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._stopped = threading.Event()
        self._connections = 0

    def __enter__(self) -> CaptureRelay:
        thread = threading.Thread(target=self._accept, name="capture-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self._server.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def take(self) -> list[Sent]:
        """The requests recorded so far, in the order their headers completed; then forget."""
        with self._lock:
            taken, self.sent = sorted(self.sent, key=lambda s: s.at), []
        return taken

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self._sockets += [client, upstream]
            self._connections += 1
            parser = _Parser(self._connections, self.sent, self._lock)
            for source, target, watch in ((client, upstream, parser), (upstream, client, None)):
                thread = threading.Thread(
                    target=self._pump, args=(source, target, watch), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, target: socket.socket, parser: _Parser | None) -> None:
        try:
            while data := source.recv(65536):
                if parser is not None:
                    parser.feed(data)
                target.sendall(data)
        except (OSError, ValueError) as exc:
            if not self._stopped.is_set() and not isinstance(exc, OSError):
                self.errors.append(str(exc))
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
