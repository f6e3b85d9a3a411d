"""A loopback HTTP server answering GETs from a table: for what an index URL might really point
at (a web UI, a login form, an API, an error), where a real index cannot be made to answer so."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: path -> (status, Content-Type, body); any other path is a 404.
Pages = Mapping[str, tuple[int, str, bytes]]


@contextmanager
def serving(
    pages: Pages, *, delay_s: float = 0.0, tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve ``pages`` on 127.0.0.1, each answer ``delay_s`` late (requests then overlap);
    yields the base URL (no trailing slash; https with a server ``tls`` context). Connections
    are kept alive until the client closes them: the server never closes an idle one."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            time.sleep(delay_s)
            status, content_type, body = pages.get(self.path, (404, "text/html", b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
